"""One device call, by question: named stages run within one time budget on the GPUs of one host.

    python3 benchmarks/device.py STAGE [STAGE ...] [--budget-s 540] [--gpus 0,1] [--out DIR] [--dry-run] [options]
    python3 benchmarks/device.py keep FILES_AT --name DATE-CARD-WHAT   # on the CPU box: a call's files -> results/
    eval "$(python3 benchmarks/device.py exports)"   # a shell script beside the runner: the jobs' environment

Stages (in the order given; setup comes first by itself unless --no-setup):
  setup        carried wheels (.whl) into /tmp/site once per machine, env.txt (card, versions, tree), gsplat's
               kernels compiled once, a random-weight LPIPS file (the devices have no real weights)
  speed        bench_speed.py: ceilings, SDPA backends, training-step variants (--variants; one job per preset,
               side by side on 2+ GPUs), time split (--split), inference (--infer-*), profile
  before       bench_speed.py on an older checkout (--before-tree): its steps and split
  curve        same-seed loss curves, the older checkout and this one (numerics check)
  e2e          real lrm4d-layout shards: the loader alone per worker count, then `python -m training` on them
  parity       gsplat vs torch rasteriser, fast paths vs references, L4GM render path (GPU tests)
  gputests     pytest --tests (default: -m gpu tests/training)
  l4gm         bench_l4gm_gpu.py: L4GM training step and 16-frame inference per preset; head-dim variants
  learn        gpu_learn.py on a carried .trainpack: presets x arms x seeds at equal minutes or equal steps
  ddp          ddp_checks.py (2+ GPUs): scale, uneven + --follow, kill/resume 2->2->1, eval on 1 vs 2 GPUs
  data-engine  data_engine_experiment.py arms over the GPUs from a carried prepare + cache (--exp)

Every command writes under --out (default $OUT): STAGE/JOB.log and the result files; runner.log (what started
where, when, and how it ended), env.txt, run.json (arguments, every job's command and result) and
summary.md, the table printed last. When more files were written than a device call brings back (8), all
but those four go into results.tgz. Jobs start as their inputs are ready: data sets on the CPU while gsplat
compiles, GPU jobs on the GPU with the most room (a 1-GPU job on a host of 2+ GPUs runs on that GPU's share
of the cores), each with a timeout from what is left of --budget-s; what would start too late is skipped
and named. NVLink multicast is off in every command (NCCL_NVLS_ENABLE=0 and its PyTorch/NVSHMEM twins).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, ddp_variant_sets
from device_plan import Job
from device_results import needs_pack, pack, summary_table, write_record
from device_run import Runner
from device_stages import Ctx, before, curve, e2e, gputests, l4gm, parity, setup, speed
from device_stages_train import data_engine, ddp, learn, parse_arm

STAGES = {
    "setup": setup, "speed": speed, "before": before, "curve": curve, "e2e": e2e, "parity": parity,
    "gputests": gputests, "l4gm": l4gm, "learn": learn, "ddp": ddp, "data-engine": data_engine,
}
LISTS = ("variants", "split", "profile", "before_variants", "curve", "learn_arms", "ddp_variants")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="benchmarks/device.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stages", nargs="+", metavar="STAGE", help=" ".join(STAGES))
    g = ap.add_argument_group("the run")
    g.add_argument("--out", default=os.environ.get("OUT") or "/tmp/device_out", help="results folder [$OUT]")
    g.add_argument("--budget-s", type=float, default=540, help="wall seconds for everything (a device command may "
                   "run 600) [540]")
    g.add_argument("--gpus", default=None, help="GPU indices to use, e.g. 0,1 ('none': no GPU) [all nvidia-smi lists]")
    g.add_argument("--cores", type=int, default=None, help="host cores to split among the GPUs [this host's]")
    g.add_argument("--work", default="/tmp/bench", help="machine-wide folder: data sets made once, run folders")
    g.add_argument("--dry-run", action="store_true", help="print each command in the order and place it would start")
    g.add_argument("--pack", choices=("auto", "always", "never"), default="auto",
                   help="results.tgz: auto = when more than 8 files or deeper than $OUT/a/b/file")
    g.add_argument("--no-setup", action="store_true", help="no setup jobs (a warm machine that ran them)")
    g.add_argument("--no-monitor", action="store_true", help="no gpu_util.csv (nvidia-smi every 5 s)")
    g = ap.add_argument_group("speed, before, curve (space-separated lists of bench_speed.py variants PRESET[:k=v...])")
    g.add_argument("--variants", default="base small", help="training-step variants [base small]")
    g.add_argument("--split", default="base", help="variants whose time split to take [base]")
    g.add_argument("--speed-parts", default="hw,attn,train,split,infer,profile", help="bench_speed.py --parts")
    g.add_argument("--profile", default="base", help="variant(s) to profile [base]")
    g.add_argument("--infer-modes", default="fast,graph", help="eager, fast, graph, graphall [fast,graph]")
    g.add_argument("--infer-views", default="4,24", help="input view counts [4,24]")
    g.add_argument("--infer-heads", default="", help="attention head counts ('' = the preset's)")
    g.add_argument("--infer-tiles", default="0", help="gsplat tile sizes (0 = the preset's)")
    g.add_argument("--infer-packed", default="0", help="gsplat packed mode per inference row: 0, 1 or 0,1")
    g.add_argument("--infer-attn", default="bf16", help="attention kernel per inference row: bf16, fp8 or bf16,fp8")
    g.add_argument("--infer-lin", default="bf16", help="linear layers per inference row: bf16, fp8, fp8t or a comma list")
    g.add_argument("--speed-steps", type=int, default=8, help="timed steps per variant [8]")
    g.add_argument("--before-tree", default=".scratch/helper-gpu/before",
                   help="an older checkout of training/ + contracts/ (git archive REV training contracts)")
    g.add_argument("--before-variants", default="small base")
    g.add_argument("--curve", default="base:bs=8")
    g.add_argument("--curve-steps", type=int, default=30)
    g = ap.add_argument_group("e2e, parity, gputests")
    g.add_argument("--e2e-preset", default="base")
    g.add_argument("--e2e-steps", type=int, default=120)
    g.add_argument("--loader-workers", default="1,2,4,8", help="DataLoader worker counts for the loader alone")
    g.add_argument("--loader-batches", type=int, default=12)
    g.add_argument("--tests", default="-m gpu tests/training", help="pytest arguments of gputests")
    g = ap.add_argument_group("l4gm")
    g.add_argument("--l4gm-presets", default="l4gm-small,l4gm-base")
    g.add_argument("--l4gm-infer-modes", default="eager", help="eager, compiled, graph, each optionally +fp8 (FP8 attention) [eager]")
    g.add_argument("--l4gm-frames", type=int, default=16)
    g.add_argument("--l4gm-infer-only", action="store_true", help="inference rows only")
    g.add_argument("--l4gm-headdim", default="", help="a preset whose head-dim variants to time (e.g. l4gm-base)")
    g.add_argument("--l4gm-args", default="", help="more bench_l4gm_gpu.py arguments")
    g.add_argument("--l4gm-max-s", type=float, default=None, help="at most this many seconds for l4gm-speed (it saves "
                   "after every row; later stages get the rest) [no limit]")
    g = ap.add_argument_group("learn")
    g.add_argument("--trainpack", default=".trainpack", help="folder with train/ and heldout/ (carried)")
    g.add_argument("--learn-presets", default="small", help="e.g. 'small l4gm-small' (equal minutes side by side)")
    g.add_argument("--learn-arms", default="default", help="NAME[:k=v,k=v] ... (--set per arm)")
    g.add_argument("--learn-seeds", default="", help="seeds (--set seed=S per run); '' = the preset's")
    g.add_argument("--learn-minutes", type=float, default=0, help="training minutes per run (0: from the budget)")
    g.add_argument("--learn-steps", type=int, default=0, help="equal steps instead: all runs at once")
    g.add_argument("--calib-steps", type=int, default=40)
    g.add_argument("--learn-sets", default="data.image_size=64 data.num_workers=10 batch_size=16")
    g.add_argument("--learn-lpips", action="store_true", help="LPIPS term with the random-weight file")
    g.add_argument("--learn-fp8-attention", action="store_true",
                   help="score each run's held-out clips again with FP8 attention (gpu_learn --eval-fp8-attention)")
    g.add_argument("--learn-reserve-s", type=float, default=None,
                   help="seconds left to later stages [170 if a GPU stage follows learn, else 0]")
    g = ap.add_argument_group("ddp")
    g.add_argument("--ddp-parts", default="scale uneven resume eval")
    g.add_argument("--ddp-presets", default="base small")
    g.add_argument("--ddp-world", default="1 2", help="world sizes of scale")
    g.add_argument("--ddp-variants", default="default",
                   help="DDP settings of base on 2+ GPUs: '+'-joined parts of default, bucketN, gradview, static, "
                        "bf16hook, nosplit, torch")
    g.add_argument("--ddp-steps", type=int, default=20)
    g = ap.add_argument_group("data-engine")
    g.add_argument("--exp", default=".exp13", help="prepare + cache output (carried, read only)")
    g.add_argument("--de-work", default=None, help="where the runs write [WORK/exp13_work]")
    g.add_argument("--de-seeds", default="0 1 2")
    g.add_argument("--de-arms", default="control reweight rerender pool combo")
    g.add_argument("--de-steps0", type=int, default=1000)
    g.add_argument("--de-steps1", type=int, default=400)
    g.add_argument("--de-workers0", type=int, default=4)
    g.add_argument("--de-workers", type=int, default=1)
    g.add_argument("--de-device", choices=("cuda", "cpu"), default="cuda")
    return ap


def parse(argv: list[str]) -> argparse.Namespace:
    ap = parser()
    a = ap.parse_args(argv)
    unknown = [s for s in a.stages if s not in STAGES]
    if unknown:
        ap.error(f"unknown stage(s) {unknown}; stages: {' '.join(STAGES)}")
    a.stages = list(dict.fromkeys(a.stages))
    for k in LISTS:
        setattr(a, k, getattr(a, k).split())
    try:
        for v in a.ddp_variants:
            ddp_variant_sets(v)
        for arm in a.learn_arms:
            parse_arm(arm)
    except ValueError as e:
        ap.error(str(e))
    if a.budget_s <= 0:
        ap.error("--budget-s must be positive")
    a.de_work = a.de_work or str(Path(a.work) / "exp13_work")
    return a


def detect_gpus() -> list[int]:
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return list(range(sum(1 for x in out.splitlines() if x.startswith("GPU "))))


def gpu_list(spec: str | None, dry_run: bool) -> list[int]:
    if spec is None:
        found = detect_gpus()
        return found or ([0] if dry_run else [])
    if spec.strip().lower() in ("", "none"):
        return []
    try:
        gpus = [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"--gpus {spec!r}: give GPU indices like 0,1 or 'none'") from None
    if len(set(gpus)) != len(gpus) or any(g < 0 for g in gpus):
        raise SystemExit(f"--gpus {spec!r}: indices must be distinct and >= 0")
    return gpus


def build(a: argparse.Namespace, out: Path, gpus: list[int]) -> list[Job]:
    """The jobs of the stages, setup first; a job two stages share (the replayed batches) once."""
    stages = list(a.stages)
    if not a.no_setup and "setup" not in stages:
        stages.insert(0, "setup")
    ctx = Ctx(a, out, gpus)
    if "setup" in stages:
        ctx.setup = {j.name for j in setup(ctx)}
    jobs: dict[str, Job] = {}
    for s in stages:
        for j in STAGES[s](ctx):
            jobs.setdefault(j.name, j)
    return list(jobs.values())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["keep"]:
        from device_results import keep_main

        return keep_main(argv[1:])
    if argv == ["exports"]:
        import shlex

        from device_plan import run_env

        env = run_env(str(ROOT), os.environ.get("PYTHONPATH", ""))
        print("\n".join(f"export {k}={shlex.quote(v)}" for k, v in env.items()))
        return 0
    a = parse(argv)
    gpus = gpu_list(a.gpus, a.dry_run)
    out = Path(a.out)
    jobs = build(a, out, gpus)
    log = None
    if not a.dry_run:
        out.mkdir(parents=True, exist_ok=True)
        log = open(out / "runner.log", "a")
    t0 = time.monotonic()

    def say(msg: str) -> None:
        stamp = f"[{time.strftime('%H:%M:%S', time.gmtime())} +{int(time.monotonic() - t0)}s] "
        line = msg if a.dry_run else stamp + msg
        print(line, flush=True)
        if log:
            log.write(line + "\n")
            log.flush()

    say(f"stages {' '.join(a.stages)}; GPUs {gpus or 'none'}; budget {a.budget_s:.0f} s; {len(jobs)} jobs; "
        f"out {out}{' (dry run)' if a.dry_run else ''}")
    monitor = None
    if not a.dry_run and not a.no_monitor and gpus and shutil.which("nvidia-smi"):
        monitor = subprocess.Popen(["nvidia-smi", "--query-gpu=timestamp,index,utilization.gpu,memory.used",
                                    "--format=csv", "-l", "5"], stdout=open(out / "gpu_util.csv", "w"),
                                   stderr=subprocess.DEVNULL)
    runner = Runner(jobs, gpus, a.budget_s, out, ROOT, dry_run=a.dry_run, ncores=a.cores, say=say)
    try:
        results = runner.run()
    finally:
        if monitor:
            monitor.terminate()
            monitor.wait()
    table = summary_table(results, runner)
    if not a.dry_run:
        (out / "summary.md").write_text(f"# device.py {' '.join(argv)}\n\n{table}")
        write_record(out, results, {"argv": ["benchmarks/device.py", *argv], "stages": a.stages, "gpus": gpus,
                                    "budget_s": a.budget_s, "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
                                    "wall_s": round(time.monotonic() - t0, 1)}, runner)
        if a.pack == "always" or (a.pack == "auto" and needs_pack(out)):
            say(f"packed into {pack(out)}")
        log.close()
    print(table, flush=True)
    bad = [r for r in results if r.status in ("failed", "timeout")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
