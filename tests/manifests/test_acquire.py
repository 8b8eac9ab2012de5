"""Target-aware acquisition (manifests/signals.py, manifests/acquire.py, `pipeline mine --pool-strategy target`)
on real files: metrics written by the real `pipeline eval` code (training.evaluate) on analytic shards, pools
curated by the real `pipeline curate` from the shared glTF files and from the procedural generator."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from manifests.acquire import GroupPlan, TargetConfig, allocate, group_shares, group_weights
from manifests.mining import MineConfig, MiningError, mine
from manifests.schema import read_manifest, write_manifest
from manifests.signals import group_deficits, group_labels, sample_deficits
from pipeline.cli import cli
from training.data import synthetic

N_SAMPLES, PER_SHARD = 12, 3   # analytic clips analytic1x0..11 in shards 0-3


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A 3-step `tiny` checkpoint and a 6-step one (the 'reference'), both scored by the real evaluation on
    12 analytic clips (4 shards): metrics files with every docs/metrics.md column."""
    import torch

    from training.config import apply_overrides, preset
    from training.evaluate import evaluate
    from training.train import train

    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("acq")
    data = d / "data"
    synthetic.write_dataset(data, N_SAMPLES, PER_SHARD, seed=1, views=4, frames=3, size=32)
    for name, steps in (("cur", 3), ("ref", 6)):
        run = d / name
        cfg = apply_overrides(preset("tiny"), [f"steps={steps}", "data.num_workers=0", f"ckpt_every={steps}",
                                               "grid_every=0", f"log_every={steps}"])
        train(cfg, str(data / "shard-{000000..000003}.tar"), run, device="cpu")
        evaluate(run, str(data), d / f"{name}.parquet", device="cpu", progress=False, worst=0)
    return {"data": data, "cur": d / "cur.parquet", "ref": d / "ref.parquet", "dir": d}


def _rows(uids, shard_of, **cols) -> pd.DataFrame:
    return pd.DataFrame({"uid": uids, "clip": 0, "clip_name": "move", "source": "procedural",
                         "uri": [f"/assets/{u}.glb" for u in uids], "sha256": None, "license": "cc0",
                         "shard": [shard_of[u] for u in uids], "weight": 1.0, "round": 0, **cols})


