"""Listing a dataset in pages, and the few cheap probes a commit needs (DESIGN.md §6 storage).

A bucket prefix with 10,000 shards holds 40,000+ objects. Nothing here loads a whole listing at once
or lists more than it needs:

- `iter_names(store, prefix, start_after)`: the plain names directly under the dataset (or under
  one sub-folder, e.g. the commit log), in name order, one page (up to 1,000 keys, one
  ListObjectsV2 request on S3) at a time; `start_after` skips everything up to a name without
  listing it (S3 `StartAfter`), which is what makes a poll of the commit log cost one request.
- `head_exists(store, name)`: one HEAD on S3 (s3fs's `exists` adds a directory probe on a miss).
- `probe(store)`: reachability, credentials and bucket in one request (a one-key listing), for
  `FsspecStore.ensure()`.

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
    if prefix:
        storage.check_name(prefix, store.url)
    if not store.remote:
        root = store.root / prefix if prefix else store.root
        try:
            names = sorted(e.name for e in os.scandir(root) if e.is_file() and not e.name.startswith("."))
        except FileNotFoundError:
            return [], None
        if start_after is not None:
            names = [n for n in names if n > start_after]
        if begins:
            names = [n for n in names if n.startswith(begins)]
        if token is not None:
            names = [n for n in names if n > token]
        page = names[:limit]
        return page, (page[-1] if len(names) > limit else None)
    if not _is_s3(store):  # another fsspec filesystem: its own listing, filtered here
        sub = storage.open_store(f"{store.url}/{prefix}") if prefix else store
        try:
            names = sorted(n for n in sub.listdir() if not n.startswith("."))
        except FileNotFoundError:
            return [], None
        names = [n for n in names if (start_after is None or n > start_after) and (token is None or n > token)
                 and n.startswith(begins)]
        return names[:limit], (names[limit - 1] if len(names) > limit else None)
    bucket, key_prefix = _split(store, prefix)
    kw = {"Bucket": bucket, "Prefix": key_prefix + begins, "Delimiter": "/", "MaxKeys": limit}
    if token is not None:
        kw["ContinuationToken"] = token
    elif start_after is not None:
        kw["StartAfter"] = key_prefix + start_after
    with storage.translate_errors(store.url, "listing"):
        out = store.fs.call_s3("list_objects_v2", **kw)
    names = [o["Key"][len(key_prefix):] for o in out.get("Contents", [])]
    nxt = out.get("NextContinuationToken") if out.get("IsTruncated") else None
    return [n for n in names if n and "/" not in n], nxt


def iter_names(store, prefix: str = "", start_after: str | None = None, page: int = PAGE) -> Iterator[str]:
    """Every plain name under the store (or its sub-folder `prefix`) after `start_after`, in order,
    fetched a page at a time."""
    token = None
    while True:
        names, token = list_page(store, prefix, start_after, page, token)
        yield from names
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


def probe(store) -> None:
    """One request that fails when the endpoint is unreachable, the credentials are refused or the
    bucket is missing (a one-key listing of the dataset prefix); FileNotFoundError for a missing bucket."""
    bucket, key_prefix = _split(store, "")
    store.fs.call_s3("list_objects_v2", Bucket=bucket, Prefix=key_prefix, MaxKeys=1)
