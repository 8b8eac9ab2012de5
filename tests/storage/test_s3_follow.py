"""End to end: `pipeline render` writes shards into a bucket while `pipeline train --follow` reads it.
The trainer starts before any shard exists, never lists a shard whose upload is unfinished, and
trains on each shard once it is committed (real moto server, real Blender, real trainer)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from training import checkpoint as ckpt

from .conftest import TINY_FLAGS, run_cli


def _wait(cond, what: str, proc: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert proc.poll() is None, f"the trainer exited while waiting for {what}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{log.read_text()[-3000:]}"
        time.sleep(0.2)


@pytest.mark.slow
def test_a_following_trainer_trains_on_shards_as_the_render_commits_them(s3_server, s3_manifest, tmp_path):
    env = {**os.environ, **s3_server.env(), "PIPELINE_LOG_LEVEL": "INFO", "OMP_NUM_THREADS": "1"}
    url = f"s3://{s3_server.new_bucket()}/live"
    run, log = tmp_path / "run", tmp_path / "train.log"
    cmd = [sys.executable, "-m", "pipeline", "train", "--shards", url, "--out", str(run), "--preset", "tiny",
           "--steps", "100000", "--batch-size", "2", "--device", "cpu", "--log-every", "1", "--grid-every", "0",
           "--ckpt-every", "3", "--follow", "--follow-interval", "1", "--set", "data.image_size=16"]
    with open(log, "w") as err:
        trainer = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
    try:
        _wait(lambda: "no committed shard" in log.read_text(), "the trainer to wait for data", trainer, log)
        run_cli("render", "--manifest", str(s3_manifest), "--shard", "0", "--out", url, *TINY_FLAGS, env=env)
        _wait(lambda: (run / "metrics.jsonl").exists() and (run / "metrics.jsonl").read_text().strip(),
              "the first training step", trainer, log)

        pause = tmp_path / "pause"
        pause.mkdir()
        render = subprocess.Popen([sys.executable, "-m", "pipeline", "render", "--manifest", str(s3_manifest), "--shard",
                                   "1", "--out", url, *TINY_FLAGS], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env={**env, "PIPELINE_TEST_UPLOAD_PAUSE": str(pause)})
        try:
            _wait(lambda: (pause / "reached-shard-1").exists(), "shard 1's tar upload", trainer, log)
            time.sleep(3)  # three follow intervals with shard 1's tar in the bucket but no stats.json
            assert "shard-000001" not in log.read_text()
            (pause / "release").touch()
            out, err = render.communicate(timeout=300)
            assert render.returncode == 0, err[-3000:]
        finally:
            if render.poll() is None:
                render.kill()
        _wait(lambda: "--follow: +1 shard(s) (shard-000001.tar); now training on 2" in log.read_text(),
              "the trainer to pick up shard 1", trainer, log)
        seen_at = max(int(p.stem.split("-")[1]) for p in (run / "checkpoints").glob("step-*.pt"))

        def trained_on_shard_1() -> bool:
            found = ckpt.load_latest(run)
            return (found is not None and found[1]["step"] > seen_at + 3
                    and f"{url}/shard-000001.tar" in found[1]["trained_on"]["shards"])

        _wait(trained_on_shard_1, "a checkpoint that trained on shard 1", trainer, log)
    finally:
        trainer.terminate()
        trainer.wait(timeout=60)
    text = log.read_text()
    assert "Traceback" not in text and s3_server.secret not in text
    assert "skipped a bad sample" not in text  # never a half-uploaded shard, never a broken read