def _analytic_manifests(tmp, cats=("biped", "vehicle")):
    """Shards 0-1 = the trained manifest; shards 2-3 = the target split, half biped half vehicle."""
    uids = [f"analytic1x{i}" for i in range(N_SAMPLES)]
    shard_of = {u: i // PER_SHARD for i, u in enumerate(uids)}
    train_u, target_u = uids[:6], uids[6:]
    m = write_manifest(_rows(train_u, shard_of, category=[cats[i % 2] for i in range(6)]), tmp / "m.parquet")
    t = write_manifest(_rows(target_u, shard_of, category=[cats[i % 2] for i in range(6)]), tmp / "target.parquet")
    return m, t


@pytest.fixture(scope="module")
def curated_pool(tmp_path_factory, gltf_dir):
    """A real pool: `pipeline curate --source local` of the shared glTF files plus `--source procedural` (3
    assets of the legacy generator, whose clip count the labels below assume), concatenated; procedural rows get a
    `category` of their own here (two labels, so a group can be missing from the target)."""
    d = tmp_path_factory.mktemp("pool")
    for args in (["--source", "local", "--dir", str(gltf_dir), "--out", str(d / "local.parquet")],
                 ["--source", "procedural", "--categories", "legacy", "--count", "3", "--seed", "7", "--assets-out", str(d / "assets"),
                  "--out", str(d / "proc.parquet")]):
        r = CliRunner().invoke(cli, ["curate", *args])
        assert r.exit_code == 0, r.output
    local, proc = read_manifest(d / "local.parquet"), read_manifest(d / "proc.parquet")
    proc["category"] = ["biped", "vehicle", "biped", "vehicle", "biped", "vehicle"][: len(proc)]
    local["category"] = "vehicle"
    pool = pd.concat([local, proc], ignore_index=True)
    return write_manifest(pool, d / "pool.parquet", command="test"), pool


# -- signals ---------------------------------------------------------------------------------------------


def test_deficits_from_a_real_eval_file(evaluated):
    m = pq.read_table(evaluated["cur"]).to_pandas()
    raw = sample_deficits(evaluated["cur"], "raw")
    base = sample_deficits(evaluated["cur"], "baseline")
    ref = sample_deficits(evaluated["cur"], "reference", evaluated["ref"])
    r = pq.read_table(evaluated["ref"]).to_pandas().set_index("uid")
    row = m.set_index("uid").loc["analytic1x4"]
    at = lambda df: df.set_index("uid").loc["analytic1x4", "deficit"]  # noqa: E731
    assert at(raw) == pytest.approx(-row["psnr_obj"])
    assert at(base) == pytest.approx(row["psnr_obj_nearest_input"] - row["psnr_obj"])
    assert at(ref) == pytest.approx(r.loc["analytic1x4", "psnr_obj"] - row["psnr_obj"])
    assert len(raw) == len(base) == len(ref) == N_SAMPLES
    assert sample_deficits(evaluated["cur"], "baseline", metric="psnr").set_index("uid").loc["analytic1x4", "deficit"] \
        == pytest.approx(row["psnr_nearest_input"] - row["psnr"])


def test_group_deficits_are_means_over_the_target_split(evaluated, tmp_path):
    _, t = _analytic_manifests(tmp_path)
    d = sample_deficits(evaluated["cur"], "baseline")
    g = group_deficits(d, read_manifest(t), "category")
    rows = read_manifest(t)
    for cat in ("biped", "vehicle"):
        uids = set(rows.loc[rows["category"] == cat, "uid"])
        want = d.loc[d["uid"].isin(uids), "deficit"].mean()
        assert g.set_index("group").loc[cat, "deficit"] == pytest.approx(want)
        assert g.set_index("group").loc[cat, "clips"] == 3
    assert g["share"].sum() == pytest.approx(1.0)
    inside = d[d["uid"].isin(set(rows["uid"]))]["deficit"]
    assert g["scale"].tolist() == pytest.approx([max(float(inside.std(ddof=0)), 0.5)] * 2)  # at least 0.5 dB


def test_deficit_clip_keeps_a_few_near_still_clips_from_taking_the_budget():
    """The category scenario's case (BENCHMARKS.md): most target clips within a few dB of the copy baseline, a few
    near-still ones 25 dB behind it. Plain means give their small group most of the budget; clipped ones do not."""
    a = [-4.4, -3.0, -2.6, -2.1, -1.2, -0.9, -0.4, 0.2, 0.7, 1.7, 3.1, 3.8, 4.5, 5.6]  # 14 clips of group a
    b = [25.0, 27.7]                                                                  # 2 near-still clips of group b
    uids = [f"u{i:02d}" for i in range(16)]
    d = pd.DataFrame({"uid": uids, "clip": 0, "value": 14.0, "deficit": a + b})
    d["base"] = d["value"] + d["deficit"]
    rows = _rows(uids, {u: 0 for u in uids}, category=["a"] * 14 + ["b"] * 2)
    plain = group_deficits(d, rows, "category").set_index("group")
    robust = group_deficits(d, rows, "category", clip_sd=3.0).set_index("group")
    x = np.array(a + b)
    med = float(np.median(x))
    rsd = 1.4826 * float(np.median(np.abs(x - med)))
    assert robust.loc["b", "deficit"] == pytest.approx(med + 3 * rsd)  # both clipped to the upper bound
    assert robust.loc["a", "deficit"] == pytest.approx(float(np.mean(a)))  # none of a's clipped
    assert robust["clipped"].to_dict() == {"a": 0, "b": 2} and plain["clipped"].sum() == 0
    clipped = np.clip(x, med - 3 * rsd, med + 3 * rsd)
    assert robust["scale"].iloc[0] == pytest.approx(clipped.std()) and plain["scale"].iloc[0] == pytest.approx(x.std())
    assert plain.loc["b", "deficit"] == pytest.approx(np.mean(b))
    share = {name: {p.group: p.share for p in group_shares(["a", "b"], tab.reset_index(), eta=1.0, floor=0.2)}
             for name, tab in (("plain", plain), ("robust", robust))}
    assert share["robust"]["b"] < share["plain"]["b"]
    plan = {p.group: p for p in group_shares(["a", "b"], robust.reset_index(), eta=1.0, floor=0.2)}
    assert "2 clip(s) clipped" in plan["b"].describe("category", "baseline")
    assert "clipped" not in plan["a"].describe("category", "baseline")
    with pytest.raises(ValueError, match="--deficit-clip must be a finite number >= 0"):
        TargetConfig(metrics="m", group_by="category", clip_sd=-1.0)


def test_deform_groups_from_the_real_gltf_files(curated_pool):
    _, pool = curated_pool
    lab = dict(zip(pool["uid"], group_labels(pool, "deform")))
    assert lab["CesiumMan"] == "skin" and lab["AnimatedMorphCube"] == "morph" and lab["BoxAnimated"] == "rigid"


def test_render_statistics_bins_need_renders_and_are_refused_for_a_pool(curated_pool):
    _, pool = curated_pool
    with pytest.raises(MiningError, match="motion_bin.*renders folder.*pool rows"):
        group_labels(pool, "motion_bin", None, where="pool")
    stats = pd.DataFrame({"uid": ["Fox"], "clip": [0], "shard": [int(pool.loc[pool["uid"] == "Fox", "shard"].iloc[0])],
                          "motion_mean": [0.05], "coverage_mean": [0.3]})
    fox = pool[(pool["uid"] == "Fox") & (pool["clip"] == 0)]
    assert group_labels(fox, "motion_bin", stats).tolist() == ["moderate"]
    assert group_labels(fox, "size_bin", stats).tolist() == ["large"]


def test_unknown_group_column_and_empty_target_are_named(evaluated, tmp_path):
    _, t = _analytic_manifests(tmp_path)
    with pytest.raises(MiningError, match="group column 'colour': not a column of the target manifest"):
        group_labels(read_manifest(t), "colour", where="target manifest")
    other = _rows(["zz0", "zz1"], {"zz0": 0, "zz1": 0}, category="biped")
    with pytest.raises(MiningError, match="empty target"):
        group_deficits(sample_deficits(evaluated["cur"], "raw"), other, "category")


# -- budget ----------------------------------------------------------------------------------------------


def test_group_shares_are_multiplicative_weights_with_a_floor():
    table = pd.DataFrame({"group": ["a", "b"], "clips": [3, 1], "share": [0.75, 0.25], "deficit": [1.0, 3.0]})
    plans = {p.group: p for p in group_shares(["a", "b", "c"], table, eta=1.0, floor=0.3)}
    mean = 0.75 * 1.0 + 0.25 * 3.0
    wa, wb = 0.75 * np.exp(1.0 - mean), 0.25 * np.exp(3.0 - mean)
    assert plans["a"].weight == pytest.approx(wa / (wa + wb)) and plans["c"].weight == 0.0
    assert plans["c"].deficit is None and plans["c"].share == pytest.approx(0.1)  # the floor only
    assert plans["b"].share == pytest.approx(0.7 * wb / (wa + wb) + 0.1)
    assert sum(p.share for p in plans.values()) == pytest.approx(1.0)
    flat = {p.group: p for p in group_shares(["a", "b"], table, eta=0.0, floor=0.0)}
    assert flat["a"].share == pytest.approx(0.75)  # eta 0: the target's own mix
    wide = {p.group: p for p in group_shares(["a", "b"], table.assign(scale=2.0), eta=1.0, floor=0.0)}
    wa2, wb2 = 0.75 * np.exp((1.0 - mean) / 2), 0.25 * np.exp((3.0 - mean) / 2)  # eta is per std of the deficit
    assert wide["b"].weight == pytest.approx(wb2 / (wa2 + wb2))


def test_allocation_is_exact_and_respects_floors_and_pool_sizes():
    rng = random.Random(0)
    for _ in range(300):
        G = rng.randint(1, 6)
        names = [f"g{i}" for i in range(G)]
        table = pd.DataFrame({"group": names, "clips": 1, "share": 1.0 / G,
                              "deficit": [rng.uniform(-3, 3) for _ in names]})
        floor = rng.choice([0.0, 0.2, 0.5, 1.0])
        budget = rng.randint(0, 60)
        avail = {g: rng.randint(0, 20) for g in names}
        plans = allocate(group_shares(names, table, rng.choice([0.5, 1, 3]), floor), avail, budget, floor)
        assert sum(p.budget for p in plans) == min(budget, sum(avail.values()))
        for p in plans:
            per = int(floor * budget / G + 1e-9)
            assert min(avail[p.group], per) <= p.budget <= avail[p.group]
            assert p.floor == min(avail[p.group], per)
    p = allocate(group_shares(["a", "b", "c"], pd.DataFrame({"group": ["a"], "clips": 1, "share": 1.0, "deficit": 0.0}),
                              1.0, 0.3), {"a": 9, "b": 9, "c": 9}, 10, 0.3)
    assert [x.floor for x in p] == [1, 1, 1] and [x.budget for x in p] == [8, 1, 1]  # 0.3 * 10 / 3 rows each


def test_no_target_group_in_the_pool_is_refused():
    table = pd.DataFrame({"group": ["x"], "clips": [2], "share": [1.0], "deficit": [1.0]})
    with pytest.raises(MiningError, match="no target group among"):
        group_shares(["a", "b"], table, 1.0, 0.2)


def test_group_weights_give_each_group_its_share_of_the_draws():
    table = pd.DataFrame({"group": ["a", "b"], "clips": [1, 1], "share": [0.5, 0.5], "deficit": [0.0, 2.0]})
    w = np.array([1.0, 4.0, 1.0, 1.0, 2.0])  # a boosted row keeps its place within its group
    groups = pd.Series(["a", "a", "b", "a", "b"])
    cfg = TargetConfig(metrics="m", group_by="kind", floor=0.2)
    r = group_weights(w, groups, table, cfg, "kind")
    shares = {p.group: p.share for p in r.plans}
    assert r.weights.sum() == pytest.approx(w.sum())
    assert r.weights[[0, 1, 3]].sum() / r.weights.sum() == pytest.approx(shares["a"])
    assert r.weights[1] / r.weights[0] == pytest.approx(4.0)
    assert shares["b"] > 0.5 and all("group kind=" in s and "of the draws" in s for s in r.reasons)


# -- pipeline mine --pool-strategy target, end to end ------------------------------------------------------


def _target_args(ev, m, t, pool, out, *extra):
    return ["mine", "--metrics", str(ev["cur"]), "--manifest", str(m), "--out", str(out), "--fraction", "0.2",
            "--rerender-fraction", "0", "--boost", "1", "--pool", str(pool), "--render-budget", "6",
            "--pool-strategy", "target", "--target-metrics", str(ev["cur"]), "--target-manifest", str(t), *extra]


def test_target_mine_on_real_curated_pool_by_category(evaluated, curated_pool, tmp_path):
    m, t = _analytic_manifests(tmp_path)
    pool_path, pool = curated_pool
    args = _target_args(evaluated, m, t, pool_path, tmp_path / "a.parquet", "--group-by", "category",
                        "--group-floor", "0.5")
    r = CliRunner().invoke(cli, args, terminal_width=200)
    assert r.exit_code == 0, r.output
    nxt = read_manifest(tmp_path / "a.parquet")
    new = nxt[nxt["mine_reason"] == "pool:target"]
    assert len(new) == 6 and (new["round"] == 1).all()
    per = new.merge(pool[["uid", "clip", "category"]], on=["uid", "clip"], suffixes=("", "_pool"))["category"].value_counts()
    n_biped = int((pool["category"] == "biped").sum())
    assert per.get("biped", 0) >= min(n_biped, 1) and per.sum() == 6  # floor: 0.5 * 6 / 2 = 1 row at least
    assert all("group category=" in s and "budget" in s and ("diverse pick" in s) for s in new["pool_reason"])
    assert "target: 6 clip(s) by category, signal baseline on psnr_obj" in r.output
    assert "render budget:" in r.output and "biped" in r.output
    info = pq.read_schema(tmp_path / "a.parquet").metadata[b"objaverse4d.manifest"]
    assert b"target_report" in info
    # deterministic: the same inputs give the same file, byte for byte
    first = (tmp_path / "a.parquet").read_bytes()
    r2 = CliRunner().invoke(cli, args)
    assert r2.exit_code == 0 and (tmp_path / "a.parquet").read_bytes() == first
    from manifests.schema import manifest_info

    r3 = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "c.parquet"), "--deficit-clip", "3"])
    assert r3.exit_code == 0, r3.output
    report = manifest_info(tmp_path / "c.parquet").settings["target_report"]
    assert report["deficit_clip"] == 3.0 and all("clipped" in g for g in report["groups"])


