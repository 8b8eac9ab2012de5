"""benchmarks/data_engine_experiment.py's shared pieces: the sizes, kinds and arms, the `pipeline` runner, the
experiment's config and the render flags every render of the experiment uses."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

KINDS = ("rigid", "morph", "skin")
ARMS = ("control", "reweight", "rerender", "pool", "combo")
SIZES = {  # assets per set, render settings, training
    "cpu": dict(round0=12, rare_keep=1, pool=15, heldout=9, resolution=32, frames=4, views=4, samples=2, shard_size=8,
                preset="tiny", steps0=120, steps1=40, batch=4, budget=6, image_size=32),
    # gpu: sized for one ~8 min call on 2 x H200 with every render from the CPU-made cache (benchmarks/device.py data-engine)
    "gpu": dict(round0=42, rare_keep=3, pool=42, heldout=15, resolution=64, frames=4, views=4, samples=4, shard_size=8,
                preset="small", steps0=1000, steps1=400, batch=16, budget=16, image_size=64, format="webp"),
}


def kind_of(uid: str) -> str:
    m = re.match(r"^proc_s\d+_(\d+)$", uid)
    return KINDS[int(m.group(1)) % 3] if m else "other"


def sh(args: list[str], log: Path | None = None) -> float:
    """Run `python -m pipeline ARGS` (output appended to LOG, or to the console); returns seconds. Raises with the
    command on failure."""
    return sh_all([(args, log)])[0]


def sh_all(jobs: list[tuple[list[str], Path | None]]) -> list[float]:
    """Run several `python -m pipeline ARGS` at once (each with its own log, or the console); returns each one's
    seconds, in order. Waits for all, then raises naming every failed command. For independent GPU evaluations: three
    scored one after the other took 95 s of a 575 s device call (issue 23's category scenario, 2026-12-07), most of
    it their starts."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}  # see pipeline/demo.py
    procs = []
    for args, log in jobs:
        print("$ pipeline " + shlex.join(args), flush=True)
        f = None
        if log:
            log.parent.mkdir(parents=True, exist_ok=True)
            f = open(log, "a")
        procs.append((args, log, f, time.perf_counter(),
                      subprocess.Popen([sys.executable, "-m", "pipeline", *args], cwd=ROOT, stdout=f,
                                       stderr=subprocess.STDOUT if f else None, env=env)))
    took, failed = [], []
    for args, log, f, t0, p in procs:
        rc = p.wait()
        took.append(time.perf_counter() - t0)
        if f:
            f.close()
        if rc != 0:
            failed.append(f"failed ({rc}): pipeline {shlex.join(args)}" + (f"; log: {log}" if log else ""))
    if failed:
        raise SystemExit("; ".join(failed))
    return took


def load_cfg(out: Path) -> dict:
    return json.loads((out / "experiment_config.json").read_text())


def spec(folder: Path, shards: list[int]) -> str:
    return "::".join(str(folder / f"shard-{n:06d}.tar") for n in shards)


def committed(folder: Path) -> list[int]:
    from contracts.layout import committed_shards

    return committed_shards(folder) if folder.is_dir() else []


def render_flags(c: dict) -> list[str]:
    return ["--preset", "debug", "--resolution", str(c["resolution"]), "--frames", str(c["frames"]), "--views",
            str(c["views"]), "--samples", str(c["samples"]), "--format", c.get("format", "png"), "--no-ray", "--no-progress"]
