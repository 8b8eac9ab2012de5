"""Framing 'union' vs 'track' (DESIGN.md §2) on objects that travel, and the 'too_small' rejection.

A 0.2-wide box slides 1.0 glTF unit along x over its 2 s clip (five times its size); with 'track' the
cameras follow its per-time box, so it fills the image as a still box does, and depth still reprojects
between views and across times through the recorded per-time cameras.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("bpy", reason="render extra (bpy 5.0.1) not installed")

from tests.render import glb  # noqa: E402
from tests.render.checks import Sample, consistent, reprojection  # noqa: E402
from tests.render.conftest import render_row  # noqa: E402

pytestmark = pytest.mark.blender

HALF = 0.1         # the box's half side (glTF units)
SLIDE = 1.0        # how far it travels along glTF x (= Blender x) over the clip
SPAN_S = 2.0       # the clip's length in seconds
DENSE = {"fixed_views": 8, "fixed_elevations_deg": [15, 30], "resolution": 96, "fixed_radius": 1.6}


@pytest.fixture(scope="module")
def box_path(tmp_path_factory):
    """Clip 0 'travel': the box slides SLIDE along x; clip 1 'still': it stays at the origin."""
    b = glb.GlbBuilder()
    node = b.add_mesh(*glb.box(HALF))
    b.add_translation_animation(node, [0.0, SPAN_S], [(0, 0, 0), (SLIDE, 0, 0)], name="travel")
    b.add_translation_animation(node, [0.0, SPAN_S], [(0, 0, 0), (0, 0, 0)], name="still")
    return b.write(tmp_path_factory.mktemp("framing") / "travelling_box.glb")


@pytest.fixture(scope="module")
def box(worker, box_path):
    """framing -> Sample of the travelling box (8 views, 4 times, 96 px), plus 'still' (one static frame)."""
    out = {}
    for framing in ("union", "track"):
        r = render_row(worker, box_path, framing=framing, **DENSE)
        assert r.status == "ok", r.detail
        out[framing] = Sample(r)
    r = render_row(worker, box_path, clip=1, allow_static=True, framing="track", **DENSE)
    assert r.status == "ok", r.detail
    out["still"] = Sample(r)
    return out


def _coverage(s: Sample) -> np.ndarray:
    return np.array(s.meta["quality"]["coverage"])  # [T, V]


def test_track_keeps_a_travelling_box_as_large_as_a_still_one(box):
    still = _coverage(box["still"])[0]  # [V]
    track, union = _coverage(box["track"]), _coverage(box["union"])
    assert still.min() > 0.1
    np.testing.assert_allclose(track, np.broadcast_to(still, track.shape), rtol=0.05)  # every (time, view)
    assert union.max() < 0.1 * still.min()  # the union box is 6x the box: 1/36 of the area
    assert box["track"].meta["render"]["framing"] == "track" and box["union"].meta["render"]["framing"] == "union"


def test_normalisation_and_per_time_offsets_follow_the_box(box):
    # union box: x in [-0.1, 1.1] -> centre (0.5, 0, 0); union scale 1 / 1.2, track scale 1 / 0.2.
    u, t = box["union"].meta, box["track"].meta
    for m in (u, t):
        np.testing.assert_allclose(m["normalization"]["center"], [0.5, 0, 0], atol=1e-6)
    assert u["normalization"]["scale"] == pytest.approx(1 / 1.2, rel=1e-6)
    assert t["normalization"]["scale"] == pytest.approx(1 / 0.2, rel=1e-6)
    times_s = np.array(t["times_s"])
    want = np.zeros((len(times_s), 3))
    want[:, 0] = (SLIDE * times_s / SPAN_S - 0.5) / 0.2  # scale * (box centre at t - union centre)
    np.testing.assert_allclose(t["cameras"]["offsets"], want, atol=1e-5)
    assert not np.any(u["cameras"]["offsets"])
    # Same orbits, each camera moved by its time's offset: rotations equal, positions shifted.
    cu, ct = box["union"].c2w, box["track"].c2w  # [T, V, 4, 4]
    np.testing.assert_allclose(ct[..., :3, :3], cu[..., :3, :3], atol=1e-12)
    np.testing.assert_allclose(ct[..., :3, 3] - want[:, None], cu[..., :3, 3], atol=1e-5)
    assert box["track"].result.stats["track_travel"] == pytest.approx(2.5, rel=1e-5)


def test_track_depth_reprojects_between_views_at_one_time(box):
    s = box["track"]
    for t in (0, s.T - 1):
        for va in range(s.V):
            r = reprojection(s, t, va, (va + 1) % s.V)
            assert consistent(r), (t, va, r)


def test_track_depth_reprojects_across_times_through_the_recorded_cameras(box):
    s = box["track"]
    scale, times_s = s.meta["normalization"]["scale"], np.array(s.meta["times_s"])
    ta, tb = 0, s.T - 1
    shift = np.array([scale * SLIDE * (times_s[tb] - times_s[ta]) / SPAN_S, 0.0, 0.0])  # the box's motion
    for va in range(s.V):
        vb = (va + 1) % s.V
        r = reprojection(s, ta, va, vb, tb=tb, shift=shift)
        assert consistent(r), (va, r)
        # Controls: time ta's camera for view vb (fixed views assumed), or no motion, both miss.
        assert not consistent(reprojection(s, ta, va, vb, tb=tb, shift=shift, c2w_b=s.c2w[ta, vb]))
        assert not consistent(reprojection(s, ta, va, vb, tb=tb))


def test_track_images_of_a_rigid_traveller_do_not_change_over_time(box):
    # The cameras move exactly with the box, so each fixed view sees the same picture at every time.
    s = box["track"]
    for v in range(s.V):
        a0 = s.rgba[0][v][..., 3].astype(int)
        for t in range(1, s.T):
            assert np.abs(s.rgba[t][v][..., 3].astype(int) - a0).mean() < 2.0, (t, v)
            np.testing.assert_allclose(s.depth[t][v], s.depth[0][v], atol=2e-3)


def test_random_views_are_drawn_per_time_and_follow_the_object(worker, box_path):
    settings = {"fixed_views": 1, "random_views": 3, "seed": 7}
    u, t = (Sample(render_row(worker, box_path, framing=f, **settings)) for f in ("union", "track"))
    offsets = np.array(t.meta["cameras"]["offsets"])  # [T, 3]
    np.testing.assert_allclose(t.c2w[..., :3, 3] - offsets[:, None], u.c2w[..., :3, 3], atol=1e-9)  # same draws
    assert not np.allclose(t.c2w[0, 1:], t.c2w[1, 1:])  # drawn anew at every time
    for ti in range(t.T):
        for v in range(t.V):
            pos, fwd = t.c2w[ti, v, :3, 3], t.c2w[ti, v, :3, 2]
            to_centre = offsets[ti] - pos
            assert np.linalg.norm(np.cross(fwd, to_centre)) < 1e-9  # looks straight at the box centre
    cov_t, cov_u = _coverage(t), _coverage(u)
    assert cov_t.min() > 0.05 and cov_u.max() < cov_t.min() / 10


def test_a_procedural_asset_travelling_four_times_its_size_keeps_its_coverage_under_track(worker, procedural_assets,
                                                                                         tmp_path):
    path = procedural_assets[2]  # skinned limbs
    still = render_row(worker, path, framing="track")
    assert still.status == "ok", still.detail
    size = 1.0 / render_row(worker, path, framing="union").stats["normalization_scale"]
    moved = glb.with_travel(path, tmp_path / "travelling.glb", 4.0 * size)
    cov = {}
    for framing in ("union", "track"):
        r = render_row(worker, moved, uid="travelling", framing=framing)
        assert r.status == "ok", r.detail
        cov[framing] = r.stats["coverage_mean"]
    assert cov["track"] == pytest.approx(still.stats["coverage_mean"], rel=0.1)
    assert cov["union"] < 0.1 * cov["track"]


def test_too_small_rejects_by_the_best_views_coverage(worker, box_path):
    # union: the travelling box covers ~0.4 % of the image; track: ~15 %.
    r = render_row(worker, box_path, framing="union", min_coverage=0.02)
    assert (r.status, r.reason) == ("rejected", "too_small"), r.detail
    assert "min_coverage 2.00%" in r.detail and r.members == {}
    assert 0 < r.stats["coverage_max_view"] < 0.02  # the statistics that decided it reach the shard parquet
    assert render_row(worker, box_path, framing="track", min_coverage=0.02).status == "ok"
    off = render_row(worker, box_path, framing="union", min_coverage=0.0)
    assert off.status == "ok" and off.stats["coverage_max_view"] < 0.02


def test_too_small_is_counted_by_pipeline_status(worker, box_path, tmp_path):
    from pipeline.shards import ShardWriter
    from pipeline.status import collect_status, format_report

    w = ShardWriter(tmp_path, 0)
    w.add(render_row(worker, box_path, uid="tiny", framing="union", min_coverage=0.02))
    w.add(render_row(worker, box_path, uid="framed", framing="track", min_coverage=0.02))
    w.commit()
    rep = collect_status(tmp_path)
    assert rep.samples == {"ok": 1, "rejected": 1} and rep.reasons == {"rejected": {"too_small": 1}}
    assert any(line.split() == ["too_small", "1"] for line in format_report(rep).splitlines())


def _outside_bound(s: Sample, span: float, anchored: bool) -> float:
    """Fraction of rendered surface pixels whose distance along the pixel ray falls outside the range the
    reconstructor can place a Gaussian in (the real training/blocks.ray_depth_means at both ends of its
    sigmoid), with the loader's anchors (training/decode.camera_anchors) or measured from the origin."""
    import torch

    from training.models.blocks import ray_depth_means
    from training.data.decode import camera_anchors

    anchors = camera_anchors(s.key, s.meta) if anchored else np.zeros((s.T, 3), np.float32)  # [T, 3]
    S = s.meta["width"]
    j, i = np.meshgrid(np.arange(S) + 0.5, np.arange(S) + 0.5)
    bad = total = 0
    for t in range(s.T):
        c2w = torch.tensor(s.c2w[t], dtype=torch.float32)[None]  # [1, V, 4, 4]
        K = torch.tensor(s.K, dtype=torch.float32)[None]  # [1, V, 3, 3]
        a = torch.from_numpy(anchors[t]).expand(1, s.V, 3)  # [1, V, 3]
        _, lo = ray_depth_means(torch.full((1, s.V, S, S, 1), -50.0), c2w, K, span, a)  # [1, V, S, S, 1]
        _, hi = ray_depth_means(torch.full((1, s.V, S, S, 1), 50.0), c2w, K, span, a)
        for v in range(s.V):
            d = s.depth[t][v]
            ray = d * np.sqrt(1 + ((j - s.K[v][0, 2]) / s.K[v][0, 0]) ** 2 + ((i - s.K[v][1, 2]) / s.K[v][1, 1]) ** 2)
            m = d > 0
            lo_v, hi_v = lo[0, v, ..., 0].numpy()[m], hi[0, v, ..., 0].numpy()[m]
            bad += int(((ray[m] < lo_v - 1e-3) | (ray[m] > hi_v + 1e-3)).sum())
            total += int(m.sum())
    return bad / total


