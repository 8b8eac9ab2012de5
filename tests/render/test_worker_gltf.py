"""RenderWorker on the real Khronos sample models in ../shared/assets/gltf (assets.json has the truth)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("bpy", reason="render extra (bpy 5.0.1) not installed")

from tests.render.checks import Sample, consistent, image_change, reprojection  # noqa: E402
from tests.render.conftest import render_row  # noqa: E402

pytestmark = pytest.mark.blender

ANIMATED = ["BoxAnimated", "InterpolationTest", "RiggedSimple", "CesiumMan", "Fox", "AnimatedMorphCube"]
STATIC = ["Box", "Duck"]
# 8 fixed views 45 degrees apart on two rings, close enough and sharp enough for thin models (Fox's
# legs) to have interior pixels; a long window so that clips are rendered whole.
DENSE = {"fixed_views": 8, "fixed_elevations_deg": [15, 30], "max_window_s": 10.0, "resolution": 96, "fixed_radius": 1.6}


@pytest.fixture(scope="module")
def expected(gltf_dir):
    return {a["file"].removesuffix(".glb"): a["expected"] for a in json.loads((gltf_dir / "assets.json").read_text())["assets"]}


@pytest.fixture(scope="module")
def rendered(worker, gltf_dir):
    """Clip 0 of every real model (static ones as static), rendered once for the module."""
    out = {}
    for name in ANIMATED + STATIC:
        r = render_row(worker, gltf_dir / f"{name}.glb", uid=name, allow_static=name in STATIC, **DENSE)
        assert r.status == "ok", f"{name}: {r.reason}: {r.detail}"
        out[name] = Sample(r)
    return out


@pytest.mark.parametrize("name", ANIMATED + STATIC)
def test_depth_reprojects_into_the_neighbouring_view(rendered, name):
    s = rendered[name]
    for t in sorted({0, s.T // 2}):
        for va in range(s.V):
            vb = (va + 1) % s.V  # 45 degrees further round, on the other ring
            r = reprojection(s, t, va, vb)
            assert consistent(r), (name, t, va, vb, r)


@pytest.mark.parametrize("wrong", [np.diag([1.0, -1.0, -1.0, 1.0]),   # Blender axes taken for OpenCV's
                                   np.diag([-1.0, -1.0, 1.0, 1.0]),   # image turned by 180 degrees
                                   np.diag([1.0, 1.0, -1.0, 1.0])])   # looking backwards
def test_reprojection_check_catches_a_wrong_camera_convention(rendered, wrong):
    s = rendered["Duck"]
    for va in range(s.V):
        vb = (va + 1) % s.V
        assert not consistent(reprojection(s, 0, va, vb, c2w_b=s.c2w[0, vb] @ wrong)), va


@pytest.mark.parametrize("name", ANIMATED + STATIC)
def test_surface_points_fall_inside_the_normalised_box(rendered, name):
    s = rendered[name]
    pts = np.concatenate([s.points(t, v) for t in range(s.T) for v in range(s.V)])
    assert np.abs(pts).max() < 0.5 + 0.015, name  # 0.015: a pixel's footprint
    # and the box is tight: the object reaches its faces along its largest side
    assert np.abs(pts).max(axis=0).max() > 0.45, name


@pytest.mark.parametrize("name", ANIMATED)
def test_frames_change_over_time_for_animated_clips(rendered, name):
    s = rendered[name]
    assert s.meta["static"] is False and s.T == 4
    assert max(image_change(s, 0, t) for t in range(1, s.T)) > 0.5, name


@pytest.mark.parametrize("name", STATIC)
def test_static_assets_are_one_frame_marked_static(rendered, name):
    s = rendered[name]
    assert s.meta["static"] is True and s.T == 1 and s.meta["duration_s"] == 0.0


@pytest.mark.parametrize("name", STATIC)
def test_static_assets_are_rejected_unless_asked_for(worker, gltf_dir, name):
    r = render_row(worker, gltf_dir / f"{name}.glb", uid=name)
    assert (r.status, r.reason) == ("rejected", "no_motion")


def test_static_asset_does_not_change_when_rendered_as_animation_frames(worker, gltf_dir):
    # Box has no clip: asking for 4 frames still gives one (nothing to sample), and a row with the
    # manifest's static flag set renders without allow_static.
    r = worker.render({"uid": "Box", "clip": 0, "static": True}, gltf_dir / "Box.glb")
    assert r.status == "ok" and r.stats["num_frames"] == 1 and r.stats["static"] is True


@pytest.mark.parametrize("name", ANIMATED)
def test_clip_span_matches_the_file(rendered, expected, name):
    s = rendered[name]
    anim = expected[name]["animations"][0]
    assert s.meta["clip_span_s"] == pytest.approx(anim["max_keyframe_time_s"] - anim["min_keyframe_time_s"], abs=1e-3)
    assert s.meta["clip_name"] == (anim["name"] or "")


def test_box_animated_lasts_its_full_3_708_s(rendered):
    # its rotation channel ends at 2.5 s, its translation channel at 3.708 s: the clip is the longer one
    s = rendered["BoxAnimated"]
    assert s.meta["duration_s"] == pytest.approx(3.70833, abs=1e-4)
    assert s.meta["times_s"][-1] == pytest.approx(3.70833, abs=1e-4)
    assert s.meta["times"] == pytest.approx([0, 1 / 3, 2 / 3, 1])


def test_each_of_fox_clips_differs(worker, gltf_dir, expected):
    samples = []
    for clip in range(3):
        r = render_row(worker, gltf_dir / "Fox.glb", clip=clip, uid="Fox", fixed_views=1, resolution=48)
        assert r.status == "ok", r.detail
        samples.append(Sample(r))
    anims = expected["Fox"]["animations"]
    assert [s.meta["clip_name"] for s in samples] == [a["name"] for a in anims] == ["Survey", "Walk", "Run"]
    for s, a in zip(samples, anims):
        assert s.meta["duration_s"] == pytest.approx(a["max_keyframe_time_s"] - a["min_keyframe_time_s"], abs=1e-3)
    for i in range(3):
        for j in range(i + 1, 3):
            diff = np.mean([np.abs(samples[i].rgba[t][0].astype(int) - samples[j].rgba[t][0].astype(int)).mean()
                            for t in (1, 2)])
            assert diff > 0.5, (i, j, diff)


def test_every_interpolation_test_clip_moves(worker, gltf_dir, expected):
    anims = expected["InterpolationTest"]["animations"]
    for clip, a in enumerate(anims):
        r = render_row(worker, gltf_dir / "InterpolationTest.glb", clip=clip, uid="InterpolationTest",
                       fixed_views=1, num_frames=5, resolution=32)
        assert r.status == "ok", (clip, r.reason, r.detail)
        assert r.stats["clip_name"] == a["name"]
        assert r.stats["clip_span_s"] == pytest.approx(a["max_keyframe_time_s"] - a["min_keyframe_time_s"], abs=1e-3)
        assert r.stats["motion_max"] > 0.01


def test_clip_out_of_range(worker, gltf_dir):
    r = render_row(worker, gltf_dir / "Fox.glb", clip=3, uid="Fox")
    assert (r.status, r.reason) == ("failed", "clip_out_of_range")
