"""The legacy procedural generator (category `legacy`, kept for old-vs-new comparisons): real Blender builds
and exports it, and the tests read the GLBs back with their own tiny GLB reader (json + struct) and with
Blender's glTF importer. The new categories: test_procedural_categories.py."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy", reason="render extra (bpy 5.0.1) not installed")

from render.procedural import generate_assets as _generate  # noqa: E402

pytestmark = pytest.mark.blender

SEED, COUNT = 11, 4


def generate_assets(out_dir, count, seed):
    return _generate(out_dir, count, seed, categories="legacy")


def read_glb(path: Path) -> tuple[dict, bytes]:
    """The JSON chunk (parsed) and the BIN chunk of a GLB file, per the glTF 2.0 container spec."""
    data = path.read_bytes()
    magic, version, length = struct.unpack_from("<4sII", data, 0)
    assert magic == b"glTF" and version == 2 and length == len(data), f"{path} is not a whole GLB 2.0 file"
    json_len, json_type = struct.unpack_from("<I4s", data, 12)
    assert json_type == b"JSON"
    doc = json.loads(data[20 : 20 + json_len])
    bin_chunk = b""
    if 20 + json_len < len(data):
        bin_len, bin_type = struct.unpack_from("<I4s", data, 20 + json_len)
        assert bin_type == b"BIN\x00"
        bin_chunk = data[28 + json_len : 28 + json_len + bin_len]
    return doc, bin_chunk


def kinds_of(doc: dict) -> set[str]:
    """Which kinds of motion the animations drive: skinned joints, morph weights, rigid mesh nodes."""
    joints = {j for skin in doc.get("skins", []) for j in skin["joints"]}
    kinds = set()
    for anim in doc.get("animations", []):
        for ch in anim["channels"]:
            node, path = ch["target"]["node"], ch["target"]["path"]
            if path == "weights":
                kinds.add("morph")
            elif node in joints:
                kinds.add("skin")
            elif "mesh" in doc["nodes"][node] or doc["nodes"][node].get("children"):
                kinds.add("rigid")
    return kinds


def clip_span(doc: dict, anim: dict) -> tuple[float, float]:
    """Earliest and latest key time over all samplers of an animation (accessor min/max)."""
    inputs = [doc["accessors"][s["input"]] for s in anim["samplers"]]
    return min(a["min"][0] for a in inputs), max(a["max"][0] for a in inputs)


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> list[Path]:
    return generate_assets(tmp_path_factory.mktemp("proc"), COUNT, SEED)


def test_files_are_named_by_valid_uid_in_order(batch):
    assert [p.name for p in batch] == [f"proc_s{SEED}_{i:05d}.glb" for i in range(COUNT)]
    for p in batch:
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,128}", p.stem) and p.is_file()
    assert not list(batch[0].parent.glob(".*")), "temporary files were left behind"


def test_each_asset_has_one_to_three_named_clips_of_one_to_four_seconds(batch):
    for p in batch:
        doc, _ = read_glb(p)
        anims = doc.get("animations", [])
        assert 1 <= len(anims) <= 3, p.name
        names = [a["name"] for a in anims]
        assert all(names) and len(set(names)) == len(names), names
        assert names == sorted(names), f"clips are not in clip order: {names}"
        for a in anims:
            start, end = clip_span(doc, a)
            assert start == pytest.approx(0.0, abs=1e-6), (p.name, a["name"], start)
            assert 0.95 <= end - start <= 4.05, (p.name, a["name"], end - start)


def test_kinds_every_asset_moves_and_the_batch_shows_all_three(batch):
    per_asset = [kinds_of(read_glb(p)[0]) for p in batch]
    assert all(per_asset), per_asset
    assert set().union(*per_asset) == {"rigid", "morph", "skin"}, per_asset


def test_skins_and_morph_targets_are_real_structures(batch):
    for p in batch:
        doc, _ = read_glb(p)
        kinds = kinds_of(doc)
        if "skin" in kinds:
            skinned = [n for n in doc["nodes"] if "skin" in n]
            assert skinned, p.name
            for n in skinned:
                attrs = doc["meshes"][n["mesh"]]["primitives"][0]["attributes"]
                assert "JOINTS_0" in attrs and "WEIGHTS_0" in attrs, p.name
        if "morph" in kinds:
            prims = [pr for m in doc["meshes"] for pr in m["primitives"] if pr.get("targets")]
            assert prims and all("POSITION" in t for pr in prims for t in pr["targets"]), p.name
        for m in doc["meshes"]:  # the file's default state is the rest pose, not some clip's first frame
            assert not any(m.get("weights", [])), (p.name, m["name"], m.get("weights"))


def test_materials_carry_png_textures_and_colours_vary(batch):
    seen_images = set()
    for p in batch:
        doc, bin_chunk = read_glb(p)
        assert doc.get("images") and doc.get("textures"), p.name
        used = {m["pbrMetallicRoughness"]["baseColorTexture"]["index"]
                for m in doc["materials"] if "baseColorTexture" in m.get("pbrMetallicRoughness", {})}
        assert used, f"{p.name}: no material uses a base colour texture"
        for img in doc["images"]:
            view = doc["bufferViews"][img["bufferView"]]
            png = bin_chunk[view.get("byteOffset", 0) : view.get("byteOffset", 0) + view["byteLength"]]
            assert png[:8] == b"\x89PNG\r\n\x1a\n", p.name
            seen_images.add(png)
    assert len(seen_images) >= COUNT, "textures repeat across assets"


def _use_clip(name: str) -> None:
    """Make the imported animation `name` drive every ID that it animates (the importer mutes them all)."""
    for idb in [*bpy.data.objects, *bpy.data.shape_keys]:
        ad = idb.animation_data
        if ad is None:
            continue
        ad.action = None
        for track in ad.nla_tracks:
            if track.name == name and track.strips:
                ad.action = track.strips[0].action
                ad.action_slot = track.strips[0].action_slot


def _pose() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per mesh object: its evaluated (deformed) vertices in object space [N, 3] and its world matrix [4, 4]."""
    dg = bpy.context.evaluated_depsgraph_get()
    out = {}
    for obj in bpy.context.scene.objects:
        if obj.type != "MESH":
            continue
        ev = obj.evaluated_get(dg)
        mesh = ev.to_mesh()
        co = np.empty(len(mesh.vertices) * 3, dtype=np.float64)
        mesh.vertices.foreach_get("co", co)
        out[obj.name] = (co.reshape(-1, 3), np.array(ev.matrix_world))
        ev.to_mesh_clear()
    return out


