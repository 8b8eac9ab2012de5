"""`--source objaverse-xl [--cache-dir DIR]`: Objaverse-XL through `objaverse.xl`'s own annotation code.

The package keeps one Parquet annotation file per XL source under its download folder (default
`~/.objaverse`, `--cache-dir DIR` here): `github/github.parquet`, `sketchfab/sketchfab.parquet`,
`smithsonian/smithsonian.parquet`, `thingiverse/thingiverse.parquet`, with the columns
`fileIdentifier, source, license, fileType, sha256, metadata`. Each is read with the package's
`<Source>Downloader.get_annotations(download_dir=DIR)`, one at a time. Offline, the package would try
to download a missing file (requests, no timeout); this module checks first and raises CurationError
naming the missing file and how to provide it.

Rows:
- only `fileType` glb / gltf are kept; every other type is a dropped `unsupported_format` row;
- uid = the file's sha256 (64 hex digits satisfy the uid rule, and identical files in several repos
  collapse to one asset: later copies are `duplicate`); `file_identifier` keeps XL's own id;
- XL annotations carry no animation count. When the file is already in the cache (the paths the
  package's download code writes), it is read with manifests.gltf_info like a local file: one row per
  clip, static files dropped. Otherwise the asset gets ONE row, clip 0, `clip_count` null: its clips are
  enumerated at render time. The log says how many rows are in that state.
- `uri` = `objaverse-xl:<xl source>:<fileIdentifier>`; `fetch_object` turns it into a local file with
  `objaverse.xl.download_objects` (the package's real download code).

Memory: `get_annotations` loads a whole source's Parquet file (the package's behaviour); only the
glTF rows of one source are turned into Python objects, the rest is dropped column-wise.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, Iterator, Mapping

from manifests.locators import OBJAVERSE_XL_SCHEME, AssetUnavailable
from manifests.filters import Batch, Candidate, CurationError, Dropped, Scan
from contracts.uids import UID_RE, is_valid_uid

log = logging.getLogger(__name__)

SOURCE = "objaverse-xl"
XL_SOURCES = ("github", "sketchfab", "smithsonian", "thingiverse")
GLTF_TYPES = ("glb", "gltf")
COLUMNS = ("fileIdentifier", "source", "license", "fileType", "sha256")
HF_BASE = "https://huggingface.co/datasets/allenai/objaverse-xl/resolve/main"
GITHUB_RE = re.compile(r"^https://github\.com/([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+)/blob/([0-9a-fA-F]{7,40})/(.+)$")


def default_cache_dir() -> Path:
    return Path("~/.objaverse").expanduser()


def parquet_path(cache: Path, xl_source: str) -> Path:
    return cache / xl_source / f"{xl_source}.parquet"


def _cached_files(cache: Path) -> dict[str, dict[str, Path]]:
    """Files the package's download code already wrote, by source: sketchfab uid / smithsonian uuid -> path."""
    out: dict[str, dict[str, Path]] = {"sketchfab": {}, "smithsonian": {}}
    glbs = cache / "hf-objaverse-v1" / "glbs"
    if glbs.is_dir():
        for folder in sorted(glbs.iterdir()):
            if folder.is_dir():
                for f in folder.iterdir():
                    if f.suffix == ".glb":
                        out["sketchfab"][f.stem] = f
    objects = cache / "smithsonian" / "objects"
    if objects.is_dir():
        for f in objects.iterdir():
            if f.suffix == ".glb":
                out["smithsonian"][f.stem] = f
    return out


