"""Fixtures for the render tests: a worker, tiny synthetic GLBs, procedural assets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.render import glb

TILT_DEG = 60.0                # the plane's tilt about glTF x (it faces the front camera obliquely)
SPECK_AT = (2.0, -2.0, 0.0)    # glTF position of a tiny quad that pushes the plane into the box's corner


def render_row(worker, path: Path, clip: int = 0, uid: str | None = None, **settings: Any):
    """Render `path`'s clip with the worker's spec plus `settings` (as a manifest row's render_settings)."""
    row = {"uid": uid or Path(path).stem.replace(".", "_"), "clip": clip, "source": "local", "license": "cc0",
           "sha256": None, "render_settings": json.dumps(settings) if settings else None}
    return worker.render(row, Path(path))


@pytest.fixture(scope="session")
def worker():
    """One long-lived render worker for the whole session (debug preset: 64 px, 4 frames, 4 views)."""
    pytest.importorskip("bpy", reason="render extra (bpy 5.0.1) not installed")
    from render.presets import get_preset
    from render.worker import RenderWorker

    w = RenderWorker(get_preset("debug"), threads=2)
    yield w
    w.close()


@pytest.fixture(scope="session")
def procedural_assets(tmp_path_factory) -> list[Path]:
    """Three procedural assets, always available: a vehicle (rigid parts), a soft thing (shape keys; seed 9 gives a face)
    and a biped (skinned)."""
    pytest.importorskip("bpy", reason="render extra (bpy 5.0.1) not installed")
    from render.procedural import generate_assets

    return generate_assets(tmp_path_factory.mktemp("procedural"), 3, 9, categories="vehicle,soft,biped")


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory) -> dict[str, Path]:
    """Small GLBs with known geometry, and files that are not (good) models."""
    d = tmp_path_factory.mktemp("synthetic")
    out: dict[str, Path] = {}

    b = glb.GlbBuilder()   # a 1 x 1 plane tilted 60 degrees about x, and a speck far off to the lower right
    b.add_mesh(*glb.quad(1.0, 1.0, tilt_deg=TILT_DEG))
    b.add_mesh(*glb.quad(0.02, 0.02), translation=SPECK_AT)
    out["tilted_plane"] = b.write(d / "tilted_plane.glb")

    b = glb.GlbBuilder()   # a cube sliding 1 unit along glTF +x over 2 s; clip 1 keeps it still
    node = b.add_mesh(*glb.box(0.25))
    b.add_translation_animation(node, [0.0, 1.0, 2.0], [(0, 0, 0), (0.5, 0, 0), (1.0, 0, 0)], name="slide")
    b.add_translation_animation(node, [0.0, 2.0], [(0, 0, 0), (0, 0, 0)], name="hold")
    out["sliding_cube"] = b.write(d / "sliding_cube.glb")

    b = glb.GlbBuilder()   # nodes, but nothing to render
    b.add_node({"name": "lonely_empty"})
    out["empty_scene"] = b.write(d / "empty_scene.glb")

    b = glb.GlbBuilder()   # 2 * 40 * 40 = 3200 triangles
    b.add_mesh(*glb.grid(40))
    out["dense_grid"] = b.write(d / "dense_grid.glb")

    data = out["sliding_cube"].read_bytes()
    (d / "truncated.glb").write_bytes(data[: len(data) // 2])
    out["truncated"] = d / "truncated.glb"
    (d / "not_a_model.glb").write_text("this is a text file, not a glTF binary\n")
    out["not_a_model"] = d / "not_a_model.glb"
    (d / "notes.txt").write_text("hello\n")
    out["text_file"] = d / "notes.txt"
    (d / "scene.blend").write_bytes(b"BLENDER-v500" + bytes(64))
    out["blend_file"] = d / "scene.blend"
    return out


@pytest.fixture(scope="session")
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
