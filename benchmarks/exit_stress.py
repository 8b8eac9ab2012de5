"""Exit stress loop: the commands that embed Blender or start threads, run back to back N times while
the machine is fully loaded, counting non-zero exits and `terminate called` lines (a C++ runtime abort
at interpreter exit: a thread still running, or a std::thread object destroyed while joinable).

    python benchmarks/exit_stress.py --n 30 --out /tmp/exit_stress            # busy loops = CPU count
    python benchmarks/exit_stress.py --n 30 --load 0 --commands train         # no load, one command
    python benchmarks/exit_stress.py --n 40 --nice 19 --commands curate,render  # commands below the load
    python benchmarks/exit_stress.py --n 3 --load 0 --lingering               # a lingering native thread

Each round runs, at tiny sizes, `pipeline curate --source procedural`, `pipeline render --no-ray` and
`pipeline train --device cpu` (each in its own fresh output folder) while `--load` busy-loop processes
keep every core busy. A failing run's stderr tail is kept in OUT/failures/, and with `--cores` the
commands run under `ulimit -c unlimited` in OUT/cores/ (this machine's core_pattern writes `core` into
the working directory) so a crash can be read with `gdb python core`. Writes OUT/exit_stress.json:
per command, runs, non-zero exits, `terminate called` lines, seconds per run; the same on stdout.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMANDS = ("curate", "render", "train")


def busy() -> None:
    """One core's worth of load until killed."""
    x = 0
    while True:
        x = (x * 1103515245 + 12345) & 0xFFFFFFFF


def pipeline_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline", *args]


def command_args(name: str, work: Path, manifest: Path, data: Path, i: int) -> list[str]:
    """The command line of one run of `name` (round i) at tiny sizes, writing under `work`."""
    if name == "curate":
        return pipeline_cmd("curate", "--source", "procedural", "--count", "2", "--seed", str(i),
                            "--assets-out", str(work / f"assets-{i}"), "--out", str(work / f"manifest-{i}.parquet"))
    if name == "render":
        return pipeline_cmd("render", "--manifest", str(manifest), "--shard", "0", "--out", str(work / f"render-{i}"),
                            "--no-ray", "--preset", "debug", "--resolution", "24", "--frames", "2", "--views", "2",
                            "--samples", "1")
    if name == "train":
        return pipeline_cmd("train", "--shards", str(data), "--out", str(work / f"run-{i}"), "--preset", "tiny",
                            "--steps", "2", "--batch-size", "1", "--num-workers", "1", "--device", "cpu",
                            "--set", "data.image_size=16", "--log-every", "1", "--grid-every", "1000",
                            "--ckpt-every", "2")
    raise ValueError(name)


# --lingering: a library whose static pool holds a joinable std::thread, preloaded into every command, so
# that each exit meets a thread of the kind that caused the abort (deterministic; the real ones are races)
LINGERING = r"""
#include <chrono>
#include <thread>
namespace {
struct Pool { std::thread worker; ~Pool() {} };  // does not join: std::thread's destructor calls std::terminate
Pool pool;
struct Starter {  // initialised after `pool` (same file, in order); a constructor attribute would run before
    Starter() { pool.worker = std::thread([] { std::this_thread::sleep_for(std::chrono::hours(1)); }); }
};
Starter starter;
}
"""


def build_lingering(out: Path) -> Path:
    (out / "lingering.cpp").write_text(LINGERING)
    lib = out / "liblingering.so"
    subprocess.run(["g++", "-shared", "-fPIC", "-O1", "-pthread", "-o", str(lib), str(out / "lingering.cpp")], check=True)
    return lib


def run_one(cmd: list[str], cwd: Path, cores: bool, timeout: float, nice: int = 0,
            preload: Path | None = None) -> tuple[int, str, float]:
    def limits() -> None:
        if nice:
            os.nice(nice)
        if cores:
            resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

    env = {**os.environ, "PYTHONPATH": str(REPO), "PIPELINE_LOG_LEVEL": "WARNING",
           **({"LD_PRELOAD": str(preload)} if preload else {})}
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, preexec_fn=limits)
        return r.returncode, r.stderr, time.perf_counter() - t0
    except subprocess.TimeoutExpired as exn:
        return -999, f"timeout after {timeout} s\n{exn.stderr or ''}", time.perf_counter() - t0


