"""gsplat rasteriser (CUDA). The only module that imports gsplat.

gsplat 1.5.3 compiles its CUDA kernels on first use (about 45 s on a 16-core host with
MAX_JOBS=16 and TORCH_CUDA_ARCH_LIST=9.0 for Hopper). It has no CPU path: use raster_torch there.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def available() -> bool:
    """True when gsplat imports and a CUDA device is present."""
    if not torch.cuda.is_available():
        return False
    try:
        import gsplat  # noqa: F401
    except ImportError:
        return False
    return True


_ROWS, _COLS = [0, 0, 0, 1, 1, 2], [0, 1, 2, 1, 2, 2]  # gsplat's upper-triangle order of a 3x3 covariance


class _UpperTriangle(torch.autograd.Function):
    """[..., 3, 3] -> [..., 6] (gsplat's order). The same gather gsplat.rasterization does, with a
    backward that writes each entry's gradient in place instead of autograd's sort-based accumulating
    scatter (20 ms of a `base` step at batch 8 on an H200; the positions are distinct, so nothing
    needs accumulating). Gradients are identical."""

    @staticmethod
    def forward(ctx, cov: Tensor) -> Tensor:
        ctx.shape = cov.shape
        return cov[..., _ROWS, _COLS]

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        out = grad.new_zeros(ctx.shape)
        out[..., _ROWS, _COLS] = grad
        return out


def rasterize(means: Tensor, covars: Tensor, opacities: Tensor, colors: Tensor, viewmats: Tensor, Ks: Tensor,
              width: int, height: int, near_plane: float = 0.01, far_plane: float = 1e10, eps2d: float = 0.3,
              backgrounds: Tensor | None = None, tile_size: int = 16, packed: bool = False) -> tuple[Tensor, Tensor]:
    """Render with gsplat's kernels, batch dims (sample, target view) in front.

    means [..., N, 3], covars [..., N, 3, 3], opacities [..., N], colors [..., N, D],
    viewmats [..., C, 4, 4] (world-to-camera), Ks [..., C, 3, 3], backgrounds [..., C, D] or None.
    Returns colours [..., C, H, W, D] and alphas [..., C, H, W, 1], like raster_torch.rasterize.

    Unpacked (the default): the steps of gsplat.rasterization for classic RGB rendering of given
    covariances (projection, tile intersection, rasterisation: the same kernels and arguments), with
    the covariance's upper triangle taken by `_UpperTriangle`. packed=True calls gsplat.rasterization and
    composites the backgrounds itself.
    """
    means, opacities, colors = means.float(), opacities.float(), colors.float()
    viewmats, Ks = viewmats.float().contiguous(), Ks.float().contiguous()
    backgrounds = None if backgrounds is None else backgrounds.float().contiguous()
    if packed:
        from gsplat import rasterization

        # no backgrounds to gsplat: 1.5.3's packed path checks them against the packed [nnz, 2] means and fails
        # whatever their shape; compositing after is the same formula, colour + (1 - alpha) * background
        render, alpha, _meta = rasterization(
            means=means.contiguous(), quats=None, scales=None, opacities=opacities.contiguous(),
            colors=colors.contiguous(), viewmats=viewmats, Ks=Ks, width=width, height=height,
            near_plane=near_plane, far_plane=far_plane, eps2d=eps2d, packed=True, tile_size=tile_size,
            backgrounds=None, render_mode="RGB", rasterize_mode="classic", covars=covars.float(),
        )
        if backgrounds is not None:
            render = render + (1.0 - alpha) * backgrounds[..., None, None, :]
        return render, alpha
    from gsplat.cuda._wrapper import fully_fused_projection, isect_offset_encode, isect_tiles, rasterize_to_pixels

    batch_dims = means.shape[:-2]
    N, C = means.shape[-2], viewmats.shape[-3]
    radii, means2d, depths, conics, _ = fully_fused_projection(
        means, _UpperTriangle.apply(covars.float()), None, None, viewmats, Ks, width, height, eps2d=eps2d,
        near_plane=near_plane, far_plane=far_plane, radius_clip=0.0, packed=False, sparse_grad=False,
        calc_compensations=False, camera_model="pinhole", opacities=opacities,
    )  # [..., C, N, 2], [..., C, N, 2], [..., C, N], [..., C, N, 3]
    tile_w, tile_h = math.ceil(width / tile_size), math.ceil(height / tile_size)
    n_images = math.prod(batch_dims) * C
    _, isect_ids, flatten_ids = isect_tiles(means2d, radii, depths, tile_size, tile_w, tile_h, segmented=False,
                                            packed=False, n_images=n_images, image_ids=None, gaussian_ids=None)
    offsets = isect_offset_encode(isect_ids, n_images, tile_w, tile_h).reshape(batch_dims + (C, tile_h, tile_w))
    return rasterize_to_pixels(
        means2d, conics, torch.broadcast_to(colors[..., None, :, :], batch_dims + (C, N, colors.shape[-1])),
        torch.broadcast_to(opacities[..., None, :], batch_dims + (C, N)), width, height, tile_size, offsets,
        flatten_ids, backgrounds=backgrounds, packed=False, absgrad=False,
    )
