"""Hard-example mining (manifests/mining.py, `pipeline mine`) on real files: manifests written with
write_manifest, shards committed by the real ShardWriter, metrics files written by hand in the DESIGN.md
§5 layout (`pipeline eval` writes them for real)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from manifests.mining import MineConfig, MiningError, mine, read_metrics
from manifests.rerender import Densify, densify
from manifests.schema import manifest_info, read_manifest, write_manifest
from pipeline.cli import cli
from pipeline.shards import ShardWriter
from render.presets import get_preset, with_row_settings
from render.result import SampleResult
from training.data import synthetic

# Scenario used by most tests: shard 0 and 1 are rendered (one failed, one rejected row), shard 2 is not.
LAYOUT = {0: ["a0", "a1", "a2", "a3"], 1: ["b0", "b1", "b2", "b3"], 2: ["c0", "c1"]}
OUTCOME = {"a3": "render_failed", "b3": "no_motion"}  # reason of the rows that did not render
LOSS = {"a0": 0.9, "a1": 0.1, "a2": 0.2, "b0": 0.5, "b1": 0.3, "b2": 0.05}
PSNR = {"a0": 25.0, "a1": 14.0, "a2": 30.0, "b0": 28.0, "b1": 12.0, "b2": 31.0}  # a different order than LOSS


def write_test_manifest(path: Path, layout=LAYOUT, weight=1.0, **columns) -> Path:
    rows = [(u, s) for s, us in layout.items() for u in us]
    df = pd.DataFrame({"uid": [u for u, _ in rows], "clip": 0, "clip_name": "move", "source": "procedural",
                       "uri": [f"/assets/{u}.glb" for u, _ in rows], "sha256": None, "license": "cc0",
                       "shard": [s for _, s in rows], "weight": weight, "round": 0, **columns})
    return write_manifest(df, path, command="test")


def write_metrics(path: Path, values: dict[str, float], psnr: dict[str, float] | None = None, protocol="v1-seed0",
                  step=1000, shard_of=None, drop: tuple[str, ...] = (), loss_weights=None, background="white",
                  settings=None) -> Path:
    """A metrics file in the DESIGN.md §5 layout: uid, clip, key, shard, psnr, ssim, lpips, loss, step, protocol,
    with the metadata `pipeline eval` writes (loss formula, background; None leaves a key out)."""
    shard_of = shard_of or {u: s for s, us in LAYOUT.items() for u in us}
    psnr = psnr or {u: 30.0 - 10 * v for u, v in values.items()}
    uids = list(values)
    cols = {
        "uid": pa.array(uids, pa.string()), "clip": pa.array([0] * len(uids), pa.int32()),
        "key": pa.array([f"{u}_000" for u in uids], pa.string()),
        "shard": pa.array([shard_of[u] for u in uids], pa.int32()),
        "psnr": pa.array([psnr[u] for u in uids], pa.float64()), "ssim": pa.array([0.9] * len(uids), pa.float64()),
        "lpips": pa.array([None] * len(uids), pa.float64()), "loss": pa.array([values[u] for u in uids], pa.float64()),
        "step": pa.array([step] * len(uids), pa.int64()), "protocol": pa.array([protocol] * len(uids), pa.string()),
    }
    table = pa.table({k: v for k, v in cols.items() if k not in drop})
    info = {"loss_weights": loss_weights or {"mse": 1.0, "mask": 0.5}, "background": background, "protocol": settings}
    info = {k: v for k, v in info.items() if v is not None and not (k == "loss_weights" and loss_weights is False)}
    table = table.replace_schema_metadata({b"objaverse4d.metrics": json.dumps(info).encode()})
    pq.write_table(table, path)
    return path


def commit_renders(out: Path, layout=LAYOUT, outcome=OUTCOME, shards=(0, 1), preset="debug") -> Path:
    """Commit `shards` with the real ShardWriter: ok rows carry real (tiny) analytic samples."""
    for s in shards:
        w = ShardWriter(out, s)
        for i, u in enumerate(layout[s]):
            if u in outcome:
                w.add(SampleResult.problem(u, 0, f"{u}_000", outcome[u], "test", 0.1))
            else:
                members = synthetic.make_sample(u, i, views=2, frames=1, size=8, depth=False, n_objects=1)
                w.add(SampleResult(u, 0, f"{u}_000", "ok", None, None, 0.1, members=members))
        w.commit({"spec": get_preset(preset).to_dict()})
    return out


@pytest.fixture
def scene(tmp_path):
    """Manifest, committed renders of shards 0-1, and the current model's metrics on the ok samples."""
    return {"manifest": write_test_manifest(tmp_path / "m.parquet"), "renders": commit_renders(tmp_path / "data"),
            "metrics": write_metrics(tmp_path / "metrics.parquet", LOSS, PSNR), "tmp": tmp_path}


def run(scene, out="next.parquet", **kw) -> tuple[pd.DataFrame, object]:
    base = dict(metrics=str(scene["metrics"]), manifest=str(scene["manifest"]), out=str(scene["tmp"] / out),
                renders=str(scene["renders"]), rerender_fraction=0.0)
    res = mine(MineConfig(**{**base, **kw}), command="pipeline mine (test)")
    return read_manifest(res.out), res


def by_uid(df: pd.DataFrame) -> dict[str, dict]:
    return {r["uid"]: r for r in df.to_dict("records")}


# -- strategies ----------------------------------------------------------------------------------


