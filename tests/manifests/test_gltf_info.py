"""manifests.gltf_info reads animations and counts from real glTF files, and names every defect."""

from __future__ import annotations

import gzip
import json
import struct

import pytest

from manifests.gltf_info import GltfError, parse_gltf_bytes, read_gltf_info
from tests.manifests.caches import build_glb, edit_glb, split_glb


def _expected(gltf_dir):
    return json.loads((gltf_dir / "assets.json").read_text())["assets"]


def test_real_files_match_their_published_facts(gltf_dir):
    for entry in _expected(gltf_dir):
        info = read_gltf_info(gltf_dir / entry["file"])
        exp = entry["expected"]
        assert info.kind == "glb" and not info.gzipped
        assert len(info.animations) == exp["num_animations"], entry["file"]
        assert info.vertex_count == exp["num_vertices_total"], entry["file"]
        assert info.skinned == (exp["num_skins"] > 0), entry["file"]
        assert info.morphed == exp["has_morph_targets"], entry["file"]
        for clip, want in zip(info.animations, exp["animations"]):
            assert clip.name == (want["name"] or "")
            assert clip.t_min == pytest.approx(want["min_keyframe_time_s"], abs=1e-5)
            assert clip.t_max == pytest.approx(want["max_keyframe_time_s"], abs=1e-5)
            assert clip.duration_s == pytest.approx(want["max_keyframe_time_s"] - want["min_keyframe_time_s"], abs=1e-5)
            assert clip.channels == want["channels"]
            assert len(clip.target_nodes) == want["animated_nodes"]


def test_clip_span_is_over_all_channels(gltf_dir):
    # BoxAnimated: rotation channel ends at 2.5 s, translation at 3.70833 s; the clip lasts the longer one.
    clip = read_gltf_info(gltf_dir / "BoxAnimated.glb").animations[0]
    assert clip.t_max == pytest.approx(3.70833, abs=1e-5) and clip.channels == 2


def test_face_counts_by_primitive_mode(gltf_dir, tmp_path):
    box = read_gltf_info(gltf_dir / "Box.glb")
    assert (box.face_count, box.vertex_count, box.line_count, box.point_count) == (12, 24, 0, 0)

    def set_mode(mode):
        def edit(doc):
            doc["meshes"][0]["primitives"][0]["mode"] = mode
        return edit

    n_idx = 36  # Box.glb: 36 indices, 24 positions
    assert read_gltf_info(edit_glb(gltf_dir / "Box.glb", tmp_path / "lines.glb", set_mode(1))).line_count == n_idx // 2
    assert read_gltf_info(edit_glb(gltf_dir / "Box.glb", tmp_path / "strip.glb", set_mode(5))).face_count == n_idx - 2
    pts = read_gltf_info(edit_glb(gltf_dir / "Box.glb", tmp_path / "points.glb", set_mode(0)))
    assert (pts.face_count, pts.point_count) == (0, n_idx)

    def no_indices(doc):
        del doc["meshes"][0]["primitives"][0]["indices"]
    assert read_gltf_info(edit_glb(gltf_dir / "Box.glb", tmp_path / "noidx.glb", no_indices)).face_count == 24 // 3


def test_gzip_glb_and_gltf_json(gltf_dir, tmp_path):
    gz = tmp_path / "Fox.glb.gz"
    gz.write_bytes(gzip.compress((gltf_dir / "Fox.glb").read_bytes()))
    info = read_gltf_info(gz)
    assert info.gzipped and [c.name for c in info.animations] == ["Survey", "Walk", "Run"]
    doc, _ = split_glb((gltf_dir / "Fox.glb").read_bytes())
    (tmp_path / "fox.gltf").write_text(json.dumps(doc))
    assert len(read_gltf_info(tmp_path / "fox.gltf").animations) == 3
    (tmp_path / "fox.gltf.gz").write_bytes(gzip.compress(json.dumps(doc).encode()))
    assert len(read_gltf_info(tmp_path / "fox.gltf.gz").animations) == 3


def _reason(path) -> tuple[str, str]:
    with pytest.raises(GltfError) as err:
        read_gltf_info(path)
    assert str(path) in str(err.value)  # every message names the file
    return err.value.reason, err.value.detail


def test_truncated_glb(gltf_dir, tmp_path):
    data = (gltf_dir / "Fox.glb").read_bytes()
    for n, words in ((6, "shorter than the 12-byte"), (16, "declares 162852 bytes, the file has 16"), (200, "declares"), (len(data) - 10, "declares")):
        p = tmp_path / f"cut{n}.glb"
        p.write_bytes(data[:n])
        reason, detail = _reason(p)
        assert reason == "unreadable_file" and words in detail, (n, detail)


def test_trailing_bytes_and_bad_chunks(gltf_dir, tmp_path):
    data = (gltf_dir / "Box.glb").read_bytes()
    (tmp_path / "tail.glb").write_bytes(data + b"\0" * 8)
    assert "trailing" in _reason(tmp_path / "tail.glb")[1]
    doc, _ = split_glb(data)
    bad_bin = build_glb(doc, rest=b"\x00\x10\x00\x00BIN\x00" + b"\0" * 8)  # BIN chunk declares 4096 bytes, has 8
    (tmp_path / "bin.glb").write_bytes(bad_bin)
    assert "BIN chunk" in _reason(tmp_path / "bin.glb")[1]
    swapped = bytearray(data)
    swapped[16:20] = b"BIN\x00"
    (tmp_path / "first.glb").write_bytes(bytes(swapped))
    assert "expected JSON" in _reason(tmp_path / "first.glb")[1]


