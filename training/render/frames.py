"""Render predicted 4D Gaussians at target cameras and times: slice, then rasterise.

The backend is chosen once: gsplat on CUDA, the pure-torch twin on CPU (or when asked for).
"""

from __future__ import annotations

import torch
from torch import Tensor

from training.render import raster_torch
from training.config import RenderConfig
from training.geometry import world_to_camera
from training.render.slicing import Gaussians4D, SlicedGaussians, slice_at


def resolve_backend(cfg: RenderConfig, device: torch.device) -> str:
    if cfg.backend == "auto":
        return "gsplat" if device.type == "cuda" else "torch"
    if cfg.backend == "gsplat" and device.type != "cuda":
        raise RuntimeError("--set render.backend=gsplat needs a CUDA device (gsplat has no CPU path); use torch")
    return cfg.backend


def render_gaussians(g: Gaussians4D, c2w: Tensor, K: Tensor, times: Tensor, height: int, width: int,
                     background: Tensor, cfg: RenderConfig, backend: str) -> tuple[Tensor, Tensor]:
    """Render every sample's Gaussians at its targets.

    g: B samples of N Gaussians; c2w [B, T, 4, 4], K [B, T, 3, 3], times [B, T], background [B, 3].
    Returns rgb [B, T, 3, H, W] (composited on the background) and alpha [B, T, 1, H, W].
    """
    return rasterize_sliced(slice_at(g.float(), times.float()), c2w, K, height, width, background, cfg, backend)


def rasterize_sliced(s: SlicedGaussians, c2w: Tensor, K: Tensor, height: int, width: int, background: Tensor,
                     cfg: RenderConfig, backend: str) -> tuple[Tensor, Tensor]:
    """The second half of `render_gaussians`: Gaussians already sliced at the targets' times (batch dims
    (B, T); slicing has no host sync, so inference can replay it inside a CUDA graph with the model, while
    gsplat's rasteriser, which syncs, runs outside). c2w [B, T, 4, 4], K [B, T, 3, 3], background [B, 3]."""
    viewmats = world_to_camera(c2w.float())[:, :, None]  # [B, T, 1, 4, 4]: one camera per (sample, target)
    Ks = K.float()[:, :, None]  # [B, T, 1, 3, 3]
    B, T = c2w.shape[:2]
    bg = background.float()[:, None, None, :].expand(B, T, 1, 3)  # [B, T, 1, 3]
    if backend == "gsplat":
        from training.render import raster_gsplat

        rgb, alpha = raster_gsplat.rasterize(s.means, s.covars, s.opacities, s.colors, viewmats, Ks, width, height,
                                             near_plane=cfg.near_plane, backgrounds=bg, tile_size=cfg.tile_size,
                                             packed=cfg.packed)
    else:
        rgb, alpha = raster_torch.rasterize(s.means, s.covars, s.opacities, s.colors, viewmats, Ks, width, height,
                                            near_plane=cfg.near_plane, backgrounds=bg, tile_size=cfg.tile_size,
                                            max_elems=cfg.max_elems, use_checkpoint=cfg.checkpoint)
    # [B, T, 1, H, W, C] -> [B, T, C, H, W]
    return rgb[:, :, 0].permute(0, 1, 4, 2, 3), alpha[:, :, 0].permute(0, 1, 4, 2, 3)


def render_frames(g, c2w: Tensor, K: Tensor, height: int, width: int, background: Tensor, cfg: RenderConfig,
                  backend: str) -> tuple[Tensor, Tensor]:
    """Render per-time 3D Gaussians (training/render/gaussians3d.py), each time's set only at that time's cameras.

    g: Gaussians3D [B, T, N, ...]; c2w [B, T, M, 4, 4], K [B, T, M, 3, 3], background [B, 3].
    Returns rgb [B, T, M, 3, H, W] and alpha [B, T, M, 1, H, W].
    """
    g = g.float()
    viewmats = world_to_camera(c2w.float())  # [B, T, M, 4, 4]: batch dims (sample, time), M cameras each
    Ks = K.float()
    B, T, M = c2w.shape[:3]
    bg = background.float()[:, None, None, :].expand(B, T, M, 3)  # [B, T, M, 3]
    covars = g.covars()  # [B, T, N, 3, 3]
    if backend == "gsplat":
        from training.render import raster_gsplat

        rgb, alpha = raster_gsplat.rasterize(g.means, covars, g.opacity, g.rgb, viewmats, Ks, width, height,
                                             near_plane=cfg.near_plane, backgrounds=bg, tile_size=cfg.tile_size,
                                             packed=cfg.packed)
    else:
        rgb, alpha = raster_torch.rasterize(g.means, covars, g.opacity, g.rgb, viewmats, Ks, width, height,
                                            near_plane=cfg.near_plane, backgrounds=bg, tile_size=cfg.tile_size,
                                            max_elems=cfg.max_elems, use_checkpoint=cfg.checkpoint)
    # [B, T, M, H, W, C] -> [B, T, M, C, H, W]
    return rgb.permute(0, 1, 2, 5, 3, 4), alpha.permute(0, 1, 2, 5, 3, 4)