def test_topk_by_loss_boosts_the_highest_losses(scene):
    df, res = run(scene, fraction=0.5, boost=4.0)
    rows = by_uid(df)
    hard = {u for u, r in rows.items() if r["mine_reason"] == "upweight:topk-loss"}
    assert hard == {"a0", "b0", "b1"}  # ceil(0.5 * 6 scored) = 3 highest losses: 0.9, 0.5, 0.3
    assert all(rows[u]["weight"] == 4.0 for u in hard)
    assert all(rows[u]["weight"] == 1.0 and rows[u]["mine_reason"] is None for u in set(rows) - hard)
    assert res.scored == 6 and res.hard == 3 and res.changes == {"upweight:topk-loss": 3}
    assert res.hard_share_before == pytest.approx(3 / 8) and res.hard_share_after == pytest.approx(12 / 17)


def test_topk_by_psnr_boosts_the_lowest_psnr(scene):
    df, _ = run(scene, by="psnr", fraction=0.5)
    assert {r["uid"] for r in df.to_dict("records") if r["mine_reason"]} == {"b1", "a1", "a0"}  # 12, 14, 25 dB


def test_random_strategy_draws_as_many_scored_samples_seeded_and_order_free(scene, tmp_path):
    """The control: the same counts as topk (ceil(fraction x scored) up-weighted, the re-render share of
    them), drawn from the scored rows only, the same draw for the same seed whatever the row order, another
    draw for other seeds, and each pick says it was random."""
    _, top_res = run(scene, "top.parquet", fraction=0.5, rerender_fraction=0.2)
    picks = {}
    for seed in range(6):
        df, res = run(scene, f"r{seed}.parquet", strategy="random", pool_seed=seed, fraction=0.5, rerender_fraction=0.2)
        assert res.scored == top_res.scored == 6 and res.hard == top_res.hard == 3
        assert len(res.rerenders) == len(top_res.rerenders) == 2
        changed = df[df["mine_reason"].notna()]
        assert set(changed["mine_reason"]) <= {f"upweight:random-seed{seed}", f"rerender:random-seed{seed}"}
        assert set(changed["uid"]) <= set(LOSS)  # scored rows only (c0, c1 have no metrics; a3, b3 did not render)
        picks[seed] = frozenset(changed["uid"])
    assert len(set(picks.values())) > 1, "every seed drew the same rows"
    shuffled = read_manifest(scene["manifest"]).sample(frac=1.0, random_state=3)
    write_manifest(shuffled, scene["manifest"])
    again, _ = run(scene, "again.parquet", strategy="random", pool_seed=0, fraction=0.5, rerender_fraction=0.2)
    assert frozenset(again.loc[again["mine_reason"].notna(), "uid"]) == picks[0]


def test_boost_multiplies_the_input_weight(scene, tmp_path):
    write_test_manifest(scene["manifest"], weight=2.5)
    df, _ = run(scene, fraction=0.2, boost=3.0)
    rows = by_uid(df)
    assert rows["a0"]["weight"] == pytest.approx(7.5) and rows["a1"]["weight"] == pytest.approx(2.5)


def test_boosted_weights_stop_at_max_weight_and_a_cap_never_lowers_one(scene, tmp_path):
    weights = {"a0": 6.0, "b0": 20.0, "b1": 1.0}  # the three hardest by loss (0.9, 0.5, 0.3)
    df0 = read_manifest(scene["manifest"])
    write_test_manifest(scene["manifest"], weight=df0["uid"].map(weights).fillna(1.0).to_numpy())
    df, res = run(scene, fraction=0.5, boost=4.0, max_weight=16.0)
    rows = by_uid(df)
    assert (rows["a0"]["weight"], rows["b0"]["weight"], rows["b1"]["weight"]) == (16.0, 20.0, 4.0)
    assert res.capped == 2 and rows["a1"]["weight"] == 1.0  # a0 (24 -> 16) and b0 (80 -> stays 20)
    assert res.weights_after["max"] == 20.0


def test_reducible_chases_what_the_reference_learnt_not_what_both_miss(scene, tmp_path):
    # a0 is hard for both models (noisy or broken): topk chases it, reducible does not.
    # b1 is hard for the current model only: reducible picks it first.
    ref = write_metrics(tmp_path / "ref.parquet", {"a0": 0.88, "a1": 0.1, "a2": 0.25, "b0": 0.45, "b1": 0.02, "b2": 0.05})
    topk, _ = run(scene, out="topk.parquet", fraction=0.2)
    red, res = run(scene, out="red.parquet", strategy="reducible", reference_metrics=str(ref), fraction=0.2)
    assert {r["uid"] for r in topk.to_dict("records") if r["mine_reason"]} == {"a0", "b0"}  # losses 0.9, 0.5
    assert {r["uid"] for r in red.to_dict("records") if r["mine_reason"]} == {"b1", "b0"}  # reducible 0.28, 0.05
    assert set(red.loc[red["mine_reason"].notna(), "mine_reason"]) == {"upweight:reducible-loss"}
    assert res.not_touched["not reducible (score <= 0)"] == 3  # a1 (0), a2 (-0.05), b2 (0)


def test_reducible_by_psnr_and_rows_without_reference(scene, tmp_path):
    ref_psnr = {"a0": 25.5, "a1": 14.0, "a2": 30.0, "b0": 28.0, "b1": 24.0}  # b2 never evaluated by the reference
    ref = write_metrics(tmp_path / "ref.parquet", {u: 0.1 for u in ref_psnr}, ref_psnr)
    df, res = run(scene, strategy="reducible", by="psnr", reference_metrics=str(ref), fraction=0.5)
    assert {r["uid"] for r in df.to_dict("records") if r["mine_reason"]} == {"b1", "a0"}  # +12 dB, +0.5 dB
    assert res.not_touched["no reference metrics"] == 1 and res.scored == 5


