"""4D Gaussians and their slices at a time t (4D Gaussian Splatting, Yang et al., ICLR 2024).

A 4D Gaussian has a mean (mu_xyz, mu_t), four scales (sx, sy, sz, st) and a 4D rotation given by two
unit quaternions: a left and a right isoclinic rotation. We identify a 4D point (x, y, z, t) with the
quaternion P = t + x i + y j + z k and rotate it as q_l * P * q_r. With q_r = conj(q_l) this is the
ordinary 3D rotation by q_l that leaves time alone; q_l = q_r = 1 is the identity.

Conditioning the 4D Gaussian on time t gives a 3D Gaussian:
    Sigma_xyz|t = Sigma11 - Sigma12 Sigma12^T / Sigma_tt          (independent of t)
    mu_xyz|t    = mu_xyz + Sigma12 / Sigma_tt * (t - mu_t)        (moves with velocity Sigma12/Sigma_tt)
    opacity_t   = opacity * exp(-1/2 (t - mu_t)^2 / Sigma_tt)     (fades in and out around mu_t)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

_XYZT = [1, 2, 3, 0]  # quaternion order (w, x, y, z) -> 4D order (x, y, z, t), with t on w
_COMPILED = None  # torch.compile'd _slice_core, used for CUDA tensors when _USE_COMPILED (training/models/fast.py)
_USE_COMPILED = False


def _matmul_small(a: Tensor, b: Tensor) -> Tensor:
    """a @ b for stacks of tiny matrices ([..., n, k] @ [..., k, m]) as a broadcast multiply and sum:
    elementwise work that torch.compile fuses with its neighbours, instead of a batched GEMM of 4x4s."""
    return (a[..., :, :, None] * b[..., None, :, :]).sum(-2)


def quat_left_matrix(q: Tensor) -> Tensor:
    """Matrix of p -> q * p on (w, x, y, z) vectors. q: [..., 4] (w, x, y, z) -> [..., 4, 4]."""
    a, b, c, d = q.unbind(-1)
    rows = [
        torch.stack([a, -b, -c, -d], -1),
        torch.stack([b, a, -d, c], -1),
        torch.stack([c, d, a, -b], -1),
        torch.stack([d, -c, b, a], -1),
    ]
    return torch.stack(rows, -2)


def quat_right_matrix(q: Tensor) -> Tensor:
    """Matrix of p -> p * q on (w, x, y, z) vectors. q: [..., 4] (w, x, y, z) -> [..., 4, 4]."""
    a, b, c, d = q.unbind(-1)
    rows = [
        torch.stack([a, -b, -c, -d], -1),
        torch.stack([b, a, d, -c], -1),
        torch.stack([c, -d, a, b], -1),
        torch.stack([d, c, -b, a], -1),
    ]
    return torch.stack(rows, -2)


def rotation_4d(q_l: Tensor, q_r: Tensor) -> Tensor:
    """4D rotation P -> q_l * P * q_r in (x, y, z, t) order. q_l, q_r: [..., 4] (normalised here) -> [..., 4, 4]."""
    q_l = q_l / q_l.norm(dim=-1, keepdim=True)
    q_r = q_r / q_r.norm(dim=-1, keepdim=True)
    M = _matmul_small(quat_left_matrix(q_l), quat_right_matrix(q_r))  # [..., 4, 4] in (w, x, y, z) order
    return M[..., _XYZT, :][..., :, _XYZT]


def covariance_4d(scales: Tensor, scale_t: Tensor, q_l: Tensor, q_r: Tensor) -> Tensor:
    """Sigma = R S S^T R^T. scales [..., 3], scale_t [...], q_l/q_r [..., 4] -> [..., 4, 4]."""
    R = rotation_4d(q_l, q_r)  # [..., 4, 4]
    s = torch.cat([scales, scale_t[..., None]], dim=-1)  # [..., 4]
    RS = R * s[..., None, :]  # [..., 4, 4] = R @ diag(s)
    return _matmul_small(RS, RS.transpose(-1, -2))


def condition_on_time(cov4: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Split Sigma for slicing. cov4 [..., 4, 4] -> (Sigma_xyz|t [..., 3, 3], velocity [..., 3], Sigma_tt [...])."""
    s11 = cov4[..., :3, :3]  # [..., 3, 3]
    s12 = cov4[..., :3, 3]  # [..., 3]
    stt = cov4[..., 3, 3]  # [...]
    cov3 = s11 - s12[..., :, None] * s12[..., None, :] / stt[..., None, None]
    cov3 = 0.5 * (cov3 + cov3.transpose(-1, -2))  # exact symmetry for the rasterisers
    return cov3, s12 / stt[..., None], stt


