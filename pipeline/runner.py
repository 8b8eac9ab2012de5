"""What `pipeline render` does, with or without Ray: choose the work, run it, keep the index current.

- Shard selection: `--shard N`, `--shards A-B`, `--shards 3,7,9-12`, `--shards all`.
- A committed shard is skipped (unless `--force`); a partial one is discarded and redone.
- `--retry-failed`: committed shards get only their `failed` samples re-rendered (pipeline.retry);
  uncommitted shards in the selection are rendered in full as usual.
- After every commit DIR/index.json (the committed-shard index) is rewritten.
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

from contracts import storage
from contracts.layout import is_committed, write_index
from contracts.parquet_bytes import read_table_bytes

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
    from manifests.uids import sample_key
    from pipeline.retry import failed_keys

    by_shard = rows_by_shard(manifest, selection)
    work: dict[int, list[dict[str, Any]]] = {}
    retry: dict[int, set[str]] = {}
    skipped: list[int] = []
    for n, rows in by_shard.items():
        if is_committed(out_dir, n) and not force:
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


def run_render(manifest: Any, selection: list[int], spec: Any, out_dir: str | Path, *, use_ray: bool = True,
               pool_cfg: Any = None, force: bool = False, retry_failed: bool = False,
               threads: int | None = None, progress: bool = True, cache_dir: str | None = None) -> RunSummary:
    """Render the selected shards of `manifest` into `out_dir` (a folder or an object-store URL)."""
    store = storage.open_store(out_dir)
    store.ensure()  # a bad URL, endpoint or credentials fail here: nothing rendered, nothing written
    out = store.url if store.remote else Path(out_dir)
    work, retry, skipped = plan(manifest, selection, out, force, retry_failed)
    summary = RunSummary(selected=selection, skipped=skipped)
    if skipped:
        log.info("%d shard(s) already committed, skipped: %s", len(skipped), ", ".join(map(str, skipped[:20])))
    t0 = time.perf_counter()

    def on_commit(n: int, stats: Any) -> None:
        write_index(out, refresh={n})  # incremental: one stats.json read per commit, even on S3
        if n in retry:
            summary.retried[n] = len(retry[n])
        else:
            summary.rendered.append(n)

    if work:
        if use_ray:
            summary.counters = _run_ray(work, retry, spec, out, pool_cfg, on_commit)
        else:
            _run_plain(work, retry, spec, out, threads, progress, on_commit, cache_dir)
    summary.seconds = time.perf_counter() - t0
    _tally(summary, out, work, retry)
    write_index(out)
    return summary


def _tally(summary: RunSummary, out: str | Path, work: dict[int, list], retry: dict[int, set[str]]) -> None:
    from manifests.uids import sample_key
    from contracts.layout import parquet_name, read_stats

    store = storage.open_store(out)
    for n, rows in work.items():
        if not is_committed(out, n):
            continue
        keys = {sample_key(r["uid"], int(r["clip"])) for r in rows}
        table = read_table_bytes(store.read_bytes(parquet_name(n)), ["key", "status"])
        for r in table.to_pylist():
            if r["key"] in keys:
                summary.samples[r["status"]] = summary.samples.get(r["status"], 0) + 1
        if n not in retry:
            summary.images += int(read_stats(out, n).get("images") or 0)


def _run_ray(work, retry, spec, out, pool_cfg, on_commit) -> dict[str, int]:
    from pipeline import scheduler
    from pipeline.retry import RetryShardWriter
    from pipeline.shards import ShardWriter, clear_shard

    def factory(_d: Path, n: int) -> Any:  # `out` itself: the pool's Path() would mangle a URL
        if n in retry:
            return RetryShardWriter(out, n, retry[n])
        clear_shard(out, n)
        return ShardWriter(out, n)

    scheduler.init_ray(pool_cfg.address, pool_cfg.num_cpus)
    log.info("Ray: %s", scheduler.cluster_summary())
    pool = scheduler.RenderPool(spec, out, pool_cfg, writer_factory=factory)
    pool.run(work, on_commit=on_commit)
    return dict(pool.counts)


def _run_plain(work, retry, spec, out, threads, progress, on_commit, cache_dir=None) -> None:
    """One process, one bpy: the same work without Ray (debugging, benchmarks, tiny jobs)."""
    from tqdm import tqdm

    from pipeline.retry import RetryShardWriter
    from pipeline.shards import render_row, render_shard
    from render.worker import RenderWorker

    total = sum(len(r) for r in work.values())
    worker = RenderWorker(spec, threads=threads)
    bar = tqdm(total=total, unit="sample", desc="render", disable=not progress, dynamic_ncols=True)
    try:
        for n, rows in work.items():
            if n in retry:
                writer = RetryShardWriter(out, n, retry[n])
                try:
                    for r in rows:
                        writer.add(render_row(worker, r, cache_dir))
                        bar.update(1)
                    stats = writer.commit({"spec": spec.to_dict(), "scheduler": "plain"})
                except BaseException:
                    writer.abort()
                    raise
            else:
                stats = render_shard(rows, spec, out, n, force=True, worker=worker, cache_dir=cache_dir,
                                     on_sample=lambda _r: bar.update(1))
            on_commit(n, stats)
    finally:
        bar.close()
        worker.close()
