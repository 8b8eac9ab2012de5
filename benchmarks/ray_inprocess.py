"""Does running inside a Ray worker process slow Blender down? The same samples rendered by one plain
process and by one Ray task (all CPUs), alternately.

    python benchmarks/ray_inprocess.py [--assets DIR] [--repeats 2]

DIR holds procedural GLBs (default: made here with render.procedural). Prints wall and CPU seconds
(process_time: every thread of the process) for 5 samples after one warm-up sample.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETTINGS = {"resolution": 256, "num_frames": 4, "fixed_views": 4, "samples": 16}


def job(assets: list[str], threads: int) -> dict:
    from render.presets import get_preset
    from render.worker import RenderWorker

    worker = RenderWorker(get_preset("debug"), threads=threads)

    def render(path: str) -> None:
        row = {"uid": Path(path).stem, "clip": 0, "source": "procedural", "license": "cc0", "sha256": None,
               "render_settings": json.dumps(SETTINGS)}
        assert worker.render(row, Path(path)).status == "ok"

    render(assets[0])  # warm-up: Cycles kernels, first import
    t0, c0 = time.perf_counter(), time.process_time()
    for p in assets[1:]:
        render(p)
    return {"wall_s": round(time.perf_counter() - t0, 2), "cpu_s": round(time.process_time() - c0, 2),
            "niceness": os.getpriority(os.PRIO_PROCESS, 0)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--assets")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--mode", choices=("plain", "ray"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    cpus = os.cpu_count() or 1
    if args.mode:
        assets = sorted(str(p) for p in Path(args.assets).glob("*.glb"))[:6]
        if args.mode == "plain":
            print(json.dumps(job(assets, cpus)))
        else:
            import ray

            from pipeline.scheduler import init_ray

            init_ray(None, cpus)
            print(json.dumps(ray.get(ray.remote(num_cpus=cpus)(job).remote(assets, cpus))))
        return
    assets = args.assets
    if not assets:
        from render.procedural import generate_assets

        assets = tempfile.mkdtemp(prefix="ray_inprocess-")
        generate_assets(Path(assets), 6, 100)
    for rep in range(args.repeats):
        for mode in ("plain", "ray"):
            out = subprocess.run([sys.executable, __file__, "--mode", mode, "--assets", assets], check=True,
                                 capture_output=True, text=True).stdout.strip().splitlines()[-1]
            print(f"rep {rep + 1} {mode:<5} {out}", flush=True)


if __name__ == "__main__":
    main()
