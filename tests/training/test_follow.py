"""`pipeline train --follow`: the trainer picks up shards committed while it runs (never an
uncommitted one), keeps following after a resume, and all DDP ranks switch lists together."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from contracts import layout
from training import checkpoint as ckpt
from training import ddp
from training.data import synthetic
from training.config import apply_overrides, preset
from training.data.follow import ShardFollower

WORLD1 = ddp.DistInfo(rank=0, world_size=1, local_rank=0, device=__import__("torch").device("cpu"))


def _commit(d: Path, shard: int) -> None:
    synthetic.commit_shard(d, shard, [synthetic.make_sample(f"follow{shard}x{i}", 100 + 10 * shard + i, views=4, frames=3,
                                                            size=32) for i in range(2)])


def test_the_follower_waits_for_a_first_shard_and_reports_only_committed_additions(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="training.data.follow")
    f = ShardFollower(str(tmp_path), 0.2, WORLD1)
    threading.Timer(0.5, _commit, (tmp_path, 0)).start()
    t0 = time.monotonic()
    assert f.initial() == [str(tmp_path / layout.tar_name(0))]
    assert time.monotonic() - t0 >= 0.4 and "no committed shard" in caplog.text
    urls = [str(tmp_path / layout.tar_name(0))]
    assert f.poll(urls) is None  # not due yet
    (tmp_path / layout.tar_name(5)).write_bytes(b"being written")  # no stats.json: not committed
    time.sleep(0.25)
    assert f.poll(urls) is None
    _commit(tmp_path, 1)
    time.sleep(0.25)
    new = f.poll(urls)
    assert new == [str(tmp_path / layout.tar_name(n)) for n in (0, 1)]
    assert "--follow: +1 shard(s) (shard-000001.tar); now training on 2" in caplog.text


def test_without_follow_an_empty_folder_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no committed shards"):
        ShardFollower(str(tmp_path), 0.0, WORLD1).initial()


def _train_in_thread(cfg, spec, out) -> threading.Thread:
    from training.train import train

    t = threading.Thread(target=train, args=(cfg, spec, out), kwargs={"device": "cpu"}, daemon=True)
    t.start()
    return t


def _wait_for_step(run: Path, step: int, thread: threading.Thread, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while True:
        p = run / "metrics.jsonl"
        if p.exists() and any(json.loads(x)["step"] >= step for x in p.read_text().splitlines() if x.strip()):
            return
        assert thread.is_alive() and time.monotonic() < deadline, "the trainer stopped or stalled"
        time.sleep(0.05)


def test_the_trainer_trains_on_shards_committed_while_it_runs_and_after_a_resume(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    data_dir, run = tmp_path / "data", tmp_path / "run"
    _commit(data_dir, 0)
    sets = ["data.image_size=16", "data.follow_interval_s=0.2", "log_every=1", "grid_every=0", "ckpt_every=4",
            "data.batches_per_epoch=1000", "batch_size=2"]
    t = _train_in_thread(apply_overrides(preset("tiny"), sets + ["steps=30"]), str(data_dir), run)
    _wait_for_step(run, 2, t)
    _commit(data_dir, 1)
    t.join(timeout=300)
    assert not t.is_alive()
    assert "--follow: +1 shard(s) (shard-000001.tar)" in caplog.text
    _, state = ckpt.load_latest(run)
    assert state["step"] == 30 and len(state["trained_on"]["shards"]) == 2  # the checkpoint knows both shards
    # Resumed without saying --follow: the saved config keeps following.
    caplog.clear()
    t = _train_in_thread(apply_overrides(preset("tiny"), [s for s in sets if "follow" not in s] + ["steps=60"]),
                         str(data_dir), run)
    _wait_for_step(run, 32, t)
    _commit(data_dir, 2)
    t.join(timeout=300)
    assert "--follow: +1 shard(s) (shard-000002.tar)" in caplog.text
    assert json.loads((run / "config.json").read_text())["data"]["follow_interval_s"] == 0.2


@pytest.mark.slow
def test_two_gloo_ranks_switch_to_the_new_shard_list_together(tmp_path):
    data_dir, run = tmp_path / "data", tmp_path / "run"
    _commit(data_dir, 0)
    _commit(data_dir, 1)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "training",
           "--shards", str(data_dir), "--out", str(run), "--preset", "tiny", "--steps", "30", "--batch-size", "2",
           "--log-every", "1", "--grid-every", "0", "--ckpt-every", "100", "--device", "cpu", "--follow",
           "--follow-interval", "0.2", "--set", "data.image_size=16", "--set", "data.batches_per_epoch=1000"]
    env = {**os.environ, "PIPELINE_LOG_LEVEL": "INFO", "OMP_NUM_THREADS": "1"}
    with open(tmp_path / "err.log", "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
        try:
            deadline = time.monotonic() + 300
            while not ((run / "metrics.jsonl").exists() and (run / "metrics.jsonl").read_text().strip()):
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "err.log").read_text()[-3000:]
                time.sleep(0.1)
            _commit(data_dir, 2)
            assert proc.wait(timeout=300) == 0, (tmp_path / "err.log").read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
    log = (tmp_path / "err.log").read_text()
    for rank in (0, 1):
        assert f"rank {rank}: --follow: +1 shard(s) (shard-000002.tar); now training on 3" in log, log[-3000:]
