"""Shard layout (DESIGN.md §4): file names, member names, the member index, and what counts as committed.

Light on purpose (stdlib; fsspec only for URLs, pyarrow only for the member index, both imported
lazily): the render side writes with these names, the training side and `pipeline status` read with
them. Every function taking a `directory` accepts a local folder or an object-store URL
(`s3://bucket/prefix`, DESIGN.md §6) through `contracts.storage`.
"""

from __future__ import annotations

import json
import numbers
import os
import re
from collections.abc import Iterable
from typing import Any

from contracts import storage
from contracts.parquet_bytes import read_table_bytes

SCHEMA_VERSION = 1

SHARD_RE = re.compile(r"^shard-(\d{6})\.(tar|parquet|members\.parquet|stats\.json)$")
ANY_SHARD_FILE_RE = re.compile(r"^\.?shard-(\d{6})\.")  # committed files and a crashed run's .shard-N.*.tmp-PID
KEY_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}_\d{3,}$")  # `{uid}_{clip:03d}` (DESIGN.md §2, §4): safe in file names
MEMBER_RE = re.compile(r"^(?P<key>.+?)\.t(?P<t>\d{3})\.v(?P<v>\d{3})\.(?P<kind>png|webp|depth\.png|normal\.png)$")

# Sample status values in the shard parquet (DESIGN.md §4).
STATUS_OK = "ok"
STATUS_FAILED = "failed"
STATUS_REJECTED = "rejected"
STATUSES = (STATUS_OK, STATUS_FAILED, STATUS_REJECTED)


def shard_stem(n: int) -> str:
    """`shard-NNNNNN` for an integral n in 0..999999 (numpy integers from a DataFrame included)."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or not 0 <= n <= 999_999:
        raise ValueError(f"invalid shard number {n!r}: must be an int in 0..999999")
    return f"shard-{int(n):06d}"


def tar_name(n: int) -> str:
    return f"{shard_stem(n)}.tar"


def parquet_name(n: int) -> str:
    return f"{shard_stem(n)}.parquet"


def stats_name(n: int) -> str:
    return f"{shard_stem(n)}.stats.json"


def members_name(n: int) -> str:
    """The member index `shard-N.members.parquet`: name, offset, size per tar member (DESIGN.md §4)."""
    return f"{shard_stem(n)}.members.parquet"


def image_member(key: str, t: int, v: int, ext: str = "png") -> str:
    """`{key}.t{TTT}.v{VVV}.png` (or `.webp`)."""
    return f"{key}.t{t:03d}.v{v:03d}.{ext}"


def depth_member(key: str, t: int, v: int) -> str:
    return f"{key}.t{t:03d}.v{v:03d}.depth.png"


def normal_member(key: str, t: int, v: int) -> str:
    return f"{key}.t{t:03d}.v{v:03d}.normal.png"


def json_member(key: str) -> str:
    return f"{key}.json"


def is_committed(directory: str | os.PathLike, n: int) -> bool:
    """A shard is committed when its stats.json exists (it is written last)."""
    return storage.open_store(directory).exists(stats_name(n))


def committed_shards(directory: str | os.PathLike) -> list[int]:
    """Shard numbers whose stats.json exists, sorted. Tars without one are crash leftovers."""
    store = storage.open_store(directory)
    if not store.remote:
        if not store.is_dir():
            raise FileNotFoundError(f"{directory}: no such dataset folder")
        return committed_in(store.listdir())
    from contracts import listing

    names = list(listing.iter_names(store))  # in pages of 1,000 (one request each)
    if not names and not store.is_dir():
        raise FileNotFoundError(f"{store.url}: no such dataset (nothing under this prefix)")
    return committed_in(names)


def committed_in(names: Iterable[str]) -> list[int]:
    """The committed shard numbers of a folder listing `names` (stats.json and tar both there), sorted."""
    names = set(names)
    out = []
    for name in names:
        m = SHARD_RE.match(name)
        if m and m.group(2) == "stats.json" and tar_name(int(m.group(1))) in names:
            out.append(int(m.group(1)))
    return sorted(out)


def shards_with_files(names: Iterable[str]) -> set[int]:
    """Shard numbers having any file among `names` (a folder listing): committed, partial or temporary."""
    return {int(m.group(1)) for m in map(ANY_SHARD_FILE_RE.match, names) if m}


def committed_tars(directory: str | os.PathLike) -> list[str]:
    """Paths (or URLs) of the committed shards' tars: what a dataset folder means as a shard spec (DESIGN.md §6)."""
    store = storage.open_store(directory)
    return [store.child(tar_name(n)) for n in committed_shards(directory)]


