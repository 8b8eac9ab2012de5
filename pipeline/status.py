"""`pipeline status DIR`: what a render output folder holds, checked against its manifest.

Only committed shards (stats.json present) count as data. Shards with files but no stats.json are
`partial` (being rendered now, or left by a killed run: the next run discards them). With a manifest,
shards that have no files at all are `missing`, and each committed shard's samples are compared with
the manifest rows of that shard (samples missing from the shard, samples the manifest no longer lists
there, e.g. clips moved to a re-render shard by `pipeline mine`, and duplicated keys).

At scale (contracts.shard_index): one paged listing of DIR, and the per-shard counts from the
summaries cached in the committed-shard index, so only shards the index does not know, or whose
parquet or stats.json changed size, are read; `from_index` skips the listing as well.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from contracts.parquet_bytes import read_table_bytes
from contracts import listing, shard_index, storage
from contracts.layout import STATUSES, committed_in, members_name, parquet_name, shards_with_files



@dataclass
class StatusReport:
    directory: str
    committed: list[int] = field(default_factory=list)
    partial: list[int] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)          # in the manifest, no files at all
    samples: dict[str, int] = field(default_factory=dict)      # status -> count over committed shards
    reasons: dict[str, dict[str, int]] = field(default_factory=dict)  # status -> reason -> count
    images: int = 0
    tar_bytes: int = 0
    render_seconds: float = 0.0     # sum of per-sample wall times (worker-seconds)
    shard_seconds: float = 0.0      # sum of per-shard wall times
    first_commit: str | None = None
    last_commit: str | None = None
    images_per_hour: float | None = None  # images over the span between first and last commit
    manifest_rows: int | None = None
    samples_missing: int = 0        # manifest rows of committed shards with no row in the shard parquet
    samples_superseded: int = 0     # shard rows the manifest no longer places in that shard
    samples_duplicated: int = 0     # keys appearing more than once in one shard parquet
    problems: list[str] = field(default_factory=list)
    no_member_index: list[int] = field(default_factory=list)  # committed shards read by streaming (older renders)
    listed: bool = True             # False (--from-index): committed shards from the index alone, partial not looked for

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)


def collect_status(directory: str | os.PathLike, manifest: Any | None = None, update_index: bool = True,
                   from_index: bool = False) -> StatusReport:
    """Scan DIR, a folder or an object-store URL (and compare with `manifest`, a DataFrame, when given).

    The committed shards come from a paged listing (the truth); their counts from the summaries of
    the committed-shard index (contracts.shard_index), so only shards the index does not know yet
    are read (stats.json and parquet). With a manifest every committed shard's parquet is read
    (its keys), concurrently."""
    store = storage.open_store(directory)
    d = store.url if store.remote else str(Path(directory))
    rep = StatusReport(directory=str(d))
    view = shard_index.IndexView(d).load()  # before the listing: see shard_index.reconcile
    if from_index and view.base:  # index.json and the log's tail only: a few requests at any size
        rep.listed = False
        rep.problems = view.fill()
        rep.committed = view.committed()
        seen = set(rep.committed)
    else:
        items = list(listing.iter_sizes(store))  # one paged listing for committed, partial and member-index answers
        names = [n for n, _ in items]
        if not names and not store.is_dir():
            raise FileNotFoundError(f"{d}: no such dataset (nothing under this prefix)" if store.remote
                                    else f"{d}: no such dataset folder")
        view, rep.problems = shard_index.reconcile(d, items, write_log=update_index, view=view)
        rep.committed = committed_in(names)
        seen = shards_with_files(names)
        present = set(names)
        rep.no_member_index = [n for n in rep.committed if members_name(n) not in present]
        rep.partial = sorted(seen - set(rep.committed))
    expected: dict[int, set[str]] = {}
    if manifest is not None:
        from contracts.uids import sample_key

        rep.manifest_rows = len(manifest)
        for uid, clip, shard in zip(manifest["uid"], manifest["clip"], manifest["shard"]):
            expected.setdefault(int(shard), set()).add(sample_key(str(uid), int(clip)))
        rep.missing = sorted(set(expected) - seen)
    samples: collections.Counter[str] = collections.Counter()
    reasons: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    stamps = []
    for n in rep.committed:
        e = view.entries.get(n)
        if e is None or not shard_index.has_summary(e):
            continue  # unreadable: named in problems by reconcile
        rep.images += int(e["images"] or 0)
        rep.tar_bytes += int(e["tar_bytes"] or 0)
        rep.shard_seconds += float(e["seconds"] or 0.0)
        rep.render_seconds += float(e["samples_seconds"] or 0.0)
        if e.get("committed_at"):
            stamps.append(e["committed_at"])
        for status in STATUSES:
            samples[status] += int(e.get(status) or 0)
        for status, by in (e.get("reasons") or {}).items():
            reasons[status].update(by)
        if e.get("duplicated"):
            rep.samples_duplicated += int(e["duplicated"])
            rep.problems.append(f"shard {n}: {e['duplicated']} duplicated key(s)")
    if manifest is not None:
        for n, keys in _shard_keys(store, [n for n in rep.committed if n in view.entries], rep.problems):
            want, have = expected.get(n, set()), set(keys)
            if want - have:
                rep.samples_missing += len(want - have)
                rep.problems.append(f"shard {n}: {len(want - have)} manifest row(s) have no sample, e.g. {sorted(want - have)[0]}")
            rep.samples_superseded += len(have - want)
    rep.samples = {k: v for k, v in samples.items() if v}
    rep.reasons = {s: dict(c) for s, c in reasons.items()}
    if stamps:
        stamps.sort()
        rep.first_commit, rep.last_commit = stamps[0], stamps[-1]
        span = (_parse(stamps[-1]) - _parse(stamps[0])).total_seconds()
        if len(stamps) > 1 and span > 0:
            rep.images_per_hour = rep.images / span * 3600
    if update_index and rep.listed:
        view.write()
    return rep


def _shard_keys(store: Any, shards: list[int], problems: list[str]):
    """(shard, keys of its parquet) for each shard, read 16 at a time."""
    from concurrent.futures import ThreadPoolExecutor

    def keys(n: int) -> tuple[int, list[str] | None]:
        try:
            table = read_table_bytes(store.read_bytes(parquet_name(n)), ["key"])
            return n, table.column("key").to_pylist()
        except (OSError, ValueError) as exc:
            problems.append(f"shard {n}: unreadable parquet ({exc})")
            return n, None

    with ThreadPoolExecutor(16) as pool:
        for n, k in pool.map(keys, shards):
            if k is not None:
                yield n, k


def _parse(stamp: str) -> dt.datetime:
    return dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S%z")


def format_report(rep: StatusReport) -> str:
    """A plain-text report: shard table, sample table with reasons, throughput."""
    lines = [f"dataset {rep.directory}"]
    total = rep.manifest_rows
    if rep.listed:
        lines.append(f"  shards: {len(rep.committed)} committed, {len(rep.partial)} partial (in progress or crashed)"
                     + (f", {len(rep.missing)} missing" if total is not None else ""))
    else:
        lines.append(f"  shards: {len(rep.committed)} committed (from the index; partial shards not looked for)"
                     + (f", {len(rep.missing)} without a commit" if total is not None else ""))
    if rep.partial:
        lines.append(f"    partial: {_ranges(rep.partial)}")
    if rep.missing:
        lines.append(f"    missing: {_ranges(rep.missing)}")
    n = sum(rep.samples.values())
    lines.append(f"  samples in committed shards: {n}" + (f" (manifest: {total} rows)" if total is not None else ""))
    lines.append(f"    {'status':<10} {'reason':<20} {'count':>8}")
    for status in ("ok", "failed", "rejected"):
        c = rep.samples.get(status, 0)
        lines.append(f"    {status:<10} {'':<20} {c:>8}")
        for reason, rc in sorted(rep.reasons.get(status, {}).items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"    {'':<10} {reason:<20} {rc:>8}")
    if rep.manifest_rows is not None:
        lines.append(f"  against the manifest: {rep.samples_missing} missing, {rep.samples_superseded} no longer listed "
                     f"in their shard, {rep.samples_duplicated} duplicated")
    lines.append(f"  images: {rep.images}, {rep.tar_bytes / 2**20:.1f} MiB in tars")
    if rep.no_member_index:
        lines.append(f"  without a member index (trainers stream them whole): {_ranges(rep.no_member_index)}")
    if rep.render_seconds > 0:
        lines.append(f"  throughput: {rep.images / rep.render_seconds:.2f} images per worker-second"
                     + (f", {rep.images_per_hour:.0f} images/hour between first and last commit" if rep.images_per_hour else ""))
    for p in rep.problems:
        lines.append(f"  problem: {p}")
    return "\n".join(lines)


def _ranges(nums: list[int]) -> str:
    out, start, prev = [], None, None
    for x in nums:
        if start is None:
            start = prev = x
        elif x == prev + 1:
            prev = x
        else:
            out.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = x
    if start is not None:
        out.append(f"{start}" if start == prev else f"{start}-{prev}")
    return ", ".join(out)
