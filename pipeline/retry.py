"""`--retry-failed`: re-render only the failed samples of committed shards.

A committed shard is rebuilt, not appended to: the new tar holds the old shard's good (and rejected)
samples copied byte for byte, plus the re-rendered ones, so every (uid, clip) is still in it once.
The old stats.json is removed just before the new tar and parquet are renamed into place and the new
stats.json is written last; a run killed inside that window leaves an uncommitted shard, which the
next plain run renders again from scratch (no duplicates, no gaps).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Mapping

from contracts.parquet_bytes import read_table_bytes
from contracts import shard_index, storage
from contracts.layout import STATUS_FAILED, STATUS_OK, is_committed, parquet_name, stats_name, tar_name
from pipeline.shards import BASE_COLUMNS, ShardStats, ShardWriter
from contracts.shardread import iter_shard
from render.result import SampleResult

log = logging.getLogger(__name__)


def read_shard_rows(out_dir: str | os.PathLike, shard: int) -> list[dict[str, Any]]:
    """The shard parquet (in a folder or under an object-store URL) as a list of dicts (NaN -> None)."""
    data = storage.open_store(out_dir).read_bytes(parquet_name(shard))
    rows = read_table_bytes(data).to_pylist()
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in rows]


def failed_keys(out_dir: str | os.PathLike, shard: int) -> set[str]:
    """Keys whose status is `failed` (not `rejected`: those are verdicts, not accidents)."""
    return {r["key"] for r in read_shard_rows(out_dir, shard) if r["status"] == STATUS_FAILED}


def _stats_of(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in BASE_COLUMNS}


class RetryShardWriter:
    """A ShardWriter for committed shard N that starts with N's samples except `replace_keys`."""
    def __init__(self, out_dir: str | Path, shard: int, replace_keys: set[str]):
        self.store = storage.open_store(out_dir)
        self.dir = out_dir if self.store.remote else Path(out_dir)
        self.shard = shard
        if not is_committed(self.dir, shard):
            raise FileNotFoundError(f"shard {shard} in {self.dir} is not committed: nothing to retry")
        old_rows = read_shard_rows(self.dir, shard)
        self.replace_keys = set(replace_keys)
        unknown = self.replace_keys - {r["key"] for r in old_rows}
        if unknown:
            raise KeyError(f"shard {shard}: no rows with key(s) {sorted(unknown)}")
        self.writer = ShardWriter(self.dir, shard)
        kept = {r["key"]: r for r in old_rows if r["key"] not in self.replace_keys}
        copied = set()
        for sample in iter_shard(self.store.child(tar_name(shard)), keys=set(kept)):
            row = kept[sample.key]
            self.writer.add(SampleResult(uid=row["uid"], clip=int(row["clip"]), key=sample.key, status=STATUS_OK,
                                         reason=None, detail=row.get("detail"), seconds=float(row["seconds"]),
                                         members=sample.members, stats=_stats_of(row)))
            copied.add(sample.key)
        for key, row in kept.items():
            if key in copied:
                continue
            if row["status"] == STATUS_OK:
                raise ValueError(f"shard {shard}: sample {key} is ok in the parquet but missing from the tar")
            self.writer.add(SampleResult.problem(row["uid"], int(row["clip"]), key, row["reason"], row.get("detail") or "",
                                                 float(row["seconds"]), stats=_stats_of(row)))
        log.info("shard %d: kept %d sample(s), re-rendering %d", shard, len(kept), len(self.replace_keys))

    def add(self, result: SampleResult) -> None:
        if result.key not in self.replace_keys:
            raise ValueError(f"shard {self.shard}: {result.key} was not asked to be retried")
        self.writer.add(result)

    def commit(self, extra: Mapping[str, Any] | None = None) -> ShardStats:
        # Uncommit (in the commit log first), then commit the rebuilt shard: never a stats.json
        # beside a half-replaced pair.
        shard_index.record_removal(self.store.url, self.shard)
        self.store.remove(stats_name(self.shard))
        return self.writer.commit({**dict(extra or {}), "retried": sorted(self.replace_keys)})

    def abort(self) -> None:
        self.writer.abort()
