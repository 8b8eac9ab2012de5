"""The device runner's engine (benchmarks/device.py builds the jobs): a job is one command of one stage; the
scheduler starts jobs in order as their dependencies finish, places each GPU job on the GPUs with the most
room left (a job may take a share of a GPU), gives each a timeout from what is left of the budget, and skips
what would start too late; the executor runs the commands in their own process groups, one log each under
the output folder, and ends with a summary table and, when more files were written than a device call
brings back, one results archive.

Standard library only (and benchmarks/common.py): this runs before any wheel is installed, and on the CPU box
in tests.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from common import descendants, kill_tree

# NVLink multicast off in NCCL, PyTorch and NVSHMEM, in every command: a program using it can put the host's
# shared GPUs out of service (the device tool's KINDS.md)
SAFE_ENV = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
# what every command runs under besides: unbuffered output, gsplat's kernel build for Hopper
RUN_ENV = {"PYTHONUNBUFFERED": "1", "MAX_JOBS": "16", "TORCH_CUDA_ARCH_LIST": "9.0"}
SITE = "/tmp/site"  # the carried wheels, installed once per machine
END_RESERVE_S = 10  # seconds of the budget kept for the summary and the archive
MAX_BACK = 8  # files a device call brings back
KEEP = ("summary.md", "runner.log", "run.json", "env.txt")  # left beside the archive


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


def job_env(base: dict, start: Start, cores: dict[int, str], root: str) -> tuple[dict, list[str]]:
    """The environment and the command prefix (nice, taskset) of a started job."""
    env = dict(base)
    env.update(RUN_ENV)
    env["PYTHONPATH"] = os.pathsep.join(x for x in (SITE, root, base.get("PYTHONPATH", "")) if x)
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


@dataclass
class Result:
    job: Job
    status: str  # ok, failed, timeout, skipped, made before
    rc: int | None = None
    start_s: float = 0.0
    seconds: float = 0.0
    gpus: list[int] = field(default_factory=list)
    cmd: str = ""
    note: str = ""


class Runner:
    """Runs a job list for real (or, with dry_run, prints each command in the order and place it would
    start: every running job is taken as finished once nothing more can start)."""

    def __init__(self, jobs: list[Job], gpus: list[int], budget_s: float, out: Path, root: Path,
                 dry_run: bool = False, ncores: int | None = None, say=print):
        self.sched = Scheduler(jobs, gpus, budget_s, check_paths=not dry_run)
        self.out, self.root, self.dry_run = Path(out), Path(root), dry_run
        ncores = ncores or os.cpu_count() or 1
        self.cores = core_ranges(ncores, gpus) if shutil.which("taskset") or dry_run else {}
        self.results: dict[str, Result] = {}
        self.t0 = time.monotonic()
        self.say = say

    def now(self) -> float:
        return 0.0 if self.dry_run else time.monotonic() - self.t0

    def run(self) -> list[Result]:
        procs: dict[str, tuple[subprocess.Popen, float, object]] = {}
        wave = 0
        while self.sched.unfinished():
            acts = self.sched.due(self.now())
            if self.dry_run and acts:
                wave += 1
            for act in acts:
                if isinstance(act, Skip):
                    self.results[act.job.name] = Result(act.job, "skipped", note=act.reason)
                    self.say(f"skip {act.job.stage}/{act.job.name}: {act.reason}")
                    continue
                self._start(act, procs, wave)
            if self.dry_run:
                if not acts:
                    for name in self.sched.running():
                        self.sched.finish(name, 0)
                continue
            self._poll(procs)
            time.sleep(0.2)
        return [self.results[j.name] for j in self.sched.jobs]

    def _start(self, st: Start, procs: dict, wave: int) -> None:
        job = st.job
        env, prefix = job_env(dict(os.environ), st, self.cores, str(self.root))
        argv = prefix + st.argv
        shown = " ".join(shlex.quote(a) for a in argv)
        vis = f"CUDA_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES']} " if st.gpus else ""
        res = Result(job, "running", start_s=round(self.now(), 1), gpus=st.gpus, cmd=vis + shown)
        self.results[job.name] = res
        log = self.out / job.log_path()
        if self.dry_run:
            res.status = "planned"
            cmd = shown if argv[-3:-1] != ["bash", "-c"] else " ".join(argv[:-1]) + f" '{argv[-1]}'"
            self.say(f"[wave {wave}] {job.stage}/{job.name} gpus={st.gpus or '-'}"
                     f"{' share=' + str(round(job.share, 3)) if job.gpus and job.share < 1 else ''} "
                     f"timeout={int(st.timeout)}s > {job.log_path()}"
                     f"{' (removes ' + ' '.join(job.fresh) + ' first)' if job.fresh else ''}"
                     f"{' (skipped when ' + job.marker + ' exists)' if job.marker else ''}\n    {vis}{cmd}")
            return
        if job.marker and Path(job.marker).exists():
            res.status, res.rc, res.note = "made before", 0, job.marker
            self.sched.finish(job.name, 0)
            self.say(f"{job.stage}/{job.name}: made before ({job.marker})")
            return
        for d in job.fresh:
            shutil.rmtree(d, ignore_errors=True)
        log.parent.mkdir(parents=True, exist_ok=True)
        fh = open(log, "ab")
        fh.write(f"$ {vis}{shown}\n".encode())
        fh.flush()
        self.say(f"start {job.stage}/{job.name} on {'GPU ' + ','.join(map(str, st.gpus)) if st.gpus else 'CPU'}, "
                 f"timeout {int(st.timeout)} s")
        try:
            p = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=self.root,
                                 process_group=0)
        except OSError as e:
            fh.write(f"could not start: {e}\n".encode())
            fh.close()
            res.status, res.rc, res.note = "failed", 127, str(e)
            self.sched.finish(job.name, 127)
            return
        procs[job.name] = (p, time.monotonic() + st.timeout, fh)

    def _poll(self, procs: dict) -> None:
        for name, (p, deadline, fh) in list(procs.items()):
            rc = p.poll()
            timed_out = rc is None and time.monotonic() > deadline
            if timed_out:
                _kill_group(p)
                rc = 124
            if rc is None:
                continue
            fh.close()
            del procs[name]
            res = self.results[name]
            res.rc = rc
            res.seconds = round(self.now() - res.start_s, 1)
            res.status = "ok" if rc == 0 else "timeout" if timed_out else "failed"
            job = res.job
            if rc == 0 and job.marker:
                Path(job.marker).parent.mkdir(parents=True, exist_ok=True)
                Path(job.marker).touch()
            for src, dst in job.collect:
                _copy(src, self.out / dst)
            self.sched.finish(name, rc)
            self.say(f"end {job.stage}/{name}: {res.status} (rc {rc}) after {res.seconds} s"
                     f"{': ' + self.headline(res) if job.headline else ''}")

    def headline(self, res: Result) -> str:
        if res.job.headline is None or res.status in ("skipped", "planned"):
            return res.note
        try:
            return res.job.headline()
        except Exception as e:  # noqa: BLE001 (a summary line must not end the run)
            return f"no headline ({type(e).__name__}: {e})"


def _kill_group(p: subprocess.Popen) -> None:
    """SIGTERM to the job, its process group and every process below it (torchrun's ranks run in sessions of
    their own; a learning run's loader workers), then SIGKILL to what is left after 10 s."""
    below = descendants(p.pid)
    kill_tree(p.pid, signal.SIGTERM)
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        pass
    for q in [*below, *descendants(p.pid)]:
        try:
            os.kill(q, signal.SIGKILL)
        except ProcessLookupError:
            pass
    kill_tree(p.pid, signal.SIGKILL)
    p.wait()


def _copy(src: str, dst: Path) -> None:
    s = Path(src)
    if not s.exists():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    if s.is_dir():
        shutil.copytree(s, dst, dirs_exist_ok=True)
    else:
        shutil.copy2(s, dst)


def summary_table(results: list[Result], runner: Runner | None = None) -> str:
    """The run as a Markdown table: stage, job, GPUs, start, seconds, status, headline."""
    rows = ["| stage | job | GPUs | start s | seconds | status | headline |", "|---|---|---|---|---|---|---|"]
    for r in results:
        head = runner.headline(r) if runner else r.note
        head = (head or "").replace("|", "/").replace("\n", " ")[:400]
        status = r.status + (f" (rc {r.rc})" if r.rc not in (None, 0) else "")
        rows.append(f"| {r.job.stage} | {r.job.name} | {','.join(map(str, r.gpus)) or '-'} | {r.start_s} | "
                    f"{r.seconds} | {status} | {head} |")
    return "\n".join(rows) + "\n"


def files_under(out: Path) -> list[Path]:
    return sorted(p for p in Path(out).rglob("*") if p.is_file() or p.is_symlink())


def needs_pack(out: Path) -> bool:
    """More files than a device call brings back, or one deeper than two folders ($OUT/a/b/file)."""
    files = files_under(out)
    return len(files) > MAX_BACK or any(len(p.relative_to(out).parts) > 3 for p in files)


def pack(out: Path) -> Path:
    """Everything under `out` but KEEP into out/results.tgz (written outside first: tar would read itself)."""
    out = Path(out)
    tmp = Path("/tmp") / f"device_results_{os.getpid()}.tgz"
    with tarfile.open(tmp, "w:gz") as tf:
        for p in sorted(out.iterdir()):
            if p.name not in KEEP and p.name != "results.tgz":
                tf.add(p, arcname=p.name)
    for p in list(out.iterdir()):
        if p.name not in KEEP and p.name != "results.tgz":
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    dest = out / "results.tgz"
    shutil.move(str(tmp), dest)
    return dest


def write_record(out: Path, results: list[Result], meta: dict, runner: Runner | None) -> None:
    """run.json: what ran (the runner's arguments, the host) and every job's command, place, time and result."""
    rows = [{"stage": r.job.stage, "job": r.job.name, "gpus": r.gpus, "start_s": r.start_s, "seconds": r.seconds,
             "status": r.status, "rc": r.rc, "cmd": r.cmd, "headline": runner.headline(r) if runner else r.note}
            for r in results]
    (Path(out) / "run.json").write_text(json.dumps({**meta, "jobs": rows}, indent=1))