@dataclass
class Gaussians4D:
    """Per-pixel 4D Gaussians predicted for a batch of samples (N Gaussians per sample)."""

    means: Tensor      # [B, N, 3] centre in space (normalised world)
    mu_t: Tensor       # [B, N] centre in time (clip time, [0, 1] for the rendered span)
    rgb: Tensor        # [B, N, 3] colour in [0, 1]
    scales: Tensor     # [B, N, 3] spatial standard deviations before rotation
    scale_t: Tensor    # [B, N] temporal standard deviation before rotation
    q_l: Tensor        # [B, N, 4] left isoclinic quaternion (w, x, y, z)
    q_r: Tensor        # [B, N, 4] right isoclinic quaternion (w, x, y, z)
    opacity: Tensor    # [B, N] in (0, 1)

    def float(self) -> "Gaussians4D":
        return Gaussians4D(**{k: v.float() for k, v in self.__dict__.items()})

    def detach(self) -> "Gaussians4D":
        return Gaussians4D(**{k: v.detach() for k, v in self.__dict__.items()})

    def select(self, b: int) -> "Gaussians4D":
        """One sample of the batch, keeping the batch dimension."""
        return Gaussians4D(**{k: v[b : b + 1] for k, v in self.__dict__.items()})


@dataclass
class SlicedGaussians:
    """3D Gaussians at each target time, laid out for rasterisers with batch dims (sample, target)."""

    means: Tensor      # [B, T, N, 3]
    covars: Tensor     # [B, T, N, 3, 3] (an expanded view: the conditional covariance does not depend on t)
    opacities: Tensor  # [B, T, N]
    colors: Tensor     # [B, T, N, 3] (expanded view)


def _slice_core(means: Tensor, mu_t: Tensor, scales: Tensor, scale_t: Tensor, q_l: Tensor, q_r: Tensor,
                opacity: Tensor, times: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The arithmetic of `slice_at` on plain tensors (what torch.compile sees). Returns means [B, T, N, 3],
    the time-independent covariance [B, N, 3, 3] and opacities [B, T, N]."""
    cov4 = covariance_4d(scales, scale_t, q_l, q_r)  # [B, N, 4, 4]
    cov3, velocity, stt = condition_on_time(cov4)  # [B, N, 3, 3], [B, N, 3], [B, N]
    dt = times[:, :, None] - mu_t[:, None, :]  # [B, T, N]
    means_t = means[:, None] + velocity[:, None] * dt[..., None]  # [B, T, N, 3]
    opac = opacity[:, None] * torch.exp(-0.5 * dt * dt / stt[:, None])  # [B, T, N]
    return means_t, cov3, opac


def use_compiled(on: bool) -> None:
    """Slice CUDA tensors with a torch.compile'd `_slice_core` (one or two fused kernels each way)."""
    global _COMPILED, _USE_COMPILED
    if on and _COMPILED is None:
        _COMPILED = torch.compile(_slice_core, dynamic=False)
    _USE_COMPILED = on


def slice_at(g: Gaussians4D, times: Tensor) -> SlicedGaussians:
    """Slice every sample's 4D Gaussians at its target times. times: [B, T] -> SlicedGaussians."""
    core = _COMPILED if _USE_COMPILED and times.is_cuda else _slice_core
    means, cov3, opac = core(g.means, g.mu_t, g.scales, g.scale_t, g.q_l, g.q_r, g.opacity, times)
    B, T = times.shape
    N = g.means.shape[1]
    return SlicedGaussians(
        means=means,
        covars=cov3[:, None].expand(B, T, N, 3, 3),
        opacities=opac,
        colors=g.rgb[:, None].expand(B, T, N, 3),
    )


def quat_to_rotmat(q: Tensor) -> Tensor:
    """Ordinary 3D rotation matrix of a (w, x, y, z) quaternion (normalised here). [..., 4] -> [..., 3, 3]."""
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)
