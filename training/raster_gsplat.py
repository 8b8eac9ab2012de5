"""gsplat rasteriser (CUDA). The only module that imports gsplat.

gsplat 1.5.3 compiles its CUDA kernels on first use (about 45 s on a 16-core host with
MAX_JOBS=16 and TORCH_CUDA_ARCH_LIST=9.0 for Hopper). It has no CPU path: use raster_torch there.
"""

from __future__ import annotations

from torch import Tensor


def available() -> bool:
    """True when gsplat imports and a CUDA device is present."""
    import torch

    if not torch.cuda.is_available():
        return False
    try:
        import gsplat  # noqa: F401
    except ImportError:
        return False
    return True


def rasterize(means: Tensor, covars: Tensor, opacities: Tensor, colors: Tensor, viewmats: Tensor, Ks: Tensor,
              width: int, height: int, near_plane: float = 0.01, far_plane: float = 1e10, eps2d: float = 0.3,
              backgrounds: Tensor | None = None, tile_size: int = 16, packed: bool = False) -> tuple[Tensor, Tensor]:
    """Render with gsplat.rasterization, batch dims (sample, target view) in front.

    means [..., N, 3], covars [..., N, 3, 3], opacities [..., N], colors [..., N, D],
    viewmats [..., C, 4, 4] (world-to-camera), Ks [..., C, 3, 3], backgrounds [..., C, D] or None.
    Returns colours [..., C, H, W, D] and alphas [..., C, H, W, 1], like raster_torch.rasterize.
    """
    from gsplat import rasterization

    render, alpha, _meta = rasterization(
        means=means.float().contiguous(),
        quats=None,
        scales=None,
        opacities=opacities.float().contiguous(),
        colors=colors.float().contiguous(),
        viewmats=viewmats.float().contiguous(),
        Ks=Ks.float().contiguous(),
        width=width,
        height=height,
        near_plane=near_plane,
        far_plane=far_plane,
        eps2d=eps2d,
        packed=packed,
        tile_size=tile_size,
        backgrounds=None if backgrounds is None else backgrounds.float().contiguous(),
        render_mode="RGB",
        rasterize_mode="classic",
        covars=covars.float(),
    )
    return render, alpha
