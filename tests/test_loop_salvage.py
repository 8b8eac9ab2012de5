"""Issue 23's loop benchmark keeps the arm runs a timeout cut after their final score.

The data are the real results of the 2026-12-07 19:06 UTC call (benchmarks/results/2026-12-07-h100-loop-category/):
its three `random` runs finished their final evaluation and were killed in the optional curve evaluation, before
the result file was written, so the first report had no random row to compare the arms with.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
KEPT = BENCH / "results" / "2026-12-07-h100-loop-category"
sys.path.insert(0, str(BENCH))


@pytest.fixture()
def cut_call(tmp_path):
    with tarfile.open(KEPT / "results.tgz") as tf:
        tf.extractall(tmp_path, filter="data")
    return tmp_path


def test_salvage_writes_the_cut_runs_results_from_their_final_metrics(cut_call):
    from data_engine_arms import salvage

    arms = cut_call / "category"
    assert not list(arms.glob("seed*/random/result.json"))  # what the timeout left
    done = {p: p.read_text() for p in arms.glob("seed*/*/result.json")}
    assert len(done) == 9
    made = salvage(cut_call)
    assert sorted(p.parent.parent.name for p in made) == ["seed0", "seed1", "seed2"]
    assert all(p.parent.name == "random" for p in made)
    assert {p: p.read_text() for p in done} == done  # finished runs untouched
    for p in made:
        r = json.loads(p.read_text())
        m = pd.read_parquet(p.parent / "test_metrics.parquet")
        assert r["test"]["all"]["psnr_obj"] == pytest.approx(float(m["psnr_obj"].mean()))
        assert r["test"]["all"]["clips"] == len(m) == 60
        assert r["gpu_s"] is None and r["concurrent_runs"] is None and "salvaged" in r["note"]
        assert r["render_core_s"] is None  # the shards did not come back: unknown, not zero
        nxt = pd.read_parquet(p.parent / "next.parquet")
        assert r["new_clips"] == int((nxt["round"] > 0).sum()) == 48
        assert sum(r["new_by_group"].values()) == 48
    assert salvage(cut_call) == []  # once


def test_report_with_salvage_compares_every_arm_with_random(cut_call):
    out = subprocess.run([sys.executable, str(BENCH / "data_engine_experiment.py"), "loop-report", "--salvage",
                          "--out", str(cut_call)], capture_output=True, text=True, timeout=300, check=True)
    rows = {line.split("|")[1].strip(): line.split("|") for line in out.stdout.splitlines()
            if line.startswith("| ") and not line.startswith("| arm")}
    assert set(rows) == {"random", "topk", "groups", "groups_diverse"}
    assert rows["random"][-2].strip().startswith("n/a (salvaged")  # GPU s unknown, said so
    paired = json.loads((cut_call / "loop_report.json").read_text())["paired"]
    for arm in ("topk", "groups", "groups_diverse"):
        diff = paired[f"category/{arm}"]["diff_mean"]
        assert diff == diff and abs(diff) < 1.0  # a number, not NaN: random is there to pair with
    assert "salvaged" in out.stderr
