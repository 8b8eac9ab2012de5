"""The device runner's executor (benchmarks/device.py): runs the planned jobs (benchmarks/device_plan.py) as
commands in their own process groups, one log each under the output folder, kills a job's whole process tree
at its timeout, copies what a job leaves elsewhere, and says what started where and how it ended; with
dry_run it prints each command in the order and place it would start instead.

Standard library only (and benchmarks/common.py).
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from common import descendants, proc_start
from device_plan import Job, Scheduler, Skip, Start, core_ranges, job_env


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
    """SIGTERM to the job, its process group and every process below it when it timed out (torchrun's ranks
    run in sessions of their own; a learning run's loader workers), then SIGKILL to what is left after 10 s.
    A process is signalled only while it is the one seen at first (same pid, same start time)."""
    below = {q: proc_start(q) for q in descendants(p.pid)}
    _signal(p, below, signal.SIGTERM)
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        pass
    _signal(p, below, signal.SIGKILL)
    p.wait()


def _signal(p: subprocess.Popen, below: dict[int, int | None], sig: int) -> None:
    targets = [q for q, start in below.items() if start is not None and proc_start(q) == start]
    if p.poll() is None:
        targets.append(p.pid)
    for q in targets:
        try:
            os.kill(q, sig)
        except ProcessLookupError:
            pass
    try:
        os.killpg(p.pid, sig)  # the group's id is not reused while any member lives
    except (ProcessLookupError, PermissionError):
        pass


def _copy(src: str, dst: Path) -> None:
    s = Path(src)
    if not s.exists():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    if s.is_dir():
        shutil.copytree(s, dst, dirs_exist_ok=True)
    else:
        shutil.copy2(s, dst)
