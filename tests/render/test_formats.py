"""FBX and OBJ files go through the same worker; other formats are rejected with a reason."""

from __future__ import annotations

import json

import pytest

bpy = pytest.importorskip("bpy", reason="render extra (bpy 5.0.1) not installed")

from render import scene  # noqa: E402
from render.clips import gltf_animation_names  # noqa: E402
from tests.render.conftest import render_row  # noqa: E402

pytestmark = pytest.mark.blender


@pytest.fixture(scope="module")
def converted(procedural_assets, tmp_path_factory):
    """A multi-clip procedural asset exported by Blender as FBX (all clips baked) and as OBJ."""
    src = next(p for p in procedural_assets if len(gltf_animation_names(p)) >= 2)
    d = tmp_path_factory.mktemp("formats")
    scene.reset()
    scene.import_asset(src, "glb", d / "log.txt")
    assert "FINISHED" in bpy.ops.export_scene.fbx(filepath=str(d / "asset.fbx"), bake_anim=True,
                                                  bake_anim_use_all_actions=True, bake_anim_use_nla_strips=True)
    assert "FINISHED" in bpy.ops.wm.obj_export(filepath=str(d / "asset.obj"))
    scene.reset()
    return {"src": src, "fbx": d / "asset.fbx", "obj": d / "asset.obj"}


def test_fbx_renders_its_takes(worker, converted):
    r = render_row(worker, converted["fbx"], uid="asset_fbx")
    assert r.status == "ok", r.detail
    m = json.loads(r.members[f"{r.key}.json"])
    assert m["static"] is False and r.stats["clip_count"] >= 2 and r.stats["motion_max"] > 0.01
    assert r.stats["clip_count"] < 100  # takes, not one clip per action


def test_obj_renders_as_a_static_asset(worker, converted):
    r = render_row(worker, converted["obj"], uid="asset_obj", allow_static=True)
    assert r.status == "ok", r.detail
    assert r.stats["static"] is True and r.stats["clip_count"] == 0
    assert render_row(worker, converted["obj"], uid="asset_obj").reason == "no_motion"


def test_file_type_hint_overrides_the_suffix(worker, converted, tmp_path):
    # Objaverse caches can hold files without a useful suffix; the manifest's file_type says what they are.
    blob = tmp_path / "asset.bin"
    blob.write_bytes(converted["src"].read_bytes())
    row = {"uid": "blob", "clip": 0, "file_type": "glb"}
    assert worker.render(row, blob).status == "ok"
    assert worker.render({"uid": "blob", "clip": 0}, blob).reason == "unsupported_format"


def test_gzipped_gltf_and_glb_render_like_the_originals(worker, converted, tmp_path):
    import gzip
    import shutil

    src = converted["src"]
    plain = render_row(worker, src, uid="plain")
    glb_gz = tmp_path / "asset.glb.gz"
    glb_gz.write_bytes(gzip.compress(src.read_bytes()))
    packed = render_row(worker, glb_gz, uid="plain")
    assert packed.status == "ok" and packed.members == plain.members
    # a .gltf with its buffer in a separate file next to it, then gzipped: the buffer is still found
    scene.reset()
    scene.import_asset(src, "glb", tmp_path / "log.txt")
    bpy.ops.export_scene.gltf(filepath=str(tmp_path / "sep.gltf"), export_format="GLTF_SEPARATE")
    with open(tmp_path / "sep.gltf", "rb") as f, gzip.open(tmp_path / "sep.gltf.gz", "wb") as g:
        shutil.copyfileobj(f, g)
    (tmp_path / "sep.gltf").unlink()
    r = render_row(worker, tmp_path / "sep.gltf.gz", uid="sep")
    assert r.status == "ok", r.detail
    (tmp_path / "broken.glb.gz").write_bytes(gzip.compress(src.read_bytes())[:200])
    assert render_row(worker, tmp_path / "broken.glb.gz", uid="broken").reason == "import_failed"
