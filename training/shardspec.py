"""Shard SPEC resolution (DESIGN.md §6): a dataset folder, brace patterns, http(s) URLs, joined by '::'.

Only committed shards (stats.json present, DESIGN.md §4) come out of a folder or a served index.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.request
from pathlib import Path

from contracts import layout

log = logging.getLogger(__name__)

HTTP_TIMEOUT_S = 60


def resolve_shards(spec: str) -> list[str]:
    """Expand a shard SPEC (DESIGN.md §6) into tar paths or URLs.

    - a dataset folder: its committed shards (stats.json present), in order;
    - `http://` / `https://` URLs, with brace patterns: taken as given (the server is trusted);
    - an `http(s)://.../` URL ending in '/': a dataset folder served over HTTP; its committed shards
      are read from the folder's index.json (written by `pipeline render` and `pipeline status`);
    - local brace patterns: expanded; a missing tar is an error, a tar without its stats.json is an
      uncommitted crash leftover and is skipped with a warning.
    Several specs may be joined with '::'.
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
        tars = [url + s["tar"] for s in data["shards"]]
    except Exception as exn:  # noqa: BLE001 (network, JSON or layout errors all mean the same to the user)
        raise FileNotFoundError(f"--shards {url}: cannot read the committed-shard index {index} ({exn}); "
                                f"run `pipeline status DIR` on the served folder to write it") from None
    if not tars:
        raise FileNotFoundError(f"--shards {url}: {index} lists no committed shards")
    return tars


def _is_committed_tar(path: str) -> bool:
    n = shard_number(path)
    if n is None:
        return True  # not in the project's naming: nothing to check against, trust the user
    return layout.is_committed(os.path.dirname(path) or ".", n)


def shard_number(url: str) -> int | None:
    """N of a `shard-N.tar` URL or path (None for other names)."""
    m = layout.SHARD_RE.match(url.rstrip("/").rsplit("/", 1)[-1])
    return int(m.group(1)) if m and m.group(2) == "tar" else None


def shard_dir_of(url: str) -> Path | None:
    return Path(url).parent if not url.startswith(("http://", "https://")) else None
