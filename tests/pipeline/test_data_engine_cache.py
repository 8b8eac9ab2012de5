"""benchmarks/data_engine_experiment.py's render cache (issue 13 on a GPU host without Blender): an arm's new
shards built from the cache hold the same rows, shards and members as `pipeline render` of the same
next-round manifest, and their cost is the cache's own per-sample seconds. Real Blender renders (tiny), real
shards; the next-round manifest is made as `pipeline mine` makes it (manifests.mining.rerender_settings for a
denser re-render, a pool row appended)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

from tests.pipeline.conftest import TINY, run_cli

REPO = Path(__file__).resolve().parents[2]


def load_experiment():
    spec = importlib.util.spec_from_file_location("data_engine_experiment", REPO / "benchmarks" / "data_engine_experiment.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def exp(proc_manifest, tmp_path_factory):
    """A two-clip round 0 (rendered), a two-clip pool, the cache of both, and a next-round manifest asking for
    one denser re-render and one pool clip."""
    from manifests import read_manifest, write_manifest
    from manifests.rerender import Densify, rerender_settings
    from manifests.mining_inputs import read_renders
    from manifests.shards import assign_shards

    x = load_experiment()
    out = tmp_path_factory.mktemp("exp")
    m = read_manifest(proc_manifest).sort_values(["uid", "clip"]).reset_index(drop=True)
    uids = sorted(set(m["uid"]))
    r0 = assign_shards(m[m["uid"] == uids[0]].head(2), 3)
    if len(r0) < 2:
        r0 = assign_shards(m[m["uid"].isin(uids[:2])].groupby("uid").head(1), 3)
    pool = assign_shards(m[m["uid"].isin(uids[2:4])].groupby("uid").head(1), 3, first_shard=int(r0["shard"].max()) + 1)
    write_manifest(r0, out / "round0.parquet", command="test")
    write_manifest(pool, out / "pool.parquet", command="test")
    c = {"resolution": TINY["resolution"], "frames": TINY["num_frames"], "views": TINY["fixed_views"],
         "samples": TINY["samples"], "shard_size": 3, "round0_shards": sorted({int(s) for s in r0["shard"]})}
    (out / "experiment_config.json").write_text(json.dumps(c))
    run_cli("-q", "render", "--manifest", str(out / "round0.parquet"), "--shards", "all", "--out", str(out / "data"),
            *x.render_flags(c), "--threads", "1")
    x.make_cache(out, out / "cache")

    # next.parquet as `pipeline mine` writes it: round-0 row 0 becomes a denser re-render in a new shard,
    # one pool row is appended in the shard after it.
    renders = read_renders(str(out / "data"))
    nxt = r0.assign(render_settings=None, parent_shard=pd.array([pd.NA] * len(r0), dtype="Int32"), mine_reason=None)
    first = int(pool["shard"].max()) + 10
    row = nxt.iloc[0].to_dict()
    nxt.loc[0, "render_settings"] = rerender_settings(row, renders, None, Densify())
    nxt.loc[0, ["parent_shard", "shard", "round", "mine_reason"]] = [row["shard"], first, 1, "rerender:topk-loss"]
    add = pool.iloc[[1]].assign(shard=first + 1, round=1, render_settings=None, mine_reason="pool:similar")
    nxt = pd.concat([nxt, add], ignore_index=True)
    write_manifest(nxt, out / "next.parquet", command="test")
    return x, out, read_manifest(out / "next.parquet")


def shard_contents(folder: Path) -> dict:
    from contracts.layout import committed_shards
    from contracts.shardread import iter_shard

    got = {}
    for n in committed_shards(folder):
        p = pd.read_parquet(folder / f"shard-{n:06d}.parquet")
        members = {s.key: s.members for s in iter_shard(folder / f"shard-{n:06d}.tar")}
        got[n] = {"rows": list(zip(p["key"], p["status"], p["num_frames"], p["num_views"])), "members": members,
                  "seconds": dict(zip(p["key"], p["seconds"]))}
    return got


def test_cached_shards_match_the_rendered_ones_and_cost_comes_from_the_cache(exp, tmp_path):
    from contracts.layout import read_stats

    x, out, nxt = exp
    new_shards = sorted({int(s) for s in nxt.loc[nxt["round"] > 0, "shard"]})
    run_cli("-q", "render", "--manifest", str(out / "next.parquet"), "--shards", ",".join(map(str, new_shards)),
            "--out", str(tmp_path / "rendered"), *x.render_flags(x.load_cfg(out)), "--threads", "1")
    x.from_cache(out / "cache", out, nxt, tmp_path / "cached")
    rendered, cached = shard_contents(tmp_path / "rendered"), shard_contents(tmp_path / "cached")

    assert sorted(cached) == sorted(rendered) == new_shards            # the shards mine chose
    dense_key = f"{nxt.loc[0, 'uid']}_{int(nxt.loc[0, 'clip']):03d}"
    for n in new_shards:
        assert cached[n]["rows"] == rendered[n]["rows"]                   # keys, status, frames x views per shard
        assert rendered[n]["members"] and len(cached[n]["members"]) == len(rendered[n]["rows"])
        for key, members in rendered[n]["members"].items():
            assert sorted(cached[n]["members"][key]) == sorted(members)   # same member names
            for name, data in members.items():
                if not name.endswith(".json"):                            # the JSON records render timings
                    assert cached[n]["members"][key][name] == data, name  # deterministic render: same bytes
    frames = {k: f for n in new_shards for k, _, f, _ in cached[n]["rows"]}
    assert frames[dense_key] == 2 * TINY["num_frames"]                  # the re-render is the denser one

    # cost: the cached shards carry the cache's own per-sample seconds, not a new measurement
    cache_rows = pd.concat([pd.read_parquet(p) for p in sorted((out / "cache" / "data").glob("shard-*[0-9].parquet"))])
    cache_s = dict(zip(cache_rows["key"], cache_rows["seconds"]))
    for n in new_shards:
        for key, s in cached[n]["seconds"].items():
            assert s == cache_s[key] and s != rendered[n]["seconds"][key]
        assert read_stats(tmp_path / "cached", n)["render_cache"] == str(out / "cache")


def test_a_row_the_cache_does_not_hold_as_asked_is_refused(exp, tmp_path):
    x, out, nxt = exp
    other = nxt.copy()
    other.loc[0, "render_settings"] = json.dumps({**json.loads(other.loc[0, "render_settings"]), "seed": 7})
    with pytest.raises(SystemExit, match="--render-cache .* is cached with render_settings"):
        x.from_cache(out / "cache", out, other, tmp_path / "a")
    other = nxt.copy()
    other.loc[len(other) - 1, "clip"] = 99
    with pytest.raises(SystemExit, match="--render-cache .* no cached render of"):
        x.from_cache(out / "cache", out, other, tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # nothing written before the checks


def test_round_zero_and_arms_made_with_other_step_counts_are_not_reused(tmp_path):
    # a seed's round 0 and each arm are made once and reused; under other --steps0/--steps1 they must not be
    x = load_experiment()
    c = {"steps0": 10, "steps1": 4}
    marker = tmp_path / "seed0" / "round0_steps.json"
    x._same_steps(marker, c, "seed0: round 0")  # first use records the counts
    assert json.loads(marker.read_text()) == c
    x._same_steps(marker, dict(c), "seed0: round 0")  # same counts: reused
    with pytest.raises(SystemExit, match=r"seed0: round 0 was made with .*'steps0': 10.*asks for .*'steps0': 12"):
        x._same_steps(marker, {"steps0": 12, "steps1": 4}, "seed0: round 0")
    # an arm's result.json records its counts: reusing it under others stops before any work
    out = tmp_path / "exp"
    (out / "seed0" / "control").mkdir(parents=True)
    (out / "experiment_config.json").write_text(json.dumps({"steps0": 10, "steps1": 4, "round0_shards": [0]}))
    (out / "seed0" / "round0_steps.json").write_text(json.dumps({"steps0": 10, "steps1": 4}))
    (out / "seed0" / "control" / "result.json").write_text(json.dumps({"arm": "control", "steps0": 10, "steps1": 2}))
    ck = out / "seed0" / "round0" / "checkpoints" / "step-00000010.pt"
    ck.parent.mkdir(parents=True)
    ck.write_bytes(b"")
    (out / "seed0" / "round0_metrics.parquet").write_bytes(b"")
    with pytest.raises(SystemExit, match=r"control was made with .*'steps1': 2.*asks for steps0=10 steps1=4"):
        x.arm(out, "control", 0, "cpu")
