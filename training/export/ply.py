"""3D Gaussian Splatting `.ply` files (DESIGN.md §6): binary little-endian, one float32 vertex per
Gaussian with `x y z`, `f_dc_0..2` (SH degree 0: (rgb - 0.5) / 0.28209479), `opacity` (logit),
`scale_0..2` (log of the standard deviations), `rot_0..3` (unit quaternion w, x, y, z), in the
normalised space of DESIGN.md §2 - the layout common Gaussian-splat viewers open.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

SH_C0 = 0.28209479177387814  # the degree-0 spherical harmonic
PROPERTIES = ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
              "rot_0", "rot_1", "rot_2", "rot_3")


def write_ply(path: str | os.PathLike, means: Tensor, rgb: Tensor, opacity: Tensor, scales: Tensor,
              quats: Tensor) -> Path:
    """Write N Gaussians: means [N, 3], rgb [N, 3] in [0, 1], opacity [N] in (0, 1), scales [N, 3]
    (standard deviations), quats [N, 4] (w, x, y, z). Atomic (temporary name, then rename)."""
    eps = 1e-6
    op = opacity.detach().double().clamp(eps, 1 - eps)
    cols = [
        means.detach().double(),
        (rgb.detach().double() - 0.5) / SH_C0,
        torch.log(op / (1 - op))[:, None],
        torch.log(scales.detach().double().clamp_min(1e-12)),
        torch.nn.functional.normalize(quats.detach().double(), dim=-1),
    ]
    data = torch.cat([c.reshape(c.shape[0], -1) for c in cols], 1).cpu().numpy().astype("<f4")  # [N, 14]
    if data.shape[1] != len(PROPERTIES):
        raise ValueError(f"write_ply: {data.shape[1]} columns, expected {len(PROPERTIES)}")
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {data.shape[0]}"]
    header += [f"property float {p}" for p in PROPERTIES] + ["end_header"]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        f.write(np.ascontiguousarray(data).tobytes())
    os.replace(tmp, path)
    return path
