"""What `pipeline reconstruct` writes means what it says: the full 3DGS .ply record by default (read back
by a fixed-record reader, as the original 3DGS viewer reads it, and by property name) or the short one
with --compact; inputs and renders on the checkpoint's training background; cameras.json anchors; a
video-only input or a checkpoint without t0 views."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.training.test_l4gm import read_samples
from tests.training.test_reconstruct import _camera_folder, _run, _save_checkpoint, read_ply
from training.data import shardspec
from training.config import apply_overrides, l4gm_tiny, tiny
from training.data.clip import InputError, load_input

# The original 3D Gaussian Splatting record, in order: position, normal, SH DC, 45 SH rest, opacity,
# scale, rotation: 62 little-endian floats per vertex.
RECORD = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", *[f"f_rest_{i}" for i in range(45)],
          "opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
COMPACT = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
           "rot_0", "rot_1", "rot_2", "rot_3"]


def read_fixed_record(path: Path) -> np.ndarray:
    """As a fixed-record viewer reads it: the vertex count from the header, then struct '<62f' per vertex,
    no property names consulted. [N, 62]."""
    raw = path.read_bytes()
    end = raw.index(b"end_header\n") + len(b"end_header\n")
    n = int(next(ln for ln in raw[:end].decode().splitlines() if ln.startswith("element vertex")).split()[2])
    rec = struct.Struct("<62f")
    assert len(raw) - end == n * rec.size, "the body is not N records of 62 floats"
    return np.array([rec.unpack_from(raw, end + i * rec.size) for i in range(n)], np.float32)


def _sample_key(data: Path) -> str:
    return read_samples(Path(shardspec.resolve_shards(str(data))[0]))[0]["__key__"]


def test_ply_is_the_full_3dgs_record_by_default_and_short_with_compact(procedural_many, tmp_path):
    path = _save_checkpoint(tmp_path / "run", tiny())
    spec = f"{procedural_many}#{_sample_key(procedural_many)}"
    r = _run("--checkpoint", str(path), "--input", spec, "--out", str(tmp_path / "full"), "--times", "0.5",
             "--anim-frames", "2", "--device", "cpu")
    assert r.exit_code == 0, r.output
    ply = tmp_path / "full" / "frame-000.ply"
    by_name = read_ply(ply)
    assert list(by_name) == RECORD
    fixed = read_fixed_record(ply)
    for i, name in enumerate(RECORD):  # both readers see the same numbers in the same places
        np.testing.assert_array_equal(fixed[:, i], by_name[name])
    assert (fixed[:, 3:6] == 0).all() and (fixed[:, 9:54] == 0).all()  # normals and SH rest: zeros
    q = fixed[:, 58:62]
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-5)
    assert json.loads((tmp_path / "full" / "reconstruct.json").read_text())["ply_layout"].startswith("3DGS full")
    r = _run("--checkpoint", str(path), "--input", spec, "--out", str(tmp_path / "short"), "--times", "0.5",
             "--anim-frames", "2", "--device", "cpu", "--compact")
    assert r.exit_code == 0, r.output
    short = read_ply(tmp_path / "short" / "frame-000.ply")
    assert list(short) == COMPACT
    for name in COMPACT:  # the same Gaussians, fewer columns
        np.testing.assert_array_equal(short[name], by_name[name])


def _gif_frames(path: Path) -> list[np.ndarray]:
    out = []
    with Image.open(path) as im:
        for k in range(im.n_frames):
            im.seek(k)
            out.append(np.asarray(im.convert("RGB"), np.float32) / 255)
    return out


@pytest.mark.parametrize("family", ["lrm4d", "l4gm"])
def test_renders_are_drawn_on_the_background_the_checkpoint_trained_on(procedural_many, tmp_path, family):
    # transparent Gaussians (opacity 1e-6): every rendered pixel is the background
    base = tiny() if family == "lrm4d" else l4gm_tiny()
    cfg = apply_overrides(base, ["data.background=black", "model.opacity_init=0.000001"])
    path = _save_checkpoint(tmp_path / "run", cfg)
    args = ["--anim-frames", "3", "--device", "cpu"]
    if family == "l4gm":  # two windows: the second one's t0 views are renders too
        _camera_folder(procedural_many, tmp_path / "user", cfg.data.n_t0_views)
        args += ["--input", str(tmp_path / "user"), "--window", "3"]
    else:
        args += ["--input", f"{procedural_many}#{_sample_key(procedural_many)}"]
    r = _run("--checkpoint", str(path), "--out", str(tmp_path / "out"), *args)
    assert r.exit_code == 0, r.output
    frames = _gif_frames(tmp_path / "out" / "turntable.gif")
    assert frames and all(f.max() < 0.05 for f in frames)  # black, not white (identical frames: PIL merges them)
    rec = json.loads((tmp_path / "out" / "reconstruct.json").read_text())
    assert rec["background"] == "black" and rec["background_rgb"] == [0.0, 0.0, 0.0]


def test_a_video_only_folder_is_refused_by_a_checkpoint_that_needs_t0_views_and_works_without(procedural_many,
                                                                                             tmp_path):
    meta = _camera_folder(procedural_many, tmp_path / "video", 0)  # view 0 at every time, nothing else
    needs = _save_checkpoint(tmp_path / "needs", l4gm_tiny())
    r = _run("--checkpoint", str(needs), "--input", str(tmp_path / "video"), "--out", str(tmp_path / "o1"),
             "--device", "cpu")
    assert r.exit_code != 0
    assert f"--input video: cameras.json has frames of view 0 (the video) only" in r.output
    assert "data.n_t0_views=2" in r.output and "TensorList" not in r.output
    none = _save_checkpoint(tmp_path / "none", apply_overrides(l4gm_tiny(), ["data.n_t0_views=0"]))
    for spec, out in ((str(tmp_path / "video"), "o2"), (f"{procedural_many}#{_sample_key(procedural_many)}", "o3")):
        r = _run("--checkpoint", str(none), "--input", spec, "--out", str(tmp_path / out), "--window", "3",
                 "--anim-frames", "2", "--device", "cpu")
        assert r.exit_code == 0, r.output
        rec = json.loads((tmp_path / out / "reconstruct.json").read_text())
        assert rec["inputs"]["t0"] == [] and len(rec["outputs"]) == meta["num_frames"]


def test_cameras_json_anchors_are_read_and_checked(procedural_many, tmp_path):
    cfg = l4gm_tiny()
    _camera_folder(procedural_many, tmp_path / "plain", cfg.data.n_t0_views)
    doc = json.loads((tmp_path / "plain" / "cameras.json").read_text())
    moved = tmp_path / "moved"
    moved.mkdir()
    for f in doc["frames"]:
        (moved / f["file"]).write_bytes((tmp_path / "plain" / f["file"]).read_bytes())
        f["anchor"] = [0.1 * f["time"], -0.05, 0.02]
    (moved / "cameras.json").write_text(json.dumps(doc))
    clip = load_input(str(moved))
    for fr in clip.frames:
        assert fr.anchor == pytest.approx((0.1 * fr.time, -0.05, 0.02))
    assert all(fr.anchor == (0.0, 0.0, 0.0) for fr in load_input(str(tmp_path / "plain")).frames)
    # the model places its Gaussians from the anchors: the .ply files differ
    path = _save_checkpoint(tmp_path / "run", cfg)
    for name in ("plain", "moved"):
        r = _run("--checkpoint", str(path), "--input", str(tmp_path / name), "--out", str(tmp_path / f"o-{name}"),
                 "--anim-frames", "2", "--device", "cpu")
        assert r.exit_code == 0, r.output
    a, b = (read_ply(tmp_path / f"o-{n}" / "frame-000.ply") for n in ("plain", "moved"))
    assert not np.allclose(a["x"], b["x"], atol=1e-4)
    doc["frames"][0]["anchor"] = [0.0, 1.0]
    (moved / "cameras.json").write_text(json.dumps(doc))
    with pytest.raises(InputError, match=r"frames\[0\]: anchor must be 3 finite numbers"):
        load_input(str(moved))
