"""The device runner's stages (benchmarks/device.py): each stage turns the parsed arguments into jobs
(benchmarks/device_plan.py). The commands are the measurement scripts beside this file; the data sets they
need are made by CPU jobs once per machine (a `.made` marker), while gsplat compiles.

Where each stage came from (the device suites it replaces, 2026-12-07):
  setup        device_env.sh (wheels once per machine, NVLink multicast off, random LPIPS) + every suite's
               env.txt and gsplat compile
  speed        gpu_suite.sh speed; x2_speed.sh / x2_quality.sh / x2_followup.sh GPU-0 sides (variants grouped
               by preset, one job per preset: two presets run side by side on two GPUs)
  before/curve gpu_suite.sh before / curve (an older checkout with --before-tree)
  e2e          gpu_suite.sh e2e (x2 suites' e2e sides)
  parity       gpu_suite.sh parity + fasttests, l4gm_gpu_suite.sh parity
  gputests     ddp_suite.sh gputests, x2_speed.sh / x2_quality.sh tests
  l4gm         l4gm_gpu_suite.sh speed + head dim; x2_speed / x2_quality / x2_followup l4gm inference
  learn        gpu_suite.sh learn, l4gm_gpu_suite.sh / x2_followup.sh learning runs (equal minutes),
               x2_quality.sh (equal steps per arm and seed, all at once)
  ddp          ddp_suite.sh scale / uneven / resume / eval; x2_suite.sh / x2_followup.sh DDP variants
  data-engine  data_engine_gpu.sh
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from common import l4gm_line, last_line, speed_line
from device_plan import Job

PY = "python3"
B = "benchmarks"
PYTEST = [PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts="]
PARITY_TESTS = "tests/training/test_raster_parity.py tests/training/test_fast.py tests/training/test_l4gm_gpu.py"


@dataclass
class Ctx:
    """What the builders share: the parsed arguments, the output folder, the GPUs, and the machine-wide
    folders (data sets made once per machine, run folders)."""

    a: object
    out: Path
    gpus: list[int]
    setup: set[str] = field(default_factory=set)  # the setup jobs present (a stage needs only those)

    @property
    def work(self) -> Path:
        return Path(self.a.work)

    def p(self, *parts: str) -> str:
        return str(self.work.joinpath(*parts))

    def o(self, *parts: str) -> str:
        return str(self.out.joinpath(*parts))

    def need(self, *names: str) -> tuple[str, ...]:
        return tuple(n for n in names if n in self.setup or not n.startswith("setup-"))

    @property
    def lpips(self) -> str:
        return self.p("lpips_random.pt")


def _words(s: str) -> list[str]:
    return [x for x in s.replace(",", " ").split() if x]


# -- setup -------------------------------------------------------------------------------------------------


def setup(c: Ctx) -> list[Job]:
    site = "/tmp/site"
    install = (f"[ -e {site}/.installed ] && {{ echo 'wheels installed before'; exit 0; }}; "
               "ls .whl/*.whl >/dev/null 2>&1 || { echo 'no .whl carried: using what is installed'; exit 0; }; "
               f"{PY} -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target {site} "
               f".whl/*.whl && touch {site}/.installed")
    env = ("date -u; nvidia-smi --query-gpu=index,name,memory.total,driver_version,clocks.max.sm --format=csv; "
           "nvidia-smi topo -m; "
           f"{PY} -c \"import torch, numpy; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', "
           "torch.backends.cudnn.version(), 'numpy', numpy.__version__, torch.cuda.get_device_name() if "
           "torch.cuda.is_available() else 'no GPU')\"; "
           f"{PY} -c \"import gsplat, webdataset; print('gsplat', gsplat.__version__, 'webdataset', "
           "webdataset.__version__)\"; "
           "echo cores $(nproc --all); free -g | head -2; uptime; git log -1 --format='tree at %h %s'; "
           "git status --short | head -20")
    return [
        Job("setup-install", "setup", ["bash", "-c", install], min_s=5),
        Job("setup-env", "setup", ["bash", "-c", env], needs=("setup-install",), log="env.txt", min_s=5, max_s=60),
        Job("setup-compile", "setup",
            [PY, "-c", "from gsplat.cuda._backend import _C; print('gsplat CUDA extension:', _C)"],
            needs=("setup-install",), min_s=5),
        Job("setup-lpips", "setup", [PY, f"{B}/common.py", "random-lpips", c.lpips], needs=("setup-install",),
            marker=c.lpips, min_s=5, max_s=120),
    ]


# -- speed, before, curve, e2e -----------------------------------------------------------------------------


def _speed_prep(c: Ctx) -> Job:
    data = c.p("speed_data")
    return Job("speed-prep", "speed", [PY, f"{B}/bench_speed.py", "prep", "--data", data], nice=True,
               marker=f"{data}/.made", needs=c.need("setup-install"))


def _groups(variants: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for v in variants:
        out.setdefault(v.split(":")[0], []).append(v)
    return out


def speed(c: Ctx) -> list[Job]:
    """bench_speed.py run: one job per preset among --variants (its variants, its --split specs); the first
    job also runs the parts that are no variant's (hw, attn, infer, profile)."""
    a = c.a
    parts = _words(a.speed_parts)
    groups = _groups(a.variants) if "train" in parts or "split" in parts else {}
    splits = _groups(a.split)
    solo = [p for p in parts if p not in ("train", "split")]
    if not groups:
        groups = {"infer" if parts == ["infer"] else "run": []}
    # hw, attn, infer and inferprof make their own inputs: only the training parts read the replayed batches
    data_free = set(parts) <= {"hw", "attn", "infer", "inferprof"}
    jobs = [] if data_free else [_speed_prep(c)]
    for i, (name, vs) in enumerate(groups.items()):
        mine = [p for p in parts
                if (p in solo and i == 0) or (p == "train" and vs) or (p == "split" and splits.get(name))]
        if not mine:
            continue
        out = c.o("speed", f"after-{name}.json")
        argv = [PY, f"{B}/bench_speed.py", "run", "--data", c.p("speed_data"), "--out", out, "--parts", ",".join(mine),
                "--steps", str(a.speed_steps)]
        if "train" in mine:
            argv += ["--variants", *vs]
        if "split" in mine:
            argv += ["--split", *splits[name]]
        if "profile" in mine:
            argv += ["--profile", *a.profile]
        if "infer" in mine or "inferprof" in mine:  # inferprof profiles the first mode at the largest view count
            argv += ["--infer-modes", a.infer_modes, "--infer-views", a.infer_views, "--infer-heads", a.infer_heads,
                     "--infer-tiles", a.infer_tiles, "--infer-packed", a.infer_packed, "--infer-attn", a.infer_attn, "--infer-lin", a.infer_lin]
        jobs.append(Job(f"speed-{name}", "speed", argv, gpus=1,
                        needs=(*(() if data_free else ("speed-prep",)), *c.need("setup-compile")),
                        headline=lambda out=out: speed_line(out)))
    return jobs


