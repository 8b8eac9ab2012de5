"""`pipeline demo --smoke`: the whole loop end to end at the smallest size, as a user runs it; held-out
clips never trained on, scored by every evaluation and reported apart."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil

import pandas as pd
import pyarrow.parquet as pq
import pytest

from contracts.layout import committed_shards, parquet_name
from tests.conftest import GLTF_DIR
from tests.pipeline.conftest import run_cli

pytestmark = [pytest.mark.ray, pytest.mark.blender, pytest.mark.slow]


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    extra = []
    if (GLTF_DIR / "BoxAnimated.glb").is_file():  # the user's own assets: one real animated model
        mine = tmp_path_factory.mktemp("user_assets")
        shutil.copy(GLTF_DIR / "BoxAnimated.glb", mine / "BoxAnimated.glb")
        extra = ["--assets", str(mine)]
    r = run_cli("demo", "--out", str(out), "--smoke", *extra, timeout=900)
    return out, r, bool(extra)


def test_demo_says_what_it_will_do_and_writes_the_report(demo_dir):
    out, r, _ = demo_dir
    first = r.stdout.splitlines()[0]
    assert first.startswith("pipeline demo (smoke): the whole data-engine loop")
    assert "Expect about" in r.stdout and "minutes on 2 CPU cores" in r.stdout
    report = (out / "report.html").read_text()
    for section in ("<h2>Stages</h2>", "<h2>Training</h2>", "Per-sample PSNR before and after", "The hardest samples",
                    "(checked: identical pairs)", "<polyline", "<circle", "psnr_obj round 1 vs control"):
        assert section in report, section
    assert re.search(r"Mined round vs random picks on the [1-9]\d* held-out", report)  # the held-out asset's clips (2 kept per asset)
    for img in (out / "report_files").iterdir():  # every picture the report shows exists
        assert img.stat().st_size > 0
    assert "report_files/sheet_" in report


def test_every_stage_ran_and_counts_add_up(demo_dir):
    out, _, with_assets = demo_dir
    d = json.loads((out / "demo.json").read_text())
    names = [s["name"] for s in d["stages"]]
    assert names[:1] == ["curate procedural assets"]
    assert ("curate --assets folder" in names) == with_assets
    for stage in ("render", "train round 0", "eval round 0", "mine", "render re-render requests",
                  "train round 1 (mined weights)", "eval round 1 (same protocol, same samples)",
                  "mine random picks (control)", "render random re-render requests",
                  "train control (random picks, same counts)", "eval control (same protocol, same samples)"):
        assert stage in names
    st = {s["name"]: s for s in d["stages"]}
    manifest = pd.read_parquet(out / "manifest_all.parquet")
    assert st["render"]["counts"]["ok"] + st["render"]["counts"]["failed"] + st["render"]["counts"]["rejected"] == len(manifest)
    if with_assets:
        assert "BoxAnimated" in set(manifest["uid"])
    assert st["eval round 0"]["counts"]["samples"] == st["render"]["counts"]["ok"]
    assert st["mine"]["counts"]["rerender"] >= 1
    assert st["render re-render requests"]["counts"]["ok"] == st["mine"]["counts"]["rerender"]
    assert st["train round 1 (mined weights)"]["counts"]["step"] == 36
    assert st["train control (random picks, same counts)"]["counts"]["step"] == 36
    # the control drew as many clips as the mined round, at random: same up-weighted and re-render counts
    for key in ("upweighted", "rerender"):
        assert st["mine random picks (control)"]["counts"][key] == st["mine"]["counts"][key], key
    assert st["render random re-render requests"]["counts"]["ok"] == st["mine random picks (control)"]["counts"]["rerender"]
    assert d["same_pairs"] is True
    for group in ("training: all", "held-out (never trained on)"):
        g = d["summary"][group]
        assert g["samples"] >= 1 and g["vs_control"] is not None and g["vs_control_obj"] is not None, group
    assert st["eval round 0"]["counts"]["heldout"] == d["summary"]["held-out (never trained on)"]["samples"]


def test_heldout_clips_are_never_trained_on_nor_mined(demo_dir):
    out, _, _ = demo_dir
    import torch

    held = pd.read_parquet(out / "manifest_heldout.parquet")
    train = pd.read_parquet(out / "manifest.parquet")
    assert held["uid"].nunique() == 1 and (held["source"] == "procedural").all()
    assert not set(held["uid"]) & set(train["uid"]) and not set(held["shard"]) & set(train["shard"])
    nxt = pd.read_parquet(out / "manifest_round1.parquet")
    assert not set(held["uid"]) & set(nxt["uid"])  # mining never sees them
    for run in ("run", "run_control"):
        for ck in (out / run / "checkpoints").glob("*.pt"):
            trained = torch.load(ck, map_location="cpu", weights_only=True)["trained_on"]["shards"]
            assert not any(f"shard-{n:06d}.tar" in s for n in set(held["shard"]) for s in trained), (ck, trained)
    for name in ("round0", "round1", "control"):
        m = pd.read_parquet(out / "eval" / f"{name}.parquet")
        assert set(m.loc[~m["seen_in_training"], "uid"]) == set(held["uid"]), name
        assert m["psnr_obj"].notna().all()


def test_loop_state_on_disk(demo_dir):
    out, _, _ = demo_dir
    nxt = pd.read_parquet(out / "manifest_round1.parquet")
    rer = nxt[nxt["mine_reason"].fillna("").str.startswith("rerender")]
    data = out / "data"
    shards = committed_shards(data)
    # the re-render rows were rendered into new, committed shards with denser settings
    assert set(rer["shard"]) <= set(shards) and rer["round"].min() == 1
    for n in set(rer["shard"]):
        rows = pq.read_table(data / parquet_name(n)).to_pylist()
        assert all(r["status"] == "ok" for r in rows)
        assert all(r["num_frames"] == 8 and r["num_views"] >= 8 for r in rows)  # 2 x 4 frames, 2 x 4 views + random
    # round 1 trained with the mined weights (resumed run, new --weights recorded)
    cfg = json.loads((out / "run" / "config.json").read_text())
    assert cfg["data"]["weights"] == str(out / "manifest_round1.parquet")
    before = pd.read_parquet(out / "eval" / "round0.parquet")
    after = pd.read_parquet(out / "eval" / "round1.parquet")
    assert set(before["step"]) == {24} and set(after["step"]) == {36}
    assert before.sort_values("key")["pairs"].tolist() == after.sort_values("key")["pairs"].tolist()
    # the control continued the same round-0 checkpoint with the random picks' weights and its own re-renders
    control = pd.read_parquet(out / "eval" / "control.parquet")
    assert set(control["step"]) == {36} and sorted(control["key"]) == sorted(before["key"])
    ccfg = json.loads((out / "run_control" / "config.json").read_text())
    assert ccfg["data"]["weights"] == str(out / "manifest_random.parquet")
    picks = pd.read_parquet(out / "manifest_random.parquet")
    reasons = set(picks["mine_reason"].dropna())
    assert reasons and all(r.endswith(":random-seed0") for r in reasons), reasons
    assert not set(picks.loc[picks["round"] > 0, "shard"]) & set(rer["shard"])  # its own new shards
    assert set(picks.loc[picks["round"] > 0, "shard"]) <= set(shards)
    assert (out / "run_control" / "checkpoints" / "step-00000024.pt").read_bytes() == \
        (out / "run" / "checkpoints" / "step-00000024.pt").read_bytes()


def test_rerunning_the_demo_resumes_without_redoing_anything(demo_dir):
    out, _, _ = demo_dir
    stamps = {p.name: p.stat().st_mtime for p in (out / "data").glob("shard-*.stats.json")}
    ckpts = sorted(p.name for p in (out / "run" / "checkpoints").glob("*.pt"))
    config = json.loads((out / "demo.json").read_text())["config"]
    args = ["demo", "--out", str(out), "--smoke"] + (["--assets", config["assets"]] if config["assets"] else [])
    r = run_cli(*args, timeout=900)
    assert r.stdout.count("done by an earlier run, skipped") >= 11
    assert {p.name: p.stat().st_mtime for p in (out / "data").glob("shard-*.stats.json")} == stamps
    assert sorted(p.name for p in (out / "run" / "checkpoints").glob("*.pt")) == ckpts
    assert "(checked: identical pairs)" in (out / "report.html").read_text()


def test_a_demo_folder_refuses_other_settings(demo_dir):
    out, _, _ = demo_dir
    r = run_cli("demo", "--out", str(out), "--smoke", "--count", "6", check=False)
    assert r.returncode == 1 and "other settings (" in r.stderr and "count" in r.stderr


def test_report_says_how_to_view_and_embeds_a_reconstruction(demo_dir):
    out, _, _ = demo_dir
    report = (out / "report.html").read_text()
    assert f"pipeline view {out / 'data'}" in report and "ssh -N -L 8080:127.0.0.1:8080" in report
    assert f"pipeline view --reconstruction {out / 'reconstruction'}" in report
    rec = json.loads((out / "reconstruction" / "reconstruct.json").read_text())
    held = pd.read_parquet(out / "manifest_heldout.parquet")
    assert rec["clip"].rsplit("_", 1)[0] in set(held["uid"]) and rec["step"] == 36  # a held-out clip, last checkpoint
    if importlib.util.find_spec("viser") is not None:
        assert "<iframe src='report_files/reconstruction.html'" in report
        assert "__VISER_EMBED_DATA__" in (out / "report_files" / "reconstruction.html").read_text()