def test_target_mine_by_source_with_group_weights_and_random_within(evaluated, curated_pool, tmp_path):
    m, t = _analytic_manifests(tmp_path)
    rows = read_manifest(t)
    rows["source"] = ["local", "procedural"] * 3  # the target: half real-like, half procedural
    write_manifest(rows, t, command="test")
    pool_path, _ = curated_pool
    args = _target_args(evaluated, m, t, pool_path, tmp_path / "w.parquet", "--group-by", "source", "--within",
                        "random", "--pool-seed", "3", "--group-weights")
    r = CliRunner().invoke(cli, args, terminal_width=200)
    assert r.exit_code == 0, r.output
    nxt = read_manifest(tmp_path / "w.parquet")
    new = nxt[nxt["mine_reason"] == "pool:target"]
    assert len(new) == 6 and set(new["source"]) <= {"local", "procedural"}
    assert all("random pick" in s and "seed 3" in s for s in new["pool_reason"])
    assert nxt["group_reason"].notna().all() and "sampling weights:" in r.output
    old = nxt[nxt["round"] == 0]  # the trained rows, re-weighted by group (those mining touched keep their reason)
    assert len(old) == 6 and set(old["mine_reason"]) == {"groupweight:source", "upweight:topk-loss"}
    from manifests.schema import manifest_info

    plan = {p["group"]: p["share"] for p in manifest_info(tmp_path / "w.parquet").settings["target_report"]["weights"]}
    got = (nxt.groupby("source")["weight"].sum() / nxt["weight"].sum()).to_dict()
    assert set(got) == set(plan) == {"local", "procedural"}
    assert all(got[g] == pytest.approx(plan[g], abs=1e-4) for g in plan)  # each group draws its planned share
    assert nxt["weight"].sum() == pytest.approx(12.0, rel=1e-5)  # the total weight is kept


