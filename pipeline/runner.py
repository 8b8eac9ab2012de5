"""What `pipeline render` does, with or without Ray: choose the work, run it, keep the index current.

- Shard selection: `--shard N`, `--shards A-B`, `--shards 3,7,9-12`, `--shards all`.
- A committed shard is skipped (unless `--force`); a partial one is discarded and redone.
- `--retry-failed`: committed shards get only their `failed` samples re-rendered (pipeline.retry);
  uncommitted shards in the selection are rendered in full as usual.
- Every commit adds one entry to the commit log (DIR/index-log/, contracts.shard_index); index.json is
  compacted every COMPACT_EVERY commits (or an eighth of the dataset, whichever is more) and at the end.
- Stale scratch folders of killed uploads and Blender temp folders of dead processes are removed first
  (contracts.scratch).
- DIR may be an object-store URL (`s3://bucket/prefix`, DESIGN.md §6): it is checked (reachable,
  credentials accepted, bucket present) before any rendering starts, and shards are uploaded whole with
  stats.json last (pipeline.shards.ShardWriter).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from contracts import shard_index, storage

COMPACT_EVERY = 64  # commits between two compactions of index.json (at least; an eighth of the dataset at most)

log = logging.getLogger(__name__)


def parse_shard_selection(text: str, available: Iterable[int]) -> list[int]:
    """'all', 'N', 'A-B', or a comma list of those -> sorted shard numbers present in the manifest."""
    avail = sorted(set(int(x) for x in available))
    text = text.strip()
    if text == "all":
        return avail
    picked: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        lo, sep, hi = part.partition("-")
        try:
            a = int(lo)
            b = int(hi) if sep else a
        except ValueError:
            raise ValueError(f"--shards: bad part {part!r}; use N, A-B, a comma list, or all") from None
        if a < 0 or b < a:
            raise ValueError(f"--shards: bad range {part!r}")
        picked |= set(range(a, b + 1))
    missing = sorted(picked - set(avail))
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise ValueError(f"--shards: the manifest has no shard(s) {shown} (it has {_span(avail)})")
    return sorted(picked)


def _span(nums: list[int]) -> str:
    return f"{nums[0]}-{nums[-1]}" if nums else "none"


def _clean(v: Any) -> Any:
    if v is None:
        return None
    try:
        import pandas as pd

        if v is pd.NA or v is pd.NaT:
            return None
    except ImportError:
        pass
    if isinstance(v, float) and math.isnan(v):
        return None
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):  # numpy scalars -> Python
        return v.item()
    return v


def rows_by_shard(manifest: Any, only: Iterable[int] | None = None) -> dict[int, list[dict[str, Any]]]:
    """Manifest DataFrame -> {shard: [row dict, ...]} with plain Python values, rows sorted by (uid, clip)."""
    wanted = None if only is None else set(int(x) for x in only)
    out: dict[int, list[dict[str, Any]]] = {}
    for rec in manifest.to_dict(orient="records"):
        row = {k: _clean(v) for k, v in rec.items()}
        s = int(row["shard"])
        if wanted is None or s in wanted:
            out.setdefault(s, []).append(row)
    for rows in out.values():
        rows.sort(key=lambda r: (str(r["uid"]), int(r["clip"])))
    return dict(sorted(out.items()))


@dataclass
class RunSummary:
    selected: list[int]
    skipped: list[int] = field(default_factory=list)        # committed already, not redone
    rendered: list[int] = field(default_factory=list)       # rendered in full
    retried: dict[int, int] = field(default_factory=dict)   # shard -> failed samples re-rendered
    samples: dict[str, int] = field(default_factory=dict)   # status -> count over what ran now
    images: int = 0
    seconds: float = 0.0
    counters: dict[str, int] = field(default_factory=dict)  # scheduler events (crashes, timeouts, recycles)


def plan(manifest: Any, selection: list[int], out_dir: str | Path, force: bool, retry_failed: bool
         ) -> tuple[dict[int, list[dict[str, Any]]], dict[int, set[str]], list[int]]:
    """(work: shard -> rows to render, retry: shard -> keys being replaced, skipped shards)."""
    from contracts.uids import sample_key
    from pipeline.retry import failed_keys

    by_shard = rows_by_shard(manifest, selection)
    work: dict[int, list[dict[str, Any]]] = {}
    retry: dict[int, set[str]] = {}
    skipped: list[int] = []
    done = set() if force else committed_among(out_dir, list(by_shard))
    for n, rows in by_shard.items():
        if n in done:
            if retry_failed:
                keys = failed_keys(out_dir, n)
                todo = [r for r in rows if sample_key(r["uid"], int(r["clip"])) in keys]
                if todo:
                    work[n] = todo
                    retry[n] = {sample_key(r["uid"], int(r["clip"])) for r in todo}
                    continue
            skipped.append(n)
            continue
        work[n] = rows
    return work, retry, skipped


def committed_among(out_dir: str | Path, shards: list[int]) -> set[int]:
    """Which of `shards` are committed, at a cost that does not grow with the dataset: a local folder
    is listed (cheap); in a bucket the committed-shard index and its log answer (two requests), and
    the shards they do not list get a HEAD of their stats.json (a listing, paged, when that is more
    than a few dozen), so a shard whose writer was killed between stats.json and its log entry is
    found, and its log entry added."""
    from contracts import listing
    from contracts.layout import committed_in, stats_name

    store = storage.open_store(out_dir)
    if not store.remote:
        return set(committed_in(store.listdir())) & set(shards) if store.is_dir() else set()
    view = shard_index.IndexView(store.url).load()
    found = set(view.entries) & set(shards)
    rest = sorted(set(shards) - found)
    if not view.base or len(rest) > 64:
        late = set(committed_in(listing.iter_names(store))) & set(rest)
    else:
        late = {n for n in rest if listing.head_exists(store, stats_name(n))}
    for n in sorted(late):  # committed, but the log missed it (or a dataset from before the log)
        shard_index.record_commit(store.url, shard_index.shard_summary(store.url, n))
    return found | late


def run_render(manifest: Any, selection: list[int], spec: Any, out_dir: str | Path, *, use_ray: bool = True,
               pool_cfg: Any = None, force: bool = False, retry_failed: bool = False,
               threads: int | None = None, progress: bool = True, cache_dir: str | None = None) -> RunSummary:
    """Render the selected shards of `manifest` into `out_dir` (a folder or an object-store URL)."""
    from contracts import scratch

    scratch.clean_stale()  # what killed uploads and Blender sessions of dead processes left in $TMPDIR
    store = storage.open_store(out_dir)
    store.ensure()  # a bad URL, endpoint or credentials fail here: nothing rendered, nothing written
    out = store.url if store.remote else Path(out_dir)
    work, retry, skipped = plan(manifest, selection, out, force, retry_failed)
    summary = RunSummary(selected=selection, skipped=skipped)
    if skipped:
        log.info("%d shard(s) already committed, skipped: %s", len(skipped), ", ".join(map(str, skipped[:20])))
    t0 = time.perf_counter()
    commits: dict[int, Any] = {}
    known: dict[str, dict] = {}  # log name -> index entry of this run's commits (compaction needs no GET)
    due = [1]  # commits of this run at which index.json is compacted next: the first (a new dataset gets
    # its index.json at once), then every COMPACT_EVERY or an eighth of the dataset

    def on_commit(n: int, stats: Any) -> None:
        commits[n] = stats
        entry = getattr(stats, "index_entry", None)
        if entry:
            known[entry["log"]] = entry
        if len(commits) >= due[0]:  # a compaction's bytes grow with the dataset: not every commit
            view = shard_index.compact(out, known)
            known.clear()
            due[0] = len(commits) + max(COMPACT_EVERY, len(view.entries) // 8)
        if n in retry:
            summary.retried[n] = len(retry[n])
        else:
            summary.rendered.append(n)

    if work:
        if use_ray:
            summary.counters, counts = _run_ray(work, retry, spec, out, pool_cfg, on_commit)
        else:
            counts = _run_plain(work, retry, spec, out, threads, progress, on_commit, cache_dir)
        summary.samples = {k: v for k, v in counts.items() if k in ("ok", "failed", "rejected")}
        summary.images = counts.get("images", 0)
    summary.seconds = time.perf_counter() - t0
    if commits:
        shard_index.compact(out, known)
    return summary


def _run_ray(work, retry, spec, out, pool_cfg, on_commit) -> tuple[dict[str, int], dict[str, int]]:
    """(the pool's scheduler events, this run's sample and image counts)."""
    from pipeline import scheduler

    scheduler.init_ray(pool_cfg.address, pool_cfg.num_cpus)
    log.info("Ray: %s", scheduler.cluster_summary())
    pool = scheduler.RenderPool(spec, out, pool_cfg)
    pool.run(work, on_commit=on_commit, retry=retry)
    events = {k: v for k, v in pool.counts.items() if k not in ("ok", "failed", "rejected", "images")}
    return events, {k: v for k, v in pool.counts.items() if k not in events}


def _run_plain(work, retry, spec, out, threads, progress, on_commit, cache_dir=None) -> dict[str, int]:
    """One process, one bpy: the same work without Ray (debugging, benchmarks, tiny jobs), through the
    same ShardAssembler as the Ray pool. Returns this run's sample and image counts."""
    from pipeline.assembly import ShardAssembler, render_rows
    from render.worker import RenderWorker

    worker = RenderWorker(spec, threads=threads)
    extra = {"spec": spec.to_dict(), "scheduler": "plain", "blender_version": getattr(worker, "blender_version", None)}
    assembler = ShardAssembler(out, extra, retry=retry, on_commit=on_commit, total=sum(len(r) for r in work.values()),
                               progress=progress)
    try:
        for n, rows in work.items():
            render_rows(assembler, n, rows, worker, cache_dir)
    finally:
        assembler.close()
        worker.close()
    return dict(assembler.counts)
