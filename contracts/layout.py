"""Shard layout (DESIGN.md §4): file names, member names, and what counts as committed.

Light on purpose (stdlib only): the render side writes with these names, the training side and
`pipeline status` read with them.
"""

from __future__ import annotations

import json
import numbers
import os
import re
from pathlib import Path

SCHEMA_VERSION = 1

SHARD_RE = re.compile(r"^shard-(\d{6})\.(tar|parquet|stats\.json)$")
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
    return (Path(directory) / stats_name(n)).is_file()


def committed_shards(directory: str | os.PathLike) -> list[int]:
    """Shard numbers whose stats.json exists, sorted. Tars without one are crash leftovers."""
    d = Path(directory)
    if not d.is_dir():
        raise FileNotFoundError(f"{d}: no such dataset folder")
    out = []
    for name in os.listdir(d):
        m = SHARD_RE.match(name)
        if m and m.group(2) == "stats.json" and (d / tar_name(int(m.group(1)))).is_file():
            out.append(int(m.group(1)))
    return sorted(out)


def committed_tars(directory: str | os.PathLike) -> list[str]:
    """Paths of the committed shards' tars: what a dataset folder means as a shard spec (DESIGN.md §6)."""
    d = Path(directory)
    return [str(d / tar_name(n)) for n in committed_shards(d)]


def read_stats(directory: str | os.PathLike, n: int) -> dict:
    with open(Path(directory) / stats_name(n), encoding="utf-8") as f:
        return json.load(f)


# ---------------------------------------------------------------------------------------------
# The committed-shard index: DIR/index.json lists the committed shards so that a reader that cannot
# list a folder (a dataset served over HTTP) still finds them. Rewritten atomically after every
# commit and by `pipeline status`; the stats.json files stay the source of truth.

INDEX_NAME = "index.json"


def build_index(directory: str | os.PathLike) -> dict:
    d = Path(directory)
    shards = []
    for n in committed_shards(d):
        try:
            st = read_stats(d, n)
        except (OSError, ValueError):
            continue  # a stats.json being rewritten right now; the next index picks it up
        shards.append({"shard": n, "tar": tar_name(n), "samples": st.get("ok", st.get("samples"))})
    return {"schema_version": SCHEMA_VERSION, "shards": shards}


def write_index(directory: str | os.PathLike) -> Path:
    d = Path(directory)
    data = build_index(d)
    tmp = d / f".{INDEX_NAME}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, d / INDEX_NAME)
    return d / INDEX_NAME