def test_diverse_picks_spread_instead_of_near_copies(tmp_path):
    """One group; three near-identical long heavy clips and two distinct ones; nothing of the group is
    rendered: the first pick is nearest the target clips, the next ones are far from it and each other."""
    from manifests.acquire import pick_groups

    feats = {"p_copy0": (4.0, 20000), "p_copy1": (4.01, 20010), "p_copy2": (3.99, 19990),
             "p_short": (0.5, 300), "p_mid": (2.0, 3000)}
    uids = sorted(feats)
    pool = _rows(uids, {u: 0 for u in uids}, duration_s=[feats[u][0] for u in uids],
                 face_count=[feats[u][1] for u in uids])
    target = _rows(["t0"], {"t0": 0}, duration_s=[4.0], face_count=[20000])
    rendered = _rows(["r0"], {"r0": 0}, duration_s=[1.0], face_count=[1000])
    plan = GroupPlan("g", 1, 1.0, 1.0, 1.0, 1.0, available=5, floor=0, budget=3)
    cfg = TargetConfig(metrics="m", group_by="kind")
    g = lambda df: pd.Series(["g"] * len(df), index=df.index)  # noqa: E731
    picks = pick_groups(pool, g(pool), [plan], rendered.assign(kind="other"), pd.Series(["other"]), target,
                        g(target), cfg, "kind")
    got = [p.uid for p in picks]
    assert got[0].startswith("p_copy") and set(got[1:]) == {"p_short", "p_mid"}, got
    assert "nearest to its target clips" in picks[0].reason and "farthest first" in picks[1].reason


