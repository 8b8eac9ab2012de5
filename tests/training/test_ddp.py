"""Several processes: `torchrun ... -m training` with two CPU ranks over gloo, shards split unevenly; the
`ddp.*` settings (bucket size, bucket views, static graph, bf16 all-reduce hook) on two gloo ranks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from training import checkpoint as ckpt
from training import ddp
from training.config import ConfigError, DDPConfig


@pytest.mark.slow
def test_two_gloo_ranks_train_resume_and_never_wait_on_uneven_data(analytic_shards, tmp_path):
    d, _ = analytic_shards  # 3 shards for 2 ranks: rank 0 reads two, rank 1 one
    run = tmp_path / "run"

    def torchrun(steps: int, *sets: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "training", "--shards", str(d), "--out", str(run), "--preset", "tiny", "--steps", str(steps),
               "--log-every", "2", "--grid-every", "0", "--ckpt-every", "2", "--device", "cpu",
               "--set", "data.image_size=16", "--set", "data.batches_per_epoch=3", *sets]
        env = {**os.environ, "PIPELINE_LOG_LEVEL": "INFO", "OMP_NUM_THREADS": "1"}
        return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)

    r = torchrun(4, "--set", "ddp.bucket_cap_mb=1", "--set", "ddp.static_graph=true")  # the trainer passes them on
    assert r.returncode == 0, r.stderr[-3000:]
    assert "rank 1/2 joined the gloo process group" in r.stderr
    assert "DDP: bucket_cap_mb=1 gradient_as_bucket_view=True static_graph=True comm_hook=none (auto)" in r.stderr
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


def _ddp_settings_worker(rank: int, port: int) -> None:
    """One of two gloo ranks: each setting takes effect on the DDP object, and two optimiser steps on this
    rank's half of a batch give the weights one process gets from the whole batch. The bf16 hook needs
    NCCL: on gloo it is a ConfigError naming the setting (its speed and loss: the GPU suite's scale stage)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE="2")
    import torch._dynamo

    info = ddp.init("cpu")
    x = torch.randn(8, 16, generator=torch.Generator().manual_seed(1))  # [8, 16]: the whole batch, 4 per rank
    # the defaults (100 MB buckets, grads as bucket views, one graph per compiled block, comm_hook auto = fp32
    # on gloo), PyTorch's own settings, and the remaining knobs
    cases = [DDPConfig(), DDPConfig(bucket_cap_mb=25, gradient_as_bucket_view=False, comm_hook="none", split_compiled=True),
             DDPConfig(bucket_cap_mb=1, gradient_as_bucket_view=True, static_graph=True, split_compiled=False)]
    assert (cases[0].bucket_cap_mb, cases[0].gradient_as_bucket_view, cases[0].comm_hook, cases[0].split_compiled) \
        == (100, True, "auto", False)
    with pytest.raises(ConfigError, match="ddp.comm_hook=bf16"):
        ddp.wrap(torch.nn.Linear(2, 2), info, DDPConfig(comm_hook="bf16"))
    for cfg in cases:
        torch.manual_seed(0)
        single = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 4))
        model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 4))
        model.load_state_dict(single.state_dict())
        wrapped = ddp.wrap(model, info, cfg)
        assert wrapped.bucket_bytes_cap == cfg.bucket_cap_mb * 2**20
        assert wrapped.gradient_as_bucket_view == cfg.gradient_as_bucket_view
        assert wrapped.static_graph == cfg.static_graph
        assert torch._dynamo.config.optimize_ddp == cfg.split_compiled
        assert wrapped._comm_hooks == []
        opts = [torch.optim.SGD(m.parameters(), lr=0.5) for m in (wrapped, single)]
        for _ in range(2):
            for m, opt, xb in ((wrapped, opts[0], x[4 * rank:4 * rank + 4]), (single, opts[1], x)):
                opt.zero_grad()
                m(xb).square().mean().backward()
                opt.step()
        for a, b in zip(model.parameters(), single.parameters()):
            rel = float((a.detach() - b.detach()).norm() / b.detach().norm())
            assert rel < 1e-6, (cfg, rel)
    ddp.close(wrapped)


def test_ddp_settings_take_effect_and_training_matches_one_process():
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_settings_worker, args=(port,), nprocs=2, join=True)


def test_ddp_settings_are_validated_and_named():
    from training.config import ConfigError, apply_overrides, base

    cfg = apply_overrides(base(), ["ddp.bucket_cap_mb=100", "ddp.comm_hook=bf16", "ddp.static_graph=true"])
    assert (cfg.ddp.bucket_cap_mb, cfg.ddp.comm_hook, cfg.ddp.static_graph) == (100, "bf16", True)
    with pytest.raises(ConfigError, match="ddp.comm_hook"):
        apply_overrides(base(), ["ddp.comm_hook=fp8"])
    with pytest.raises(ConfigError, match="ddp.bucket_cap_mb"):
        apply_overrides(base(), ["ddp.bucket_cap_mb=0"])


def test_close_waits_until_the_backend_has_let_go_of_the_tensors_it_was_given(tmp_path, caplog):
    """gloo's worker threads drop a finished collective a moment after wait() returns; at interpreter exit
    that drop kills the process (SIGABRT, a failed torchrun rank). close() waits for it, and says so when
    a tensor is still held after its timeout. Here a real gloo group of one holds the work object."""
    import threading
    import time
    import weakref

    import torch
    import torch.distributed as dist

    for held_s, timeout_s in ((0.3, 10.0), (None, 0.2)):
        dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store{timeout_s}", rank=0, world_size=1)
        t = ddp._watched(torch.ones(3))
        work = [dist.all_reduce(t, async_op=True)]
        work[0].wait()
        ref = weakref.ref(t)
        del t
        assert ref() is not None  # the work still holds it
        if held_s is not None:
            threading.Timer(held_s, work.clear).start()
        t0 = time.monotonic()
        ddp.close(timeout_s=timeout_s)
        waited = time.monotonic() - t0
        assert not dist.is_initialized()
        if held_s is not None:
            assert ref() is None and held_s - 0.05 <= waited < 5
        else:
            assert ref() is not None and waited < 2
            assert "still held 1 tensor(s)" in caplog.text
            work.clear()
