"""`pipeline index DIR`: bring a dataset's indexes up to date, for shards written before they existed.

- The member index (`shard-N.members.parquet`, DESIGN.md §4) of every committed shard that lacks one,
  rebuilt from the tar's headers (`contracts.layout.tar_member_offsets`; a tar in a bucket is streamed
  once), after checking the tar's size against the `tar_bytes` its stats.json recorded.
- The committed-shard index (index.json and its commit log, contracts.shard_index) reconciled with a
  paged listing and compacted; `--rebuild` re-reads every committed shard's stats.json and parquet
  instead of trusting the cached summaries.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tarfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from contracts import layout, listing, reads, shard_index, storage

log = logging.getLogger(__name__)


@dataclass
class IndexReport:
    directory: str
    committed: int = 0
    members_added: list[int] = field(default_factory=list)
    summaries_read: int = 0          # shards whose summary came from their own files now
    index: str = ""
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)


def reindex(directory: str | os.PathLike, members: bool = True, rebuild: bool = False) -> IndexReport:
    store = storage.open_store(directory)
    d = store.url if store.remote else str(Path(directory))
    rep = IndexReport(directory=d)
    view = shard_index.IndexView(d)
    if not rebuild:
        view.load()
    items = dict(listing.iter_sizes(store))
    if not items and not store.is_dir():
        raise FileNotFoundError(f"{d}: no such dataset")
    committed = layout.committed_in(items)
    before = {n for n, e in view.entries.items() if shard_index.has_summary(e)}
    view, rep.problems = shard_index.reconcile(d, list(items.items()), refresh=set(committed) if rebuild else None,
                                               view=view)
    rep.committed = len(committed)
    rep.summaries_read = len(set(committed) - before) if not rebuild else len(committed)
    if members:
        for n in committed:
            if layout.members_name(n) in items:
                continue
            problem = _add_member_index(store, n, items.get(layout.tar_name(n)), view.entries.get(n, {}))
            if problem:
                rep.problems.append(problem)
            else:
                rep.members_added.append(n)
    rep.index = view.write()
    return rep


def _add_member_index(store, n: int, tar_size: int | None, entry: dict) -> str | None:
    """Write shard n's member index from its tar; a problem (text) instead when that is not safe."""
    recorded = int(entry.get("tar_bytes") or 0)
    if recorded and tar_size is not None and tar_size != recorded:
        return (f"shard {n}: the tar has {tar_size} bytes but its stats.json recorded {recorded}: "
                f"no member index written (re-render it with --force)")
    try:
        if store.remote:
            with reads.open_stream(store.child(layout.tar_name(n))) as f:
                rows = layout.tar_member_offsets(f)
        else:
            rows = layout.tar_member_offsets(store.path(layout.tar_name(n)))
    except (OSError, ValueError, EOFError, tarfile.TarError) as exn:
        return f"shard {n}: cannot read the tar's headers ({type(exn).__name__}: {exn})"
    scratch = store.scratch_dir()
    tmp = scratch / f".{layout.members_name(n)}.tmp-{os.getpid()}"
    try:
        layout.write_member_index(rows, tmp)
        store.put_file(tmp, layout.members_name(n))
    finally:
        tmp.unlink(missing_ok=True)
        if store.remote:
            shutil.rmtree(scratch, ignore_errors=True)
    log.info("shard %d: member index written (%d members)", n, len(rows))
    return None