def test_refusals_name_the_input(evaluated, curated_pool, tmp_path):
    m, t = _analytic_manifests(tmp_path)
    pool_path, _ = curated_pool
    run = lambda *extra: CliRunner().invoke(cli, _target_args(evaluated, m, t, pool_path, tmp_path / "x.parquet",  # noqa: E731
                                                              *extra))
    r = run("--group-by", "colour")
    assert r.exit_code != 0 and "group column 'colour'" in r.output
    r = run()
    assert r.exit_code != 0 and "--group-by" in r.output
    r = run("--group-by", "motion_bin")
    assert r.exit_code != 0 and "motion_bin" in r.output
    r = run("--group-by", "category", "--deficit-clip", "-1")
    assert r.exit_code != 0 and "--deficit-clip must be a finite number >= 0" in r.output
    other = tmp_path / "other_protocol.parquet"
    tab = pq.read_table(evaluated["cur"])
    df = tab.to_pandas().assign(protocol="sparse4-v2/lrm4d@64")
    pq.write_table(pa_table(df, tab), other)
    r = CliRunner().invoke(cli, [*_target_args(evaluated, m, t, pool_path, tmp_path / "y.parquet", "--group-by",
                                               "category")[:-6], "--target-metrics", str(other), "--target-manifest",
                                 str(t), "--group-by", "category"])
    assert r.exit_code != 0 and "protocol mismatch" in r.output
    empty = write_manifest(_rows(["zz0"], {"zz0": 0}, category="biped"), tmp_path / "empty.parquet")
    r = CliRunner().invoke(cli, [*_target_args(evaluated, m, empty, pool_path, tmp_path / "z.parquet"),
                                 "--group-by", "category"])
    assert r.exit_code != 0 and "empty target" in r.output
    with pytest.raises(ValueError, match="--pool-strategy target needs --target-metrics"):
        MineConfig(metrics="m", manifest="m", out="o", pool="p", render_budget=2, pool_strategy="target")
    with pytest.raises(ValueError, match="--signal reference needs --target-reference-metrics"):
        TargetConfig(metrics="m", group_by="kind", signal="reference")
    r = CliRunner().invoke(cli, ["mine", "--metrics", str(evaluated["cur"]), "--manifest", str(m), "--out",
                                 str(tmp_path / "q.parquet"), "--group-by", "kind"])
    assert r.exit_code != 0 and "need --target-metrics" in r.output


