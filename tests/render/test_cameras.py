"""Cameras: OpenCV c2w in the normalised space, pixel-centre K, seeded random views."""

from __future__ import annotations

import numpy as np
import pytest

from render.cameras import (from_blender, intrinsics, look_at_c2w, make_cameras, orbit_position, project, to_blender,
                            unproject)
from render.presets import get_preset


def test_look_at_is_opencv():
    c2w = look_at_c2w(np.array([0.0, -3.0, 0.0]))
    right, down, forward, pos = c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3]
    np.testing.assert_allclose(forward, [0, 1, 0], atol=1e-12)   # looks at the origin
    np.testing.assert_allclose(down, [0, 0, -1], atol=1e-12)     # image y goes down = world -Z
    np.testing.assert_allclose(right, [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(pos, [0, -3, 0])
    np.testing.assert_allclose(c2w[:3, :3] @ c2w[:3, :3].T, np.eye(3), atol=1e-12)
    assert np.linalg.det(c2w[:3, :3]) == pytest.approx(1.0)


def test_orbit_azimuth_zero_is_on_minus_y():
    np.testing.assert_allclose(orbit_position(0, 0, 2), [0, -2, 0], atol=1e-12)
    np.testing.assert_allclose(orbit_position(90, 0, 2), [2, 0, 0], atol=1e-12)
    np.testing.assert_allclose(orbit_position(0, 90, 2), [0, 0, 2], atol=1e-12)


def test_intrinsics_put_pixel_centres_at_half():
    K = intrinsics(90.0, 64, 64)
    assert K[0, 2] == 32.0 and K[1, 2] == 32.0
    assert K[0, 0] == pytest.approx(32.0)  # tan(45 deg) = 1
    # The origin seen from a camera looking at it lands on the image centre, between pixels 31 and 32.
    uv, z = project(np.zeros((1, 3)), look_at_c2w(np.array([0, -2.0, 0])), K)
    np.testing.assert_allclose(uv, [[32.0, 32.0]])
    assert z[0] == pytest.approx(2.0)


def test_a_point_above_the_centre_projects_upwards():
    K = intrinsics(60.0, 64, 64)
    uv, _ = project(np.array([[0.0, 0.0, 0.3], [0.3, 0.0, 0.0]]), look_at_c2w(np.array([0, -2.0, 0])), K)
    assert uv[0, 1] < 32  # +Z (up) is a smaller row index
    assert uv[1, 0] > 32  # +X is to the right when looking along +Y


def test_unproject_inverts_project():
    K = intrinsics(49.1, 32, 32)
    c2w = look_at_c2w(orbit_position(30, 20, 2.0))
    depth = np.full((32, 32), 1.7)
    pts = unproject(depth, c2w, K).reshape(-1, 3)
    uv, z = project(pts, c2w, K)
    jj, ii = np.meshgrid(np.arange(32) + 0.5, np.arange(32) + 0.5)
    np.testing.assert_allclose(uv, np.stack([jj.ravel(), ii.ravel()], 1), atol=1e-9)
    np.testing.assert_allclose(z, 1.7)


def test_blender_conversion_flips_y_and_z_and_round_trips():
    c2w = look_at_c2w(orbit_position(10, 30, 2.0))
    b = to_blender(c2w)
    np.testing.assert_allclose(b[:3, 2], -c2w[:3, 2])   # Blender cameras look down their -Z
    np.testing.assert_allclose(b[:3, 1], -c2w[:3, 1])   # and have +Y up
    np.testing.assert_allclose(from_blender(b), c2w)


def test_fixed_views_are_constant_over_time_and_random_views_are_not():
    spec = get_preset("debug", fixed_views=3, random_views=2, num_frames=4)
    cams = make_cameras(spec, "abc_000", spec.num_frames)
    assert cams.c2w.shape == (4, 5, 4, 4) and cams.K.shape == (5, 3, 3)
    assert cams.fixed.tolist() == [True, True, True, False, False]
    np.testing.assert_allclose(cams.c2w[:, :3], np.broadcast_to(cams.c2w[:1, :3], (4, 3, 4, 4)))
    assert not np.allclose(cams.c2w[0, 3:], cams.c2w[1, 3:])
    lo, hi = spec.random_elevation_deg
    assert ((cams.elevation_deg[:, 3:] >= lo) & (cams.elevation_deg[:, 3:] <= hi)).all()
    np.testing.assert_allclose(np.linalg.norm(cams.c2w[:, :, :3, 3], axis=-1), cams.radius)


def test_fixed_views_are_evenly_spaced_with_cycled_elevations():
    spec = get_preset("debug", fixed_views=4, fixed_elevations_deg=(0.0, 20.0), fixed_azimuth_offset_deg=10.0)
    cams = make_cameras(spec, "k_000", 1)
    np.testing.assert_allclose(cams.azimuth_deg[0], [10, 100, 190, 280])
    np.testing.assert_allclose(cams.elevation_deg[0], [0, 20, 0, 20])


def test_same_seed_same_cameras_other_seed_or_key_other_cameras():
    spec = get_preset("lrm4d")
    a = make_cameras(spec, "uid_000", 3).c2w
    np.testing.assert_array_equal(a, make_cameras(spec, "uid_000", 3).c2w)
    assert not np.allclose(a, make_cameras(spec.replace(seed=1), "uid_000", 3).c2w)
    assert not np.allclose(a, make_cameras(spec, "uid_001", 3).c2w)


def test_normalisation_union_and_track_from_per_time_boxes():
    from render.cameras import normalisation

    # a 1 x 2 x 0.5 box whose centre moves from x = 0 to x = 4 (and is missing at one time)
    half = np.array([0.5, 1.0, 0.25])
    boxes = [(np.array([x, 0, 0]) - half, np.array([x, 0, 0]) + half) for x in (0.0, 2.0, 4.0)] + [None]
    c, s, off = normalisation(boxes, "union")
    np.testing.assert_allclose(c, [2, 0, 0])
    assert s == pytest.approx(1 / 5) and not off.any() and off.shape == (4, 3)
    c, s, off = normalisation(boxes, "track")
    np.testing.assert_allclose(c, [2, 0, 0])  # the union box's centre in both framings
    assert s == pytest.approx(1 / 2)          # the largest side of one time's box
    np.testing.assert_allclose(off, [[-1, 0, 0], [0, 0, 0], [1, 0, 0], [0, 0, 0]])
    with pytest.raises(ValueError, match="no geometry"):
        normalisation([None, None], "track")
    with pytest.raises(ValueError, match="zero size"):
        normalisation([(np.zeros(3), np.zeros(3))], "track")


def test_offsets_translate_every_camera_of_their_time():
    spec = get_preset("debug", fixed_views=2, random_views=2, seed=3)
    offsets = np.array([[0, 0, 0], [1, 2, 3], [-1, 0, 0.5], [0, 0, 0]], dtype=float)
    a, b = make_cameras(spec, "k_000", 4), make_cameras(spec, "k_000", 4, offsets)
    np.testing.assert_allclose(b.c2w[..., :3, :3], a.c2w[..., :3, :3])
    np.testing.assert_allclose(b.c2w[..., :3, 3], a.c2w[..., :3, 3] + offsets[:, None])
    np.testing.assert_allclose(b.offsets, offsets)
    with pytest.raises(ValueError, match="offsets"):
        make_cameras(spec, "k_000", 4, offsets[:3])
