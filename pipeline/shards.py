"""Writing and committing one shard (DESIGN.md §4, §6).

`ShardWriter` builds the tar, the parquet and the member index (`shard-N.members.parquet`: name,
offset, size of every tar member) under temporary names, moves them into the dataset, and writes
`shard-N.stats.json` last: its presence is what makes the shard committed; it records the tar's content
identity (`tar_bytes`, `tar_sha256`, contracts/identity.py). Then one entry in the commit log
(contracts.shard_index) with the shard's summary; `clear_shard` logs a removal first. In a local folder the
files are built in place and renamed; under an object-store URL (`s3://bucket/prefix`) they are built
in a local scratch folder and uploaded whole, tar, parquet and member index first, stats.json last,
so a killed upload never looks committed. Tar members are written deterministically (sorted names,
fixed mtime/uid/gid/mode), so the same renders give the same bytes. Samples reach a writer through
pipeline/assembly.py's ShardAssembler, whoever rendered them.

Test-only (documented, like the scheduler's fault injection): with `PIPELINE_TEST_UPLOAD_PAUSE=DIR`
in the environment, a writer uploading to an object store stops after the tar is uploaded, creates
`DIR/reached-shard-N` and waits (up to 300 s) for `DIR/release` before uploading the rest, so a test
can stop the object store in the middle of a shard upload; with `PIPELINE_TEST_UPLOAD_PAUSE_AT=stats`
it stops instead after stats.json, before the commit-log entry (a test kills it there).

No bpy and no ray here.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import socket
import tarfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from contracts import listing, shard_index, storage
from contracts.identity import tar_identity
from contracts.layout import (SCHEMA_VERSION, STATUSES, members_name, parquet_name, shard_stem,
                              stats_name, tar_name, write_member_index)

log = logging.getLogger(__name__)

TAR_MTIME = 0  # fixed member metadata: a tar depends only on its members' names and bytes
UPLOAD_PAUSE_ENV = "PIPELINE_TEST_UPLOAD_PAUSE"

# Shard parquet columns and their Arrow type names; statistics unknown here are appended, inferred.
BASE_COLUMNS = {"uid": "string", "clip": "int32", "key": "string", "status": "string", "reason": "string",
                "detail": "string", "seconds": "float64"}
STAT_COLUMNS = {
    "static": "bool_", "clip_name": "string", "clip_count": "int32", "fps": "float64", "duration_s": "float64",
    "clip_span_s": "float64", "num_frames": "int32", "num_views": "int32", "resolution": "int32",
    "faces": "int64", "vertices": "int64", "motion_max": "float64", "motion_mean": "float64", "motion_times": "int32",
    "scale_change": "float64", "coverage_mean": "float64", "coverage_min_view": "float64",
    "coverage_max_view": "float64", "empty_views": "int32", "border_fraction": "float64",
    "touches_border": "bool_", "normalization_scale": "float64", "reset_s": "float64", "import_s": "float64",
    "prepare_s": "float64", "scene_s": "float64", "render_s": "float64", "cpu_s": "float64", "images": "int32", "bytes": "int64",
}


@dataclass
class ShardStats:
    """What `render_shard` did; the committed stats.json holds the same counts."""

    shard: int
    rows: int = 0
    ok: int = 0
    failed: int = 0
    rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    images: int = 0
    tar_bytes: int = 0
    seconds: float = 0.0          # wall time of the whole shard
    skipped: bool = False         # True when the shard was already committed and not redone

    @classmethod
    def from_json(cls, data: Mapping[str, Any], skipped: bool = False) -> "ShardStats":
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in names and k != "skipped"}, skipped=skipped)


class ShardWriter:
    """Collects samples of shard N for DIR (a folder or an object-store URL); `commit()` makes them
    visible, `abort()` drops them."""

    def __init__(self, out_dir: str | os.PathLike, shard: int):
        self.store = storage.open_store(out_dir)
        self.dir = out_dir if self.store.remote else Path(out_dir)
        self.shard = shard
        self.stem = shard_stem(shard)
        self.store.ensure()
        self._scratch = self.store.scratch_dir()  # the folder itself, or a private local folder for uploads
        self._tmp_tar = self._scratch / f".{tar_name(shard)}.tmp-{os.getpid()}"
        self._tar = tarfile.open(self._tmp_tar, "w", format=tarfile.GNU_FORMAT)
        self.members: list[tuple[str, int, int]] = []  # (name, data offset, size): the member index
        self.rows: list[dict[str, Any]] = []
        self.images = 0
        self._keys: set[str] = set()
        self._t0 = time.perf_counter()

    def add(self, result: Any) -> None:
        """Append one SampleResult: its members to the tar (if ok), its row to the parquet."""
        if result.key in self._keys:
            raise ValueError(f"shard {self.shard}: sample {result.key} added twice")
        if result.status not in STATUSES:
            raise ValueError(f"shard {self.shard}: {result.key} has status {result.status!r}")
        self._keys.add(result.key)
        for name in sorted(result.members):
            if not name.startswith(result.key + "."):
                raise ValueError(f"member {name!r} does not belong to sample {result.key}")
            data = result.members[name]
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = TAR_MTIME
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            self._tar.addfile(info, io.BytesIO(data))
            # addfile leaves the archive offset after the data padded to 512-byte blocks
            padded = -(-len(data) // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
            self.members.append((name, self._tar.offset - padded, len(data)))
            if not name.endswith(".json") and ".depth." not in name and ".normal." not in name:
                self.images += 1
        row = {"uid": result.uid, "clip": result.clip, "key": result.key, "status": result.status,
               "reason": result.reason, "detail": result.detail, "seconds": float(result.seconds)}
        for k, v in result.stats.items():
            if k not in row:
                row[k] = v
        self.rows.append(row)

    def commit(self, extra: Mapping[str, Any] | None = None) -> ShardStats:
        """Move (or upload) the tar, the parquet and the member index into place, then write stats.json (last)."""
        self._tar.close()
        identity = tar_identity(self._tmp_tar)  # DESIGN.md §4: the same in a folder and under a URL
        tar_bytes = identity["tar_bytes"]
        pid = os.getpid()
        tmp_pq = self._scratch / f".{parquet_name(self.shard)}.tmp-{pid}"
        tmp_members = self._scratch / f".{members_name(self.shard)}.tmp-{pid}"
        write_rows_parquet(self.rows, tmp_pq)
        pq_bytes = tmp_pq.stat().st_size
        write_member_index(self.members, tmp_members)
        self.store.put_file(self._tmp_tar, tar_name(self.shard))
        _maybe_pause(self.store, self.shard, "tar")
        self.store.put_file(tmp_pq, parquet_name(self.shard))
        self.store.put_file(tmp_members, members_name(self.shard))
        stats = ShardStats(shard=self.shard, rows=len(self.rows), images=self.images, tar_bytes=tar_bytes,
                           seconds=time.perf_counter() - self._t0)
        for r in self.rows:
            setattr(stats, r["status"], getattr(stats, r["status"]) + 1)
            if r["reason"]:
                stats.reasons[r["reason"]] = stats.reasons.get(r["reason"], 0) + 1
        timings = {k: float(sum(r.get(k) or 0.0 for r in self.rows))
                   for k in ("reset_s", "import_s", "prepare_s", "scene_s", "render_s")}
        record = {"schema_version": SCHEMA_VERSION, **asdict(stats), "timings_s": timings,
                  "samples_seconds": float(sum(r["seconds"] for r in self.rows)),
                  "images_per_s": stats.images / stats.seconds if stats.seconds > 0 else None,
                  "committed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": socket.gethostname(),
                  **dict(extra or {}), "tar_sha256": identity["tar_sha256"]}
        record.pop("skipped", None)
        stats_json = json.dumps(record, indent=1, sort_keys=True, default=str).encode("utf-8")
        self.store.write_bytes(stats_name(self.shard), stats_json)
        self._drop_scratch()
        _maybe_pause(self.store, self.shard, "stats")
        # committed; now the commit log (contracts.shard_index), with the summary status reads
        entry = shard_index.summary(self.shard, record, self.rows, {"parquet": pq_bytes, "stats": len(stats_json)})
        stats.index_entry = {**entry, "log": shard_index.record_commit(self.store.url, entry)}  # type: ignore[attr-defined]
        return stats

    def abort(self) -> None:
        try:
            self._tar.close()
        finally:
            pid = os.getpid()
            for name in (tar_name(self.shard), parquet_name(self.shard), members_name(self.shard)):
                (self._scratch / f".{name}.tmp-{pid}").unlink(missing_ok=True)
            self._drop_scratch()

    def _drop_scratch(self) -> None:
        if self.store.remote:
            shutil.rmtree(self._scratch, ignore_errors=True)


def _maybe_pause(store: Any, shard: int, stage: str) -> None:
    """The test-only pause between the tar and the rest of an upload, or (stage `stats`) between
    stats.json and the commit-log entry (module docstring)."""
    where = os.environ.get(UPLOAD_PAUSE_ENV)
    if not where or not store.remote or os.environ.get(UPLOAD_PAUSE_ENV + "_AT", "tar") != stage:
        return
    d = Path(where)
    (d / f"reached-shard-{shard}").touch()
    log.warning("test pause: shard %d's tar is uploaded, waiting for %s", shard, d / "release")
    deadline = time.monotonic() + 300
    while not (d / "release").exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def write_rows_parquet(rows: list[dict[str, Any]], path: Path) -> None:
    """The shard parquet: base columns, known statistics with fixed types, then other keys sorted."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    extra = sorted({k for r in rows for k in r} - set(BASE_COLUMNS) - set(STAT_COLUMNS))
    arrays, fields = [], []
    for name, typ in [*BASE_COLUMNS.items(), *STAT_COLUMNS.items()]:
        t = getattr(pa, typ)()
        arrays.append(pa.array([r.get(name) for r in rows], type=t))
        fields.append(pa.field(name, t))
    for name in extra:
        a = pa.array([r.get(name) for r in rows])
        arrays.append(a)
        fields.append(pa.field(name, a.type))
    pq.write_table(pa.Table.from_arrays(arrays, schema=pa.schema(fields)), path)


def clear_shard(out_dir: str | os.PathLike, shard: int) -> None:
    """Remove shard N's files, stats.json first (so it is never committed with stale parts), a
    removal entry in the commit log before that when it was committed. In a bucket: one listing of
    `shard-N.*` and deletes of what is there only (a fresh shard costs one request)."""
    store = storage.open_store(out_dir)
    names = [tar_name(shard), parquet_name(shard), members_name(shard)]
    if store.remote:
        present = set(listing.list_page(store, begins=f"{shard_stem(shard)}.")[0])
        names = [n for n in names if n in present]
        committed = stats_name(shard) in present
    else:
        committed = store.exists(stats_name(shard))
    if committed:
        shard_index.record_removal(store.url, shard)
        store.remove(stats_name(shard))
    for name in names:
        store.remove(name)
    if not store.remote and store.is_dir():
        for leftover in store.root.glob(f".{shard_stem(shard)}.*.tmp-*"):
            leftover.unlink(missing_ok=True)