def test_protocol_mismatch_names_both_files(scene, tmp_path):
    ref = write_metrics(tmp_path / "ref.parquet", LOSS, protocol="v2-seed0")
    with pytest.raises(MiningError) as e:
        run(scene, strategy="reducible", reference_metrics=str(ref))
    msg = str(e.value)
    assert str(scene["metrics"]) in msg and str(ref) in msg and "'v1-seed0'" in msg and "'v2-seed0'" in msg


def test_resolutions_loss_formulas_and_backgrounds_never_mix(scene, tmp_path):
    """Metrics at another image size (another tag), of another loss formula, on another background, or
    without a recorded formula (ranked by loss) are refused, naming both files."""
    cur = write_metrics(tmp_path / "cur.parquet", LOSS, protocol="sparse4-v2/lrm4d@256")
    scene = {**scene, "metrics": cur}
    ref = write_metrics(tmp_path / "r128.parquet", LOSS, protocol="sparse4-v2/lrm4d@128")
    with pytest.raises(MiningError, match=r"protocol mismatch.*'sparse4-v2/lrm4d@256'.*'sparse4-v2/lrm4d@128'"):
        run(scene, strategy="reducible", reference_metrics=str(ref))
    ref = write_metrics(tmp_path / "rw.parquet", LOSS, protocol="sparse4-v2/lrm4d@256",
                        loss_weights={"mse": 1.0, "mask": 0.5, "lpips": 0.5})
    with pytest.raises(MiningError, match=r"loss formula mismatch: .*cur\.parquet.*rw\.parquet"):
        run(scene, strategy="reducible", reference_metrics=str(ref))
    run(scene, strategy="reducible", by="psnr", reference_metrics=str(ref))  # PSNR has no formula to differ in
    ref = write_metrics(tmp_path / "rb.parquet", LOSS, protocol="sparse4-v2/lrm4d@256", background="black")
    with pytest.raises(MiningError, match=r"background mismatch"):
        run(scene, strategy="reducible", by="psnr", reference_metrics=str(ref))
    ref = write_metrics(tmp_path / "rn.parquet", LOSS, protocol="sparse4-v2/lrm4d@256", loss_weights=False)
    with pytest.raises(MiningError, match=r"rn\.parquet: records no loss formula"):
        run(scene, strategy="reducible", reference_metrics=str(ref))


def test_protocol_settings_never_mix_and_the_setting_is_named(scene, tmp_path):
    """Metrics scored on other pairs (another n_in) are refused, naming the setting: from the tags'
    settings (DESIGN.md §5), and from the metadata settings of files whose tags do not carry them."""
    base = {"name": "sparse4", "version": 2, "seed": 2026, "n_in": 4, "per_kind": 2, "image_size": None,
            "family": "lrm4d"}
    cur = write_metrics(tmp_path / "cur.parquet", LOSS, protocol="sparse4-v2/lrm4d@256", settings=base)
    scene = {**scene, "metrics": cur}
    ref = write_metrics(tmp_path / "r8.parquet", LOSS, protocol="sparse4-v2[n_in=8]/lrm4d@256",
                        settings={**base, "n_in": 8})
    with pytest.raises(MiningError, match=r"setting n_in: default in cur\.parquet, 8 in r8\.parquet"):
        run(scene, strategy="reducible", reference_metrics=str(ref))
    old = write_metrics(tmp_path / "old.parquet", LOSS, protocol="sparse4-v2/lrm4d@256", settings={**base, "n_in": 8})
    with pytest.raises(MiningError, match=r"setting n_in: 4 in cur\.parquet, 8 in old\.parquet"):
        run(scene, strategy="reducible", by="psnr", reference_metrics=str(old))
    same = write_metrics(tmp_path / "same.parquet", LOSS, protocol="sparse4-v2/lrm4d@256",
                         settings={**base, "image_size": 256})  # the checkpoint's own size, given explicitly
    run(scene, strategy="reducible", reference_metrics=str(same))


def test_reference_metrics_help_says_the_reference_trains_on_held_out_data():
    from click.testing import CliRunner

    from pipeline.cli import cli

    out = CliRunner().invoke(cli, ["mine", "--help"], terminal_width=200).output
    assert "RHO-LOSS needs the reference model trained on held-out data" in " ".join(out.split())


