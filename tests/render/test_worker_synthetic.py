"""RenderWorker on tiny GLBs whose geometry the test knows exactly, and on bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("bpy", reason="render extra (bpy 5.0.1) not installed")

from render.cameras import orbit_position  # noqa: E402
from tests.render import glb  # noqa: E402
from tests.render.checks import Sample  # noqa: E402
from tests.render.conftest import TILT_DEG, render_row  # noqa: E402

pytestmark = pytest.mark.blender


def _plane_depth(meta: dict, v: int, corners_gltf: np.ndarray, H: int, W: int) -> tuple[np.ndarray, np.ndarray]:
    """Analytic camera z [H, W] of the (infinite) plane through the quad, and each pixel's off-axis angle."""
    center, scale = np.array(meta["normalization"]["center"]), meta["normalization"]["scale"]
    p = scale * (glb.gltf_to_blender(corners_gltf) - center)  # [4, 3] normalised space
    n = np.cross(p[1] - p[0], p[2] - p[0])
    c2w, K = np.array(meta["c2w"][0][v]), np.array(meta["K"][v])
    j, i = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    d_cam = np.stack([(j - K[0, 2]) / K[0, 0], (i - K[1, 2]) / K[1, 1], np.ones_like(j)], -1)  # [H, W, 3], z = 1
    d_world = d_cam @ c2w[:3, :3].T
    z = (n @ (p[0] - c2w[:3, 3])) / (d_world @ n)  # ray parameter = camera z since d_cam.z = 1
    angle = np.degrees(np.arccos(1.0 / np.linalg.norm(d_cam, axis=-1)))
    return z, angle