def local_path(cache: Path, xl_source: str, file_identifier: str, cached: Mapping[str, Mapping[str, Path]] | None = None) -> Path | None:
    """Where the package's download code puts this object's file in `cache`, when that is knowable
    without the network; None otherwise. Never returns a path outside `cache`."""
    if xl_source == "sketchfab":
        key = file_identifier.rstrip("/").split("/")[-1]
        if cached is not None:
            return cached["sketchfab"].get(key)
        hits = sorted((cache / "hf-objaverse-v1" / "glbs").glob(f"*/{key}.glb")) if is_valid_uid(key) else []
        return hits[0] if hits else None
    if xl_source == "smithsonian":
        from objaverse.utils import get_uid_from_str

        key = get_uid_from_str(file_identifier)
        if cached is not None:
            return cached["smithsonian"].get(key)
        p = cache / "smithsonian" / "objects" / f"{key}.glb"
        return p if p.is_file() else None
    if xl_source == "github":
        m = GITHUB_RE.match(file_identifier)
        if m is None:
            return None
        org, repo, _commit, rel = m.groups()
        parts = rel.split("/")
        if org in (".", "..") or repo in (".", "..") or any(p in ("", ".", "..") for p in parts):
            return None
        root = (cache / "github" / "repos").resolve()
        p = (root / org / repo).joinpath(*parts).resolve()
        if root not in p.parents:
            return None
        return p
    return None


def scan(cache_dir: str | os.PathLike | None, xl_sources: tuple[str, ...] = XL_SOURCES) -> Scan:
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    bad = [s for s in xl_sources if s not in XL_SOURCES]
    if bad:
        raise ValueError(f"--xl-sources: unknown Objaverse-XL source(s) {bad}; choose from {list(XL_SOURCES)}")
    missing = [parquet_path(cache, s) for s in xl_sources if not parquet_path(cache, s).is_file()]
    if missing:
        hint = "; ".join(f"download {HF_BASE}/{p.parent.name}/{p.name} to {p}" for p in missing)
        raise CurationError(f"Objaverse-XL annotation file(s) missing: {', '.join(map(str, missing))}. On a machine with "
                            f"network, run `python -c \"import objaverse.xl as oxl; oxl.get_annotations()\"` and copy "
                            f"~/.objaverse/<source>/ here, or {hint}. (--xl-sources limits the sources read.)")
    cached = _cached_files(cache)
    notes: list[str] = []
    state = {"unknown_clips": 0}

    def batches() -> Iterator[Batch]:
        for xl_source in sorted(xl_sources):
            yield _read_source(cache, xl_source, cached, state)
        if state["unknown_clips"]:
            notes.append(f"objaverse-xl: {state['unknown_clips']} asset(s) are not in the cache, so their animation count is "
                         "unknown: one row each (clip 0, clip_count null), clips are enumerated at render time")

    return Scan(units=len(xl_sources), unit_name="annotation files", batches=batches, notes=notes)


def _read_source(cache: Path, xl_source: str, cached: Mapping[str, Mapping[str, Path]], state: dict) -> Batch:
    import objaverse.xl as oxl
    import pandas as pd

    path = parquet_path(cache, xl_source)
    try:
        df = oxl.downloaders[xl_source].get_annotations(download_dir=str(cache))
    except Exception as exc:  # pyarrow/fsspec raise many types for a corrupt file; all mean the same here
        raise CurationError(f"{path}: not a readable Parquet annotation file ({type(exc).__name__}: {exc}); "
                            f"delete it and download it again from {HF_BASE}/{xl_source}/{path.name}") from None
    absent = [c for c in COLUMNS if c not in df.columns]
    if absent:
        raise CurationError(f"{path}: missing column(s) {', '.join(absent)}; expected {', '.join(COLUMNS)}")
    df = df[list(COLUMNS)]
    ftype = df["fileType"].astype("string").str.lower().str.lstrip(".")
    keep = ftype.isin(GLTF_TYPES).fillna(False).to_numpy(dtype=bool)
    fid = df["fileIdentifier"].astype("string")
    other = ~keep
    dropped = None
    if other.any():
        dropped = pd.DataFrame({
            "uid": df["sha256"][other].astype("string").to_numpy(dtype=object),
            "source": SOURCE,
            "reason": "unsupported_format",
            "detail": ("fileType " + ftype[other].fillna("<none>") + " is not glb/gltf").to_numpy(dtype=object),
            "clip": pd.array([pd.NA] * int(other.sum()), dtype="Int32"),
            "uri": (f"{OBJAVERSE_XL_SCHEME}{xl_source}:" + fid[other].fillna("")).to_numpy(dtype=object),
        })
    gl = df[keep].assign(fileType=ftype[keep]).sort_values("fileIdentifier", kind="stable")
    del df
    items = [_candidate(xl_source, r, cache, cached, state) for r in gl.itertuples(index=False)]
    log.info("objaverse-xl/%s: %d glTF/GLB row(s), %d of other types", xl_source, len(items), int(other.sum()))
    return Batch(items=items, dropped_frame=dropped)


