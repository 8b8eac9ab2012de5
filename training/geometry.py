"""Cameras and rays in the project's conventions (DESIGN.md §2).

OpenCV cameras: `c2w` columns 0, 1, 2 are the camera's right, down and forward axes in world space,
column 3 its position. `K` maps camera space to pixels with `u = fx x/z + cx`; pixel (i, j) covers
[j, j+1) x [i, i+1), so its centre is (j + 0.5, i + 0.5).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def pixel_centres(height: int, width: int, device=None, dtype=torch.float32) -> Tensor:
    """Pixel-centre coordinates (u, v) = (j + 0.5, i + 0.5). Returns [H, W, 2]."""
    v, u = torch.meshgrid(
        torch.arange(height, device=device, dtype=dtype) + 0.5,
        torch.arange(width, device=device, dtype=dtype) + 0.5,
        indexing="ij",
    )
    return torch.stack([u, v], dim=-1)  # [H, W, 2]


def pixel_rays(c2w: Tensor, K: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """World-space ray origins and unit directions through every pixel centre.

    c2w: [..., 4, 4], K: [..., 3, 3]. Returns origins [..., H, W, 3] and directions [..., H, W, 3].
    """
    uv = pixel_centres(height, width, device=c2w.device, dtype=c2w.dtype)  # [H, W, 2]
    fx, fy = K[..., 0, 0], K[..., 1, 1]  # [...]
    cx, cy = K[..., 0, 2], K[..., 1, 2]  # [...]
    x = (uv[..., 0] - cx[..., None, None]) / fx[..., None, None]  # [..., H, W]
    y = (uv[..., 1] - cy[..., None, None]) / fy[..., None, None]  # [..., H, W]
    d_cam = torch.stack([x, y, torch.ones_like(x)], dim=-1)  # [..., H, W, 3]
    R = c2w[..., :3, :3]  # [..., 3, 3]
    d_world = torch.einsum("...ij,...hwj->...hwi", R, d_cam)  # [..., H, W, 3]
    d_world = d_world / d_world.norm(dim=-1, keepdim=True)
    o = c2w[..., None, None, :3, 3].expand_as(d_world)  # [..., H, W, 3]
    return o, d_world


def plucker(origins: Tensor, dirs: Tensor) -> Tensor:
    """Plücker coordinates (d, o x d) of rays. origins, dirs: [..., 3]. Returns [..., 6]."""
    return torch.cat([dirs, torch.cross(origins, dirs, dim=-1)], dim=-1)


def plucker_image(c2w: Tensor, K: Tensor, height: int, width: int) -> Tensor:
    """Per-pixel Plücker rays as channels. c2w [..., 4, 4], K [..., 3, 3] -> [..., 6, H, W]."""
    o, d = pixel_rays(c2w, K, height, width)  # [..., H, W, 3] x2
    return plucker(o, d).movedim(-1, -3)  # [..., 6, H, W]


def scale_intrinsics(K: Tensor, sx: float, sy: float) -> Tensor:
    """Intrinsics after resizing an image by (sx, sy). Exact with pixel centres at +0.5: the image
    plane [0, W] maps to [0, sx W], so fx, cx scale by sx (and fy, cy by sy). K: [..., 3, 3]."""
    # rows scaled in place of diag(sx, sy, 1) @ K: exact (no TF32 matmul) and no host-made tensor, which a
    # CUDA graph cannot capture
    return torch.cat([K[..., :1, :] * sx, K[..., 1:2, :] * sy, K[..., 2:, :]], dim=-2)


def world_to_camera(c2w: Tensor) -> Tensor:
    """Rigid inverse of c2w (the view matrix gsplat wants). [..., 4, 4] -> [..., 4, 4]."""
    R = c2w[..., :3, :3]
    t = c2w[..., :3, 3:]
    Rt = R.transpose(-1, -2)
    top = torch.cat([Rt, -Rt @ t], dim=-1)  # [..., 3, 4]
    bottom = torch.zeros_like(c2w[..., 3:, :])
    bottom[..., 3] = 1.0
    return torch.cat([top, bottom], dim=-2)


def look_at(eye: Tensor, target: Tensor, up: Tensor | None = None) -> Tensor:
    """OpenCV c2w for a camera at `eye` looking at `target` with world `up` (+Z) pointing up in the
    image. eye, target: [..., 3]. Returns [..., 4, 4]."""
    if up is None:
        up = torch.tensor([0.0, 0.0, 1.0], dtype=eye.dtype, device=eye.device)
    up = up.expand_as(eye)
    z = target - eye
    z = z / z.norm(dim=-1, keepdim=True)  # forward
    x = torch.cross(z, up, dim=-1)  # right = forward x up
    x = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    y = torch.cross(z, x, dim=-1)  # down
    c2w = torch.zeros(eye.shape[:-1] + (4, 4), dtype=eye.dtype, device=eye.device)
    c2w[..., :3, 0], c2w[..., :3, 1], c2w[..., :3, 2], c2w[..., :3, 3] = x, y, z, eye
    c2w[..., 3, 3] = 1.0
    return c2w


def intrinsics(fov_deg: float, width: int, height: int, dtype=torch.float32) -> Tensor:
    """Pinhole K with horizontal field of view `fov_deg`, square pixels, principal point at the centre."""
    fx = 0.5 * width / math.tan(math.radians(fov_deg) / 2)
    return torch.tensor([[fx, 0, width / 2], [0, fx, height / 2], [0, 0, 1]], dtype=dtype)


def orbit_cameras(n: int, radius: float, elevation_deg: float = 20.0, phase: float = 0.0,
                  dtype=torch.float32) -> Tensor:
    """`n` OpenCV cameras evenly spaced on a circle around the origin, looking at it. Returns [n, 4, 4]."""
    az = torch.arange(n, dtype=dtype) * (2 * math.pi / n) + phase
    el = math.radians(elevation_deg)
    eye = torch.stack([radius * math.cos(el) * torch.cos(az), radius * math.cos(el) * torch.sin(az),
                       torch.full_like(az, radius * math.sin(el))], dim=-1)  # [n, 3]
    return look_at(eye, torch.zeros_like(eye))
