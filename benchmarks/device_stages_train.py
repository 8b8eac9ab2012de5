"""The device runner's stages that train models for their answer (benchmarks/device.py): learn (does it learn,
at equal minutes or equal steps), ddp (several GPUs of one host) and data-engine (issue 13's experiment).
The quick stages are in benchmarks/device_stages.py.
"""

from __future__ import annotations

import glob
import math

from common import ddp_variant_sets, last_line, learn_line
from device_plan import Job, SkipJob
from device_stages import PY, B, Ctx, _words

GPU_STAGES = ("speed", "before", "curve", "e2e", "parity", "gputests", "l4gm", "ddp", "data-engine")
LEARN_OVERHEAD_S = 130  # per run: ~60 s calibration (compiles) + ~70 s set-up and scoring of both clip sets


def parse_arm(spec: str) -> tuple[str, list[str]]:
    """'hd128:model.heads=4,loss.lpips_every=2' -> ('hd128', ['model.heads=4', 'loss.lpips_every=2'])."""
    name, _, sets = spec.partition(":")
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"--learn-arms: {spec!r} needs a name of letters, digits, - and _ before ':'")
    kv = [x for x in sets.split(",") if x]
    bad = [x for x in kv if "=" not in x]
    if bad:
        raise ValueError(f"--learn-arms: {spec!r}: {bad} is not key=value")
    return name, kv


def learn_minutes(left: float, reserve_s: float, waves: int) -> float:
    """Training minutes per run from the seconds left: every wave of runs (one per GPU at a time) costs its
    minutes plus LEARN_OVERHEAD_S; at most 2 minutes."""
    return round(max(0.0, min(2.0, (left - reserve_s - LEARN_OVERHEAD_S * waves) / (60 * waves))), 2)


def learn(c: Ctx) -> list[Job]:
    """gpu_learn.py per (preset, arm, seed) on a carried pack of rendered clips (--trainpack: train/, heldout/),
    each scored on the held-out clips with its family's protocol; then one table of all runs.
    Equal minutes (default): each run has a GPU to itself, all with the same training minutes (--learn-minutes,
    or what the budget leaves when the first run starts); more runs than GPUs go in waves. Equal steps
    (--learn-steps N): all runs at once, sharing the GPUs (sharing changes their speed, not their result)."""
    a = c.a
    tp = a.trainpack.rstrip("/")
    arms = [parse_arm(x) for x in a.learn_arms]
    seeds = _words(a.learn_seeds)
    runs = [(p, arm, sets, s) for p in _words(a.learn_presets) for arm, sets in arms for s in (seeds or [None])]
    ng = max(1, len(c.gpus))
    waves = math.ceil(len(runs) / ng)
    later = a.stages[a.stages.index("learn") + 1:] if "learn" in a.stages else []
    reserve = a.learn_reserve_s if a.learn_reserve_s is not None else (170 if set(later) & set(GPU_STAGES) else 0)
    fixed: dict[str, float] = {}

    def minutes(left: float) -> float:
        if "m" not in fixed:  # once, at the first run's start: every run gets the same minutes
            fixed["m"] = a.learn_minutes or learn_minutes(left, reserve, waves)
        if fixed["m"] < 0.5:
            raise SkipJob(f"{fixed['m']} training minutes would be too short ({int(left)} s left, {waves} wave(s))")
        return fixed["m"]

    jobs, names = [], []
    for i, (preset, arm, sets, seed) in enumerate(runs):
        name = f"learn-{preset}" + ("" if arm == "default" else f"-{arm}") + ("" if seed is None else f"-s{seed}")
        out, run = c.o("learn", name[6:]), c.p("learn_run", name[6:])
        extra = [*_words(a.learn_sets), *sets, *([f"seed={seed}"] if seed is not None else []),
                 *([f"loss.lpips_weights={c.lpips}"] if a.learn_lpips else [])]

        def argv(left, out=out, run=run, preset=preset, extra=extra):
            # equal steps: the trainer's deadline (gpu_learn --minutes, 3 by default) is what the budget leaves less
            # ~90 s of scoring, so that it does not end a shared run before its steps
            length = (["--steps", str(a.learn_steps), "--minutes", str(round(max(1.0, (left - reserve - 90) / 60), 2))]
                      if a.learn_steps else
                      ["--train-minutes", str(minutes(left)), "--calib-steps", str(a.calib_steps)])
            return [PY, f"{B}/gpu_learn.py", "--train", f"{tp}/train", "--heldout", f"{tp}/heldout", "--out", out,
                    "--run", run, *length, "--preset", preset, *[x for kv in extra for x in ("--set", kv)],
                    *(["--eval-fp8-attention"] if a.learn_fp8_attention else [])]

        share = 1 / math.ceil(len(runs) / ng) if a.learn_steps else 1.0
        gang = "learn" if a.learn_steps else f"learn-wave{i // ng}"  # a wave starts together, one run per GPU
        jobs.append(Job(name, "learn", argv, gpus=1, share=share, reserve_s=reserve, min_s=90, fresh=(run,), gang=gang,
                        requires=(f"{tp}/train", f"{tp}/heldout"),
                        needs=c.need("setup-compile", *(("setup-lpips",) if a.learn_lpips else ())),
                        headline=lambda out=out: learn_line(f"{out}/learn.json")))
        names.append(name)
    table = c.o("learn", "learn_table.md")
    jobs.append(Job("learn-table", "learn",
                    lambda left: [PY, f"{B}/gpu_learn.py", "--table", table,
                                  *(sorted(glob.glob(c.o("learn", "*", "learn.json"))) or [c.o("learn", "none.json")])],
                    after=tuple(names), always=True, max_s=60))
    return jobs


