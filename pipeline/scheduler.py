"""Ray scheduling of render work: a pool of render-worker actors over many shards.

The only module that imports ray (STYLE.md §5). The work itself is `render.worker.RenderWorker`
and `pipeline.shards.ShardWriter`, the same pieces `pipeline.assembly.render_shard` uses without Ray;
this layer only schedules them:

- one bpy per actor (`cpus_per_worker` CPUs reserved, Blender's thread count set to match);
- one sample in flight per actor, so back-pressure is the pool size and at most one sample's bytes
  per actor travel through the object store;
- several shards open at once, each assembled by the driver and committed as DESIGN.md §4 says;
- an actor that dies (crash) or holds a sample past `asset_timeout_s` (hang) is killed and replaced,
  the sample retried up to `max_attempts` times, then written as a failed row with its reason;
- actors are recycled after `recycle_after` samples or above `recycle_rss_gb` of resident memory.

Fault injection for tests (documented, test-only): `PIPELINE_TEST_FAULTS="crash=UID,hang=UID2"`
in the driver's environment makes the actor that gets that uid really die (`os._exit`) or really
hang (sleep forever). With `PIPELINE_TEST_FAULTS_ONCE_DIR=DIR`, each fault fires once only (a marker
file in DIR records that it fired), so the retry succeeds.
"""

from __future__ import annotations

import collections
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from render.presets import RenderSpec
from render.result import SampleResult

log = logging.getLogger(__name__)

FAULTS_ENV = "PIPELINE_TEST_FAULTS"
FAULTS_ONCE_ENV = "PIPELINE_TEST_FAULTS_ONCE_DIR"


@dataclass
class PoolConfig:
    address: str | None = None         # None: a local Ray instance on this machine; 'auto' or HOST:PORT joins a cluster
    workers: int | None = None         # render actors; None: as many as the cluster's CPUs hold at cpus_per_worker each
    cpus_per_worker: int = 1           # CPUs reserved per actor = Blender threads; Cycles on CPU scales ~linearly
    memory_per_worker_gb: float = 1.5  # Ray memory reservation per actor; one bpy with a typical asset stays under it
    asset_timeout_s: float = 900.0     # a sample held longer than this is a hang: kill the actor (15 min >> any sane asset)
    max_attempts: int = 2              # tries per sample when its actor crashes or hangs; deterministic errors are not retried
    recycle_after: int = 200           # samples per actor before it is replaced; caps slow leaks in bpy
    recycle_rss_gb: float = 6.0        # an actor above this resident memory is replaced after its current sample
    max_shards_open: int = 2           # shards assembled at once: keeps workers busy across a shard boundary
    cache_dir: str | None = None       # Objaverse cache for rows whose file must be fetched (default ~/.objaverse)
    num_cpus: int | None = None        # CPUs of a local instance; None: this machine's
    progress: bool = True              # tqdm bar on stderr

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {self.workers}")
        if self.cpus_per_worker < 1:
            raise ValueError(f"--cpus-per-worker must be >= 1, got {self.cpus_per_worker}")
        if self.asset_timeout_s <= 0:
            raise ValueError(f"--asset-timeout must be > 0 seconds, got {self.asset_timeout_s}")
        if self.max_attempts < 1:
            raise ValueError(f"--max-attempts must be >= 1, got {self.max_attempts}")
        if self.recycle_after < 1:
            raise ValueError(f"--recycle-after must be >= 1, got {self.recycle_after}")
        if self.max_shards_open < 1:
            raise ValueError(f"max_shards_open must be >= 1, got {self.max_shards_open}")


def parse_faults(env: Mapping[str, str]) -> dict[str, str]:
    """`crash=UID,hang=UID2` -> {UID: 'crash', UID2: 'hang'}."""
    raw = env.get(FAULTS_ENV, "").strip()
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        kind, _, uid = part.partition("=")
        if kind not in ("crash", "hang") or not uid:
            raise ValueError(f"{FAULTS_ENV}: bad entry {part!r}; expected crash=UID or hang=UID")
        out[uid] = kind
    return out


class RenderActorImpl:
    """What runs inside one Ray actor process: one RenderWorker (one bpy) for many samples."""

    def __init__(self, spec: dict[str, Any], threads: int, cache_dir: str | None,
                 faults: dict[str, str], faults_once_dir: str | None):
        from contracts import scratch

        scratch.clean_stale()  # on this node, before this process loads bpy
        from render.worker import RenderWorker

        self.worker = RenderWorker(RenderSpec.from_dict(spec), threads=threads)
        self.cache_dir = cache_dir
        self.faults = faults
        self.faults_once_dir = faults_once_dir
        self.done = 0

    def _maybe_fault(self, uid: str) -> None:
        kind = self.faults.get(uid)
        if kind is None:
            return
        if self.faults_once_dir:
            marker = Path(self.faults_once_dir) / f"{kind}-{uid}"
            if marker.exists():
                return
            marker.touch()
        log.warning("test fault injection: %s on %s", kind, uid)
        if kind == "crash":
            os._exit(17)  # a real process death, as a segfaulting importer would cause
        while True:  # a real hang: the driver's timeout must kill this process
            time.sleep(3600)

    def render(self, row: dict[str, Any]) -> tuple[SampleResult, dict[str, Any]]:
        from pipeline.assembly import render_row

        self._maybe_fault(str(row["uid"]))
        result = render_row(self.worker, row, self.cache_dir)
        self.done += 1
        return result, {"rss": _rss_bytes(), "pid": os.getpid(), "node": _node_id(), "done": self.done}

    def close(self) -> None:
        self.worker.close()


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


