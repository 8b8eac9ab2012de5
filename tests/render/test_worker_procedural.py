"""RenderWorker on procedural assets (render.procedural): always available, no ../shared needed."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("bpy", reason="render extra (bpy 5.0.1) not installed")

from render import passes  # noqa: E402
from render.clips import gltf_animation_names  # noqa: E402
from tests.render.checks import Sample, consistent, image_change, reprojection  # noqa: E402
from tests.render.conftest import render_row  # noqa: E402

pytestmark = pytest.mark.blender

DENSE = {"fixed_views": 8, "fixed_elevations_deg": [15, 30], "resolution": 96, "fixed_radius": 1.6}


@pytest.fixture(scope="module", params=["union", "track"])
def rendered(request, worker, procedural_assets):
    """Clip 0 of each procedural asset (one per kind of motion), 8 views, 4 times, under each framing."""
    out = []
    for path in procedural_assets:
        r = render_row(worker, path, framing=request.param, **DENSE)
        assert r.status == "ok", f"{path.name}: {r.reason}: {r.detail}"
        out.append(Sample(r))
    return out


def test_depth_reprojects_into_the_neighbouring_view(rendered):
    for s in rendered:
        for t in (0, s.T - 1):
            for va in range(s.V):
                r = reprojection(s, t, va, (va + 1) % s.V)
                assert consistent(r), (s.key, t, va, r)


def test_surface_points_fall_inside_the_normalised_box(rendered):
    # union: the unit box around the origin; track: the per-time unit box around the orbit centre
    # cameras.offsets[t] (zeros under union), which moves with the object.
    for s in rendered:
        offsets = np.array(s.meta["cameras"]["offsets"])  # [T, 3]
        assert s.meta["render"]["framing"] in ("union", "track")
        if s.meta["render"]["framing"] == "union":
            assert not offsets.any()
        pts = np.concatenate([s.points(t, v) - offsets[t] for t in range(s.T) for v in range(s.V)])
        assert np.abs(pts).max() < 0.515, s.key
        assert np.abs(pts).max(axis=0).max() > 0.45, s.key


def test_frames_change_over_time(rendered):
    for s in rendered:
        assert s.meta["static"] is False
        assert max(image_change(s, 0, t) for t in range(1, s.T)) > 0.5, s.key
        assert s.result.stats["motion_max"] > 0.01


def test_the_clips_of_one_asset_differ(worker, procedural_assets):
    path = next(p for p in procedural_assets if len(gltf_animation_names(p)) >= 2)
    names = gltf_animation_names(path)
    a, b = (Sample(render_row(worker, path, clip=c)) for c in (0, 1))
    assert (a.meta["clip_name"], b.meta["clip_name"]) == (names[0], names[1])
    assert np.mean([np.abs(a.rgba[t][0].astype(int) - b.rgba[t][0].astype(int)).mean() for t in (1, 2)]) > 0.5


def test_json_holds_the_contract_fields(rendered):
    m = rendered[0].meta
    for k in ("schema_version", "uid", "clip", "clip_name", "source", "license", "sha256", "static", "fps", "duration_s",
              "num_frames", "num_views", "width", "height", "times_s", "times", "c2w", "K", "depth_scale",
              "normalization", "render"):
        assert k in m, k
    assert m["schema_version"] == 1
    assert np.array(m["c2w"]).shape == (m["num_frames"], m["num_views"], 4, 4)
    assert np.array(m["K"]).shape == (m["num_views"], 3, 3)
    assert len(m["times_s"]) == len(m["times"]) == m["num_frames"]
    assert m["times"][0] == 0.0 and m["times"][-1] == pytest.approx(1.0)
    for k in ("engine", "samples", "blender_version", "seed", "preset"):
        assert k in m["render"], k
    assert m["render"]["blender_version"].startswith("5.0")


def test_same_row_renders_to_the_same_bytes(worker, procedural_assets):
    a = render_row(worker, procedural_assets[1], random_views=1)
    b = render_row(worker, procedural_assets[1], random_views=1)
    assert a.members.keys() == b.members.keys()
    assert all(a.members[k] == b.members[k] for k in a.members)


def test_webp_normals_random_views_and_random_lighting(worker, procedural_assets):
    r = render_row(worker, procedural_assets[2], image_format="webp", normals=True, random_views=2,
                   lighting="random", num_frames=3, resolution=48)
    assert r.status == "ok", r.detail
    s = Sample(r)
    assert s.V == 6 and s.meta["cameras"]["fixed"] == [True] * 4 + [False] * 2
    assert not np.allclose(s.c2w[0, 4], s.c2w[1, 4])  # random views are new at every time
    assert r.members[f"{r.key}.t000.v000.webp"][:4] == b"RIFF"
    assert s.rgba[0][0].shape == (48, 48, 4)
    light = s.meta["render"]["lighting"]
    assert light["kind"] == "random" and "sun" in light
    n = passes.decode_normal(r.members[f"{r.key}.t001.v005.normal.png"])
    surface = s.depth[1][5] > 0
    assert surface.sum() > 20
    np.testing.assert_allclose(np.linalg.norm(n[surface], axis=-1), 1.0, atol=0.02)
    assert (n[~surface] == 0).all()


def test_quality_statistics_are_flat_scalars(rendered):
    st = rendered[0].result.stats
    for k in ("coverage_mean", "coverage_min_view", "coverage_max_view", "border_fraction", "touches_border",
              "motion_max", "motion_mean", "motion_times", "scale_change", "faces", "render_s", "import_s", "reset_s",
              "cpu_s"):
        assert k in st and isinstance(st[k], (bool, int, float)), k
    assert 0 < st["render_s"] < rendered[0].result.seconds and st["cpu_s"] > 0.5 * st["render_s"]
    assert 0 < st["coverage_min_view"] <= st["coverage_mean"] <= st["coverage_max_view"] < 1
    assert st["scale_change"] >= 1.0


def test_an_object_filling_the_frame_touches_the_border(worker, procedural_assets):
    r = render_row(worker, procedural_assets[0], fixed_radius=0.9, fov_deg=30.0)
    assert r.status == "ok", r.detail
    assert r.stats["touches_border"] is True and r.stats["border_fraction"] > 0.5
    cov = json.loads(r.members[f"{r.key}.json"])["quality"]["coverage"]
    assert np.array(cov).shape == (4, 4)


def test_a_looping_clip_rendered_at_its_two_ends_is_judged_on_in_between_times(worker, procedural_assets):
    # Procedural clips loop: their first and last poses are the same, so two rendered times (the ends)
    # show no motion; the check then looks at MOTION_PROBES in-between times and keeps the clip.
    from render.worker import MOTION_PROBES

    path = procedural_assets[2]  # the biped: clip 0 (idle) is periodic, every channel ends where it starts
    r = render_row(worker, path, num_frames=2, fixed_views=1, resolution=32, max_window_s=600.0)
    assert r.status == "ok", (r.reason, r.detail)
    s = Sample(r)
    assert image_change(s, 0, 1) < 0.05  # the two rendered poses agree: the rendered times alone say "still"
    assert r.stats["motion_times"] == MOTION_PROBES and r.stats["motion_max"] > 0.01
    # Enough rendered times: the check uses them as they are.
    r4 = render_row(worker, path, num_frames=4, fixed_views=1, resolution=32, max_window_s=600.0)
    assert r4.status == "ok" and r4.stats["motion_times"] == 4