def pa_table(df, like):
    import pyarrow as pa

    return pa.Table.from_pandas(df, schema=like.schema, preserve_index=False)


def test_reference_signal_end_to_end_and_baseline_ranking(evaluated, curated_pool, tmp_path):
    m, t = _analytic_manifests(tmp_path)
    pool_path, _ = curated_pool
    res = mine(MineConfig(metrics=str(evaluated["cur"]), manifest=str(m), out=str(tmp_path / "r.parquet"),
                          rerender_fraction=0.0, boost=1.0, pool=str(pool_path), render_budget=4,
                          pool_strategy="target",
                          target=TargetConfig(metrics=str(evaluated["cur"]), group_by="category", manifest=str(t),
                                              signal="reference", reference=str(evaluated["ref"]))))
    assert res.target["signal"] == "reference" and len(res.pool_picks) == 4
    assert sum(b["budget"] for b in res.target["budget"]) == 4
    # per-clip ranking by the copy baseline's margin (mine --strategy baseline --by psnr)
    res = mine(MineConfig(metrics=str(evaluated["cur"]), manifest=str(m), out=str(tmp_path / "b.parquet"),
                          strategy="baseline", by="psnr", fraction=0.34, rerender_fraction=0.0))
    nxt = read_manifest(tmp_path / "b.parquet")
    cur = pq.read_table(evaluated["cur"]).to_pandas()
    cur = cur[cur["uid"].isin(set(nxt["uid"]))]
    margin = (cur["psnr_nearest_input"] - cur["psnr"]).to_numpy()
    top = set(cur["uid"].to_numpy()[np.argsort(-margin, kind="stable")][:res.hard])
    assert set(nxt.loc[nxt["mine_reason"] == "upweight:baseline-psnr", "uid"]) == top and res.hard == 3
    with pytest.raises(ValueError, match="--strategy baseline needs --by psnr"):
        MineConfig(metrics="m", manifest="m", out="o", strategy="baseline")
