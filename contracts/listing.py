"""Listing a dataset in pages, and the few cheap probes a commit needs (DESIGN.md §6 storage).

A bucket prefix with 10,000 shards holds 40,000+ objects. Nothing here loads a whole listing at once
or lists more than it needs:

- `iter_names(store, prefix, start_after)`: the plain names directly under the dataset (or under
  one sub-folder, e.g. the commit log), in name order, one page (up to 1,000 keys, one
  ListObjectsV2 request on S3) at a time; `start_after` skips everything up to a name without
  listing it (S3 `StartAfter`), which is what makes a poll of the commit log cost one request.
- `head_exists(store, name)`: one HEAD on S3 (s3fs's `exists` adds a directory probe on a miss).

Local folders use `os.scandir` (sorted); other fsspec filesystems fall back to their own `ls`.
"""

from __future__ import annotations

import os
from typing import Iterator

from contracts import storage

PAGE = 1000  # S3's own maximum per ListObjectsV2 request


def _is_s3(store) -> bool:
    return getattr(store, "scheme", None) in ("s3", "s3a")


def _split(store, prefix: str) -> tuple[str, str]:
    """(bucket, key prefix ending in '/') of `prefix` (a sub-folder name or '') under the store."""
    bucket, _, root = store.key.partition("/")
    parts = [p for p in (root, prefix) if p]
    return bucket, "/".join(parts) + "/" if parts else ""


def list_page(store, prefix: str = "", start_after: str | None = None, limit: int = PAGE,
              token: str | None = None, begins: str = "") -> tuple[list[str], str | None]:
    """One page of plain names under the store (or its sub-folder `prefix`) after `start_after`
    (and beginning with `begins`): (names in order, continuation token or None). Sub-folders are left out."""
    items, token = list_page_sizes(store, prefix, start_after, limit, token, begins)
    return [n for n, _ in items], token


def list_page_sizes(store, prefix: str = "", start_after: str | None = None, limit: int = PAGE,
                    token: str | None = None, begins: str = "") -> tuple[list[tuple[str, int | None]], str | None]:
    """`list_page` with each name's size in bytes (from the listing itself: no request per object)."""
    if prefix:
        storage.check_name(prefix, store.url)
    if not store.remote or not _is_s3(store):
        items = _plain_listing(store, prefix)
        items = [(n, z) for n, z in items if (start_after is None or n > start_after) and (token is None or n > token)
                 and n.startswith(begins)]
        page = items[:limit]
        return page, (page[-1][0] if len(items) > limit else None)
    bucket, key_prefix = _split(store, prefix)
    kw = {"Bucket": bucket, "Prefix": key_prefix + begins, "Delimiter": "/", "MaxKeys": limit}
    if token is not None:
        kw["ContinuationToken"] = token
    elif start_after is not None:
        kw["StartAfter"] = key_prefix + start_after
    with storage.translate_errors(store.url, "listing"):
        out = store.fs.call_s3("list_objects_v2", **kw)
    items = [(o["Key"][len(key_prefix):], int(o.get("Size", 0))) for o in out.get("Contents", [])]
    nxt = out.get("NextContinuationToken") if out.get("IsTruncated") else None
    return [(n, z) for n, z in items if n and "/" not in n], nxt


def _plain_listing(store, prefix: str) -> list[tuple[str, int | None]]:
    """A local folder (scandir) or another fsspec filesystem (its own `ls`), sorted, dot-names left out."""
    if not store.remote:
        root = store.root / prefix if prefix else store.root
        try:
            with os.scandir(root) as it:
                items = [(e.name, e.stat().st_size) for e in it if not e.name.startswith(".") and e.is_file()]
        except FileNotFoundError:
            return []
        return sorted(items)
    sub = storage.open_store(f"{store.url}/{prefix}") if prefix else store
    try:
        return sorted((n, None) for n in sub.listdir() if not n.startswith("."))
    except FileNotFoundError:
        return []


def iter_names(store, prefix: str = "", start_after: str | None = None, page: int = PAGE) -> Iterator[str]:
    """Every plain name under the store (or its sub-folder `prefix`) after `start_after`, in order,
    fetched a page at a time."""
    for name, _ in iter_sizes(store, prefix, start_after, page):
        yield name


def iter_sizes(store, prefix: str = "", start_after: str | None = None, page: int = PAGE
               ) -> Iterator[tuple[str, int | None]]:
    """(name, size) of every plain name, as `iter_names`."""
    if not store.remote or not _is_s3(store):  # one scandir (or ls), not one per page
        yield from ((n, z) for n, z in _plain_listing(store, prefix) if start_after is None or n > start_after)
        return
    token = None
    while True:
        items, token = list_page_sizes(store, prefix, start_after, page, token)
        yield from items
        if token is None:
            return


def head_exists(store, name: str) -> bool:
    """Whether the object `name` exists: one HEAD on S3, a stat locally."""
    if not _is_s3(store):
        return store.exists(name)
    bucket, _ = _split(store, "")
    key = store._key(name)
    with storage.translate_errors(store.child(name), "checking"):
        try:
            store.fs.call_s3("head_object", Bucket=bucket, Key=key)
        except FileNotFoundError:
            return False
    return True
