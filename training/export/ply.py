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
