"""Rendered samples in, committed shards out: the one body that every way of rendering drives.

The Ray pool (pipeline/scheduler.py) and the one-process path (pipeline/runner.py, pipeline/shards.py
`render_shard`) only decide *where* a sample is rendered; what happens to it afterwards is here:
`open(shard, n_rows)` makes the shard's writer (a `RetryShardWriter` for a `--retry-failed` shard, else a
`ShardWriter` on a cleared shard), `add(shard, result)` appends one rendered sample and commits the shard
when its last row is in, `close()` drops whatever was not committed. `counts` holds what this run
rendered (samples per status, and images, counted by the writer's one rule: image members, not depth
or normals), so a run's summary, its progress bar and the committed stats.json files add up.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from contracts import storage

log = logging.getLogger(__name__)


class ShardAssembler:
    def __init__(self, out: Any, extra: Mapping[str, Any], *, retry: Mapping[int, set[str]] | None = None,
                 on_commit: Callable[[int, Any], None] | None = None, total: int = 0, progress: bool = False):
        """out: the dataset folder or URL; extra: what every stats.json records besides the counts (the
        render spec, the scheduler); retry: shard -> keys being re-rendered into that committed shard;
        on_commit(shard, stats) after each commit; total: samples expected (for the progress bar)."""
        from tqdm import tqdm

        self.out, self.extra, self.retry = out, dict(extra), dict(retry or {})
        self.on_commit = on_commit
        self.counts: Counter[str] = Counter()  # ok / failed / rejected samples, and "images", of this run
        self.committed: dict[int, Any] = {}    # shard -> ShardStats
        self._open: dict[int, list] = {}       # shard -> [writer, rows still to come]
        self._bar = tqdm(total=total, unit="sample", desc="render", disable=not progress, dynamic_ncols=True)
        self._t0 = time.perf_counter()

    def open(self, shard: int, n_rows: int) -> None:
        from pipeline.retry import RetryShardWriter
        from pipeline.shards import ShardWriter, clear_shard

        if shard in self.retry:
            writer = RetryShardWriter(self.out, shard, self.retry[shard])
        else:
            clear_shard(self.out, shard)  # leftovers of a killed run; committed shards never reach here
            writer = ShardWriter(self.out, shard)
        self._open[shard] = [writer, n_rows]
        if n_rows == 0:
            self._commit(shard)

    def add(self, shard: int, result: Any) -> Any | None:
        """Append `result` to its shard; returns the shard's ShardStats when this completed and committed it."""
        entry = self._open[shard]
        writer = entry[0]
        before = _images(writer)
        writer.add(result)
        entry[1] -= 1
        self.counts[result.status] += 1
        self.counts["images"] += _images(writer) - before
        self._bar.update(1)
        elapsed = max(time.perf_counter() - self._t0, 1e-6)
        self._bar.set_postfix(img_s=f"{self.counts['images'] / elapsed:.1f}", failed=self.counts["failed"],
                              rejected=self.counts["rejected"], refresh=False)
        return self._commit(shard) if entry[1] == 0 else None

    def _commit(self, shard: int) -> Any:
        writer, _ = self._open.pop(shard)
        stats = writer.commit(self.extra)
        self.committed[shard] = stats
        if self.on_commit is not None:
            self.on_commit(shard, stats)
        log.info("committed shard %d", shard)
        return stats

    @property
    def pending(self) -> list[int]:
        """Shards opened and not yet committed."""
        return sorted(self._open)

    def close(self) -> None:
        """Drop every shard that was not committed (nothing of it becomes visible) and end the bar."""
        self._bar.close()
        for shard in list(self._open):
            writer, _ = self._open.pop(shard)
            writer.abort()


def _images(writer: Any) -> int:
    """Image members the writer holds (a retry writer: those of its inner writer)."""
    return int(getattr(getattr(writer, "writer", writer), "images", 0))


def render_row(worker: Any, row: Mapping[str, Any], cache_dir: str | None = None) -> Any:
    """Resolve `row`'s asset file and render it with `worker`; a file that cannot be had becomes a
    failed SampleResult with its reason (never an exception that would lose the shard)."""
    from manifests.assets import AssetUnavailable, resolve_asset
    from contracts.uids import sample_key
    from render.reasons import REASONS
    from render.result import SampleResult

    uid, clip = str(row["uid"]), int(row["clip"])
    t0 = time.perf_counter()
    try:
        path = resolve_asset(row, cache_dir)
    except AssetUnavailable as exc:
        reason = exc.reason if exc.reason in REASONS else "download_failed"
        return SampleResult.problem(uid, clip, sample_key(uid, clip), reason, exc.detail, time.perf_counter() - t0)
    except Exception as exc:  # a source module's own error: one failed row, not a lost shard
        log.warning("resolving %s failed", uid, exc_info=True)
        return SampleResult.problem(uid, clip, sample_key(uid, clip), "download_failed",
                                    f"{type(exc).__name__}: {exc}"[:500], time.perf_counter() - t0)
    return worker.render(row, path)


def render_rows(assembler: ShardAssembler, shard: int, rows: list[Mapping[str, Any]], worker: Any,
                cache_dir: str | None = None, on_sample: Callable[[Any], None] | None = None) -> None:
    """Render shard `shard`'s `rows` in this process, in (uid, clip) order, into `assembler` (which
    commits the shard after its last row)."""
    assembler.open(shard, len(rows))
    for r in sorted((dict(r) for r in rows), key=lambda r: (str(r["uid"]), int(r["clip"]))):
        result = render_row(worker, r, cache_dir)
        assembler.add(shard, result)
        if on_sample is not None:
            on_sample(result)


def render_shard(rows: Iterable[Mapping[str, Any]], spec: Any, out_dir: str | os.PathLike, shard: int,
                 force: bool = False, worker: Any | None = None,
                 on_sample: Callable[[Any], None] | None = None, cache_dir: str | None = None) -> Any:
    """Render the manifest `rows` of shard `shard` into DIR and commit it; no Ray involved. Returns
    its ShardStats.

    A committed shard is skipped unless `force`. Leftovers of a crashed run (a tar or parquet without
    stats.json, temporary files) are removed first. `worker` (a render.worker.RenderWorker) is reused
    when given, else one is made and closed here. `on_sample(result)` is called after each sample.
    `cache_dir` is the Objaverse cache for rows whose file must be fetched (default ~/.objaverse).
    """
    from contracts.layout import is_committed, read_stats
    from pipeline.shards import ShardStats

    out = out_dir if storage.is_url(str(out_dir)) else Path(out_dir)
    storage.open_store(out).ensure()
    if not force and is_committed(out, shard):
        log.info("shard %d already committed in %s; skipping (use --force to redo)", shard, out)
        return ShardStats.from_json(read_stats(out, shard), skipped=True)
    rows = [dict(r) for r in rows]
    for r in rows:
        if "shard" in r and r["shard"] is not None and int(r["shard"]) != shard:
            raise ValueError(f"row ({r['uid']!r}, {r['clip']}) belongs to shard {int(r['shard'])}, not {shard}")
    own = worker is None
    if own:
        from render.worker import RenderWorker

        worker = RenderWorker(spec)
    wspec = getattr(worker, "spec", spec)
    extra = {"spec": wspec.to_dict() if hasattr(wspec, "to_dict") else wspec,
             "blender_version": getattr(worker, "blender_version", None)}
    assembler = ShardAssembler(out, extra)
    try:
        render_rows(assembler, shard, rows, worker, cache_dir, on_sample)
        return assembler.committed[shard]
    finally:
        assembler.close()
        if own:
            worker.close()