def test_bad_metrics_files_are_named(tmp_path):
    with pytest.raises(MiningError, match=r"broken\.parquet: missing metrics column\(s\) protocol"):
        read_metrics(write_metrics(tmp_path / "broken.parquet", LOSS, drop=("protocol",)))
    mixed = write_metrics(tmp_path / "a.parquet", LOSS)
    t = pq.read_table(mixed).to_pandas()
    t.loc[0, "step"] = 2000
    t.to_parquet(tmp_path / "steps.parquet")
    with pytest.raises(MiningError, match=r"steps\.parquet: metrics of several checkpoints \(steps \[1000, 2000\]\)"):
        read_metrics(tmp_path / "steps.parquet")
    t.loc[0, "step"] = 1000
    pd.concat([t, t]).to_parquet(tmp_path / "dup.parquet")
    with pytest.raises(MiningError, match=r"dup\.parquet: sample \('a0', 0\) appears 2 times in shard 0"):
        read_metrics(tmp_path / "dup.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(MiningError, match=r"junk\.parquet: not a readable Parquet file"):
        read_metrics(tmp_path / "junk.parquet")


def test_a_sample_scored_in_several_shards_gets_its_mean(tmp_path):
    first = write_metrics(tmp_path / "one.parquet", {"a0": 0.9, "a1": 0.1})
    again = write_metrics(tmp_path / "two.parquet", {"a0": 0.3}, shard_of={"a0": 7})
    both = pd.concat([pq.read_table(first).to_pandas(), pq.read_table(again).to_pandas()])
    pq.write_table(pa.Table.from_pandas(both, preserve_index=False), tmp_path / "m.parquet")
    m = read_metrics(tmp_path / "m.parquet")
    row = m.table.set_index("uid").loc["a0"]
    assert row["loss"] == pytest.approx(0.6) and row["n_shards"] == 2 and m.multi_shard == 1


def test_a_rerendered_sample_is_scored_by_its_own_shard_when_evaluated_there(scene):
    # a0 moved to shard 5 by an earlier mining round; evaluated in its old shard 0 (loss 0.9) and in 5 (0.05):
    # the trainer draws only the copy in shard 5 once it is read, so that copy's loss ranks it.
    df0 = read_manifest(scene["manifest"])
    df0.loc[df0["uid"] == "a0", ["shard", "round"]] = [5, 1]
    write_manifest(df0, scene["manifest"])
    old = pq.read_table(scene["metrics"]).to_pandas()
    new = old[old["uid"] == "a0"].assign(shard=5, loss=0.05)
    pq.write_table(pa.Table.from_pandas(pd.concat([old, new]), preserve_index=False), scene["metrics"])
    df, res = run(scene, fraction=0.2, renders=None)
    assert {r["uid"] for r in df.to_dict("records") if r["mine_reason"]} == {"b0", "b1"}  # 0.5, 0.3; a0 is easy now
    assert res.multi_shard == 0
    # Its re-render not evaluated yet: the mean over the shards it was scored in (0.9 and 0.05) ranks it.
    write_metrics(scene["metrics"], LOSS, PSNR)
    new = new.assign(shard=7)
    old = pq.read_table(scene["metrics"]).to_pandas()
    pq.write_table(pa.Table.from_pandas(pd.concat([old, new]), preserve_index=False), scene["metrics"])
    df, res = run(scene, fraction=0.2, renders=None)
    hard = {r["uid"] for r in df.to_dict("records") if r["mine_reason"]}
    assert hard == {"b0", "a0"} and res.multi_shard == 1  # a0: mean 0.475 ranks between b0 (0.5) and b1 (0.3)


# -- render outcomes -----------------------------------------------------------------------------


def test_failed_and_rejected_renders_are_left_out_and_counted(scene):
    df, res = run(scene, fraction=0.2)
    assert len(df) == 8 and set(df["uid"]) == set(sum(LAYOUT.values(), [])) - {"a3", "b3"}
    assert res.dropped == {"failed:render_failed": 1, "rejected:no_motion": 1}
    assert res.not_touched["shard not rendered yet"] == 2  # c0, c1: kept as they are
    assert res.not_touched["rendered, no metrics"] == 0
    meta = manifest_info(res.out).settings
    assert meta["dropped"] == {"failed:render_failed": 1, "rejected:no_motion": 1} and meta["strategy"] == "topk"


def test_without_renders_nothing_is_left_out(scene):
    df, res = run(scene, renders=None, fraction=0.2)
    assert len(df) == 10 and not res.dropped


# -- re-render requests --------------------------------------------------------------------------


def test_rerender_rows_replace_their_row_in_new_shards(scene):
    (scene["renders"] / "shard-000005.tar").write_bytes(b"")  # leftover of a crashed run: its number is taken
    before = by_uid(read_manifest(scene["manifest"]))
    df, res = run(scene, fraction=0.5, rerender_fraction=0.3, shard_size=1)
    rows = by_uid(df)
    re = sorted(u for u, r in rows.items() if (r["mine_reason"] or "").startswith("rerender:"))
    assert re == ["a0", "b0"]  # ceil(0.3 * 6) = 2: the two highest losses of the three hard rows
    assert rows["b1"]["mine_reason"] == "upweight:topk-loss" and rows["b1"]["shard"] == 1
    assert len(df) == 8 and not df.duplicated(["uid", "clip"]).any()  # replaced, not added
    for u in re:
        r = rows[u]
        assert r["round"] == 1 and r["parent_shard"] == before[u]["shard"] and r["weight"] == 4.0
        assert r["shard"] in (6, 7)  # after manifest (2), renders folder (5, a leftover) and metrics shards
        assert (r["uri"], r["clip"], r["source"]) == (before[u]["uri"], 0, "procedural")
        spec = with_row_settings(get_preset("debug"), r["render_settings"])  # the worker's own parsing
        assert (spec.num_frames, spec.fixed_views, spec.random_views, spec.seed) == (8, 8, 2, 1)  # debug: 4, 4, 0, 0
    assert {rows[u]["shard"] for u in re} == {6, 7} and res.new_shards == [6, 7]
    assert {q["uid"]: q["parent_shard"] for q in res.rerenders} == {"a0": 0, "b0": 1}
    untouched = [u for u, r in rows.items() if r["mine_reason"] is None]
    assert all(rows[u]["round"] == 0 and pd.isna(rows[u]["parent_shard"]) for u in untouched)


def test_rerender_settings_start_from_what_rendered_the_row(scene):
    # shard 0 was rendered with lrm4d (24 frames, 8 fixed, 4 random): its re-render doubles those,
    # and is validated on --preset l4gm (a different preset: a warning, and still a valid override set).
    for f in scene["renders"].glob("shard-000000.*"):
        f.unlink()
    commit_renders(scene["renders"], shards=(0,), preset="lrm4d")
    df, _ = run(scene, fraction=0.2, rerender_fraction=0.2, preset="l4gm")
    a0 = by_uid(df)["a0"]
    assert json.loads(a0["render_settings"]) == {"num_frames": 48, "fixed_views": 16, "random_views": 8, "seed": 1}
    with_row_settings(get_preset("l4gm"), a0["render_settings"])


def test_rerender_needs_a_known_preset(scene):
    with pytest.raises(MiningError, match="--preset: needed"):
        run(scene, renders=None, fraction=0.2, rerender_fraction=0.2)  # no stats.json to read the preset from
    df, _ = run(scene, renders=None, fraction=0.2, rerender_fraction=0.2, preset="debug")
    assert by_uid(df)["a0"]["parent_shard"] == 0


def test_a_failed_rerender_goes_back_to_its_parent_shard(scene):
    # Round 1 asked to re-render a0 (shard 0 -> 3) and b0 (shard 1 -> 3); shard 3 failed a0, rendered b0.
    first, _ = run(scene, out="r1.parquet", fraction=0.5, rerender_fraction=0.3, shard_size=8)
    r1 = by_uid(first)
    assert r1["a0"]["shard"] == r1["b0"]["shard"] == 3
    commit_renders(scene["renders"], layout={3: ["a0", "b0"]}, outcome={"a0": "timeout"}, shards=(3,))
    scene["manifest"] = scene["tmp"] / "r1.parquet"
    scene["metrics"] = write_metrics(scene["tmp"] / "m2.parquet", {**LOSS, "a0": 0.01})  # a0 no longer hard
    df, res = run(scene, out="r2.parquet", fraction=0.2)
    rows = by_uid(df)
    assert rows["a0"]["shard"] == 0 and pd.isna(rows["a0"]["parent_shard"]) and rows["a0"]["render_settings"] is None
    assert rows["a0"]["mine_reason"] == "rerender_failed:back_to_parent" and res.reverted == 1
    assert rows["a0"]["weight"] == 4.0  # still the weight round 1 gave it
    assert rows["b0"]["shard"] == 3 and not res.dropped  # the re-rendered one stays where it is now


def test_a_pending_rerender_is_not_requested_again(scene):
    first, _ = run(scene, out="r1.parquet", fraction=0.5, rerender_fraction=0.1)  # a0 -> shard 3, not rendered yet
    assert by_uid(first)["a0"]["shard"] == 3
    scene["manifest"] = scene["tmp"] / "r1.parquet"
    df, res = run(scene, out="r2.parquet", fraction=0.5, rerender_fraction=0.3)  # same metrics: a0, b0 hardest
    rows = by_uid(df)
    assert (rows["a0"]["shard"], rows["a0"]["parent_shard"], rows["a0"]["weight"]) == (3, 0, 16.0)  # boosts compound
    assert res.not_touched["re-render already pending (up-weighted only)"] == 1
    assert (rows["b0"]["shard"], rows["b0"]["parent_shard"], rows["b0"]["round"]) == (4, 1, 2)  # r1.parquet's last round is 1


def test_rows_at_the_density_caps_are_only_up_weighted(scene):
    caps = json.dumps({"num_frames": 48, "fixed_views": 32, "random_views": 64})
    write_test_manifest(scene["manifest"], render_settings=caps)
    df, res = run(scene, fraction=0.2, rerender_fraction=0.2)
    assert not res.rerenders and res.not_touched["re-render at its caps (up-weighted only)"] == 2
    assert by_uid(df)["a0"]["weight"] == 4.0 and by_uid(df)["a0"]["render_settings"] == caps


def test_broken_render_settings_of_a_row_are_named(scene):
    write_test_manifest(scene["manifest"], render_settings="{num_frames: 8")
    with pytest.raises(MiningError, match=r"\('a0', 0\): render_settings is not a JSON object"):
        run(scene, fraction=0.2, rerender_fraction=0.2)


def test_same_inputs_same_manifest_byte_for_byte(scene):
    kw = dict(strategy="topk", fraction=0.5, rerender_fraction=0.3)
    a = run(scene, out="a.parquet", **kw)[1].out.read_bytes()
    b = run(scene, out="a.parquet", **kw)[1].out.read_bytes()
    assert a == b


# -- configuration and the command ---------------------------------------------------------------


@pytest.mark.parametrize("kw, flag", [
    (dict(fraction=0.0), "--fraction"), (dict(fraction=1.5), "--fraction"), (dict(boost=0.5), "--boost"),
    (dict(boost=float("inf")), "--boost"), (dict(rerender_fraction=0.3, fraction=0.2), "--rerender-fraction"),
    (dict(strategy="reducible"), "--reference-metrics"), (dict(reference_metrics="r.parquet"), "--reference-metrics"),
    (dict(by="ssim"), "--by"), (dict(strategy="best"), "--strategy"), (dict(preset="huge"), "--preset"),
    (dict(shard_size=0), "--shard-size"), (dict(max_weight=0.0), "--max-weight"),
    (dict(max_weight=float("nan")), "--max-weight"),
])
def test_bad_settings_name_the_flag(kw, flag):
    with pytest.raises(ValueError, match=flag):
        MineConfig(metrics="m", manifest="m", out="o", **kw)


def test_cli_prints_what_changed_and_why(scene):
    out = scene["tmp"] / "next.parquet"
    args = ["mine", "--metrics", str(scene["metrics"]), "--manifest", str(scene["manifest"]), "--out", str(out),
            "--renders", str(scene["renders"]), "--fraction", "0.5", "--rerender-fraction", "0.2", "--shard-size", "4"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    text = r.output
    assert "10 row(s)" not in text and "8 row(s) from 10" in text and "protocol 'v1-seed0' (step 1000)" in text
    assert "upweight:topk-loss" in text and "rerender:topk-loss" in text
    assert "failed:render_failed" in text and "rejected:no_motion" in text
    assert "shard not rendered yet" in text
    assert "re-render requests: 2 row(s) in new shard(s) 3, round +1" in text
    assert "a0 clip 0: shard 0 -> 3" in text and "b0 clip 0: shard 1 -> 3" in text
    assert "min/mean/max 1/1/1 -> 1/2.12/4" in text and "37.5% -> 70.6%" in text
    assert manifest_info(out).command.startswith("pipeline mine --metrics")
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0 and again.output == text


def test_cli_bad_input_is_a_clear_error(scene, tmp_path):
    base = ["mine", "--manifest", str(scene["manifest"]), "--out", str(tmp_path / "n.parquet")]
    r = CliRunner().invoke(cli, [*base, "--metrics", str(scene["metrics"]), "--fraction", "2"])
    assert r.exit_code == 2 and "--fraction must be in (0, 1]" in r.output
    r = CliRunner().invoke(cli, [*base, "--metrics", str(tmp_path / "absent.parquet")])
    assert r.exit_code == 2 and "absent.parquet" in r.output
    broken = write_metrics(tmp_path / "nokey.parquet", LOSS, drop=("key", "lpips"))
    r = CliRunner().invoke(cli, [*base, "--metrics", str(broken)])
    assert r.exit_code == 1 and "nokey.parquet: missing metrics column(s) key, lpips" in r.output
    assert not (tmp_path / "n.parquet").exists()


def test_densify_doubles_within_caps():
    debug = get_preset("debug")  # 4 frames, 4 fixed views, 0 random
    assert densify(debug, Densify()) == {"num_frames": 8, "fixed_views": 8, "random_views": 2, "seed": 1}
    full = debug.replace(num_frames=48, fixed_views=32, random_views=64)
    assert densify(full, Densify()) == {}
    assert densify(debug.replace(num_frames=40), Densify()) == {"num_frames": 48, "fixed_views": 8, "random_views": 2,
                                                                "seed": 1}


def test_nan_metrics_are_counted_not_ranked(scene, tmp_path):
    scene["metrics"] = write_metrics(tmp_path / "nan.parquet", {**LOSS, "a1": float("nan")})
    df, res = run(scene, fraction=0.2)
    assert res.scored == 5 and res.not_touched["loss is NaN"] == 1
    assert by_uid(df)["a1"]["mine_reason"] is None
    for seed in range(4):  # the random control draws among the same five rows, never the NaN one
        df, res = run(scene, f"r{seed}.parquet", strategy="random", pool_seed=seed, fraction=1.0)
        assert res.scored == 5 and res.hard == 5 and res.not_touched["loss is NaN"] == 1
        assert by_uid(df)["a1"]["mine_reason"] is None


# -- the trainer draws what mining asked for -----------------------------------------------------


def test_trainer_draws_hard_samples_boost_times_as_often(scene, caplog):
    """next.parquet as the trainer's --weights over the real shard tars: hard samples come ~boost x as often.

    a0 and b0 are hard (one per shard); a0 is also a re-render request (new shard 3, not rendered yet): its
    old render in shard 0 is still drawn, with the boosted weight. The failed/rejected rows are neither in
    the tars nor in next.parquet, so every drawn key has a weight.
    """
    from training.data import stream as data
    from training.data import weights as weights_mod
    from training.data import shardspec
    from training.config import DataConfig

    df, res = run(scene, fraction=0.3, boost=4.0, rerender_fraction=0.1, preset="debug")
    rows = by_uid(df)
    assert {u for u, r in rows.items() if r["weight"] == 4.0} == {"a0", "b0"} and rows["a0"]["parent_shard"] == 0
    weights = weights_mod.load_weights(res.out)
    urls = shardspec.resolve_shards(str(scene["renders"]))
    cfg = DataConfig(image_size=8, n_in=1, n_target=1, num_workers=0, batches_per_epoch=4, shuffle_buffer=16)

    def draws(w):
        it = iter(data.make_dataset(urls, cfg, batch_size=10, seed=0, weights=w))
        return Counter(k for _ in range(100) for k in next(it)["key"])

    with caplog.at_level("WARNING", logger="training.data.stream"):
        counts = draws(weights)
    assert "not in the weights manifest" not in caplog.text
    hard = np.mean([counts["a0_000"], counts["b0_000"]])
    easy = np.mean([counts[f"{u}_000"] for u in ("a1", "a2", "b1", "b2")])
    assert sum(counts.values()) == 1000 and set(counts) == {f"{u}_000" for u in ("a0", "a1", "a2", "b0", "b1", "b2")}
    assert 3.3 < hard / easy < 4.7, counts  # boost 4.0
    uniform = draws(None)
    u_hard = np.mean([uniform["a0_000"], uniform["b0_000"]])
    u_easy = np.mean([uniform[f"{u}_000"] for u in ("a1", "a2", "b1", "b2")])
    assert 0.8 < u_hard / u_easy < 1.25, uniform  # without the weights, no preference


# -- a re-render request renders for real --------------------------------------------------------


@pytest.mark.blender
def test_a_rerender_row_renders_denser_through_the_real_worker(tmp_path):
    """Render a sliding cube with Blender, mine it, render next.parquet's new shard: a denser sample with the
    same key in the new shard, the old one untouched in its old shard; the trainer finds both."""
    pytest.importorskip("bpy", reason="render extra (bpy 5.0.1) not installed")
    from contracts.shardread import iter_shard
    from pipeline.assembly import render_shard
    from tests.render import glb
    from training.data import shardspec

    b = glb.GlbBuilder()
    node = b.add_mesh(*glb.box(0.25))
    b.add_translation_animation(node, [0.0, 1.0, 2.0], [(0, 0, 0), (0.5, 0, 0), (1.0, 0, 0)], name="slide")
    asset = b.write(tmp_path / "cube.glb")
    m = write_manifest(pd.DataFrame({"uid": ["cube"], "clip": [0], "clip_name": "slide", "source": "local",
                                     "uri": [str(asset)], "sha256": None, "license": None, "shard": [0],
                                     "weight": [1.0], "round": [0]}), tmp_path / "m.parquet")
    small = get_preset("debug", num_frames=2, fixed_views=2, resolution=16, samples=1)  # what `--frames 2 --views 2` gives
    out = tmp_path / "data"
    assert render_shard(read_manifest(m).to_dict("records"), small, out, 0).ok == 1
    metrics = write_metrics(tmp_path / "metrics.parquet", {"cube": 0.4}, shard_of={"cube": 0})
    res = mine(MineConfig(metrics=str(metrics), manifest=str(m), out=str(tmp_path / "next.parquet"), renders=str(out),
                          fraction=1.0, rerender_fraction=1.0))
    row = read_manifest(res.out).iloc[0]
    assert (row["shard"], row["parent_shard"], row["round"]) == (1, 0, 1)
    # doubled from the recorded spec (2 frames, 2 fixed, 0 random), not from the debug preset's 4/4/0
    assert json.loads(row["render_settings"]) == {"num_frames": 4, "fixed_views": 4, "random_views": 2, "seed": 1}
    assert render_shard([row.to_dict()], small, out, 1).ok == 1
    old = next(iter_shard(out / "shard-000000.tar"))
    new = next(iter_shard(out / "shard-000001.tar"))
    assert old.key == new.key == "cube_000"
    assert (old.meta["num_frames"], old.meta["num_views"]) == (2, 2)
    assert (new.meta["num_frames"], new.meta["num_views"]) == (4, 6)
    assert shardspec.resolve_shards(str(out)) == [str(out / "shard-000000.tar"), str(out / "shard-000001.tar")]


# -- pool selection (--pool, --render-budget): which unrendered clips to render next ---------------------

POOL_LAYOUT = {0: ["h0", "h1", "e0", "e1", "e2", "e3"]}  # rendered: two hard, four easy
POOL_LOSS = {"h0": 0.9, "h1": 0.5, "e0": 0.1, "e1": 0.1, "e2": 0.12, "e3": 0.08}
FEATS = {  # duration_s, face_count, skinned
    "h0": (4.0, 20000, True), "h1": (1.0, 300, False), "e0": (2.0, 2000, False), "e1": (2.1, 2100, False),
    "e2": (1.9, 1900, False), "e3": (2.0, 2050, False),
    "p_like_h0_a": (4.1, 21000, True), "p_like_h0_b": (3.9, 19000, True), "p_like_h0_c": (4.0, 20500, True),
    "p_like_h1": (1.0, 310, False), "p_easy_0": (2.0, 2000, False), "p_easy_1": (2.05, 1950, False),
    "p_easy_2": (2.0, 2020, False), "p_easy_3": (1.95, 2000, False),
}


def _feature_manifest(path: Path, uids: list[str], shard: int = 0) -> Path:
    return write_test_manifest(path, layout={shard: uids}, duration_s=[FEATS[u][0] for u in uids],
                               face_count=[FEATS[u][1] for u in uids], vertex_count=[FEATS[u][1] // 2 for u in uids],
                               skinned=[FEATS[u][2] for u in uids])


@pytest.fixture
def pool_scene(tmp_path):
    pool_uids = [u for u in FEATS if u.startswith("p_")] + ["e0"]  # e0 is rendered already: never picked again
    return {"manifest": _feature_manifest(tmp_path / "m.parquet", POOL_LAYOUT[0]),
            "metrics": write_metrics(tmp_path / "metrics.parquet", POOL_LOSS, shard_of={u: 0 for u in POOL_LOSS}),
            "pool": _feature_manifest(tmp_path / "pool.parquet", pool_uids, shard=0), "tmp": tmp_path}


def _mine_pool(s, out="next.parquet", **kw):
    cfg = dict(metrics=str(s["metrics"]), manifest=str(s["manifest"]), out=str(s["tmp"] / out), pool=str(s["pool"]),
               fraction=0.34, rerender_fraction=0.0, render_budget=2)
    res = mine(MineConfig(**{**cfg, **kw}), command="pipeline mine (test)")
    return read_manifest(res.out), res


def test_pool_picks_resemble_the_hard_examples_and_spread_over_them(pool_scene):
    """Two hard examples (h0 harder); budget 2: one clip like h0 first, then one like h1, not a second
    near-copy of h0; easy-looking clips are not picked; each pick explains itself."""
    df, res = _mine_pool(pool_scene)
    new = df[df["mine_reason"] == "pool:similar"]
    assert [p["uid"] for p in res.pool_picks][0].startswith("p_like_h0")
    assert {p["uid"] for p in res.pool_picks} == {res.pool_picks[0]["uid"], "p_like_h1"}
    assert len(new) == 2 and set(new["uid"]) == {p["uid"] for p in res.pool_picks}
    assert (new["round"] == 1).all() and (new["shard"] > df.loc[df["mine_reason"] != "pool:similar", "shard"].max()).all()
    assert all("like hard h0:0" in r or "like hard h1:0" in r for r in new["pool_reason"])
    assert "face_count" in res.pool_features and "skinned" in res.pool_features
    assert res.pool_in_manifest == 1 and "e0" not in set(new["uid"])
    assert df["pool_reason"].notna().sum() == 2  # only the new rows carry a reason


def test_pool_selection_is_deterministic_and_respects_the_budget(pool_scene):
    a, ra = _mine_pool(pool_scene, out="a.parquet", render_budget=5)
    b, rb = _mine_pool(pool_scene, out="b.parquet", render_budget=5)
    assert ra.pool_picks == rb.pool_picks and a.equals(b)
    assert len(ra.pool_picks) == 5 and (a["mine_reason"] == "pool:similar").sum() == 5
    big, rbig = _mine_pool(pool_scene, out="c.parquet", render_budget=100)
    assert len(rbig.pool_picks) == rbig.pool_rows == 8  # the whole pool, never more


def test_random_pool_control_is_seeded(pool_scene):
    _, r0 = _mine_pool(pool_scene, out="r0.parquet", pool_strategy="random", render_budget=3)
    _, r0b = _mine_pool(pool_scene, out="r0b.parquet", pool_strategy="random", render_budget=3)
    picks = {tuple(sorted(p["uid"] for p in _mine_pool(pool_scene, out=f"s{s}.parquet", pool_strategy="random",
                                                       render_budget=3, pool_seed=s)[1].pool_picks)) for s in range(6)}
    assert r0.pool_picks == r0b.pool_picks and len(r0.pool_picks) == 3
    assert len(picks) > 1  # other seeds draw other rows
    assert all(p["reason"].startswith("random control: seed 0") for p in r0.pool_picks)


def test_pool_flags_are_checked():
    with pytest.raises(ValueError, match="--pool needs --render-budget"):
        MineConfig(metrics="m", manifest="m", out="o", pool="p.parquet")
    with pytest.raises(ValueError, match="--render-budget is used only with --pool"):
        MineConfig(metrics="m", manifest="m", out="o", render_budget=3)


def test_pool_selection_on_real_curated_manifests(tmp_path, gltf_dir):
    """`pipeline curate --source local` on the real glTF files: the rendered half has CesiumMan (skinned,
    thousands of faces) as its hard sample; the pool half is probed for skin/morph from the files, and
    the picks are the skinned assets, explained in the printed table and the pool_reason column."""
    r = CliRunner().invoke(cli, ["curate", "--source", "local", "--dir", str(gltf_dir), "--out",
                                 str(tmp_path / "all.parquet")])
    assert r.exit_code == 0, r.output
    df = read_manifest(tmp_path / "all.parquet")
    rendered = df["uid"].isin(["CesiumMan", "BoxAnimated"]) | ((df["uid"] == "InterpolationTest") & (df["clip"] < 4))
    write_manifest(df[rendered], tmp_path / "m.parquet", command="test")
    write_manifest(df[~rendered], tmp_path / "pool.parquet", command="test")
    loss = {"CesiumMan": 0.9, "BoxAnimated": 0.1}
    rows = df[rendered]
    cols = {"uid": pa.array(rows["uid"].tolist()), "clip": pa.array(rows["clip"].astype(int).tolist(), pa.int32()),
            "key": pa.array([f"{u}_{int(c):03d}" for u, c in zip(rows["uid"], rows["clip"])]),
            "shard": pa.array(rows["shard"].astype(int).tolist(), pa.int32()),
            "psnr": pa.array([20.0] * len(rows)), "ssim": pa.array([0.9] * len(rows)),
            "lpips": pa.array([None] * len(rows), pa.float64()),
            "loss": pa.array([loss.get(u, 0.2) for u in rows["uid"]]), "step": pa.array([10] * len(rows), pa.int64()),
            "protocol": pa.array(["sparse4-v2/lrm4d@64"] * len(rows))}
    pq.write_table(pa.table(cols), tmp_path / "metrics.parquet")
    args = ["mine", "--metrics", str(tmp_path / "metrics.parquet"), "--manifest", str(tmp_path / "m.parquet"),
            "--out", str(tmp_path / "next.parquet"), "--fraction", "0.1", "--rerender-fraction", "0",
            "--pool", str(tmp_path / "pool.parquet"), "--render-budget", "2"]
    r = CliRunner().invoke(cli, args, terminal_width=200)
    assert r.exit_code == 0, r.output
    nxt = read_manifest(tmp_path / "next.parquet")
    new = nxt[nxt["mine_reason"] == "pool:similar"]
    assert len(new) == 2 and set(new["uid"]) <= {"Fox", "RiggedSimple"}, new[["uid", "clip", "pool_reason"]]
    assert all("like hard CesiumMan:0" in s and "skinned yes~yes" in s for s in new["pool_reason"])
    assert "pool selection (similar): 2 of 10 pool row(s)" in r.output
    assert "features: duration_s, face_count, vertex_count, clip_count, static, skinned, morphed" in r.output
    for u in new["uid"]:
        assert f"{u} clip" in r.output