def test_depth_is_planar_z_not_ray_distance_on_a_tilted_plane_near_the_corner(worker, synthetic):
    # The speck stretches the normalised box, so the plane sits in its upper-left corner; a close
    # camera with a wide lens sees it in the image's upper-left corner, 20+ degrees off the optical
    # axis, where ray distance exceeds planar z by 6 % and more.
    r = render_row(worker, synthetic["tilted_plane"], allow_static=True, fixed_views=1, fixed_elevations_deg=[0],
                   fixed_radius=0.9, fov_deg=75.0)
    assert r.status == "ok", r.detail
    s = Sample(r)
    depth, alpha = s.depth[0][0], s.rgba[0][0][..., 3]
    H, W = depth.shape
    corners, _ = glb.quad(1.0, 1.0, tilt_deg=TILT_DEG)
    z_true, angle = _plane_depth(s.meta, 0, corners, H, W)
    plane = (alpha == 255) & (depth > 0)
    plane[H // 2:, :] = False  # the speck is in the lower half
    assert plane[: H // 2, : W // 2].sum() == plane.sum() > 100, "the plane is in the upper-left quarter"
    off_axis = plane & (angle > 20.0)
    assert off_axis.sum() > 50
    err = np.abs(depth - z_true)[plane]
    assert np.median(err) < 1e-3 and np.percentile(err, 95) < 5e-3  # measured: 1e-5 and 2e-5
    # Ray distance differs from planar z there by far more than the tolerance: the check can tell.
    ray_distance = z_true / np.cos(np.radians(angle))
    assert np.median((ray_distance - z_true)[off_axis]) > 0.03


def test_sliding_cube_normalisation_motion_and_subframe_times(worker, synthetic):
    # 0.5-wide cube sliding 0.5 units/s along x; a 0.9 s window at 4 times hits frames 0, 7.2, 14.4, 21.6.
    r = render_row(worker, synthetic["sliding_cube"], clip=0, max_window_s=0.9, framing="union")
    assert r.status == "ok", r.detail
    m = json.loads(r.members[f"{r.key}.json"])
    assert m["clip_name"] == "slide" and m["static"] is False
    assert m["clip_span_s"] == pytest.approx(2.0)
    assert m["duration_s"] == pytest.approx(0.9)
    np.testing.assert_allclose(m["times_s"], [0, 0.3, 0.6, 0.9], atol=1e-9)
    np.testing.assert_allclose(m["times"], [0, 1 / 3, 2 / 3, 1], atol=1e-9)
    np.testing.assert_allclose(m["frames"], [0, 7.2, 14.4, 21.6], atol=1e-6)
    # union of boxes: x in [-0.25, 0.70], y, z in [-0.25, 0.25] -> centre (0.225, 0, 0), scale 1 / 0.95
    np.testing.assert_allclose(m["normalization"]["center"], [0.225, 0, 0], atol=1e-6)
    assert m["normalization"]["scale"] == pytest.approx(1 / 0.95, rel=1e-6)
    # each vertex moves 0.45 units = 0.45 / 0.95 normalised; whole frames (7, 14, 22) would give 0.4825
    assert r.stats["motion_max"] == pytest.approx(0.45 / 0.95, abs=1e-4)
    assert r.stats["scale_change"] == pytest.approx(1.0, abs=1e-6)


def test_cameras_in_the_json_are_the_preset_orbit(worker, synthetic):
    r = render_row(worker, synthetic["sliding_cube"], clip=0, fixed_views=3, fixed_elevations_deg=[10], framing="union")
    m = json.loads(r.members[f"{r.key}.json"])
    c2w = np.array(m["c2w"])
    for v, az in enumerate([0.0, 120.0, 240.0]):
        np.testing.assert_allclose(c2w[:, v, :3, 3], np.broadcast_to(orbit_position(az, 10, 2.1), (4, 3)), atol=1e-9)
    assert m["render"]["spec"]["fixed_views"] == 3 and m["render"]["preset"] == "debug"


@pytest.mark.parametrize("asset, clip, settings, status, reason", [
    ("truncated", 0, {}, "failed", "import_failed"),
    ("not_a_model", 0, {}, "failed", "import_failed"),
    ("text_file", 0, {}, "rejected", "unsupported_format"),
    ("blend_file", 0, {}, "rejected", "unsupported_format"),
    ("empty_scene", 0, {"allow_static": True}, "rejected", "empty_scene"),
    ("dense_grid", 0, {"allow_static": True, "max_faces": 1000}, "rejected", "too_many_faces"),
    ("dense_grid", 0, {}, "rejected", "no_motion"),
    ("sliding_cube", 1, {}, "rejected", "no_motion"),
    ("sliding_cube", 2, {}, "failed", "clip_out_of_range"),
    ("sliding_cube", 0, {"fixed_radius": 0.1}, "failed", "bad_settings"),
])
def test_bad_input_becomes_a_row_with_a_reason(worker, synthetic, asset, clip, settings, status, reason):
    r = render_row(worker, synthetic[asset], clip=clip, **settings)
    assert (r.status, r.reason) == (status, reason), r.detail
    assert r.detail and r.members == {}


def test_missing_file_is_a_failed_row(worker, tmp_path):
    r = render_row(worker, tmp_path / "gone.glb")
    assert (r.status, r.reason) == ("failed", "missing_file")


def test_a_still_clip_renders_as_one_static_frame_when_static_is_allowed(worker, synthetic):
    r = render_row(worker, synthetic["sliding_cube"], clip=1, allow_static=True)
    assert r.status == "ok", r.detail
    m = json.loads(r.members[f"{r.key}.json"])
    assert m["static"] is True and m["num_frames"] == 1 and m["times_s"] == [0.0] and m["times"] == [0.0]
    assert sorted(k for k in r.members if k.endswith(".depth.png")) == [f"{r.key}.t000.v{v:03d}.depth.png" for v in range(4)]


def test_worker_keeps_working_after_a_bad_asset(worker, synthetic):
    assert render_row(worker, synthetic["truncated"]).status == "failed"
    assert render_row(worker, synthetic["sliding_cube"]).status == "ok"


def test_timeout_is_a_failed_row(worker, synthetic):
    r = render_row(worker, synthetic["sliding_cube"], max_seconds=1e-6)
    assert (r.status, r.reason) == ("failed", "timeout")


def test_row_values_straight_from_pandas_are_accepted(worker, synthetic):
    import pandas as pd

    row = {"uid": "cube", "clip": np.int32(0), "static": pd.NA, "render_settings": float("nan"), "license": pd.NA,
           "sha256": np.float32("nan"), "source": "local", "file_type": None}
    r = worker.render(row, synthetic["sliding_cube"])
    assert r.status == "ok", r.detail
    m = json.loads(r.members["cube_000.json"])
    assert (m["license"], m["sha256"], m["source"], m["clip"]) == (None, None, "local", 0)


def test_device_gpu_renders_on_a_gpu_or_names_the_flag(synthetic):
    from render.presets import get_preset
    from render.worker import RenderWorker

    try:
        w = RenderWorker(get_preset("debug", device="gpu"))
    except ValueError as exc:  # no GPU here: a configuration error before any asset, naming the flag
        assert "--device gpu" in str(exc) and "--device cpu" in str(exc)
        return
    with w:
        r = render_row(w, synthetic["sliding_cube"])
    assert r.status == "ok", r.detail
    assert json.loads(r.members[f"{r.key}.json"])["render"]["compute"] in ("OPTIX", "CUDA", "HIP", "ONEAPI", "METAL")


def test_scratch_folder_is_removed_on_close_and_after_a_killed_worker(tmp_path):
    import subprocess
    import sys

    from render.presets import get_preset
    from render.worker import RenderWorker

    code = ("import os, sys; from pathlib import Path; from render.presets import get_preset; "
            "from render.worker import RenderWorker; w = RenderWorker(get_preset('debug'), workdir=Path(sys.argv[1])); "
            "os._exit(0)")  # dies without close() and without running finalizers, like a killed process
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, capture_output=True)
    (left,) = tmp_path.iterdir()
    w = RenderWorker(get_preset("debug"), workdir=tmp_path)
    assert not left.exists()  # the dead process's folder was swept
    w.close()
    assert list(tmp_path.iterdir()) == []