def test_the_reconstructors_distance_bound_holds_tracked_surfaces_through_the_anchors(box):
    # training/models/blocks.py puts each Gaussian on its pixel ray at |camera - anchor| +- model.dist_span, the
    # anchor being the camera's per-time offset (the loader's in_anchor). Measured from the origin (as
    # before anchors), a traveller's cameras are 2.5 units from it and most surfaces fall outside the
    # default span; from the anchors they all lie inside, as an in-place clip's do under union.
    pytest.importorskip("torch")
    union, track = box["union"], box["track"]
    assert not np.any(union.meta["cameras"]["offsets"])  # union: anchors 0, the bound as before
    assert union.result.stats["dist_span_needed"] < 1.0
    assert _outside_bound(union, 1.0, anchored=True) == _outside_bound(union, 1.0, anchored=False) == 0.0
    need = track.result.stats["dist_span_needed"]
    assert track.meta["quality"]["dist_span_needed"] == need  # in the JSON too, for a loader to check
    assert need < 0.9  # the per-time box fits the unit cube around its anchor: half-diagonal 0.87
    assert _outside_bound(track, 1.0, anchored=True) == 0.0  # the default model.dist_span holds every surface
    assert _outside_bound(track, need - 0.05, anchored=True) > 0.0  # dist_span_needed is tight
    assert _outside_bound(track, 1.0, anchored=False) > 0.2  # without anchors the default span misses them
    assert _outside_bound(track, 2.0, anchored=False) > 0.0  # the cameras travel 2.5 units


