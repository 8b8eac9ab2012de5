"""Fixtures for the scheduling tests: a few tiny procedural assets, a manifest, a tiny render spec."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# A local Ray instance keeps to loopback (pipeline.scheduler.init_ray does the same for users).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

# Small enough that a sample renders in well under a second on one core.
TINY = {"resolution": 24, "num_frames": 4, "fixed_views": 2, "samples": 1}
TINY_FLAGS = ["--preset", "debug", "--resolution", "24", "--frames", "4", "--views", "2", "--samples", "1"]


def run_cli(*args: str, env: dict | None = None, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    e.update(env or {})
    r = subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, env=e, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"pipeline {' '.join(args)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}")
    return r


@pytest.fixture(scope="session")
def proc_manifest(tmp_path_factory) -> Path:
    """5 procedural assets (seed 21) curated into shards of 3 rows."""
    d = tmp_path_factory.mktemp("proc")
    run_cli("-q", "curate", "--source", "procedural", "--categories", "legacy", "--count", "5", "--seed", "21", "--assets-out", str(d / "assets"),
            "--shard-size", "3", "--out", str(d / "manifest.parquet"))
    return d / "manifest.parquet"


@pytest.fixture(scope="session")
def tiny_spec():
    from render.presets import get_preset

    return get_preset("debug", **TINY)


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray instance for a test module (2 CPUs, loopback only)."""
    from pipeline.scheduler import init_ray

    import ray

    init_ray(None, num_cpus=2)
    yield ray
    ray.shutdown()