def test_not_gltf_at_all(tmp_path):
    (tmp_path / "text.glb").write_text("hello, I am not a model but I am long enough")
    assert _reason(tmp_path / "text.glb") == ("unreadable_file", "not a GLB file: magic b'hell', expected b'glTF'")
    (tmp_path / "empty.glb").write_bytes(b"")
    assert _reason(tmp_path / "empty.glb")[0] == "unreadable_file"
    (tmp_path / "list.gltf").write_text("[1, 2]")
    assert "not an object" in _reason(tmp_path / "list.gltf")[1]
    (tmp_path / "other.gltf").write_text('{"hello": 1}')
    assert "no asset.version" in _reason(tmp_path / "other.gltf")[1]
    (tmp_path / "missing.glb").unlink(missing_ok=True)
    assert _reason(tmp_path / "missing.glb")[0] == "missing_file"
    with pytest.raises(GltfError) as err:
        read_gltf_info(tmp_path / "model.fbx")
    assert err.value.reason == "unsupported_format"


def test_bad_json(gltf_dir, tmp_path):
    (tmp_path / "bad.gltf").write_text('{"asset": {"version": "2.0"}, "animations": [')
    reason, detail = _reason(tmp_path / "bad.gltf")
    assert reason == "unreadable_file" and detail.startswith("bad glTF JSON")
    raw = b'{"asset": {"version": "2.0"}, oops}'
    (tmp_path / "badchunk.glb").write_bytes(_glb_raw(raw))
    assert _reason(tmp_path / "badchunk.glb")[1].startswith("bad glTF JSON")
    (tmp_path / "latin1.gltf").write_bytes(b'{"asset": {"version": "2.0", "generator": "\xe9"}}')
    assert "not UTF-8" in _reason(tmp_path / "latin1.gltf")[1]


def _glb_raw(raw: bytes) -> bytes:
    """A GLB whose JSON chunk holds `raw` as it is."""
    raw += b" " * (-len(raw) % 4)
    body = struct.pack("<II", len(raw), 0x4E4F534A) + raw
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body


def test_gltf_1_is_unsupported(gltf_dir, tmp_path):
    p = edit_glb(gltf_dir / "Box.glb", tmp_path / "v1.glb", lambda d: d["asset"].update(version="1.0"))
    assert _reason(p)[0] == "unsupported_format"
    data = bytearray((gltf_dir / "Box.glb").read_bytes())
    data[4:8] = (1).to_bytes(4, "little")
    (tmp_path / "container1.glb").write_bytes(bytes(data))
    assert _reason(tmp_path / "container1.glb")[0] == "unsupported_format"


def test_gz_that_is_not_gzip(gltf_dir, tmp_path):
    p = tmp_path / "Fox.glb.gz"
    p.write_bytes((gltf_dir / "Fox.glb").read_bytes())  # plain GLB with a .gz name
    reason, detail = _reason(p)
    assert reason == "not_gzip" and "676c" in detail  # 'gl' of 'glTF'
    cut = tmp_path / "cut.glb.gz"
    cut.write_bytes(gzip.compress((gltf_dir / "Fox.glb").read_bytes())[:500])
    assert _reason(cut)[0] == "not_gzip"


def test_animation_input_without_min_max(gltf_dir, tmp_path):
    def strip(doc):
        acc = doc["animations"][1]["samplers"][0]["input"]
        del doc["accessors"][acc]["max"]
    p = edit_glb(gltf_dir / "Fox.glb", tmp_path / "nomax.glb", strip)
    reason, detail = _reason(p)
    assert reason == "bad_animation" and "animation 1 sampler 0" in detail and "min/max" in detail


def test_animation_with_broken_indices(gltf_dir, tmp_path):
    p = edit_glb(gltf_dir / "BoxAnimated.glb", tmp_path / "sampler.glb",
                 lambda d: d["animations"][0]["channels"][0].update(sampler=7))
    assert _reason(p)[0] == "bad_animation"
    p = edit_glb(gltf_dir / "BoxAnimated.glb", tmp_path / "acc.glb",
                 lambda d: d["animations"][0]["samplers"][0].update(input=999))
    reason, detail = _reason(p)
    assert reason == "bad_animation" and "accessor 999" in detail


def test_mesh_with_missing_accessor_is_unreadable(gltf_dir, tmp_path):
    p = edit_glb(gltf_dir / "Box.glb", tmp_path / "mesh.glb", lambda d: d["meshes"][0]["primitives"][0].update(indices=99))
    reason, detail = _reason(p)
    assert reason == "unreadable_file" and "mesh 0 primitive 0 indices" in detail


def test_parse_bytes_in_memory(gltf_dir):
    info = parse_gltf_bytes((gltf_dir / "AnimatedMorphCube.glb").read_bytes(), "glb", "cube")
    assert info.morphed and info.animations[0].name == "Square"
