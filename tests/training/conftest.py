"""Fixtures for the trainer's tests: analytic shards in the DESIGN.md §4 layout, and Blender renders of procedural clips (the loopback HTTP server is tests/httpserver.py)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from training.data import synthetic


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread: on a shared 2-core box, OpenMP spin-waiting under load made steps ~30x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def analytic_shards(tmp_path_factory) -> tuple[Path, list[str]]:
    """Three committed shards of two samples each (4 views x 3 frames, 32 px); every third sample static."""
    d = tmp_path_factory.mktemp("analytic")
    keys = synthetic.write_dataset(d, 6, 2, seed=1, static_every=3, views=4, frames=3, size=32)
    return d, keys




# Real Blender renders of procedural assets, small: 32 px, 6 orbit views, 4 times, 4 samples per pixel.
RENDER_FLAGS = ["--no-ray", "--preset", "debug", "--resolution", "32", "--frames", "4", "--views", "6", "--samples", "4",
                "--threads", "1"]


def _pipeline(*args: str) -> None:
    env = {**os.environ, "PIPELINE_LOG_LEVEL": "WARNING"}
    r = subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, env=env, timeout=900)
    if r.returncode != 0:
        raise AssertionError(f"pipeline {' '.join(args)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")


def _render_procedural(root: Path, count: int, seed: int, shard_size: int) -> Path:
    """`pipeline curate --source procedural` then `pipeline render` of every shard: the real thing."""
    if importlib.util.find_spec("bpy") is None:
        pytest.skip("render extra (bpy 5.0.1) not installed: no real procedural renders")
    _pipeline("-q", "curate", "--source", "procedural", "--categories", "legacy", "--count", str(count), "--seed", str(seed),
              "--assets-out", str(root / "assets"), "--shard-size", str(shard_size), "--out", str(root / "m.parquet"))
    import pandas as pd

    shards = sorted(set(pd.read_parquet(root / "m.parquet")["shard"].tolist()))
    for n in shards:
        _pipeline("-q", "render", "--manifest", str(root / "m.parquet"), "--shard", str(n), "--out", str(root / "ds"),
                  *RENDER_FLAGS)
    return root / "ds"


@pytest.fixture(scope="session")
def procedural_one(tmp_path_factory) -> Path:
    """A dataset folder holding one rendered procedural clip (seed 11, asset 0 has one animation)."""
    return _render_procedural(tmp_path_factory.mktemp("proc_one"), 1, 11, 1)


@pytest.fixture(scope="session")
def procedural_many(tmp_path_factory) -> Path:
    """Two committed shards of rendered procedural clips (3 assets of seed 11, 5 clips)."""
    return _render_procedural(tmp_path_factory.mktemp("proc_many"), 3, 11, 3)