def _world(pose: dict) -> np.ndarray:
    """All vertices of a pose in world space, [N, 3], in a fixed object order."""
    return np.concatenate([co @ mw[:3, :3].T + mw[:3, 3] for _, (co, mw) in sorted(pose.items())])


def test_reimported_geometry_moves_in_every_clip_by_all_three_mechanisms(batch):
    """Blender's own glTF importer reads the files back; each clip visibly moves the object, and across
    the batch some object moves as a whole (rigid), some mesh deforms through shape keys (morph) and
    some through an armature (skin)."""
    seen = set()
    for p in batch[:3]:  # assets 0, 1, 2 must have rigid, morph and skin motion respectively
        doc, _ = read_glb(p)
        bpy.ops.wm.read_factory_settings(use_empty=True)
        bpy.ops.import_scene.gltf(filepath=str(p), disable_bone_shape=True)
        scene = bpy.context.scene
        fps = scene.render.fps / scene.render.fps_base
        keyed = {o.name for o in scene.objects if o.type == "MESH" and o.data.shape_keys}
        skinned = {o.name for o in scene.objects if any(m.type == "ARMATURE" for m in o.modifiers)}
        for anim in doc["animations"]:
            _use_clip(anim["name"])
            start, end = clip_span(doc, anim)
            poses = []
            for t in np.linspace(start, end, 5)[:4]:  # the last sample would equal the first for looping clips
                frame = t * fps
                scene.frame_set(int(np.floor(frame)), subframe=float(frame - np.floor(frame)))
                poses.append(_pose())
            world = [_world(q) for q in poses]
            extent = np.ptp(np.concatenate(world), axis=0).max()
            motion = max(np.linalg.norm(w - world[0], axis=1).max() for w in world[1:])
            label = f"{p.name} clip {anim['name']}"
            assert motion > 0.08 * extent, f"{label}: largest vertex motion {motion:.4f} of extent {extent:.3f}"
            assert extent < 3.0, f"{label} spans {extent:.2f} m"
            for name in poses[0]:
                local_moves = any(np.abs(q[name][0] - poses[0][name][0]).max() > 1e-3 for q in poses[1:])
                if any(np.abs(q[name][1] - poses[0][name][1]).max() > 1e-3 for q in poses[1:]) and name not in skinned:
                    seen.add("rigid")
                if local_moves and name in keyed:
                    seen.add("morph")
                if local_moves and name in skinned:
                    seen.add("skin")
    assert seen == {"rigid", "morph", "skin"}, seen
    bpy.ops.wm.read_factory_settings(use_empty=True)


def test_same_seed_same_bytes_other_seed_other_assets(batch, tmp_path):
    again = generate_assets(tmp_path / "again", 2, SEED)  # a shorter batch: asset i does not depend on count
    for a, b in zip(again, batch):
        assert a.name == b.name and a.read_bytes() == b.read_bytes(), a.name
    other = generate_assets(tmp_path / "other", 1, SEED + 1)[0]
    doc_a, bin_a = read_glb(batch[0])
    doc_o, bin_o = read_glb(other)
    assert bin_a != bin_o and doc_a["meshes"] != doc_o["meshes"]


def test_scene_is_left_empty_for_the_next_user(batch):
    generate_assets(batch[0].parent / "one", 1, SEED)
    assert len(bpy.data.objects) == 0 and len(bpy.data.actions) == 0


def test_negative_seed_gives_its_own_valid_uids(batch, tmp_path):
    (path,) = generate_assets(tmp_path, 1, -SEED)
    assert path.name == f"proc_s-{SEED}_00000.glb"
    assert path.read_bytes() != batch[0].read_bytes()


@pytest.mark.parametrize("count", [-1, 1.5, True])
def test_bad_count_is_rejected_with_its_name(tmp_path, count):
    with pytest.raises(ValueError, match="count"):
        _generate(tmp_path, count, 0)


def test_command_line_entry_writes_the_same_files(batch, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "cli"
    run = subprocess.run([sys.executable, "-m", "render.procedural", "--out", str(out), "--count", "1", "--seed", str(SEED),
                          "--categories", "legacy"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "", "the exporter's chatter leaked onto stdout"
    assert (out / batch[0].name).read_bytes() == batch[0].read_bytes()
