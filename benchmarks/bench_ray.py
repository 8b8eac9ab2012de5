"""Ray scheduling overhead and scaling of `pipeline render` on this machine.

Each mode runs as the real command, in a fresh process, on a shard of n samples and on one of 2n
samples (the first n plus n more). The difference gives the steady-state rate (images per second once
everything is running) and 2 t(n) - t(2n) the fixed cost per command (Python, Ray start-up, Blender
import per worker). Modes:
  plain    `pipeline render --no-ray --threads C` (one process, Blender on every core)
  ray 1xC  one Ray actor with all C CPUs (the plain run's resources, scheduled through Ray)
  ray 1x1  one actor with one CPU
  ray Cx1  C actors with one CPU each
  ray 1xC nice15  as ray 1xC with Ray's own default worker niceness, 15 (init_ray sets 0 for a local
                  instance unless RAY_worker_niceness is set)
Per sample, from the shard parquet: wall seconds inside the worker and `cpu_s` (CPU seconds of the
worker process): equal CPU but more wall time in an actor means the actor waited (other processes,
niceness), more CPU means it did more work.

    python benchmarks/bench_ray.py [--n 6] [--resolution 256] [--repeats 2] [--out /tmp/bench_ray]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq


def _cli(*args: str, env_extra: dict[str, str] | None = None) -> float:
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_USAGE_STATS_ENABLED="0", **(env_extra or {}))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pipeline", "-q", *args], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=6, help="samples in the small shard (the big one has 2n)")
    ap.add_argument("--seed", type=int, default=100)
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--modes", default="plain,ray 1xC,ray 1x1,ray Cx1", help="comma list of the modes to run")
    ap.add_argument("--out", default="/tmp/bench_ray")
    args = ap.parse_args()

    from manifests import read_manifest, write_manifest
    from contracts.layout import read_stats

    cpus = os.cpu_count() or 1
    root = Path(args.out)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    _cli("curate", "--source", "procedural", "--count", str(2 * args.n), "--seed", str(args.seed),
         "--assets-out", str(root / "assets"), "--shard-size", "1000", "--out", str(root / "all.parquet"))
    df = read_manifest(root / "all.parquet").sort_values(["uid", "clip"]).reset_index(drop=True)
    if len(df) < 2 * args.n:
        raise SystemExit(f"only {len(df)} clips; raise --n or change --seed")
    for name, k in (("small", args.n), ("big", 2 * args.n)):
        write_manifest(df.iloc[:k].assign(shard=0), root / f"{name}.parquet")
    flags = ["--preset", "debug", "--resolution", str(args.resolution), "--frames", str(args.frames),
             "--views", str(args.views), "--samples", str(args.samples), "--no-progress"]
    modes = {
        "plain": ["--no-ray", "--threads", str(cpus)],
        f"ray 1x{cpus}": ["--workers", "1", "--cpus-per-worker", str(cpus)],
        "ray 1x1": ["--workers", "1", "--cpus-per-worker", "1"],
        f"ray {cpus}x1": ["--workers", str(cpus), "--cpus-per-worker", "1"],
        f"ray 1x{cpus} nice15": ["--workers", "1", "--cpus-per-worker", str(cpus)],
    }
    mode_env = {f"ray 1x{cpus} nice15": {"RAY_worker_niceness": "15"}}
    chosen = [m.strip().replace("C", str(cpus)) for m in args.modes.split(",")]
    modes = {k: v for k, v in modes.items() if k in chosen}
    print(f"{args.n} / {2 * args.n} samples x {args.frames * args.views} images at {args.resolution} px, "
          f"{args.samples} spp; {cpus} CPUs; load average {os.getloadavg()[0]:.2f}", flush=True)
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    for rep in range(args.repeats):
        for mode, extra in modes.items():
            rec = {}
            for size in ("small", "big"):
                out = root / f"{mode.replace(' ', '_')}-{size}-{rep}"
                t = _cli("render", "--manifest", str(root / f"{size}.parquet"), "--shard", "0", "--out", str(out),
                         *flags, *extra, env_extra=mode_env.get(mode))
                st = read_stats(out, 0)
                rows = pq.read_table(out / "shard-000000.parquet", columns=["seconds", "cpu_s"]).to_pylist()
                sample_s = sum(r["seconds"] for r in rows)
                rec[size] = {"seconds": t, "images": st["images"], "shard_s": st["seconds"], "sample_s": sample_s,
                             "samples": len(rows), "per_sample_s": [r["seconds"] for r in rows],
                             "per_sample_cpu_s": [r["cpu_s"] for r in rows]}
            dt = rec["big"]["seconds"] - rec["small"]["seconds"]
            di = rec["big"]["images"] - rec["small"]["images"]
            rec["steady_images_per_s"] = di / dt
            rec["fixed_s"] = 2 * rec["small"]["seconds"] - rec["big"]["seconds"]
            big = rec["big"]
            rec["worker_s_per_sample"] = big["sample_s"] / big["samples"]  # render time inside the worker
            # without each run's first sample (first-use costs: Cycles kernels, caches)
            rec["worker_s_after_first"] = statistics.mean(big["per_sample_s"][1:] or big["per_sample_s"])
            rec["cpu_s_after_first"] = statistics.mean(big["per_sample_cpu_s"][1:] or big["per_sample_cpu_s"])
            workers = int(extra[extra.index("--workers") + 1]) if "--workers" in extra else 1
            # wall time of the shard not spent inside a sample, per sample (actor start-up included)
            rec["gap_s_per_sample"] = (big["shard_s"] * workers - big["sample_s"]) / big["samples"]
            runs[mode].append(rec)
            print(f"  rep {rep + 1} {mode:<8} t(n)={rec['small']['seconds']:6.1f}s t(2n)={rec['big']['seconds']:6.1f}s "
                  f"steady {rec['steady_images_per_s']:6.2f} img/s, fixed {rec['fixed_s']:5.1f}s, per sample "
                  f"{rec['worker_s_after_first']:.3f} s wall / {rec['cpu_s_after_first']:.3f} s CPU", flush=True)
    print("\nmedian over repeats:")
    print(f"  {'mode':<14} {'steady img/s':>12} {'fixed s':>8} {'img/s at 2n':>12} {'worker s/sample':>16} "
          f"{'gap s/sample':>13} {'wall s/sample*':>15} {'CPU s/sample*':>14}   (* mean +- sd over runs, first sample left out)")
    table = {}
    for mode, rs in runs.items():
        steady = statistics.median(r["steady_images_per_s"] for r in rs)
        fixed = statistics.median(r["fixed_s"] for r in rs)
        e2e = statistics.median(r["big"]["images"] / r["big"]["seconds"] for r in rs)
        ws = statistics.median(r["worker_s_per_sample"] for r in rs)
        gap = statistics.median(r["gap_s_per_sample"] for r in rs)
        wall = [r["worker_s_after_first"] for r in rs]
        cpu = [r["cpu_s_after_first"] for r in rs]
        sd = (lambda x: statistics.stdev(x) if len(x) > 1 else 0.0)
        table[mode] = {"steady_images_per_s": steady, "fixed_s": fixed, "images_per_s_2n": e2e,
                       "worker_s_per_sample": ws, "gap_s_per_sample": gap,
                       "wall_s_after_first": [statistics.mean(wall), sd(wall)], "cpu_s_after_first": [statistics.mean(cpu), sd(cpu)]}
        print(f"  {mode:<14} {steady:12.2f} {fixed:8.1f} {e2e:12.2f} {ws:16.3f} {gap:13.3f} "
              f"{statistics.mean(wall):8.3f}+-{sd(wall):.3f} {statistics.mean(cpu):7.3f}+-{sd(cpu):.3f}")
    same = f"ray 1x{cpus}"
    if same in table and "plain" in table:
        print(f"steady-state Ray overhead ({same} vs plain, same CPUs): "
              f"{100 * (1 - table[same]['steady_images_per_s'] / table['plain']['steady_images_per_s']):+.1f}% by wall-time "
              f"differences; {100 * (table[same]['worker_s_per_sample'] / table['plain']['worker_s_per_sample'] - 1):+.1f}% "
              f"time per sample inside the worker; scheduling gaps {table[same]['gap_s_per_sample']:.3f} s per sample")
    (root / "results.json").write_text(json.dumps({"runs": runs, "median": table, "load_end": os.getloadavg(),
                                                   "args": vars(args)}, indent=1))


if __name__ == "__main__":
    main()
