"""The device runner's plan (benchmarks/device.py builds the jobs, benchmarks/device_run.py runs them): a job is
one command of one stage; the scheduler starts jobs in order as their dependencies finish, places each GPU job
on the GPUs with the most room left (a job may take a share of a GPU; a gang starts together), gives each a
timeout from what is left of the budget, and skips what would start too late; every command's environment
has NVLink multicast off.

Standard library only: this runs before any wheel is installed, and on the CPU box in tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

SAFE_ENV = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
# what every command runs under besides: unbuffered output, gsplat's kernel build for Hopper
RUN_ENV = {"PYTHONUNBUFFERED": "1", "MAX_JOBS": "16", "TORCH_CUDA_ARCH_LIST": "9.0"}
SITE = "/tmp/site"  # the carried wheels, installed once per machine
END_RESERVE_S = 10  # seconds of the budget kept for the summary and the archive


class SkipJob(Exception):
    """Raised by a job's argv function when, at its start, the job should not run (the reason is recorded)."""


@dataclass
class Job:
    """One command of one stage. `argv` is a list, or a function of the seconds left when it starts (a
    learning run sizes its minutes from it); `gpus` GPUs each at `share` of its capacity (0 = a CPU job)."""

    name: str
    stage: str
    argv: list[str] | Callable[[float], list[str]]
    gpus: int = 0
    share: float = 1.0
    needs: tuple[str, ...] = ()  # jobs that must have finished with rc 0 (else this one is skipped)
    after: tuple[str, ...] = ()  # jobs that must have finished, whatever their rc
    max_s: float | None = None  # timeout cap
    reserve_s: float = 0.0  # seconds of the budget left to what comes after this job
    min_s: float = 30.0  # skipped when its timeout would be shorter
    always: bool = False  # runs even over budget, for max_s (a report)
    marker: str | None = None  # a file: there -> the job is "made before"; rc 0 -> written
    log: str | None = None  # relative to the output folder (default STAGE/NAME.log)
    requires: tuple[str, ...] = ()  # paths that must exist when it starts (carried data), else skipped
    fresh: tuple[str, ...] = ()  # folders removed before it starts (a trainer would resume from them)
    gang: str = ""  # GPU jobs of one gang start together or not at all (runs compared at equal minutes)
    nice: bool = False
    pin: bool = True  # on a host of 2+ GPUs a 1-GPU job runs on its GPU's share of the cores
    env: dict = field(default_factory=dict)
    collect: list[tuple[str, str]] = field(default_factory=list)  # (source, destination) copied afterwards
    headline: Callable[[], str] | None = None  # one line for the summary table, read from the outputs

    def command(self, left: float) -> list[str]:
        return list(self.argv(left) if callable(self.argv) else self.argv)

    def log_path(self) -> str:
        return self.log or f"{self.stage}/{self.name}.log"


@dataclass
class Start:
    job: Job
    gpus: list[int]
    timeout: float
    argv: list[str]


@dataclass
class Skip:
    job: Job
    reason: str


