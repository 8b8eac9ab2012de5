"""What the viewer reads from a dataset: the shard listing, a shard's rows, one sample's members.

A dataset is a local folder, an object-store prefix (`s3://bucket/prefix`, through contracts.storage)
or a folder served over HTTP (`http(s)://host/dir/`, whose committed shards come from its index.json,
since HTTP cannot list). Everything is lazy: opening a dataset costs one listing (or one index.json
read); a shard's stats.json and parquet are read when the shard is shown; a sample's JSON and only the
images and depth maps on screen are read with ranged reads through the shard's member index (seek,
HTTP Range, S3 ranged GET), as the trainer reads them (training/data/shardstream.py). A shard without an
index (written before the index existed) has its tar headers scanned once instead.

Nothing here raises for a bad shard: a missing, corrupt or uncommitted shard is reported as such
(`ShardProblem`, a message naming the file), and the viewer shows it.
"""

from __future__ import annotations

import json
import tarfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from contracts.parquet_bytes import read_table_bytes
from contracts import layout, reads, storage
from viewer.reader import SampleReader, ShardProblem

ROW_COLUMNS = ("uid", "clip", "key", "status", "reason", "detail")


@dataclass
class ShardEntry:
    number: int
    state: str                  # "committed" or "partial" (files but no stats.json: in progress or crashed)
    has_index: bool | None      # member index present (None: unknown, a served folder)
    samples: int | None = None  # ok samples, from index.json or stats.json once read

    def label(self) -> str:
        n = f"{self.samples} ok" if self.samples is not None else ""
        return f"{self.number:06d} · {self.state}" + (f" · {n}" if n else "")


@dataclass
class Listing:
    shards: list[ShardEntry] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def committed(self) -> list[ShardEntry]:
        return [s for s in self.shards if s.state == "committed"]


def dataset_kind(target: str) -> str:
    if storage.is_http(target):
        return "http"
    return "remote" if storage.is_url(target) else "local"


