"""Per-time 3D Gaussians (the L4GM family's output): one set per time of a window, each rendered only
at its own time. Plain tensors; rendering is training/render/frames.py's `render_frames`."""

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
