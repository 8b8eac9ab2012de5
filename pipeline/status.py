"""`pipeline status DIR`: what a render output folder holds, checked against its manifest.

Only committed shards (stats.json present) count as data. Shards with files but no stats.json are
`partial` (being rendered now, or left by a killed run: the next run discards them). With a manifest,
shards that have no files at all are `missing`, and each committed shard's samples are compared with
the manifest rows of that shard (samples missing from the shard, samples the manifest no longer lists
there, e.g. clips moved to a re-render shard by `pipeline mine`, and duplicated keys).
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from contracts import storage
from contracts.layout import committed_in, members_name, parquet_name, read_stats, shards_with_files, write_index
from contracts.parquet_bytes import read_table_bytes



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

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)


def collect_status(directory: str | os.PathLike, manifest: Any | None = None, update_index: bool = True) -> StatusReport:
    """Scan DIR, a folder or an object-store URL (and compare with `manifest`, a DataFrame, when given)."""
    store = storage.open_store(directory)
    d = store.url if store.remote else Path(directory)
    rep = StatusReport(directory=str(d))
    names = store.listdir()  # one listing for committed, partial and member-index answers
    rep.committed = committed_in(names)
    committed = set(rep.committed)
    seen = shards_with_files(names)
    rep.no_member_index = [n for n in rep.committed if members_name(n) not in names]
    rep.partial = sorted(seen - committed)
    expected: dict[int, set[str]] = {}
    if manifest is not None:
        from manifests.uids import sample_key

        rep.manifest_rows = len(manifest)
        for uid, clip, shard in zip(manifest["uid"], manifest["clip"], manifest["shard"]):
            expected.setdefault(int(shard), set()).add(sample_key(str(uid), int(clip)))
        rep.missing = sorted(set(expected) - seen)
    samples: collections.Counter[str] = collections.Counter()
    reasons: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    stamps = []
    for n in rep.committed:
        try:
            st = read_stats(d, n)
        except (OSError, ValueError) as exc:
            rep.problems.append(f"shard {n}: unreadable stats.json ({exc})")
            continue
        rep.images += int(st.get("images") or 0)
        rep.tar_bytes += int(st.get("tar_bytes") or 0)
        rep.shard_seconds += float(st.get("seconds") or 0.0)
        if st.get("committed_at"):
            stamps.append(st["committed_at"])
        try:
            table = read_table_bytes(store.read_bytes(parquet_name(n)), ["key", "status", "reason", "seconds"])
        except (OSError, ValueError) as exc:
            rep.problems.append(f"shard {n}: unreadable parquet ({exc})")
            continue
        keys = table.column("key").to_pylist()
        for status, reason in zip(table.column("status").to_pylist(), table.column("reason").to_pylist()):
            samples[status] += 1
            if reason:
                reasons[status][reason] += 1
        rep.render_seconds += float(sum(x or 0.0 for x in table.column("seconds").to_pylist()))
        counts = collections.Counter(keys)
        dups = sum(c - 1 for c in counts.values() if c > 1)
        if dups:
            rep.samples_duplicated += dups
            rep.problems.append(f"shard {n}: {dups} duplicated key(s)")
        if manifest is not None:
            want = expected.get(n, set())
            have = set(counts)
            if want - have:
                rep.samples_missing += len(want - have)
                rep.problems.append(f"shard {n}: {len(want - have)} manifest row(s) have no sample, e.g. {sorted(want - have)[0]}")
            rep.samples_superseded += len(have - want)
    rep.samples = dict(samples)
    rep.reasons = {s: dict(c) for s, c in reasons.items()}
    if stamps:
        stamps.sort()
        rep.first_commit, rep.last_commit = stamps[0], stamps[-1]
        span = (_parse(stamps[-1]) - _parse(stamps[0])).total_seconds()
        if len(stamps) > 1 and span > 0:
            rep.images_per_hour = rep.images / span * 3600
    if update_index:
        write_index(d)
    return rep


def _parse(stamp: str) -> dt.datetime:
    return dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S%z")


def format_report(rep: StatusReport) -> str:
    """A plain-text report: shard table, sample table with reasons, throughput."""
    lines = [f"dataset {rep.directory}"]
    total = rep.manifest_rows
    lines.append(f"  shards: {len(rep.committed)} committed, {len(rep.partial)} partial (in progress or crashed)"
                 + (f", {len(rep.missing)} missing" if total is not None else ""))
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