class Scheduler:
    """Which jobs start now, on which GPUs, for how long. Pure bookkeeping (no processes): `due(now)` returns
    the starts and skips at `now` seconds into the run; `finish(name, rc)` frees the job's GPUs.

    Jobs start in the order given once their `needs` and `after` have finished; a GPU job waiting for room
    on the GPUs holds back the GPU jobs after it (so a 2-GPU job is not starved by 1-GPU jobs), one waiting
    for its dependencies does not; CPU jobs never wait for GPUs. A GPU job takes the GPUs with the most free capacity
    (ties: the order of --gpus)."""

    def __init__(self, jobs: list[Job], gpus: list[int], budget_s: float, end_reserve_s: float = END_RESERVE_S,
                 check_paths: bool = True):
        names = [j.name for j in jobs]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"job names must be unique: {sorted(dup)}")
        known = set(names)
        for j in jobs:
            missing = [d for d in (*j.needs, *j.after) if d not in known]
            if missing:
                raise ValueError(f"job {j.name}: depends on unknown job(s) {missing}")
            if not 0 < j.share <= 1:
                raise ValueError(f"job {j.name}: share {j.share} is not in (0, 1]")
        self.jobs = list(jobs)
        self.gpus = list(gpus)
        self.free = {g: 1.0 for g in gpus}
        self.budget_s = budget_s
        self.end_reserve_s = end_reserve_s
        self.status: dict[str, str] = {n: "pending" for n in names}  # pending, running, done, skipped
        self.rc: dict[str, int | None] = {}
        self.placed: dict[str, list[int]] = {}
        self.check_paths = check_paths

    def left(self, now: float) -> float:
        return self.budget_s - self.end_reserve_s - now

    def unfinished(self) -> bool:
        return any(s in ("pending", "running") for s in self.status.values())

    def running(self) -> list[str]:
        return [n for n, s in self.status.items() if s == "running"]

    def _ok(self, name: str) -> bool:
        return self.status[name] == "done" and self.rc.get(name) == 0

    def _pick(self, job: Job, free: dict[int, float] | None = None) -> list[int] | None:
        free = self.free if free is None else free
        order = {g: i for i, g in enumerate(self.gpus)}
        room = [g for g in self.gpus if free[g] >= job.share - 1e-9]
        room.sort(key=lambda g: (-free[g], order[g]))
        return room[:job.gpus] if len(room) >= job.gpus else None

    def _pick_gang(self, job: Job) -> dict[str, list[int]] | None:
        """Places for every pending member of job's gang at once (None: not all fit now, or one still waits
        for its dependencies)."""
        members = [j for j in self.jobs if j.gang == job.gang and self.status[j.name] == "pending"]
        if any(self.status[d] in ("pending", "running") for j in members for d in (*j.needs, *j.after)):
            return None
        free = dict(self.free)
        out = {}
        for j in members:
            picked = self._pick(j, free)
            if picked is None:
                return None
            for g in picked:
                free[g] -= j.share
            out[j.name] = picked
        return out

    def due(self, now: float) -> list[Start | Skip]:
        out: list[Start | Skip] = []
        gpu_wait = False
        gang_places: dict[str, list[int]] = {}
        for job in self.jobs:
            if self.status[job.name] != "pending":
                continue
            deps = (*job.needs, *job.after)
            if any(self.status[d] in ("pending", "running") for d in deps):
                continue
            failed = [d for d in job.needs if not self._ok(d)]
            if failed:
                out.append(self._skip(job, f"needs {', '.join(failed)}, which did not succeed"))
                continue
            absent = [p for p in job.requires if self.check_paths and not os.path.exists(p)]
            if absent:
                out.append(self._skip(job, f"{', '.join(absent)} not there (carry it)"))
                continue
            if job.gpus > len(self.gpus):
                out.append(self._skip(job, f"needs {job.gpus} GPU(s), {len(self.gpus)} given"))
                continue
            left = self.left(now) - job.reserve_s
            timeout = left if job.max_s is None else min(left, job.max_s)
            if job.always:
                timeout = job.max_s if job.max_s is not None else max(left, job.min_s)
            elif timeout < job.min_s:
                out.append(self._skip(job, f"over budget ({max(0, int(left))} s left, needs {int(job.min_s)} s)"))
                continue
            gpus: list[int] = []
            if job.gpus:
                if gpu_wait:
                    continue
                if job.gang:
                    if job.name not in gang_places:
                        gang_places.update(self._pick_gang(job) or {})
                    picked = gang_places.get(job.name)
                else:
                    picked = self._pick(job)
                if picked is None:
                    gpu_wait = True
                    continue
                gpus = picked
            try:
                argv = job.command(self.left(now))
            except SkipJob as e:
                out.append(self._skip(job, str(e)))
                continue
            for g in gpus:
                self.free[g] -= job.share
            self.status[job.name] = "running"
            self.placed[job.name] = gpus
            out.append(Start(job, gpus, round(timeout, 1), argv))
        return out

    def _skip(self, job: Job, reason: str) -> Skip:
        self.status[job.name] = "skipped"
        return Skip(job, reason)

    def finish(self, name: str, rc: int) -> None:
        self.status[name] = "done"
        self.rc[name] = rc
        job = next(j for j in self.jobs if j.name == name)
        for g in self.placed.get(name, []):
            self.free[g] = min(1.0, self.free[g] + job.share)


def core_ranges(ncores: int, gpus: list[int]) -> dict[int, str]:
    """Each GPU's equal share of the host's cores as a taskset list ('0-7'): side by side, every GPU's
    jobs get a host of their own size (equal minutes mean equal hosts). Empty below 2 GPUs or 4 cores."""
    if len(gpus) < 2 or ncores < 2 * len(gpus):
        return {}
    per = ncores // len(gpus)
    return {g: f"{i * per}-{(i + 1) * per - 1}" for i, g in enumerate(gpus)}


def run_env(root: str, pythonpath: str = "") -> dict[str, str]:
    """What every device command runs under: RUN_ENV, the carried wheels and the checkout first on
    PYTHONPATH, multicast off (`device.py exports` prints it for the shell scripts that run beside the runner)."""
    return {**RUN_ENV, "PYTHONPATH": os.pathsep.join(x for x in (SITE, root, pythonpath) if x), **SAFE_ENV}


def job_env(base: dict, start: Start, cores: dict[int, str], root: str) -> tuple[dict, list[str]]:
    """The environment and the command prefix (nice, taskset) of a started job."""
    env = dict(base)
    env.update(run_env(root, base.get("PYTHONPATH", "")))
    prefix: list[str] = []
    if start.gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in start.gpus)
    if start.job.pin and len(start.gpus) == 1 and start.gpus[0] in cores:
        lo, hi = (int(x) for x in cores[start.gpus[0]].split("-"))
        env.setdefault("TORCHINDUCTOR_COMPILE_THREADS", str(max(1, (hi - lo + 1) // 2)))
        prefix = ["taskset", "-c", cores[start.gpus[0]]]
    if start.job.nice:
        prefix = ["nice", "-n", "19", *prefix]
    env.update(start.job.env)
    env.update(SAFE_ENV)  # last: no job turns multicast back on
    return env, prefix
