"""`--source procedural --count N --seed S [--categories a,b] [--assets-out DIR]`: seeded procedural animated assets.

`render.procedural.generate_assets(out_dir, count, seed, categories=...)` builds the GLB files with Blender
(it imports bpy; nothing here does until a scan starts). The files are then read like a local folder
(manifests.gltf_info): one row per clip, source `procedural`, licence `cc0` (generated here, no third-party
rights), sha256 of the file, and `category` (the generator that made the asset, from its uid). The files
stay in DIR: the manifest's `uri` points at them. The default mix is render.procedural.naming.DEFAULT_MIX.
This module is the one place in manifests/ that imports render.procedural.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from manifests.filters import Batch, CurationError, Scan
from manifests.sources.local import scan_files

log = logging.getLogger(__name__)

SOURCE = "procedural"
LICENSE = "cc0"


def normalise_categories(text: str | None) -> str:
    """`--categories` checked and spelled out (`a,b,...`; None or empty = the default mix); ValueError names the flag."""
    from render.procedural.naming import parse_categories  # bpy-free

    try:
        return ",".join(parse_categories(text))
    except ValueError as exc:
        raise ValueError(f"--categories: {exc}") from None


def scan(count: int, seed: int, assets_out: str | os.PathLike, categories: str | None = None) -> Scan:
    if count < 1:
        raise ValueError(f"--count must be >= 1, got {count}")
    out = Path(assets_out).expanduser()
    mix = normalise_categories(categories)
    try:
        from render.procedural import category_of, generate_assets
    except ImportError as exc:
        raise CurationError(f"--source procedural needs render.procedural and bpy (the `render` extra): {exc}") from None
    log.info("procedural: generating %d asset(s) with seed %d (mix %s) into %s", count, seed, mix, out)
    try:
        paths = [Path(p) for p in generate_assets(out, count, seed, categories=mix)]
    except ImportError as exc:
        raise CurationError(f"--source procedural needs bpy (the `render` extra): {exc}") from None
    if len(paths) != count:
        raise CurationError(f"render.procedural.generate_assets returned {len(paths)} file(s) for --count {count}")
    root = out.resolve()
    files = sorted((p.resolve() for p in paths), key=lambda p: p.relative_to(root).as_posix())
    inner = scan_files(root, files, source=SOURCE, license=LICENSE, check_license=True)

    def batches():
        for batch in inner.batches():
            for item in batch.items:
                if hasattr(item, "category"):
                    item.category = category_of(item.uid)
            yield Batch(items=batch.items, dropped_frame=batch.dropped_frame)

    return Scan(units=inner.units, unit_name=inner.unit_name, batches=batches, notes=inner.notes)