class Dataset:
    """One dataset location; thread-safe caches of what has been read (the GUI calls from threads)."""

    def __init__(self, target: str):
        self.kind = dataset_kind(target)
        if self.kind == "http":
            self.base = target if target.endswith("/") else target + "/"
            storage.split_url(self.base)  # refuse '..' and empty components
            self.url = self.base.rstrip("/")
            self.store = None
        else:
            self.store = storage.open_store(target)
            self.url = self.store.url
            if not self.store.remote and not self.store.is_dir():
                raise FileNotFoundError(f"{target}: no such dataset folder")
        self._lock = threading.Lock()
        self._listing: Listing | None = None
        self._stats: dict[int, dict | ShardProblem] = {}
        self._rows: dict[int, list[dict] | ShardProblem] = {}
        self._index: OrderedDict[int, dict[str, tuple[int, int]]] = OrderedDict()

    # -- files ---------------------------------------------------------------------------------
    def file_url(self, name: str) -> str:
        storage.check_name(name, self.url)
        return self.base + name if self.store is None else self.store.child(name)

    def read(self, name: str) -> bytes:
        if self.store is None:
            return reads.read_bytes(self.file_url(name))
        return self.store.read_bytes(name)

    # -- listing -------------------------------------------------------------------------------
    def listing(self, refresh: bool = False) -> Listing:
        """Committed and partial shards (one listing; a served folder: its index.json, committed only)."""
        with self._lock:
            if self._listing is not None and not refresh:
                return self._listing
        out = Listing()
        if self.store is None:
            try:
                data = json.loads(self.read(layout.INDEX_NAME))
                names = layout.index_tars(data, self.file_url(layout.INDEX_NAME))
                counts = {int(e["shard"]): e.get("samples") for e in data["shards"]}
            except Exception as exn:  # noqa: BLE001 (network, JSON and layout errors: one message)
                raise FileNotFoundError(f"{self.base}: cannot read the committed-shard index "
                                        f"{self.file_url(layout.INDEX_NAME)} ({exn}); run `pipeline status DIR` "
                                        f"on the served folder to write it") from None
            for name in names:
                n = int(layout.SHARD_RE.match(name).group(1))
                out.shards.append(ShardEntry(n, "committed", None, _int_or_none(counts.get(n))))
        else:
            names = set(self.store.listdir())
            committed = set(layout.committed_in(names))
            counts = self._index_counts(names)
            for n in sorted(layout.shards_with_files(names)):
                state = "committed" if n in committed else "partial"
                out.shards.append(ShardEntry(n, state, layout.members_name(n) in names, counts.get(n)))
            for n in sorted(committed):
                if layout.parquet_name(n) not in names:
                    out.problems.append(f"shard {n:06d}: committed but {layout.parquet_name(n)} is missing")
        with self._lock:
            self._listing = out
        return out

    def _index_counts(self, names: set[str]) -> dict[int, int | None]:
        """ok counts per shard from index.json when there is one (a hint for the list; stats.json rules)."""
        if layout.INDEX_NAME not in names:
            return {}
        try:
            data = json.loads(self.read(layout.INDEX_NAME))
            return {int(e["shard"]): _int_or_none(e.get("samples")) for e in data["shards"]}
        except Exception:  # noqa: BLE001 (a stale or broken index only loses the hint)
            return {}

    def entry(self, n: int) -> ShardEntry | None:
        return next((s for s in self.listing().shards if s.number == n), None)

    # -- one shard -----------------------------------------------------------------------------
    def stats(self, n: int) -> dict:
        """Shard n's stats.json; ShardProblem when it is uncommitted, missing or not a JSON object."""
        with self._lock:
            hit = self._stats.get(n)
        if hit is None:
            entry = self.entry(n)
            if entry is not None and entry.state != "committed":
                hit = ShardProblem(f"shard {n:06d} is not committed (no {layout.stats_name(n)}): being rendered "
                                   f"now, or left by a killed run; its files are not data")
            else:
                try:
                    hit = json.loads(self.read(layout.stats_name(n)))
                    if not isinstance(hit, dict):
                        raise ValueError("not a JSON object")
                except FileNotFoundError:
                    hit = ShardProblem(f"{self.file_url(layout.stats_name(n))}: missing")
                except (OSError, ValueError) as exn:
                    hit = ShardProblem(f"{self.file_url(layout.stats_name(n))}: unreadable ({exn})"[:400])
            with self._lock:
                self._stats[n] = hit
                if isinstance(hit, dict) and entry is not None and entry.samples is None:
                    entry.samples = _int_or_none(hit.get("ok"))
        if isinstance(hit, ShardProblem):
            raise hit
        return hit

    def rows(self, n: int) -> list[dict]:
        """Shard n's parquet rows (uid, clip, key, status, reason, detail); ShardProblem when unreadable."""
        with self._lock:
            hit = self._rows.get(n)
        if hit is None:
            try:
                self.stats(n)
                hit = self._read_rows(n)
            except ShardProblem as exn:
                hit = exn
            with self._lock:
                self._rows[n] = hit
        if isinstance(hit, ShardProblem):
            raise hit
        return hit

    def _read_rows(self, n: int) -> list[dict]:
        name = layout.parquet_name(n)
        try:
            table = read_table_bytes(self.read(name))
        except FileNotFoundError:
            raise ShardProblem(f"{self.file_url(name)}: missing") from None
        except Exception as exn:  # noqa: BLE001 (OSError, ArrowInvalid, ...: a corrupt parquet)
            raise ShardProblem(f"{self.file_url(name)}: unreadable ({type(exn).__name__}: {exn})"[:400]) from None
        if "key" not in table.column_names or "status" not in table.column_names:
            raise ShardProblem(f"{self.file_url(name)}: no key/status columns (not a shard parquet)")
        cols = {c: table.column(c).to_pylist() for c in ROW_COLUMNS if c in table.column_names}
        out = []
        for i in range(table.num_rows):
            row = {c: cols[c][i] if c in cols else None for c in ROW_COLUMNS}
            row["shard"] = n
            out.append(row)
        return out

    def members(self, n: int) -> dict[str, tuple[int, int]]:
        """name -> (offset, size) of shard n's tar members: its member index (checked against the tar's
        size), or, without one, its tar headers scanned once. ShardProblem when neither works."""
        with self._lock:
            if n in self._index:
                self._index.move_to_end(n)
                return self._index[n]
        self.stats(n)
        tar = self.file_url(layout.tar_name(n))
        from training.data.shardstream import index_fits, load_member_index

        try:
            index = load_member_index(tar)
        except Exception as exn:  # noqa: BLE001
            index, why = None, f"member index unreadable ({exn})"
        else:
            why = "no member index"
        try:
            size = reads.size(tar)
        except FileNotFoundError:
            raise ShardProblem(f"{tar}: missing") from None
        except Exception as exn:  # noqa: BLE001
            raise ShardProblem(f"{tar}: cannot read its size ({exn})"[:400]) from None
        recorded = self.stats(n).get("tar_bytes")
        if isinstance(recorded, int) and recorded != size:
            raise ShardProblem(f"{tar}: {size} bytes, but its stats.json records {recorded}: truncated or replaced")
        if index is not None and not index_fits(index, size):
            raise ShardProblem(f"{tar}: the tar ({size} bytes) does not end where its member index says: "
                               f"truncated, or rewritten after the index")
        if index is None:
            index = self._scan_tar(tar, why)
            end = -(-max((off + sz for _, off, sz in index), default=0) // 512) * 512
            # a whole tar ends with two zero blocks after its last member (a cut one ends anywhere)
            if end + 1024 > size or reads.read_range(tar, end, 1024) != bytes(1024):
                raise ShardProblem(f"{tar}: truncated tar ({size} bytes, no end-of-archive after its last "
                                   f"member; {why})")
        table = {name: (int(off), int(size)) for name, off, size in index}
        with self._lock:
            self._index[n] = table
            while len(self._index) > 64:
                self._index.popitem(last=False)
        return table

    def _scan_tar(self, tar: str, why: str) -> list[tuple[str, int, int]]:
        try:
            with reads.open_stream(tar) as stream, tarfile.open(fileobj=stream, mode="r|") as tf:
                return [(m.name, m.offset_data, m.size) for m in tf if m.isfile()]
        except FileNotFoundError:
            raise ShardProblem(f"{tar}: missing ({why})") from None
        except (OSError, tarfile.TarError) as exn:
            raise ShardProblem(f"{tar}: corrupt or unreadable tar ({why}; {exn})"[:400]) from None

    def sample(self, n: int, key: str) -> SampleReader:
        """Sample `key` of shard n: its JSON read and checked; images and depth on demand."""
        if not isinstance(key, str) or not layout.KEY_RE.match(key):
            raise ShardProblem(f"refused sample key {key!r} (must be {{uid}}_{{clip:03d}})")
        table = self.members(n)
        tar = self.file_url(layout.tar_name(n))
        name = layout.json_member(key)
        if name not in table:
            raise ShardProblem(f"{tar}: no member {name} (a failed or rejected sample has no members)")
        from training.data.decode import SampleError, parse_sample

        mine = {k: v for k, v in table.items() if k.startswith(key + ".")}
        held: dict[str, bytes] = {}
        try:
            data = reads.read_range(tar, *table[name])
        except storage.RangeNotSupported:
            # a server that ignores Range requests: this sample's members streamed once, kept in memory
            held = self._stream_sample(tar, key)
            data = held.get(name, b"")
        except Exception as exn:  # noqa: BLE001 (file, HTTP and S3 errors: the member is unreadable)
            raise ShardProblem(f"{tar}: reading {name} failed ({exn})"[:400]) from None
        try:
            grouped = {"__key__": key, "json": data, **{m[len(key) + 1:]: None for m in mine if m != name}}
            _, meta, _, _, _ = parse_sample(grouped)  # the contract checks the trainer applies
        except SampleError as exn:
            raise ShardProblem(f"{tar}#{name}: {exn}"[:400]) from None
        return SampleReader(key, meta, tar, mine, held)

    def _stream_sample(self, tar: str, key: str) -> dict[str, bytes]:
        from contracts.shardread import iter_shard

        try:
            return next(iter_shard(tar, keys={key})).members
        except (StopIteration, OSError, tarfile.TarError) as exn:
            raise ShardProblem(f"{tar}: cannot stream sample {key} ({exn!r})"[:400]) from None


def _int_or_none(v: Any) -> int | None:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
