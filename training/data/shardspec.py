"""Shard SPEC resolution (DESIGN.md §6): a dataset folder or object-store prefix, brace patterns,
http(s) URLs, joined by '::'.

Only committed shards (stats.json present, DESIGN.md §4) come out of a folder, a prefix or a served index.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.request
from pathlib import Path

from contracts import layout, shard_index, storage

log = logging.getLogger(__name__)

HTTP_TIMEOUT_S = storage.HTTP_TIMEOUT_S


def resolve_shards(spec: str, views: dict | None = None) -> list[str]:
    """Expand a shard SPEC (DESIGN.md §6) into tar paths or URLs.

    - a dataset folder: its committed shards (stats.json present), in order;
    - `http://` / `https://` URLs, with brace patterns: taken as given (the server is trusted);
    - an `http(s)://.../` URL ending in '/': a dataset folder served over HTTP; its committed shards
      are read from the folder's index.json (written by `pipeline render` and `pipeline status`);
    - an object-store URL (`s3://bucket/prefix`, with or without a trailing '/'): the dataset under
      that prefix, its committed shards read from its index.json and commit log (contracts.shard_index;
      found by listing when it has neither);
      a URL whose last part ends in `.tar` or holds a brace pattern names tars, checked like local ones;
    - local brace patterns: expanded; a missing tar is an error, a tar without its stats.json is an
      uncommitted crash leftover and is skipped with a warning.
    Several specs may be joined with '::'. URLs with `..` or empty components are refused.
    `views` (a dict kept by the caller, e.g. a `--follow` trainer): object-store prefixes' index views
    from the last call, brought up to date with one listing of the commit log each.
    """
    import braceexpand

    out: list[str] = []
    for part in spec.split("::"):
        part = part.strip()
        if not part:
            continue
        if part.startswith(("http://", "https://")):
            out.extend(_http_dataset(part) if part.endswith("/") else braceexpand.braceexpand(part))
            continue
        if storage.is_url(part):
            out.extend(_store_dataset(part, braceexpand.braceexpand, views))
            continue
        if os.path.isdir(part):
            tars = layout.committed_tars(part)
            if not tars:
                raise FileNotFoundError(f"--shards {part}: dataset folder has no committed shards (no shard-*.stats.json)")
            out.extend(tars)
            continue
        paths = list(braceexpand.braceexpand(part))
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            raise FileNotFoundError(f"--shards {spec}: {len(missing)} of {len(paths)} tar(s) missing, e.g. {missing[0]}")
        committed = [p for p in paths if _is_committed_tar(p)]
        if len(committed) < len(paths):
            log.warning("--shards %s: skipping %d uncommitted tar(s) (no stats.json), e.g. %s", part,
                        len(paths) - len(committed), next(p for p in paths if p not in committed))
        out.extend(committed)
    if not out:
        raise FileNotFoundError(f"--shards {spec}: no shards")
    return out


def _http_dataset(url: str) -> list[str]:
    """Committed shards of a dataset folder served over HTTP, from its index.json."""
    index = url + layout.INDEX_NAME
    try:
        with urllib.request.urlopen(index, timeout=HTTP_TIMEOUT_S) as r:  # noqa: S310 (user-given dataset URL)
            data = json.loads(r.read())
        tars = [url + name for name in layout.index_tars(data, index)]
    except Exception as exn:  # noqa: BLE001 (network, JSON or layout errors all mean the same to the user)
        raise FileNotFoundError(f"--shards {url}: cannot read the committed-shard index {index} ({exn}); "
                                f"run `pipeline status DIR` on the served folder to write it") from None
    if not tars:
        raise FileNotFoundError(f"--shards {url}: {index} lists no committed shards")
    return tars


def _store_dataset(part: str, expand, views: dict | None = None) -> list[str]:
    """Committed tars of an object-store dataset prefix, or the committed ones among named tar URLs."""
    last = part.rstrip("/").rsplit("/", 1)[-1]
    if last.endswith(".tar") or "{" in part:
        urls = list(expand(part))
        for u in urls:
            storage.split_url(u)  # refuse '..' and empty components before touching the store
        committed = [u for u in urls if _is_committed_tar(u)]
        if len(committed) < len(urls):
            log.warning("--shards %s: skipping %d uncommitted or missing tar(s) (no stats.json), e.g. %s", part,
                        len(urls) - len(committed), next(u for u in urls if u not in committed))
        return committed
    store = storage.open_store(part)
    view, bad = (views or {}).get(store.url), None
    if view is not None:
        view.poll()
    else:
        view = shard_index.IndexView(store.url).load()  # index.json + its log: two requests, any size
    if view.problem:
        view, bad = None, view.problem
        log.warning("--shards %s: %s; listing the committed shards instead", part, bad)
    if view is not None and view.base:
        if views is not None:
            views[store.url] = view
        tars = view.tars()
    else:  # a dataset written before the index existed (or a refused index): list it
        try:
            tars = layout.committed_tars(store.url)
        except FileNotFoundError:
            tars = []
    if not tars:
        if bad is not None:
            raise FileNotFoundError(f"--shards {part}: {bad}") from None
        raise FileNotFoundError(f"--shards {part}: no committed shards under this prefix (no shard-*.stats.json)")
    return tars


def _is_committed_tar(path: str) -> bool:
    n = shard_number(path)
    if n is None:
        return True  # not in the project's naming: nothing to check against, trust the user
    return layout.is_committed(storage.parent_and_name(path)[0] or ".", n)


def shard_number(url: str) -> int | None:
    """N of a `shard-N.tar` URL or path (None for other names)."""
    m = layout.SHARD_RE.match(url.rstrip("/").rsplit("/", 1)[-1])
    return int(m.group(1)) if m and m.group(2) == "tar" else None


def shard_dir_of(url: str) -> Path | None:
    return Path(url).parent if not storage.is_url(url) else None
