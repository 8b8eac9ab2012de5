"""`generate_assets`: build each planned asset in an empty Blender scene and export it as GLB (imports bpy)."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

import bpy
import numpy as np

from render.procedural import legacy
from render.procedural.anim import FPS
from render.procedural.common import Gen
from render.procedural.export import export
from render.procedural.naming import parse_categories, plan

log = logging.getLogger("render.procedural")


def _builder(category: str):
    return importlib.import_module(f"render.procedural.categories.{category}").build


def generate_assets(out_dir: Path, count: int, seed: int, *, categories=None, textures: bool = True,
                    shapes: bool = True, progress: bool = False) -> list[Path]:
    """Make `count` animated assets of the category mix `categories` (names or `a,b,c`; default
    naming.DEFAULT_MIX) and write them as `out_dir/<uid>.glb` (naming.plan). `textures` / `shapes` False
    give the ablation variants (new categories only; legacy assets ignore them).

    Same uid -> the same file, byte for byte (same bpy and glTF exporter). Resets Blender (factory settings,
    empty scene) before each asset, so it is safe in a long-lived process; the scene is left empty.
    """
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise ValueError(f"count must be an int >= 0, got {count!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an int, got {seed!r}")
    mix = parse_categories(categories)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    items = plan(count, seed, mix, textures=textures, shapes=shapes)
    if progress:
        from tqdm import tqdm

        items = tqdm(items, desc="procedural assets", unit="asset")
    paths = []
    for item in items:
        bpy.ops.wm.read_factory_settings(use_empty=True)
        scene = bpy.context.scene
        scene.render.fps, scene.render.fps_base = FPS, 1.0
        if item.category == "legacy":
            clips = legacy.build(np.random.default_rng([abs(seed), int(seed < 0), item.index]), item.index)
        else:
            clips = _builder(item.category)(Gen(seed, item.category, item.index, textures, shapes))
        path = out_dir / f"{item.uid}.glb"
        export(path, clips)
        log.debug("wrote %s with clips %s", path, clips)
        paths.append(path)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return paths