# ---------------------------------------------------------------------------------------------
# Driver side


def init_ray(address: str | None, num_cpus: int | None = None) -> None:
    """Connect to a cluster (`auto`, HOST:PORT, or RAY_ADDRESS as set inside a Ray job) or start a
    local instance sized to this machine. A local instance listens on loopback only."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address is None and not os.environ.get("RAY_ADDRESS"):
        # Ray maps 127.0.0.1 to the primary interface unless clusters are "disabled"; a local,
        # single-machine instance needs no other address, so keep it on loopback.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    if ray.is_initialized():
        return
    if address is None and not os.environ.get("RAY_ADDRESS"):
        # No prestarted idle task workers: the pool starts its own actors, and on a small machine the
        # idle ones only take memory and CPU from Blender. Workers at niceness 0, not Ray's 15: the
        # render actors are this instance's work, and at 15 a sample took ~5% longer than in a plain
        # process while at 0 it took the same (BENCHMARKS.md, Ray scheduling). A cluster's nodes take
        # theirs from `ray start` (RAY_worker_niceness=0 ray start ...).
        system = {"enable_worker_prestart": False, "prestart_worker_first_driver": False}
        if "RAY_worker_niceness" not in os.environ:  # the user's (or a benchmark's) choice wins
            system["worker_niceness"] = 0
        ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, logging_level=logging.WARNING,
                 log_to_driver=True, _system_config=system)
    else:
        ray.init(address=address or "auto", logging_level=logging.WARNING, log_to_driver=True)


@dataclass
class _Task:
    shard: int
    row: dict[str, Any]
    attempt: int
    actor: Any
    t0: float


class RenderPool:
    """Render the rows of many shards with a pool of actors; commit each shard as it completes."""

    def __init__(self, spec: RenderSpec, out_dir: str | Path, cfg: PoolConfig):
        import ray

        self.ray = ray
        self.spec = spec
        self.out_dir = out_dir  # a folder or an object-store URL, as given (Path() would mangle a URL)
        self.cfg = cfg
        self.faults = parse_faults(os.environ)
        self.faults_once_dir = os.environ.get(FAULTS_ONCE_ENV)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.n_workers = cfg.workers or max(1, cpus // cfg.cpus_per_worker)
        if cfg.workers and cfg.workers * cfg.cpus_per_worker > cpus:
            log.warning("asked for %d workers x %d CPUs but the cluster has %d CPUs: some actors will wait",
                        cfg.workers, cfg.cpus_per_worker, cpus)
        self._actor_cls = ray.remote(RenderActorImpl).options(
            num_cpus=cfg.cpus_per_worker, memory=int(cfg.memory_per_worker_gb * 2**30), max_restarts=0,
            max_concurrency=1)
        self.actors: list[Any] = []
        self.counts: collections.Counter[str] = collections.Counter()

    # -- actors -----------------------------------------------------------------------------
    def _new_actor(self) -> Any:
        actor = self._actor_cls.remote(self.spec.to_dict(), self.cfg.cpus_per_worker, self.cfg.cache_dir,
                                       self.faults, self.faults_once_dir)
        self.counts["actors_started"] += 1
        return actor

    def _retire(self, actor: Any, graceful: bool) -> None:
        if graceful:
            try:
                self.ray.get(actor.close.remote(), timeout=30)
            except Exception as exc:  # a dying actor: nothing to save, kill it below
                log.debug("actor close failed: %s", exc)
        self.ray.kill(actor, no_restart=True)

    # -- main loop ----------------------------------------------------------------------------
    def run(self, shards: Mapping[int, list[dict[str, Any]]], on_commit: Callable[[int, Any], None] | None = None,
            retry: Mapping[int, set[str]] | None = None) -> dict[int, Any]:
        """Render every row of `shards` (shard -> rows) and commit each shard through one ShardAssembler
        (pipeline/assembly.py; `retry`: shard -> keys re-rendered into that committed shard); return
        shard -> stats. `self.counts` gets the actors' events and the assembler's sample counts."""
        from pipeline.assembly import ShardAssembler

        order = sorted(shards)
        total = sum(len(shards[s]) for s in order)
        queue: collections.deque[tuple[int, dict[str, Any], int]] = collections.deque()
        next_shard = 0
        inflight: dict[Any, _Task] = {}
        idle = [self._new_actor() for _ in range(min(self.n_workers, max(total, 1)))]
        self.actors = list(idle)
        assembler = ShardAssembler(self.out_dir, {"spec": self.spec.to_dict(), "scheduler": "ray",
                                                  "workers": self.n_workers},
                                   retry=retry, on_commit=on_commit, total=total, progress=self.cfg.progress)

        def open_more() -> None:
            nonlocal next_shard
            while next_shard < len(order) and len(assembler.pending) < self.cfg.max_shards_open:
                s = order[next_shard]
                next_shard += 1
                assembler.open(s, len(shards[s]))
                queue.extend((s, r, 1) for r in shards[s])

        def give_up(task: _Task, reason: str, detail: str) -> None:
            from contracts.uids import sample_key

            row = task.row
            key = sample_key(row["uid"], int(row["clip"]))
            res = SampleResult.problem(row["uid"], int(row["clip"]), key, reason,
                                       f"{detail} (after {task.attempt} attempt(s))",
                                       time.perf_counter() - task.t0, stats={"attempts": task.attempt})
            assembler.add(task.shard, res)

        def lost(task: _Task, reason: str, detail: str) -> None:
            """The actor died or hung with this task: replace the actor, retry or give up."""
            self.counts[reason] += 1
            if task.actor in self.actors:
                self.actors.remove(task.actor)
            fresh = self._new_actor()
            self.actors.append(fresh)
            idle.append(fresh)
            if task.attempt < self.cfg.max_attempts:
                log.warning("%s on %s (attempt %d/%d): retrying on a fresh worker", reason, task.row["uid"],
                            task.attempt, self.cfg.max_attempts)
                queue.appendleft((task.shard, task.row, task.attempt + 1))
            else:
                log.error("%s on %s: giving up after %d attempt(s)", reason, task.row["uid"], task.attempt)
                give_up(task, reason, detail)

        try:
            open_more()
            while queue or inflight:
                while queue and idle:
                    s, row, attempt = queue.popleft()
                    actor = idle.pop()
                    ref = actor.render.remote(row)
                    inflight[ref] = _Task(s, row, attempt, actor, time.perf_counter())
                if not inflight:
                    continue
                ready, _ = self.ray.wait(list(inflight), num_returns=1, timeout=1.0)
                for ref in ready:
                    task = inflight.pop(ref)
                    try:
                        result, info = self.ray.get(ref)
                    except (self.ray.exceptions.RayActorError, self.ray.exceptions.WorkerCrashedError) as exc:
                        self._retire(task.actor, graceful=False)
                        msg = " ".join(str(exc).split())[:400]  # Ray's message: exit code, or the constructor's error
                        lost(task, "worker_crashed", f"render worker died: {type(exc).__name__}: {msg}")
                        continue
                    if task.attempt > 1:
                        result.stats["attempts"] = task.attempt
                    result.stats["worker_node"] = info["node"]
                    result.stats["worker_pid"] = info["pid"]
                    assembler.add(task.shard, result)
                    if info["done"] >= self.cfg.recycle_after or info["rss"] > self.cfg.recycle_rss_gb * 2**30:
                        log.info("recycling worker pid %d after %d samples at %.2f GB RSS", info["pid"],
                                 info["done"], info["rss"] / 2**30)
                        self.counts["recycled"] += 1
                        self._retire(task.actor, graceful=True)
                        self.actors.remove(task.actor)
                        task.actor = self._new_actor()
                        self.actors.append(task.actor)
                    idle.append(task.actor)
                now = time.perf_counter()
                for ref, task in list(inflight.items()):
                    if now - task.t0 > self.cfg.asset_timeout_s:
                        inflight.pop(ref)
                        log.warning("sample %s exceeded %.0fs: killing its worker", task.row["uid"],
                                    self.cfg.asset_timeout_s)
                        self._retire(task.actor, graceful=False)
                        lost(task, "timeout", f"no result within {self.cfg.asset_timeout_s:.0f} s")
                open_more()
        finally:
            for actor in self.actors:
                try:
                    self._retire(actor, graceful=not inflight)
                except Exception as exc:  # shutting down anyway
                    log.debug("retire failed: %s", exc)
            self.actors = []
            assembler.close()  # aborts the shards that did not complete
            self.counts.update(assembler.counts)
        return assembler.committed


def render_shards(shards: Mapping[int, list[dict[str, Any]]], spec: RenderSpec, out_dir: str | Path,
                  cfg: PoolConfig, on_commit: Callable[[int, Any], None] | None = None) -> tuple[dict[int, Any], dict[str, int]]:
    """Entry point used by `pipeline render`: start or join Ray, run the pool, return (stats, counters)."""
    init_ray(cfg.address, cfg.num_cpus)
    pool = RenderPool(spec, out_dir, cfg)
    committed = pool.run(shards, on_commit=on_commit)
    return committed, dict(pool.counts)


def cluster_summary() -> str:
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    cpus = ray.cluster_resources().get("CPU", 0)
    return f"{len(nodes)} node(s), {cpus:g} CPU(s)"