def before(c: Ctx) -> list[Job]:
    out = c.o("before", "before.json")
    return [_speed_prep(c), Job(
        "before", "before", [PY, f"{B}/bench_speed.py", "run", "--tree", c.a.before_tree, "--data", c.p("speed_data"),
                             "--out", out, "--parts", "train,split", "--variants", *c.a.before_variants,
                             "--split", *c.a.split, "--steps", str(c.a.speed_steps)],
        gpus=1, needs=("speed-prep", *c.need("setup-compile")), requires=(c.a.before_tree,),
        headline=lambda: speed_line(out))]


def curve(c: Ctx) -> list[Job]:
    jobs = [_speed_prep(c)]
    for name, tree in (("curve-before", c.a.before_tree), ("curve-after", None)):
        out = c.o("curve", f"{name}.json")
        argv = [PY, f"{B}/bench_speed.py", "run", *(["--tree", tree] if tree else []), "--data", c.p("speed_data"),
                "--out", out, "--parts", "curve", "--curve", *c.a.curve, "--curve-steps", str(c.a.curve_steps)]
        jobs.append(Job(name, "curve", argv, gpus=1, needs=("speed-prep", *c.need("setup-compile")),
                        requires=(tree,) if tree else (), headline=lambda out=out: speed_line(out)))
    return jobs