def _candidate(xl_source: str, r: Any, cache: Path, cached: Mapping, state: dict) -> Candidate | Dropped:
    fid, sha, lic, ftype = r.fileIdentifier, r.sha256, r.license, r.fileType
    uri = f"{OBJAVERSE_XL_SCHEME}{xl_source}:{fid}"
    if not isinstance(fid, str) or not fid:
        return Dropped(uid=sha if isinstance(sha, str) else None, source=SOURCE, reason="bad_annotation",
                       detail=f"{xl_source}.parquet: row without fileIdentifier", uri=uri)
    if not isinstance(sha, str) or not sha:
        return Dropped(uid=None, source=SOURCE, reason="bad_annotation", detail=f"{xl_source}.parquet: {fid} has no sha256", uri=uri)
    if not is_valid_uid(sha):
        return Dropped(uid=sha, source=SOURCE, reason="invalid_uid", detail=f"sha256 {sha!r} does not match {UID_RE.pattern}", uri=uri)
    local = local_path(cache, xl_source, fid, cached)
    c = Candidate(uid=sha, source=SOURCE, uri=uri, sha256=sha, license=lic if isinstance(lic, str) else None,
                  file_identifier=fid, file_type=ftype, pending_file=local)
    if local is None or (xl_source == "github" and not local.is_file()):
        c.pending_file = None
        state["unknown_clips"] += 1
    return c


def _parse_uri(uri: str) -> tuple[str, str]:
    if not isinstance(uri, str) or not uri.startswith(OBJAVERSE_XL_SCHEME):
        raise AssetUnavailable("bad_uri", f"{uri!r} is not an {OBJAVERSE_XL_SCHEME}<source>:<fileIdentifier> locator")
    xl_source, _, fid = uri[len(OBJAVERSE_XL_SCHEME):].partition(":")
    if xl_source not in XL_SOURCES or not fid:
        raise AssetUnavailable("bad_uri", f"{uri!r}: unknown Objaverse-XL source {xl_source!r} or empty fileIdentifier")
    return xl_source, fid


def fetch_object(row: Mapping[str, Any], cache_dir: str | os.PathLike | None = None) -> Path:
    """The local file of an Objaverse-XL row: from the cache, else via `objaverse.xl.download_objects`.

    Raises AssetUnavailable (`bad_uri`, `download_failed`) with the package's error in the detail.
    """
    xl_source, fid = _parse_uri(row.get("uri"))
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    local = local_path(cache, xl_source, fid)
    if local is not None and local.is_file():
        return local
    import objaverse.xl as oxl
    import pandas as pd

    obj = pd.DataFrame([{"fileIdentifier": fid, "source": xl_source, "sha256": row.get("sha256") or "",
                         "license": row.get("license"), "fileType": row.get("file_type"), "metadata": "{}"}])
    extra = {"save_repo_format": "files"} if xl_source == "github" else {}
    try:
        out = oxl.download_objects(obj, download_dir=str(cache), processes=1, **extra)
    except Exception as exc:  # requests, urllib, git and multiprocessing errors all mean: no file
        raise AssetUnavailable("download_failed", f"{fid}: not cached in {cache} and objaverse.xl could not download it "
                               f"({type(exc).__name__}: {exc})") from None
    path = out.get(fid)
    if not path or not Path(path).is_file():
        why = "missing upstream, or offline"
        if xl_source == "github" and local is not None and local.parent.exists():
            why = f"its repository is already in {cache / 'github' / 'repos'} but without this file"
        raise AssetUnavailable("download_failed", f"{fid}: objaverse.xl returned no file ({why})")
    return Path(path)