# -- several GPUs ------------------------------------------------------------------------------------------


def ddp(c: Ctx) -> list[Job]:
    """ddp_checks.py: scale (each preset on each world size; `base` on 2+ GPUs once per --ddp-variants),
    uneven shards with --follow, kill/resume 2 -> 2 -> 1, eval on 1 vs 2 GPUs. Jobs needing more GPUs
    than given are skipped with the reason."""
    a = c.a
    parts = _words(a.ddp_parts)
    d = c.p("ddp_data")
    jobs = []
    env = {"OMP_NUM_THREADS": "4"}
    if "scale" in parts:
        jobs.append(Job("ddp-data-even", "ddp", [PY, f"{B}/ddp_data.py", "even", f"{d}/even256", "--shards", "8",
                                                 "--per-shard", "16", "--size", "256"],
                        nice=True, marker=f"{d}/even256/.made", needs=c.need("setup-install")))
    if set(parts) & {"uneven", "resume", "eval"}:
        jobs.append(Job("ddp-data-uneven", "ddp", [PY, f"{B}/ddp_data.py", "uneven", f"{d}/uneven", "--sizes",
                                                   "24,3,1", "--size", "64"],
                        nice=True, marker=f"{d}/uneven/.made", needs=c.need("setup-install")))
    for v in a.ddp_variants:
        ddp_variant_sets(v)  # an unknown name fails here, before any device time is spent
    if "scale" in parts:
        for p in _words(a.ddp_presets):
            for n in (int(x) for x in _words(a.ddp_world)):
                for v in (a.ddp_variants if n != 1 and p == "base" else ["default"]):
                    name = f"ddp-scale-{p}-{n}-{v}"
                    jobs.append(Job(name, "ddp", [PY, f"{B}/ddp_checks.py", "scale", "--data", f"{d}/even256", "--run",
                                                  c.p("runs", f"{p}-{n}-{v}"), "--preset", p, "--world", str(n),
                                                  "--variant", v, "--steps", str(a.ddp_steps), "--size", "256",
                                                  "--lpips", c.lpips, "--timeout", "200"],
                                    gpus=n, env=env, max_s=215, min_s=60,
                                    needs=("ddp-data-even", *c.need("setup-compile", "setup-lpips")),
                                    headline=lambda name=name: last_line(c.out / "ddp" / f"{name}.log", 300)))
    uneven = f"{d}/uneven"
    checks = {
        "uneven": (["--preset", "small", "--steps", "60", "--size", "64", "--timeout", "150"], 170, ()),
        "resume": (["--preset", "small", "--size", "64", "--timeout", "120"], 400, ()),
        "eval": (["--tmp", c.p("runs"), "--timeout", "100"], 220, ("ddp-resume",)),
    }
    for part in ("uneven", "resume", "eval"):
        if part not in parts:
            continue
        extra, max_s, after = checks[part]
        run = c.p("runs", "uneven" if part == "uneven" else "resume")
        name = f"ddp-{part}"
        jobs.append(Job(name, "ddp", [PY, f"{B}/ddp_checks.py", part, "--data", uneven, "--run", run, *extra],
                        gpus=2, env=env, max_s=max_s, min_s=60,
                        needs=("ddp-data-uneven", *after, *c.need("setup-compile")),
                        headline=lambda name=name: last_line(c.out / "ddp" / f"{name}.log", 300)))
    return jobs


