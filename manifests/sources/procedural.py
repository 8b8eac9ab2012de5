"""`--source procedural --count N --seed S [--assets-out DIR]`: seeded procedural animated assets.

`render.procedural.generate_assets(out_dir, count, seed)` builds the GLB files with Blender (it
imports bpy; nothing here does until a scan starts). The files are then read like a local folder
(manifests.gltf_info): one row per clip, source `procedural`, licence `cc0` (generated here, no
third-party rights), sha256 of the file. The files stay in DIR: the manifest's `uri` points at them.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from manifests.filters import CurationError, Scan
from manifests.sources.local import scan_files

log = logging.getLogger(__name__)

SOURCE = "procedural"
LICENSE = "cc0"


def scan(count: int, seed: int, assets_out: str | os.PathLike) -> Scan:
    if count < 1:
        raise ValueError(f"--count must be >= 1, got {count}")
    out = Path(assets_out).expanduser()
    try:
        from render.procedural import generate_assets
    except ImportError as exc:
        raise CurationError(f"--source procedural needs render.procedural and bpy (the `render` extra): {exc}") from None
    log.info("procedural: generating %d asset(s) with seed %d into %s", count, seed, out)
    paths = [Path(p) for p in generate_assets(out, count, seed)]
    if len(paths) != count:
        raise CurationError(f"render.procedural.generate_assets returned {len(paths)} file(s) for --count {count}")
    root = out.resolve()
    files = sorted((p.resolve() for p in paths), key=lambda p: p.relative_to(root).as_posix())
    return scan_files(root, files, source=SOURCE, license=LICENSE, check_license=True)
