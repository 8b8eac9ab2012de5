"""3D Gaussian Splatting `.ply` files (DESIGN.md §6): binary little-endian, one float32 vertex per
Gaussian, in the normalised space of DESIGN.md §2. Two layouts:

- full (default): `x y z nx ny nz f_dc_0..2 f_rest_0..44 opacity scale_0..2 rot_0..3`, 62 floats, the
  record of the original 3D Gaussian Splatting code (SH degree 3 slots); its viewer reads a fixed record
  and opens only this. `nx ny nz` and `f_rest_*` are zeros (our Gaussians have a colour, SH degree 0).
- compact (`pipeline reconstruct --compact`): `x y z f_dc_0..2 opacity scale_0..2 rot_0..3`, 14 floats,
  for viewers that read properties by name (about 4.4x smaller).

Values: `f_dc` = (rgb - 0.5) / 0.28209479 (SH degree 0), `opacity` a logit, `scale` the log of the
standard deviations, `rot` a unit quaternion (w, x, y, z).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

SH_C0 = 0.28209479177387814  # the degree-0 spherical harmonic
PROPERTIES = ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
              "rot_0", "rot_1", "rot_2", "rot_3")  # the compact layout
N_REST = 45  # f_rest_0..44: SH degrees 1..3, 15 coefficients x 3 colours
FULL_PROPERTIES = ("x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2",
                   *(f"f_rest_{i}" for i in range(N_REST)), "opacity", "scale_0", "scale_1", "scale_2",
                   "rot_0", "rot_1", "rot_2", "rot_3")
LAYOUTS = {"full": FULL_PROPERTIES, "compact": PROPERTIES}


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


def write_ply(path: str | os.PathLike, means: Tensor, rgb: Tensor, opacity: Tensor, scales: Tensor,
              quats: Tensor, compact: bool = False) -> Path:
    """Write N Gaussians: means [N, 3], rgb [N, 3] in [0, 1], opacity [N] in (0, 1), scales [N, 3]
    (standard deviations), quats [N, 4] (w, x, y, z); the full 62-float record, or with `compact` the
    14-float one (module docstring). Atomic (temporary name, then rename)."""
    eps = 1e-6
    op = opacity.detach().double().clamp(eps, 1 - eps)
    n = means.shape[0]
    zeros = lambda k: torch.zeros(n, k, dtype=torch.float64)  # noqa: E731
    cols = [
        means.detach().double().cpu(),
        *([] if compact else [zeros(3)]),  # nx ny nz
        ((rgb.detach().double() - 0.5) / SH_C0).cpu(),
        *([] if compact else [zeros(N_REST)]),  # f_rest_0..44
        torch.log(op / (1 - op))[:, None].cpu(),
        torch.log(scales.detach().double().clamp_min(1e-12)).cpu(),
        torch.nn.functional.normalize(quats.detach().double(), dim=-1).cpu(),
    ]
    names = PROPERTIES if compact else FULL_PROPERTIES
    data = torch.cat([c.reshape(n, -1) for c in cols], 1).numpy().astype("<f4")  # [N, 14 or 62]
    if data.shape[1] != len(names):
        raise ValueError(f"write_ply: {data.shape[1]} columns, expected {len(names)}")
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {data.shape[0]}"]
    header += [f"property float {p}" for p in names] + ["end_header"]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        f.write(np.ascontiguousarray(data).tobytes())
    os.replace(tmp, path)
    return path