# -- the data engine ---------------------------------------------------------------------------------------


def data_engine(c: Ctx) -> list[Job]:
    """Issue 13's experiment (data_engine_experiment.py) from a carried prepare + cache folder (--exp; the
    device has no Blender): round 0 per seed, all at once over the GPUs; then every (arm, seed) at once,
    several per GPU (small at 64 px is launch-bound); the report always runs. train_s under sharing is
    inflated: each result records `concurrent_runs`. --de-device cpu runs it on the CPU (a check of the
    stage, not a measurement)."""
    a = c.a
    exp, work = a.exp.rstrip("/"), a.de_work
    seeds, arms = _words(a.de_seeds), _words(a.de_arms)
    cpu = a.de_device == "cpu"
    ng = max(1, len(c.gpus))
    env = {"OMP_NUM_THREADS": "2", "TORCHINDUCTOR_COMPILE_THREADS": "4"}
    X = [PY, f"{B}/data_engine_experiment.py"]
    steps = ["--steps0", str(a.de_steps0), "--steps1", str(a.de_steps1)]
    copy = (f"test -f {exp}/experiment_config.json && test -f {exp}/cache/manifest.parquet || "
            f"{{ echo 'no prepared experiment + cache in {exp}'; exit 1; }}; "
            f"rm -rf {work} && mkdir -p $(dirname {work}) && cp -r {exp} {work}")
    jobs = [Job("de-copy", "data-engine", ["bash", "-c", copy], needs=c.need("setup-install"), min_s=10)]
    gpu = 0 if cpu else 1
    r0 = []
    for s in seeds:
        r0.append(f"de-round0-s{s}")
        jobs.append(Job(r0[-1], "data-engine", [*X, "round0", "--out", work, "--seed", s, "--device", a.de_device,
                                                "--num-workers", str(a.de_workers0), *steps],
                        gpus=gpu, share=1 / math.ceil(len(seeds) / ng), pin=False, env=env,
                        needs=("de-copy", *(() if cpu else c.need("setup-compile")))))
    n = len(seeds) * len(arms)
    names = []
    for s in seeds:
        for arm in arms:
            names.append(f"de-arm-{arm}-s{s}")
            jobs.append(Job(names[-1], "data-engine",
                            [*X, "arm", "--out", work, "--arm", arm, "--seed", s, "--device", a.de_device,
                             "--render-cache", f"{work}/cache", "--num-workers", str(a.de_workers),
                             "--concurrent", str(n), *steps],
                            gpus=gpu, share=1 / math.ceil(n / ng), pin=False, env=env, needs=(f"de-round0-s{s}",)))
    report = "data-engine/report.md"
    jobs.append(Job("de-report", "data-engine", [*X, "report", "--out", work], after=tuple(names), always=True,
                    max_s=120, log=report, collect=[(f"{work}/experiment.json", "data-engine/experiment.json")],
                    headline=lambda: last_line(c.out / report, 300)))
    runs = c.o("data-engine", "runs.tgz")
    jobs.append(Job("de-runs", "data-engine",
                    ["bash", "-c", f"cd {work} && tar czf {runs} --exclude='*.pt' --exclude='*.tar' "
                                   "--exclude='events.out.*' seed*"],
                    after=("de-report",), always=True, max_s=60))
    return jobs