def e2e(c: Ctx) -> list[Job]:
    """Real lrm4d-layout shards (with member index): the trainer's loader alone per worker count, then
    `python -m training` reading them (compare its samples/s and data wait with the replayed-batch speed)."""
    data, run = c.p("lrm4d_shards"), c.p("e2e_run")
    loader = c.o("e2e", "loader.json")
    metrics = c.o("e2e", "e2e_metrics.jsonl")
    return [
        Job("e2e-prep", "e2e", [PY, f"{B}/bench_speed.py", "prep-lrm4d", "--data", data], marker=f"{data}/.made",
            needs=c.need("setup-install")),
        Job("e2e-loader", "e2e", [PY, f"{B}/bench_speed.py", "loader", "--data", data, "--out", loader, "--workers",
                                  c.a.loader_workers, "--batches", str(c.a.loader_batches)],
            gpus=1, needs=("e2e-prep", *c.need("setup-install")), headline=lambda: last_line(loader, 300)),
        Job("e2e-train", "e2e", [PY, "-m", "training", "--shards", data, "--out", run, "--preset", c.a.e2e_preset,
                                 "--steps", str(c.a.e2e_steps), "--log-every", "10", "--grid-every", "0",
                                 "--ckpt-every", "100000", "--lpips-weights", c.lpips],
            gpus=1, needs=("e2e-prep", *c.need("setup-compile", "setup-lpips")), after=("e2e-loader",), reserve_s=20,
            fresh=(run,), collect=[(f"{run}/metrics.jsonl", "e2e/e2e_metrics.jsonl")],
            headline=lambda: last_line(metrics, 300)),
    ]


# -- tests -------------------------------------------------------------------------------------------------


def _tests(c: Ctx, stage: str, args: str, max_s: float) -> list[Job]:
    log = f"{stage}/{stage}.txt"
    return [Job(stage, stage, [*PYTEST, *args.split()], gpus=1, needs=c.need("setup-compile"), max_s=max_s, min_s=60,
                log=log, headline=lambda: last_line(c.out / log))]


def gputests(c: Ctx) -> list[Job]:
    return _tests(c, "gputests", c.a.tests, 240)


def parity(c: Ctx) -> list[Job]:
    return _tests(c, "parity", PARITY_TESTS, 240)


# -- the L4GM family ---------------------------------------------------------------------------------------


def l4gm(c: Ctx) -> list[Job]:
    """bench_l4gm_gpu.py per preset (training step, 16-frame inference per mode), and beside it (2+ GPUs) a
    preset's head-dim variants."""
    a = c.a
    out = c.o("l4gm", "l4gm_speed.json")
    argv = [PY, f"{B}/bench_l4gm_gpu.py", "--out", out, "--presets", a.l4gm_presets, "--infer-modes",
            a.l4gm_infer_modes, "--frames", str(a.l4gm_frames), *(["--infer-only"] if a.l4gm_infer_only else []),
            *shlex.split(a.l4gm_args)]
    jobs = [Job("l4gm-speed", "l4gm", argv, gpus=1, needs=c.need("setup-compile"), min_s=60,
                headline=lambda: l4gm_line(out), **({"max_s": a.l4gm_max_s} if a.l4gm_max_s else {}))]
    if a.l4gm_headdim:
        hd = c.o("l4gm", "l4gm_headdim.json")
        jobs.append(Job("l4gm-headdim", "l4gm", [PY, f"{B}/bench_l4gm_gpu.py", "--out", hd, "--only-variants",
                                                 "--variants", a.l4gm_headdim],
                        gpus=1, needs=c.need("setup-compile"), min_s=60, headline=lambda: l4gm_line(hd)))
    return jobs
