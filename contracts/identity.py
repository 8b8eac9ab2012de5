"""A shard's content identity (DESIGN.md §4): `tar_bytes` and `tar_sha256` in its stats.json.

The shard writers record both when they commit (pipeline/shards.py, and through it the retry writer and
the object-store upload; training/data/synthetic.py's analytic shards too), so a shard is the same shard
wherever it is stored: a local path, an http(s) URL and an `s3://` URL to copies of one tar have one
identity. `seen_in_training` (training/eval/protocol.py) matches shards by it when both the checkpoint's
record and the shard have it, and by location otherwise (shards written before the identity existed).
Stdlib only; storage reads go through contracts.storage.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import urllib.error
from typing import Any

from contracts import layout, reads, storage
from contracts.ttlcache import TTLCache

log = logging.getLogger(__name__)

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
CACHE_TTL_S = 120.0  # a shard rewritten by --retry-failed / --force gets a new identity; re-read after this
_cache = TTLCache(CACHE_TTL_S, 4096)


def tar_identity(path: str | os.PathLike) -> dict[str, Any]:
    """{'tar_bytes', 'tar_sha256'} of a local tar file (read once, in 1 MiB blocks)."""
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
            n += len(block)
    return {"tar_bytes": n, "tar_sha256": h.hexdigest()}


def valid_identity(record: Any) -> dict[str, Any] | None:
    """The identity part of a stats.json (or trained_on) record, or None when it has none or a malformed one."""
    if not isinstance(record, dict):
        return None
    size, digest = record.get("tar_bytes"), record.get("tar_sha256")
    if isinstance(size, int) and size > 0 and isinstance(digest, str) and SHA256_RE.match(digest):
        return {"tar_bytes": size, "tar_sha256": digest}
    return None


def stats_url(tar_url: str) -> str | None:
    """`.../shard-N.tar` -> `.../shard-N.stats.json` (None for tars outside the project's naming)."""
    head, name = storage.parent_and_name(str(tar_url))
    m = layout.SHARD_RE.match(name)
    if not m or m.group(2) != "tar":
        return None
    return f"{head}/{layout.stats_name(int(m.group(1)))}"


def shard_identity(tar_url: str) -> dict[str, Any] | None:
    """The identity its stats.json records for the shard at `tar_url` (a local path or a URL); None when
    the shard has no stats.json beside it or one written before the identity existed. A stats.json that
    cannot be read is logged and counts as none (the caller falls back to the location). Cached per
    process for CACHE_TTL_S."""
    return _cache.get_or(tar_url, lambda: _read_identity(tar_url))


def _read_identity(tar_url: str) -> dict[str, Any] | None:
    url = stats_url(tar_url)
    if url is None:
        return None
    try:
        return valid_identity(json.loads(reads.read_bytes(url)))
    except (FileNotFoundError, urllib.error.HTTPError, ValueError, OSError, storage.StorageError) as exn:
        log.debug("%s: no content identity (%s)", url, exn)
        return None
