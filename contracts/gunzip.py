"""The gzip-bomb guard that curation (reading .gltf.gz/.glb.gz without Blender) and the render worker
(unpacking before import) share."""

from __future__ import annotations

import gzip
import os
from typing import BinaryIO

MAX_GUNZIP_BYTES = 4 << 30  # refuse gzip bombs: no real asset decompresses beyond this


class GunzipTooLarge(ValueError):
    """A gzip stream that unpacks to more than MAX_GUNZIP_BYTES."""


def gunzip_into(path: str | os.PathLike, dst: BinaryIO, limit: int = MAX_GUNZIP_BYTES) -> int:
    """Unpack the gzip file `path` into `dst` in 1 MiB chunks; returns the bytes written. Raises
    GunzipTooLarge past `limit` (a gzip bomb), and gzip's own errors (OSError, EOFError, zlib.error)
    for a broken stream. Used by curation (into memory) and by the render worker (into a file)."""
    total = 0
    with gzip.open(path, "rb") as src:
        while chunk := src.read(1 << 20):
            total += len(chunk)
            if total > limit:
                raise GunzipTooLarge(f"decompresses to more than {limit} bytes")
            dst.write(chunk)
    return total
