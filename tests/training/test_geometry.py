"""Camera and ray conventions (DESIGN.md §2) in training/geometry.py."""

from __future__ import annotations

import torch

from training.geometry import (intrinsics, look_at, orbit_cameras, pixel_rays, plucker, scale_intrinsics,
                               world_to_camera)


def _project(X, c2w, K):
    w2c = world_to_camera(c2w)
    xc = X @ w2c[:3, :3].T + w2c[:3, 3]
    return torch.stack([K[0, 0] * xc[..., 0] / xc[..., 2] + K[0, 2], K[1, 1] * xc[..., 1] / xc[..., 2] + K[1, 2]], -1)


def test_rays_pass_through_pixel_centres():
    c2w = orbit_cameras(3, 2.5, elevation_deg=30.0, dtype=torch.float64)[1]
    K = intrinsics(50.0, 12, 8, dtype=torch.float64)
    o, d = pixel_rays(c2w, K, 8, 12)
    uv = _project(o + 1.7 * d, c2w, K)  # any point on the ray projects to the pixel centre
    i, j = torch.meshgrid(torch.arange(8.0, dtype=torch.float64), torch.arange(12.0, dtype=torch.float64), indexing="ij")
    torch.testing.assert_close(uv, torch.stack([j + 0.5, i + 0.5], -1))
    torch.testing.assert_close(d.norm(dim=-1), torch.ones(8, 12, dtype=torch.float64))


def test_opencv_axes_of_look_at():
    c2w = look_at(torch.tensor([3.0, 0.0, 0.0]), torch.zeros(3))
    torch.testing.assert_close(c2w[:3, 2], torch.tensor([-1.0, 0.0, 0.0]))  # forward looks at the target
    assert c2w[2, 1] < 0  # image "down" (y) points to world -Z: +Z is up in the picture


def test_plucker_moment_does_not_depend_on_the_point_chosen_on_the_ray():
    o, d = torch.randn(5, 3, dtype=torch.float64), torch.nn.functional.normalize(torch.randn(5, 3, dtype=torch.float64), dim=-1)
    torch.testing.assert_close(plucker(o, d), plucker(o + 0.8 * d, d))


def test_scaled_intrinsics_are_exact_for_resized_images():
    c2w = orbit_cameras(1, 2.0, dtype=torch.float64)[0]
    K = intrinsics(40.0, 64, 64, dtype=torch.float64)
    X = torch.randn(20, 3, dtype=torch.float64) * 0.3
    uv_full = _project(X, c2w, K)
    uv_small = _project(X, c2w, scale_intrinsics(K, 0.25, 0.25))
    torch.testing.assert_close(uv_small, uv_full * 0.25)  # pixel edges at 0 and W map to 0 and W/4


def test_world_to_camera_inverts_c2w():
    c2w = orbit_cameras(4, 2.0, dtype=torch.float64)
    torch.testing.assert_close(world_to_camera(c2w) @ c2w, torch.eye(4, dtype=torch.float64).expand(4, 4, 4))
