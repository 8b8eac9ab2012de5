"""`--source objaverse [--cache-dir DIR]`: Objaverse 1.0 through the `objaverse` package's own code.

The package keeps its cache under `~/.objaverse/hf-objaverse-v1/` (module globals `BASE_PATH` and
`_VERSIONED_PATH`): `object-paths.json.gz` (uid -> `glbs/000-NNN/<uid>.glb`), `metadata/000-NNN.json.gz`
(160 annotation files of about 5,000 records each) and `glbs/000-NNN/<uid>.glb`. `--cache-dir DIR`
plays the role of `~/.objaverse`: the globals point at DIR while a package function runs and are
restored afterwards.

Bounded memory: `object-paths.json.gz` is parsed once (the package's `_load_object_paths` is memoised
while it runs, it would otherwise parse the 800K-entry file on every call); uids are grouped by
their metadata folder and `objaverse.load_annotations(uids=group)` reads one metadata file at a
time, so only one file's records are ever in memory.

Offline: the package downloads missing cache files with urllib and fails with a URLError. This module
checks the files it needs first and raises CurationError naming the missing file and how to provide
it, before any package function runs.

Rows: one per clip (`animationCount` clips, names empty); when the .glb is already in the cache the
file is read (manifests.gltf_info) for clip names and durations and `uri` is the local path, else
`uri` is `objaverse:<object path>`, resolved at render time by `fetch_object` (the package's
`load_objects`, i.e. its real download code). sha256 stays null: Objaverse 1.0 annotations carry none.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import urllib.error
import zlib
from pathlib import Path
from typing import Any, Iterator

from manifests.locators import AssetUnavailable
from manifests.filters import Batch, Candidate, Clip, CurationError, Dropped, Scan
from contracts.uids import UID_RE, is_valid_uid

log = logging.getLogger(__name__)

SOURCE = "objaverse"
VERSIONED_DIR = "hf-objaverse-v1"
OBJECT_PATHS = "object-paths.json.gz"
HF_BASE = "https://huggingface.co/datasets/allenai/objaverse/resolve/main"
NUM_METADATA_FILES = 160
OBJECT_PATH_RE = re.compile(r"^glbs/(\d{3}-\d{3})/([A-Za-z0-9_-]{1,128})\.glb$")

# Annotation fields curation reads (names as the Sketchfab API / Objaverse metadata spell them) and
# the types they may have; a record missing one, or with another type, is a `bad_annotation` row.
_NoneType = type(None)
FIELDS: dict[str, tuple[type, ...]] = {
    "uid": (str,),
    "name": (str, _NoneType),
    "license": (str, _NoneType),
    "isAgeRestricted": (bool,),
    "animationCount": (int,),
    "faceCount": (int, _NoneType),
    "vertexCount": (int, _NoneType),
}


def default_cache_dir() -> Path:
    return Path("~/.objaverse").expanduser()


def how_to_provide(cache: Path, relative: list[str]) -> str:
    """The fix for missing cache files, for the error message and the README."""
    first = relative[0]
    return (f"On a machine with network, run `python -c \"import objaverse; objaverse.load_annotations()\"` "
            f"(fills ~/.objaverse/{VERSIONED_DIR}/) and copy that folder to {cache / VERSIONED_DIR}/, or download "
            f"{HF_BASE}/{first} to {cache / VERSIONED_DIR / first} (and likewise for the others).")


class _Package:
    """The `objaverse` module pointed at one cache folder, with object-paths parsed once."""

    def __init__(self, cache: Path):
        self.cache = cache
        self._object_paths: dict | None = None

    @contextlib.contextmanager
    def active(self) -> Iterator[Any]:
        import objaverse

        saved = (objaverse.BASE_PATH, objaverse._VERSIONED_PATH, objaverse._load_object_paths)
        original = saved[2]

        def load_object_paths_once() -> dict:
            if self._object_paths is None:
                self._object_paths = original()
            return self._object_paths

        objaverse.BASE_PATH = str(self.cache)
        objaverse._VERSIONED_PATH = os.path.join(str(self.cache), VERSIONED_DIR)
        objaverse._load_object_paths = load_object_paths_once
        try:
            yield objaverse
        finally:
            objaverse.BASE_PATH, objaverse._VERSIONED_PATH, objaverse._load_object_paths = saved


_PACKAGES: dict[Path, tuple[tuple[int, int] | None, _Package]] = {}


def _package(cache: Path) -> _Package:
    """A package view for `fetch_object`, memoised per cache folder while its object-paths file is
    unchanged (rendering resolves many rows per process; parsing 800K paths each time would dominate)."""
    try:
        st = (cache / VERSIONED_DIR / OBJECT_PATHS).stat()
        sig = (st.st_mtime_ns, st.st_size)
    except OSError:
        sig = None
    key = cache.resolve()
    hit = _PACKAGES.get(key)
    if hit is None or hit[0] != sig or sig is None:
        hit = _PACKAGES[key] = (sig, _Package(cache))
    return hit[1]


def _unreadable(path: Path, relative: str, exc: BaseException) -> CurationError:
    return CurationError(f"{path}: not a readable gzip-compressed JSON file ({type(exc).__name__}: {exc}); "
                         f"delete it and download it again from {HF_BASE}/{relative}")


def _object_paths(pkg: _Package) -> tuple[list[Any], dict[Any, Any]]:
    path = pkg.cache / VERSIONED_DIR / OBJECT_PATHS
    if not path.is_file():
        raise CurationError(f"Objaverse cache file missing: {path}. {how_to_provide(pkg.cache, [OBJECT_PATHS])}")
    try:
        with pkg.active() as ov:
            paths = ov._load_object_paths()
            if not isinstance(paths, dict):
                raise CurationError(f"{path}: expected a JSON object uid -> object path, found {type(paths).__name__}")
            uids = ov.load_uids()  # the package's list of uids (same parse, memoised)
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        raise _unreadable(path, OBJECT_PATHS, exc) from None
    return uids, paths


def scan(cache_dir: str | os.PathLike | None, wanted: frozenset[str] | None = None) -> Scan:
    """A Scan over the metadata files that hold annotations for the wanted uids (all when None)."""
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    pkg = _Package(cache)  # fresh per scan: object-paths is parsed exactly once, and never stale
    uids, paths = _object_paths(pkg)
    groups: dict[str, list[str]] = {}
    unwanted: dict[str, list[str]] = {}
    pre: dict[str, list[Dropped]] = {}
    for uid in uids:
        opath = paths[uid]
        if not is_valid_uid(uid):
            pre.setdefault("", []).append(Dropped(uid=str(uid), source=SOURCE, reason="invalid_uid",
                                                  detail=f"object-paths key {uid!r} does not match {UID_RE.pattern}"))
            continue
        m = OBJECT_PATH_RE.match(opath) if isinstance(opath, str) else None
        if m is None or m.group(2) != uid:
            pre.setdefault("", []).append(Dropped(uid=uid, source=SOURCE, reason="bad_annotation",
                                                  detail=f"{OBJECT_PATHS}: object path {opath!r} is not glbs/NNN-NNN/{uid}.glb"))
            continue
        folder = m.group(1)
        if wanted is not None and uid not in wanted:
            unwanted.setdefault(folder, []).append(uid)  # their Dropped records are made one folder at a time
            continue
        groups.setdefault(folder, []).append(uid)
    meta_dir = cache / VERSIONED_DIR / "metadata"
    missing = [f"metadata/{f}.json.gz" for f in sorted(groups) if not (meta_dir / f"{f}.json.gz").is_file()]
    if missing:
        shown = ", ".join(str(cache / VERSIONED_DIR / m) for m in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise CurationError(f"Objaverse cache file(s) missing: {shown}{more}. {how_to_provide(cache, missing)}")
    folders = sorted(set(groups) | set(pre) | set(unwanted))
    log.info("objaverse: %d uids in %s, %d to annotate from %d metadata file(s)", len(paths), OBJECT_PATHS,
             sum(map(len, groups.values())), len(groups))

    def batches() -> Iterator[Batch]:
        for folder in folders:
            items: list[Candidate | Dropped] = list(pre.pop(folder, []))
            items.extend(Dropped(uid=uid, source=SOURCE, reason="not_in_uids_file", detail="not listed in --uids-file",
                                 uri=f"objaverse:{paths[uid]}") for uid in unwanted.pop(folder, []))
            uids = groups.pop(folder, [])
            if uids:
                items.extend(_annotate(pkg, cache, folder, uids, paths))
            yield Batch(items=items)

    return Scan(units=len(folders), unit_name="metadata files", batches=batches)


def _annotate(pkg: _Package, cache: Path, folder: str, uids: list[str], paths: dict) -> list[Candidate | Dropped]:
    meta = cache / VERSIONED_DIR / "metadata" / f"{folder}.json.gz"
    try:
        with pkg.active() as ov:
            records = ov.load_annotations(uids=uids)  # reads exactly this one metadata file
    except urllib.error.URLError as exc:  # the file vanished after the check: the package tried to download
        raise CurationError(f"Objaverse cache file missing: {meta} (download attempt failed: {exc.reason}). "
                            f"{how_to_provide(cache, [f'metadata/{folder}.json.gz'])}") from None
    except (OSError, EOFError, zlib.error, ValueError, TypeError, KeyError) as exc:
        raise _unreadable(meta, f"metadata/{folder}.json.gz", exc) from None
    where = f"metadata/{folder}.json.gz"
    prefix = os.path.join(str(cache), VERSIONED_DIR, "")  # a string: building 800K Path objects costs more than parsing
    return [_candidate(uid, paths[uid], records.get(uid), where, prefix) for uid in uids]


def _candidate(uid: str, opath: str, rec: Any, where: str, cache_prefix: str) -> Candidate | Dropped:
    uri = f"objaverse:{opath}"

    def bad(detail: str) -> Dropped:
        return Dropped(uid=uid, source=SOURCE, reason="bad_annotation", detail=f"{where}: {detail}", uri=uri)

    if rec is None:
        return bad("no record for this uid")
    if not isinstance(rec, dict):
        return bad(f"record is a {type(rec).__name__}, not an object")
    missing = [k for k in FIELDS if k not in rec]
    if missing:
        return bad(f"record lacks {', '.join(missing)}")
    for k, types in FIELDS.items():
        v = rec[k]
        if not isinstance(v, types) or (bool not in types and isinstance(v, bool)):
            return bad(f"field {k} is {v!r}, expected {' or '.join(t.__name__ for t in types)}")
    if rec["uid"] != uid:
        return bad(f"record's uid {rec['uid']!r} differs from its key")
    counts = [rec[k] for k in ("animationCount", "faceCount", "vertexCount")]
    if any(v is not None and v < 0 for v in counts):
        return bad(f"negative count in animationCount/faceCount/vertexCount {counts}")
    n = rec["animationCount"]
    return Candidate(uid=uid, source=SOURCE, uri=uri, clip_count=n, clips=[Clip(index=i) for i in range(n)],
                     license=rec["license"], face_count=rec["faceCount"], vertex_count=rec["vertexCount"],
                     age_restricted=rec["isAgeRestricted"], name=rec["name"], file_type="glb",
                     pending_file=f"{cache_prefix}{opath}")


def fetch_object(uid: str, object_path: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The local .glb of `uid`: from the cache, else downloaded with `objaverse.load_objects`.

    Raises AssetUnavailable: `bad_uri` for a malformed object path, `download_failed` when the file
    is not cached and the package cannot download it (offline, unknown uid, ...).
    """
    m = OBJECT_PATH_RE.match(object_path) if isinstance(object_path, str) else None
    if not is_valid_uid(uid) or m is None or m.group(2) != uid:
        raise AssetUnavailable("bad_uri", f"objaverse:{object_path!r} is not glbs/NNN-NNN/<uid>.glb for uid {uid!r}")
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    local = cache / VERSIONED_DIR / object_path
    if local.is_file():
        return local
    pkg = _package(cache)
    try:
        with pkg.active() as ov:
            out = ov.load_objects(uids=[uid], download_processes=1)
    except (urllib.error.URLError, OSError, EOFError, zlib.error, ValueError) as exc:
        raise AssetUnavailable("download_failed", f"{uid}: {local} is not cached and the objaverse package could not "
                               f"download it ({type(exc).__name__}: {exc})") from None
    path = out.get(uid)
    if path is None or not Path(path).is_file():
        raise AssetUnavailable("download_failed", f"{uid}: the objaverse package returned no file "
                               f"(is the uid in {cache / VERSIONED_DIR / OBJECT_PATHS}?)")
    return Path(path)
