"""Per-time 3D Gaussians (the L4GM family's output): one set per time of a window, each rendered only
at its own time. Plain tensors; rendering is training/render/frames.py's `render_frames`. Also the
conversions between a covariance and (scales, rotation quaternion) that .ply files store."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def quat_to_matrix(q: Tensor) -> Tensor:
    """Rotation matrices of unit quaternions (w, x, y, z). q [..., 4] (normalised here) -> [..., 3, 3]."""
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    rows = [
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ]
    return torch.stack(rows, -2)


@dataclass
class Gaussians3D:
    """B samples x T times x N Gaussians."""

    means: Tensor      # [B, T, N, 3] centre (normalised world space)
    rgb: Tensor        # [B, T, N, 3] colour in [0, 1]
    scales: Tensor     # [B, T, N, 3] standard deviations along the rotated axes
    quats: Tensor      # [B, T, N, 4] unit quaternion (w, x, y, z)
    opacity: Tensor    # [B, T, N] in (0, 1)

    def covars(self) -> Tensor:
        """Sigma = R diag(s^2) R^T. [B, T, N, 3, 3]."""
        RS = quat_to_matrix(self.quats) * self.scales[..., None, :]  # R @ diag(s)
        cov = RS @ RS.transpose(-1, -2)
        return 0.5 * (cov + cov.transpose(-1, -2))

    def float(self) -> "Gaussians3D":
        return Gaussians3D(**{k: v.float() for k, v in self.__dict__.items()})

    def detach(self) -> "Gaussians3D":
        return Gaussians3D(**{k: v.detach() for k, v in self.__dict__.items()})

    def select(self, b: int) -> "Gaussians3D":
        """One sample of the batch, keeping the batch dimension."""
        return Gaussians3D(**{k: v[b : b + 1] for k, v in self.__dict__.items()})

    def frames(self, idx: slice | list[int]) -> "Gaussians3D":
        """Some times of the window, keeping both leading dimensions."""
        return Gaussians3D(**{k: v[:, idx] for k, v in self.__dict__.items()})


def matrix_to_quat(R: Tensor) -> Tensor:
    """Unit quaternions (w, x, y, z), w >= 0, of rotation matrices. R [..., 3, 3] -> [..., 4].
    Each is computed from its largest component (Shepperd's method), so none divides by a small number."""
    m = R.reshape(-1, 3, 3).double()
    m00, m11, m22 = m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]
    a = m[:, 2, 1] - m[:, 1, 2]
    b = m[:, 0, 2] - m[:, 2, 0]
    c = m[:, 1, 0] - m[:, 0, 1]
    xy = m[:, 0, 1] + m[:, 1, 0]
    xz = m[:, 0, 2] + m[:, 2, 0]
    yz = m[:, 1, 2] + m[:, 2, 1]
    four = torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1)
    s = 2 * four.clamp_min(1e-12).sqrt()  # [M, 4]: 4 * |w|, 4 * |x|, 4 * |y|, 4 * |z|
    cands = torch.stack([  # [M, 4 candidates, 4 components], candidate k divides by its own s_k
        torch.stack([s[:, 0] / 4, a / s[:, 0], b / s[:, 0], c / s[:, 0]], -1),
        torch.stack([a / s[:, 1], s[:, 1] / 4, xy / s[:, 1], xz / s[:, 1]], -1),
        torch.stack([b / s[:, 2], xy / s[:, 2], s[:, 2] / 4, yz / s[:, 2]], -1),
        torch.stack([c / s[:, 3], xz / s[:, 3], yz / s[:, 3], s[:, 3] / 4], -1),
    ], 1)
    q = cands[torch.arange(m.shape[0]), four.argmax(-1)]  # [M, 4]
    q = q * torch.where(q[:, :1] < 0, -1.0, 1.0)
    q = q / q.norm(dim=-1, keepdim=True)
    return q.reshape(R.shape[:-2] + (4,)).to(R.dtype)


def covariance_to_scale_rot(cov: Tensor) -> tuple[Tensor, Tensor]:
    """Standard deviations [..., 3] and a rotation quaternion [..., 4] (w, x, y, z) with
    cov = R diag(s^2) R^T, from symmetric covariances [..., 3, 3] (eigendecomposition, det R = +1)."""
    evals, evecs = torch.linalg.eigh(cov.double())
    det = torch.linalg.det(evecs)
    evecs = evecs * torch.where(det < 0, -1.0, 1.0)[..., None, None].to(evecs.dtype)  # a proper rotation
    return evals.clamp_min(1e-20).sqrt().to(cov.dtype), matrix_to_quat(evecs).to(cov.dtype)
