"""Clip enumeration and switching on real files: glTF order, whole-clip spans, no pose leaking."""

from __future__ import annotations

import json

import numpy as np
import pytest

bpy = pytest.importorskip("bpy", reason="render extra (bpy 5.0.1) not installed")

from render import scene  # noqa: E402
from render.clips import ClipSet, gltf_track_names  # noqa: E402

pytestmark = pytest.mark.blender


def load(path, tmp_path) -> ClipSet:
    scene.reset()
    scene.import_asset(path, path.suffix.lstrip("."), tmp_path / "blender.log")
    return ClipSet(path.suffix.lstrip("."), path)


def pose() -> dict[str, np.ndarray]:
    """World matrices of every object and pose bone, and every shape-key value, evaluated now."""
    dg = bpy.context.evaluated_depsgraph_get()
    out = {}
    for ob in bpy.context.scene.objects:
        ev = ob.evaluated_get(dg)
        out[ob.name] = np.array(ev.matrix_world)
        if ob.type == "ARMATURE":
            for pb in ev.pose.bones:
                out[f"{ob.name}:{pb.name}"] = np.array(pb.matrix)
    for key in bpy.data.shape_keys:
        for kb in key.key_blocks:
            out[f"{key.name}:{kb.name}"] = np.array([kb.value])
    return out


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_track_names_follow_the_importer():
    assert gltf_track_names([None, "walk", "walk", None, "walk"]) == ["Anim_0", "walk", "walk.001", "Anim_3", "walk.002"]
    assert len(gltf_track_names(["x" * 80])[0]) == 63


def test_clips_are_in_gltf_order_with_whole_spans(gltf_dir, tmp_path):
    assets = {a["file"]: a["expected"] for a in json.loads((gltf_dir / "assets.json").read_text())["assets"]}
    for file, exp in assets.items():
        clips = load(gltf_dir / file, tmp_path)
        assert len(clips) == exp["num_animations"], file
        for c, a in zip(clips.clips, exp["animations"]):
            assert c.file_name == (a["name"] or ""), file
            assert clips.duration_s(c.index) == pytest.approx(a["max_keyframe_time_s"] - a["min_keyframe_time_s"], abs=1e-3)
            assert c.frame_start / clips.fps == pytest.approx(a["min_keyframe_time_s"], abs=1e-3)
            assert c.bindings, f"{file} clip {c.index} drives nothing"


def test_morph_clip_drives_the_shape_key_owner(gltf_dir, tmp_path):
    clips = load(gltf_dir / "AnimatedMorphCube.glb", tmp_path)
    (id_, action, slot), = clips.clips[0].bindings
    assert isinstance(id_, bpy.types.Key) and slot is not None


def test_import_leaves_every_clip_off_at_rest(gltf_dir, tmp_path):
    load(gltf_dir / "Fox.glb", tmp_path)
    assert all(o.animation_data is None or o.animation_data.action is None for o in bpy.data.objects)


def test_switching_clips_leaks_no_pose(gltf_dir, tmp_path):
    # InterpolationTest: every clip drives a different cube; Fox: all three drive the same joints.
    for file, frames in (("InterpolationTest.glb", (10.0, 30.5)), ("Fox.glb", (5.0, 12.25))):
        n = len(load(gltf_dir / file, tmp_path))
        fresh = {}
        for k in range(n):
            clips = load(gltf_dir / file, tmp_path)
            clips.select(k)
            fresh[k] = []
            for f in frames:
                scene.set_time(f)
                fresh[k].append(pose())
        clips = load(gltf_dir / file, tmp_path)
        for k in [*range(n), *reversed(range(n))]:  # every clip after every other, in both orders
            clips.select(k)
            for f, expected in zip(frames, fresh[k]):
                scene.set_time(f)
                assert same(pose(), expected), (file, k, f)


def test_a_clip_moves_only_what_it_animates(gltf_dir, tmp_path):
    clips = load(gltf_dir / "InterpolationTest.glb", tmp_path)
    clips.select(None)
    scene.set_time(1.0)
    rest = pose()
    for k, clip in enumerate(clips.clips):
        clips.select(k)
        scene.set_time(20.0)
        now = pose()
        driven = {id_.name for id_, _, _ in clip.bindings}
        moved = {name for name in rest if not np.allclose(rest[name], now[name], atol=1e-5)}
        assert moved == driven, (clip.name, moved, driven)


def test_sub_frame_evaluation(tmp_path):
    from tests.render import glb

    b = glb.GlbBuilder()
    node = b.add_mesh(*glb.box(0.25))
    b.add_translation_animation(node, [0.0, 1.0], [(0, 0, 0), (1.0, 0, 0)])
    path = b.write(tmp_path / "slide.glb")
    clips = load(path, tmp_path)
    clips.select(0)
    ob = next(o for o in bpy.context.scene.objects if o.type == "MESH")
    for frame in (0.0, 7.2, 14.4, 21.6, 24.0):
        scene.set_time(frame)
        assert ob.evaluated_get(bpy.context.evaluated_depsgraph_get()).matrix_world.translation.x == pytest.approx(frame / 24.0, abs=1e-5)


def test_no_bone_shape_helpers_after_import(gltf_dir, tmp_path):
    for file in ("Fox.glb", "CesiumMan.glb", "RiggedSimple.glb"):
        load(gltf_dir / file, tmp_path)
        bones = [pb for ob in bpy.data.objects if ob.type == "ARMATURE" for pb in ob.pose.bones]
        assert bones and all(pb.custom_shape is None for pb in bones), file
        assert not [o.name for o in bpy.data.objects if o.name.startswith("Icosphere")], file