def test_anchors_of_zero_leave_the_distance_bound_bit_for_bit_unchanged(box):
    # Union shards (and shards from before framing) have zero anchors: existing checkpoints keep their meaning.
    torch = pytest.importorskip("torch")
    from training.models.blocks import ray_depth_means

    s = box["union"]
    g = torch.Generator().manual_seed(0)
    raw = torch.randn(1, s.V, 24, 24, 1, generator=g) * 3  # [1, V, S, S, 1]
    c2w = torch.tensor(s.c2w[0], dtype=torch.float32)[None]  # [1, V, 4, 4]
    K = torch.tensor(s.K, dtype=torch.float32)[None] * torch.tensor([24 / 96, 24 / 96, 1.0])[:, None]
    m0, d0 = ray_depth_means(raw, c2w, K, 1.0)
    m1, d1 = ray_depth_means(raw, c2w, K, 1.0, torch.zeros(1, s.V, 3))
    assert torch.equal(m0, m1) and torch.equal(d0, d1)
    m2, _ = ray_depth_means(raw, c2w, K, 1.0, torch.tensor(s.meta["cameras"]["offsets"][0]).expand(1, s.V, 3).float())
    assert torch.equal(m0, m2)


@pytest.mark.parametrize("framing", ["union", "track"])
def test_pipeline_render_framing_flag_end_to_end(box_path, tmp_path, framing):
    import pandas as pd
    import pyarrow.parquet as pq
    from click.testing import CliRunner

    from contracts.layout import read_stats
    from manifests.schema import write_manifest
    from pipeline.cli import cli
    from contracts.shardread import iter_shard

    df = pd.DataFrame({"uid": ["box"], "clip": [0], "clip_name": [""], "source": ["local"], "uri": [str(box_path)],
                       "sha256": [None], "license": ["cc0"], "shard": [0], "weight": [1.0], "round": [0]})
    manifest = write_manifest(df, tmp_path / "m.parquet", command="test")
    out = tmp_path / "out"
    args = ["render", "--manifest", str(manifest), "--shard", "0", "--out", str(out), "--preset", "debug",
            "--resolution", "32", "--views", "2", "--samples", "1", "--no-ray", "--framing", framing,
            "--min-coverage", "0.02"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert read_stats(out, 0)["spec"]["framing"] == framing
    row = pq.read_table(out / "shard-000000.parquet").to_pylist()[0]
    assert row["framing"] == framing
    if framing == "union":  # the box is 1/6 of its union box: under 2 % of the image
        assert (row["status"], row["reason"]) == ("rejected", "too_small")
        r = CliRunner().invoke(cli, ["status", str(out)])
        assert r.exit_code == 0 and "too_small" in r.output, r.output
    else:
        assert row["status"] == "ok" and row["track_travel"] == pytest.approx(2.5, rel=1e-4)
        (sample,) = iter_shard(out / "shard-000000.tar")
        assert sample.meta["render"]["framing"] == "track" and len(sample.meta["cameras"]["offsets"]) == 4
    r = CliRunner().invoke(cli, args[:-4] + ["--framing", "follow"])
    assert r.exit_code == 2 and "--framing" in r.output
    r = CliRunner().invoke(cli, args[:-2] + ["--min-coverage", "1.5"])
    assert r.exit_code == 2 and "--min-coverage" in r.output
