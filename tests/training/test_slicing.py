"""4D Gaussian slicing (training/render/slicing.py): the properties the issue names, and gradients."""

from __future__ import annotations

import torch

from training.render.slicing import (Gaussians4D, condition_on_time, covariance_4d, quat_to_rotmat, rotation_4d,
                              slice_at)


def _random_gaussians(B: int, N: int, dtype=torch.float64, identity: bool = False) -> Gaussians4D:
    g = torch.Generator().manual_seed(0)
    q = lambda: torch.randn(B, N, 4, generator=g, dtype=dtype)  # noqa: E731
    ident = torch.tensor([1.0, 0, 0, 0], dtype=dtype).expand(B, N, 4)
    return Gaussians4D(
        means=torch.randn(B, N, 3, generator=g, dtype=dtype),
        mu_t=torch.rand(B, N, generator=g, dtype=dtype),
        rgb=torch.rand(B, N, 3, generator=g, dtype=dtype),
        scales=torch.rand(B, N, 3, generator=g, dtype=dtype) * 0.2 + 0.05,
        scale_t=torch.rand(B, N, generator=g, dtype=dtype) * 0.3 + 0.1,
        q_l=ident.clone() if identity else q(),
        q_r=ident.clone() if identity else q(),
        opacity=torch.rand(B, N, generator=g, dtype=dtype) * 0.9 + 0.05,
    )


def test_rotation_4d_is_orthonormal():
    R = rotation_4d(torch.randn(50, 4, dtype=torch.float64), torch.randn(50, 4, dtype=torch.float64))
    torch.testing.assert_close(R @ R.transpose(-1, -2), torch.eye(4, dtype=torch.float64).expand(50, 4, 4))
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(50, dtype=torch.float64))


def test_conjugate_pair_is_the_ordinary_3d_rotation_and_leaves_time_alone():
    q = torch.randn(20, 4, dtype=torch.float64)
    q = q / q.norm(dim=-1, keepdim=True)
    conj = q * torch.tensor([1.0, -1, -1, -1], dtype=torch.float64)
    R = rotation_4d(q, conj)
    torch.testing.assert_close(R[:, :3, :3], quat_to_rotmat(q))
    torch.testing.assert_close(R[:, 3, 3], torch.ones(20, dtype=torch.float64))
    torch.testing.assert_close(R[:, :3, 3], torch.zeros(20, 3, dtype=torch.float64))


def test_identity_rotations_give_static_gaussians():
    g = _random_gaussians(2, 30, identity=True)
    cov4 = covariance_4d(g.scales, g.scale_t, g.q_l, g.q_r)
    cov3, velocity, stt = condition_on_time(cov4)
    torch.testing.assert_close(velocity, torch.zeros_like(velocity))
    torch.testing.assert_close(cov3, torch.diag_embed(g.scales ** 2))
    torch.testing.assert_close(stt, g.scale_t ** 2)
    s = slice_at(g, torch.tensor([[0.0, 0.3, 1.0]] * 2, dtype=torch.float64))
    for k in range(3):  # the centre does not move at any time
        torch.testing.assert_close(s.means[:, k], g.means)


def test_opacity_peaks_at_the_time_centre():
    g = _random_gaussians(8, 1)  # eight samples of one Gaussian each, so each gets its own times
    times = g.mu_t + torch.tensor([-0.2, -0.01, 0.0, 0.01, 0.2], dtype=torch.float64)  # [8, 5]
    opac = slice_at(g, times).opacities[..., 0]  # [8, 5]
    assert (opac.argmax(dim=1) == 2).all()
    torch.testing.assert_close(opac[:, 2], g.opacity[:, 0])  # the full opacity exactly at mu_t
    torch.testing.assert_close(opac[:, 1], opac[:, 3])  # symmetric around it


def test_velocity_equals_sigma12_over_sigma_tt():
    g = _random_gaussians(1, 16)
    cov4 = covariance_4d(g.scales, g.scale_t, g.q_l, g.q_r)
    expected = cov4[..., :3, 3] / cov4[..., 3, 3, None]
    assert expected.abs().max() > 1e-3  # random rotations really couple space and time
    t0, t1 = 0.2, 0.7
    s = slice_at(g, torch.tensor([[t0, t1]], dtype=torch.float64))
    torch.testing.assert_close((s.means[:, 1] - s.means[:, 0]) / (t1 - t0), expected)


def test_conditional_covariance_matches_the_precision_matrix():
    # For a Gaussian, Cov(xyz | t) is the inverse of the xyz block of the 4D precision matrix.
    g = _random_gaussians(1, 10)
    cov4 = covariance_4d(g.scales, g.scale_t, g.q_l, g.q_r)
    cov3, _, _ = condition_on_time(cov4)
    torch.testing.assert_close(cov3, torch.linalg.inv(torch.linalg.inv(cov4)[..., :3, :3]))


def test_gradcheck_float64():
    g = _random_gaussians(1, 3)
    names = ["means", "mu_t", "scales", "scale_t", "q_l", "q_r", "opacity"]
    times = torch.tensor([[0.1, 0.6]], dtype=torch.float64)

    def fn(*tensors):
        gg = Gaussians4D(**{**g.__dict__, **dict(zip(names, tensors))})
        s = slice_at(gg, times)
        return s.means, s.covars, s.opacities

    inputs = tuple(getattr(g, n).clone().requires_grad_(True) for n in names)
    assert torch.autograd.gradcheck(fn, inputs)
