"""Several processes: `torchrun ... -m training` with two CPU ranks over gloo, shards split unevenly."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from training import checkpoint as ckpt


@pytest.mark.slow
def test_two_gloo_ranks_train_resume_and_never_wait_on_uneven_data(analytic_shards, tmp_path):
    d, _ = analytic_shards  # 3 shards for 2 ranks: rank 0 reads two, rank 1 one
    run = tmp_path / "run"

    def torchrun(steps: int) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "training", "--shards", str(d), "--out", str(run), "--preset", "tiny", "--steps", str(steps),
               "--log-every", "2", "--grid-every", "0", "--ckpt-every", "2", "--device", "cpu",
               "--set", "data.image_size=16", "--set", "data.batches_per_epoch=3"]
        env = {**os.environ, "PIPELINE_LOG_LEVEL": "INFO", "OMP_NUM_THREADS": "1"}
        return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)

    r = torchrun(4)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "rank 1/2 joined the gloo process group" in r.stderr
    r = torchrun(6)  # resumes under DDP, crossing an epoch boundary (3 batches per epoch)
    assert r.returncode == 0, r.stderr[-3000:]
    path, state = ckpt.load_latest(run)
    assert state["step"] == 6 and state["world_size"] == 2 and state["epoch"] >= 2
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [2, 4, 6]  # only rank 0 writes
    assert all(x["samples_per_s"] > 0 for x in lines)
    assert all(0 <= x["data_wait_min_s"] <= x["data_wait_max_s"] for x in lines)  # per-rank spread logged


@pytest.mark.slow
def test_eval_on_two_gloo_ranks_writes_the_same_metrics_as_on_one(analytic_shards, tmp_path):
    """`torchrun --nproc-per-node 2 --no-python pipeline eval` splits the shards over ranks, gathers every
    row on rank 0 and writes one metrics file: the same rows, scores and pairs as a single process."""
    import pandas as pd

    from training.config import apply_overrides, tiny
    from training.train import train

    d, keys = analytic_shards
    run = tmp_path / "run"
    train(apply_overrides(tiny(), ["steps=2", "log_every=1", "grid_every=0", "ckpt_every=2", "data.image_size=16"]),
          str(d), run, device="cpu")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    base = ["eval", "--checkpoint", str(run), "--shards", str(d), "--device", "cpu", "--no-progress", "--worst", "2"]
    one = subprocess.run(["pipeline", *base, "--out", str(tmp_path / "one.parquet")], capture_output=True, text=True,
                         timeout=300, env=env)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "--no-python", "pipeline", *base, "--out", str(tmp_path / "two.parquet")],
                         capture_output=True, text=True, timeout=300, env=env)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("wrote ") == 1  # rank 0 alone reports (and writes)
    a, b = pd.read_parquet(tmp_path / "one.parquet"), pd.read_parquet(tmp_path / "two.parquet")
    assert len(a) == len(keys) and sorted(b["key"]) == sorted(keys)  # every sample once, none twice
    assert set(b["shard"]) == {0, 1, 2}
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-5, atol=1e-6)
    worst = sorted(p.name for p in (tmp_path / "two_worst").glob("*.png"))
    assert worst == sorted(p.name for p in (tmp_path / "one_worst").glob("*.png")) and len(worst) == 2