def read_stats(directory: str | os.PathLike, n: int) -> dict:
    """Shard n's stats.json; ValueError naming the file when it is not a JSON object."""
    store = storage.open_store(directory)
    try:
        data = json.loads(store.read_bytes(stats_name(n)))
    except ValueError as exn:
        raise ValueError(f"{store.child(stats_name(n))}: not a valid stats.json ({exn})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{store.child(stats_name(n))}: not a valid stats.json (a JSON object expected)")
    return data


# ---------------------------------------------------------------------------------------------
# The member index (DESIGN.md §4): one row per tar member, `name`, `offset` of its data in the tar
# (after its header), `size`. Written by the shard writer with the tar, before stats.json.

MEMBER_COLUMNS = ("name", "offset", "size")


def write_member_index(entries: list[tuple[str, int, int]], path: str | os.PathLike) -> None:
    """[(name, offset, size), ...] in tar order -> a Parquet file at the local `path`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    names, offsets, sizes = (list(c) for c in zip(*entries)) if entries else ([], [], [])
    table = pa.Table.from_arrays([pa.array(names, pa.string()), pa.array(offsets, pa.int64()),
                                  pa.array(sizes, pa.int64())], names=list(MEMBER_COLUMNS))
    pq.write_table(table, path)


def read_member_index(data: bytes, where: str) -> list[tuple[str, int, int]]:
    """Parse a members.parquet's bytes -> [(name, offset, size), ...] in tar order; ValueError naming
    `where` when columns are missing or values are impossible."""
    try:
        table = read_table_bytes(data, MEMBER_COLUMNS)
    except Exception as exn:  # noqa: BLE001 (pyarrow raises several kinds for a bad file)
        raise ValueError(f"{where}: not a member index ({type(exn).__name__}: {exn})"[:500]) from None
    rows = list(zip(*(table.column(c).to_pylist() for c in MEMBER_COLUMNS)))
    for name, off, size in rows:
        if not isinstance(name, str) or off is None or size is None or off < 0 or size < 0:
            raise ValueError(f"{where}: bad member row ({name!r}, {off!r}, {size!r})")
    return rows


def tar_member_offsets(tar: str | os.PathLike | Any) -> list[tuple[str, int, int]]:
    """The member index of an existing tar (a local path, or a readable binary stream read once from
    its start), from its headers: for shards written before the index."""
    import tarfile

    if hasattr(tar, "read"):
        with tarfile.open(fileobj=tar, mode="r|") as tf:
            return [(m.name, m.offset_data, m.size) for m in tf if m.isfile()]
    with tarfile.open(tar, "r:") as tf:
        return [(m.name, m.offset_data, m.size) for m in tf.getmembers() if m.isfile()]


# ---------------------------------------------------------------------------------------------
# The committed-shard index: DIR/index.json lists the committed shards so that a reader that cannot
# list a folder (a dataset served over HTTP) still finds them. Together with the commit log under
# DIR/index-log/ (contracts.shard_index) it is complete; the stats.json files stay the source of truth.

INDEX_NAME = "index.json"


def index_tars(data: dict, where: str) -> list[str]:
    """The tar names an index.json lists, each checked to be a plain `shard-N.tar` name: an index
    cannot point outside its dataset."""
    try:
        names = [s["tar"] for s in data["shards"]]
    except (KeyError, TypeError) as exn:
        raise ValueError(f"{where}: not a committed-shard index ({exn!r})") from None
    for name in names:
        m = SHARD_RE.match(name) if isinstance(name, str) else None
        if not m or m.group(2) != "tar":
            raise ValueError(f"{where}: refused entry {name!r} (must be a shard-NNNNNN.tar name inside the dataset)")
    return names