def prepare(work: Path) -> tuple[Path, Path]:
    """A manifest and one rendered shard, made once without load (the render and train runs read them)."""
    manifest, data = work / "base-manifest.parquet", work / "base-data"
    curate = pipeline_cmd("curate", "--source", "procedural", "--count", "2", "--seed", "0", "--assets-out",
                          str(work / "base-assets"), "--out", str(manifest))
    render = pipeline_cmd("render", "--manifest", str(manifest), "--shard", "0", "--out", str(data), "--no-ray",
                          "--preset", "debug", "--resolution", "24", "--frames", "3", "--views", "3", "--samples", "1")
    for cmd in (curate, render):
        rc, err, _ = run_one(cmd, work, False, 600)
        if rc != 0:
            raise SystemExit(f"preparing the stress loop failed ({' '.join(cmd)}):\n{err[-2000:]}")
    return manifest, data


def summary(a: argparse.Namespace, stats: dict, rounds_done: int) -> dict:
    return {"label": a.label, "rounds": rounds_done, "load_processes": a.load, "nice": a.nice,
            "lingering": a.lingering, "cpus": os.cpu_count(),
            "machine": platform.node(), "python": sys.version.split()[0],
            "commands": {c: {**s, "seconds_median": sorted(s["seconds"])[len(s["seconds"]) // 2] if s["seconds"] else None}
                         for c, s in stats.items()}}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=30, help="rounds (each runs every command once)")
    p.add_argument("--load", type=int, default=os.cpu_count() or 1, help="busy-loop processes during the rounds")
    p.add_argument("--commands", default=",".join(COMMANDS), help="comma list of " + ", ".join(COMMANDS))
    p.add_argument("--out", default="/tmp/exit_stress", help="work folder (emptied first)")
    p.add_argument("--cores", action="store_true", help="ulimit -c unlimited; cores land in OUT/cores/")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per run before it counts as hung")
    p.add_argument("--label", default="", help="a note stored in the JSON (e.g. before/after)")
    p.add_argument("--lingering", action="store_true", help="preload a library that leaves a joinable "
                   "std::thread in a static pool (checks the exit path deterministically)")
    p.add_argument("--nice", type=int, default=0, help="run the commands at this niceness (below the load: "
                                                       "they are descheduled more often, exit races widen)")
    a = p.parse_args(argv)
    names = [c for c in a.commands.split(",") if c]
    unknown = [c for c in names if c not in COMMANDS]
    if unknown:
        p.error(f"--commands: unknown {unknown}; choose from {COMMANDS}")
    out = Path(a.out)
    shutil.rmtree(out, ignore_errors=True)
    work, fails, cores = out / "work", out / "failures", out / "cores"
    for d in (work, fails, cores):
        d.mkdir(parents=True)
    manifest, data = prepare(work)
    lingering = build_lingering(out) if a.lingering else None
    stats = {c: {"runs": 0, "nonzero": 0, "terminate_called": 0, "seconds": []} for c in names}
    result = summary(a, stats, 0)
    loaders = [mp.Process(target=busy, daemon=True) for _ in range(a.load)]
    for pr in loaders:
        pr.start()
    try:
        for i in range(1, a.n + 1):
            for name in names:
                rc, err, dt = run_one(command_args(name, work, manifest, data, i), cores, a.cores, a.timeout, a.nice,
                                      lingering)
                s = stats[name]
                s["runs"] += 1
                s["seconds"].append(round(dt, 2))
                term = err.count("terminate called")
                s["terminate_called"] += term
                if rc != 0 or term:
                    s["nonzero"] += rc != 0
                    (fails / f"{name}-{i:03d}.txt").write_text(f"rc {rc}\n{err[-6000:]}")
                    print(f"round {i} {name}: rc {rc}, terminate called x{term}", flush=True)
                for leftover in work.glob(f"*-{i}"):  # keep the disk small: outputs are not looked at
                    shutil.rmtree(leftover, ignore_errors=True)
            print(f"round {i}/{a.n} done", flush=True)
            result = summary(a, stats, i)
            (out / "exit_stress.json").write_text(json.dumps(result, indent=1))  # after every round: a cut-short run counts
    finally:
        for pr in loaders:
            pr.terminate()
        for pr in loaders:
            pr.join()
    for c, s in result["commands"].items():
        print(f"{c:7s} runs {s['runs']:3d}  non-zero {s['nonzero']:2d}  'terminate called' {s['terminate_called']:2d}  "
              f"median {s['seconds_median']} s")
    return result


if __name__ == "__main__":
    main()
