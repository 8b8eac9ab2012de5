"""`--source local --dir DIR`: every .glb/.gltf (and .glb.gz/.gltf.gz) below DIR.

Files are visited in sorted relative-path order (deterministic), symlinked folders are not followed.
uid = the file stem when it satisfies the uid rule and no earlier file took it; otherwise a stable
hash of the relative path (`contracts.uids.stable_uid`), recorded in `uid_origin` so the user can
trace it. Each file is read with `manifests.gltf_info` (clips, names, durations, counts); a file that
cannot be read becomes a dropped row with the reader's reason.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Iterator

from manifests.filters import Batch, Candidate, Dropped, Scan, apply_file_info
from manifests.gltf_info import GltfError, GltfInfo, gltf_kind, read_gltf_info
from contracts.uids import is_valid_uid, stable_uid

log = logging.getLogger(__name__)


def list_gltf_files(root: Path) -> list[Path]:
    """Every .glb/.gltf(.gz) file below `root`, sorted by relative path, symlinked folders not followed."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in filenames:
            if gltf_kind(name) is not None:
                out.append(Path(dirpath) / name)
    return sorted(out, key=lambda p: p.relative_to(root).as_posix())


def file_stem(path: Path) -> str:
    """`a.glb` -> `a`, `a.gltf.gz` -> `a`."""
    name = path.name
    if name.lower().endswith(".gz"):
        name = name[:-3]
    return name.rsplit(".", 1)[0]


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def candidate_from_file(path: Path, uid: str, source: str, license: str | None, uid_origin: str | None,
                        check_license: bool) -> Candidate | Dropped:
    """Read one glTF file into a Candidate, or a Dropped with the reader's reason."""
    uri = str(path.resolve())
    try:
        info: GltfInfo = read_gltf_info(path)
        digest = sha256_of(path)
    except GltfError as exc:
        return Dropped(uid=uid, source=source, reason=exc.reason, detail=str(exc), uri=uri)
    except OSError as exc:
        return Dropped(uid=uid, source=source, reason="unreadable_file", detail=f"{path}: {exc}", uri=uri)
    kind = gltf_kind(path)
    c = Candidate(uid=uid, source=source, uri=uri, license=license, sha256=digest, uid_origin=uid_origin,
                  file_type=kind[0] if kind else None, check_license=check_license, name=file_stem(path))
    apply_file_info(c, info)
    return c


def scan_files(root: Path, files: list[Path], source: str, license: str | None, check_license: bool) -> Scan:
    """A Scan over `files` (below `root`), one unit per file."""

    def batches() -> Iterator[Batch]:
        taken: dict[str, str] = {}
        for path in files:
            rel = path.relative_to(root).as_posix()
            stem = file_stem(path)
            if is_valid_uid(stem) and stem not in taken:
                uid, origin = stem, None
            else:
                uid, origin = stable_uid(rel), rel
                if stem in taken:
                    log.info("%s: stem %r is already the uid of %s; this file gets the path-hash uid %s", rel, stem, taken[stem], uid)
                else:
                    log.debug("%s: stem %r breaks the uid rule; uid %s is a hash of the relative path", rel, stem, uid)
            taken.setdefault(uid, rel)
            yield Batch(items=[candidate_from_file(path, uid, source, license, origin, check_license)])

    return Scan(units=len(files), unit_name="files", batches=batches)


def scan(directory: str | os.PathLike) -> Scan:
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"--dir {root}: no such folder")
    files = list_gltf_files(root)
    log.info("%s: %d glTF/GLB file(s)", root, len(files))
    return scan_files(root, files, source="local", license=None, check_license=False)
