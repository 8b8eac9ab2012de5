"""Where a manifest row's asset file is on disk: the one function the render side calls.

`resolve_asset(row)` returns a local path or raises AssetUnavailable with a reason from the fixed
vocabulary (`missing_file`, `download_failed`, `bad_uri`). Local and procedural rows carry a path in
`uri`; Objaverse and Objaverse-XL rows may carry a locator that the source module turns into a path
(using the cache, or the `objaverse` package's real download code when the file is not cached).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from contracts.uids import check_uid
from manifests.locators import OBJAVERSE_SCHEME, OBJAVERSE_XL_SCHEME, AssetUnavailable  # noqa: F401 (part of the API)


def resolve_asset(row: Mapping[str, Any], cache_dir: str | None = None) -> Path:
    """Local path of `row`'s asset file. Never builds a path from an unvalidated uid."""
    uid = check_uid(row["uid"])
    uri = row.get("uri")
    if not isinstance(uri, str) or not uri:
        raise AssetUnavailable("bad_uri", f"row {uid!r} has no uri")
    if uri.startswith(OBJAVERSE_SCHEME):
        from manifests.sources import objaverse as src

        return src.fetch_object(uid, uri[len(OBJAVERSE_SCHEME):], cache_dir)
    if uri.startswith(OBJAVERSE_XL_SCHEME):
        from manifests.sources import objaverse_xl as src

        return src.fetch_object(row, cache_dir)
    if "://" in uri:
        raise AssetUnavailable("bad_uri", f"row {uid!r}: unsupported uri scheme in {uri!r}")
    path = Path(uri).expanduser()
    if not path.is_file():
        raise AssetUnavailable("missing_file", f"row {uid!r}: {path} does not exist")
    return path
