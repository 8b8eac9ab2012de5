"""Pure-torch Gaussian rasteriser: the CPU path and the reference that gsplat is tested against.

Same conventions as gsplat 1.5.3's `rasterization` (classic mode, pinhole, `covars` given):
- EWA projection with the Jacobian evaluated at the mean clamped to 1.3x the field of view,
- a 0.3 px^2 low-pass added to the 2D covariance (`eps2d`),
- culling: depth outside (near, far), non-positive determinant, opacity below 1/255, or an
  opacity-aware 3-sigma box (at most 3.33 sigma) entirely outside the image,
- per pixel (centre at +0.5): alpha = min(0.999, opacity * exp(-sigma)); Gaussians with alpha < 1/255
  are skipped; front-to-back by camera depth; a pixel stops before the Gaussian that would take its
  transmittance to 1e-4 or below.

Memory stays bounded: the image is cut into tiles, each tile sees only the Gaussians whose box
overlaps it, and (tile, Gaussian) pairs are evaluated at most `max_elems` at a time, each piece under
activation checkpointing when gradients are needed.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.999
T_MIN = 1e-4
MAX_EXTEND = 3.33


def project(means: Tensor, covars: Tensor, viewmats: Tensor, Ks: Tensor, width: int, height: int,
            eps2d: float = 0.3, near_plane: float = 0.01) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """EWA projection of 3D Gaussians into C cameras.

    means [B, N, 3], covars [B, N, 3, 3], viewmats [B, C, 4, 4] (world-to-camera), Ks [B, C, 3, 3].
    Returns means2d [B, C, N, 2], cov2d [B, C, N, 2, 2] (low-pass added), depths [B, C, N], det [B, C, N].
    Gaussians at or before the near plane (culled later, as gsplat culls them) are projected as if at depth 1:
    their values are finite and unused, and no gradient reaches them. Projected at their own depth, one near
    the camera plane overflows 1/z^2 to inf, and the zero gradient it gets back turns into NaN (0 * inf) in
    the backward of the products (issue 22's CPU runs: one such Gaussian made every weight NaN).
    """
    R = viewmats[..., :3, :3]  # [B, C, 3, 3]
    t = viewmats[..., :3, 3]  # [B, C, 3]
    mc = torch.einsum("bcij,bnj->bcni", R, means) + t[:, :, None]  # [B, C, N, 3]
    cc = torch.einsum("bcij,bnjk,bclk->bcnil", R, covars, R)  # [B, C, N, 3, 3]
    x, y, depth = mc.unbind(-1)  # [B, C, N]
    with torch.no_grad():
        front = depth > near_plane
    z = torch.where(front, depth, torch.ones_like(depth))  # culled ones: finite stand-ins, no gradient
    fx, fy = Ks[..., 0, 0, None], Ks[..., 1, 1, None]  # [B, C, 1]
    cx, cy = Ks[..., 0, 2, None], Ks[..., 1, 2, None]
    tan_x, tan_y = 0.5 * width / fx, 0.5 * height / fy
    lim_xp, lim_xn = (width - cx) / fx + 0.3 * tan_x, cx / fx + 0.3 * tan_x
    lim_yp, lim_yn = (height - cy) / fy + 0.3 * tan_y, cy / fy + 0.3 * tan_y
    rz = 1.0 / z
    tx = z * torch.minimum(lim_xp, torch.maximum(-lim_xn, x * rz))
    ty = z * torch.minimum(lim_yp, torch.maximum(-lim_yn, y * rz))
    zero = torch.zeros_like(z)
    J = torch.stack([fx * rz, zero, -fx * tx * rz * rz, zero, fy * rz, -fy * ty * rz * rz], -1)
    J = J.reshape(z.shape + (2, 3))  # [B, C, N, 2, 3]
    cov2d = J @ cc @ J.transpose(-1, -2)  # [B, C, N, 2, 2]
    cov2d = cov2d + eps2d * torch.eye(2, dtype=cov2d.dtype, device=cov2d.device)
    means2d = torch.stack([fx * x * rz + cx, fy * y * rz + cy], -1)  # [B, C, N, 2]
    det = cov2d[..., 0, 0] * cov2d[..., 1, 1] - cov2d[..., 0, 1] * cov2d[..., 1, 0]
    return means2d, cov2d, depth, det


def rasterize(means: Tensor, covars: Tensor, opacities: Tensor, colors: Tensor, viewmats: Tensor, Ks: Tensor,
              width: int, height: int, near_plane: float = 0.01, far_plane: float = 1e10, eps2d: float = 0.3,
              backgrounds: Tensor | None = None, tile_size: int = 16, max_elems: int = 1 << 22,
              use_checkpoint: bool = False) -> tuple[Tensor, Tensor]:
    """Render 3D Gaussians into C cameras per batch element.

    means [..., N, 3], covars [..., N, 3, 3], opacities [..., N], colors [..., N, D],
    viewmats [..., C, 4, 4], Ks [..., C, 3, 3], backgrounds [..., C, D] or None.
    Returns colours [..., C, H, W, D] and alphas [..., C, H, W, 1] (gsplat's layout).
    `use_checkpoint` recomputes each piece in backward, so autograd keeps only the pieces' inputs and
    outputs instead of every (pixel, Gaussian) intermediate: slower, for large images.
    """
    batch = means.shape[:-2]
    N, D, C = means.shape[-2], colors.shape[-1], viewmats.shape[-3]
    B = math.prod(batch)
    means_f = means.reshape(B, N, 3)
    covars_f = covars.reshape(B, N, 3, 3)
    opac_f = opacities.reshape(B, N)
    colors_f = colors.reshape(B, N, D)
    means2d, cov2d, depths, det = project(means_f, covars_f, viewmats.reshape(B, C, 4, 4),
                                          Ks.reshape(B, C, 3, 3), width, height, eps2d, near_plane)
    images, alphas = [], []
    for b in range(B):
        for c in range(C):
            img, alp = _render_one(means2d[b, c], cov2d[b, c], depths[b, c], det[b, c], opac_f[b], colors_f[b],
                                   width, height, near_plane, far_plane, tile_size, max_elems, use_checkpoint)
            images.append(img)
            alphas.append(alp)
    out_c = torch.stack(images).reshape(batch + (C, height, width, D))
    out_a = torch.stack(alphas).reshape(batch + (C, height, width, 1))
    if backgrounds is not None:
        out_c = out_c + backgrounds[..., None, None, :] * (1.0 - out_a)
    return out_c, out_a


def _render_one(means2d: Tensor, cov2d: Tensor, depths: Tensor, det: Tensor, opac: Tensor, colors: Tensor,
                width: int, height: int, near: float, far: float, ts: int, max_elems: int,
                use_checkpoint: bool) -> tuple[Tensor, Tensor]:
    """One image. means2d [N, 2], cov2d [N, 2, 2], depths/det/opac [N], colors [N, D] -> [H, W, D], [H, W, 1]."""
    D = colors.shape[-1]
    dev, dt = means2d.device, means2d.dtype
    with torch.no_grad():
        op = opac.detach().clamp_min(ALPHA_MIN)
        extend = torch.clamp(torch.sqrt(2.0 * torch.log(op / ALPHA_MIN)), max=MAX_EXTEND)  # [N]
        rx = torch.ceil(extend * torch.sqrt(cov2d[:, 0, 0].detach().clamp_min(0)))  # [N]
        ry = torch.ceil(extend * torch.sqrt(cov2d[:, 1, 1].detach().clamp_min(0)))
        mx, my = means2d[:, 0].detach(), means2d[:, 1].detach()
        valid = ((det > 0) & (depths > near) & (depths < far) & (opac >= ALPHA_MIN)
                 & (mx + rx > 0) & (mx - rx < width) & (my + ry > 0) & (my - ry < height))
        ids = torch.nonzero(valid).squeeze(1)
        ids = ids[torch.argsort(depths[ids], stable=True)]  # front to back
        ntx, nty = -(-width // ts), -(-height // ts)
        tx0 = torch.arange(ntx, device=dev, dtype=dt) * ts
        ty0 = torch.arange(nty, device=dev, dtype=dt) * ts
        # overlap[tile, g]: the Gaussian's box meets the tile; tiles in row-major order
        ovx = (mx[ids] - rx[ids] < tx0[:, None] + ts) & (mx[ids] + rx[ids] > tx0[:, None])  # [ntx, n]
        ovy = (my[ids] - ry[ids] < ty0[:, None] + ts) & (my[ids] + ry[ids] > ty0[:, None])  # [nty, n]
        overlap = (ovy[:, None, :] & ovx[None, :, :]).reshape(nty * ntx, -1)  # [tiles, n]
        counts = overlap.sum(1)  # [tiles]
        n_max = int(counts.max()) if counts.numel() and ids.numel() else 0
    P = ts * ts
    # Nothing visible still gives images that belong to the graph (zero gradients, as gsplat gives), so a
    # batch whose every target sees no Gaussian back-propagates instead of failing. Empty slices: no NaN.
    link = colors[:0].sum() + opac[:0].sum() + means2d[:0].sum() + cov2d[:0].sum()
    out_c = torch.zeros(nty * ntx, P, D, device=dev, dtype=dt) + link
    out_a = torch.zeros(nty * ntx, P, device=dev, dtype=dt) + link
    if n_max > 0:
        with torch.no_grad():
            order = torch.argsort((~overlap).to(torch.int8), dim=1, stable=True)[:, :n_max]  # [tiles, n_max]
            slot_ok = torch.arange(n_max, device=dev)[None, :] < counts[:, None]  # [tiles, n_max]
            gid = ids[order]  # [tiles, n_max] Gaussian ids, front to back within each tile
            iy, ix = torch.meshgrid(torch.arange(ts, device=dev, dtype=dt), torch.arange(ts, device=dev, dtype=dt),
                                    indexing="ij")
            tyy, txx = torch.meshgrid(ty0, tx0, indexing="ij")
            px = (txx.reshape(-1, 1) + ix.reshape(1, -1) + 0.5)  # [tiles, P]
            py = (tyy.reshape(-1, 1) + iy.reshape(1, -1) + 0.5)
        # culled Gaussians (a non-positive determinant among them) get a stand-in: their conic is never
        # read, and a division by a clamped determinant would send 0 * inf = NaN back through them
        conic = _conic(torch.where(valid[:, None, None], cov2d, torch.eye(2, dtype=dt, device=dev)))  # [N, 3]
        group = max(1, max_elems // (P * n_max))
        chunk = min(n_max, max(1, max_elems // P))
        pieces_c, pieces_a = [], []
        for g0 in range(0, nty * ntx, group):
            g1 = min(g0 + group, nty * ntx)
            T = torch.ones(g1 - g0, P, device=dev, dtype=dt)
            acc_c = torch.zeros(g1 - g0, P, D, device=dev, dtype=dt)
            acc_a = torch.zeros(g1 - g0, P, device=dev, dtype=dt)
            for k0 in range(0, n_max, chunk):
                k1 = min(k0 + chunk, n_max)
                sel = gid[g0:g1, k0:k1]  # [G, k]
                args = (means2d[sel], conic[sel], opac[sel], colors[sel], slot_ok[g0:g1, k0:k1],
                        px[g0:g1], py[g0:g1], T, acc_c, acc_a)
                if use_checkpoint:
                    T, acc_c, acc_a = checkpoint(_composite, *args, use_reentrant=False)
                else:
                    T, acc_c, acc_a = _composite(*args)
            pieces_c.append(acc_c)
            pieces_a.append(acc_a)
        out_c = torch.cat(pieces_c)
        out_a = torch.cat(pieces_a)
    img = out_c.reshape(nty, ntx, ts, ts, D).permute(0, 2, 1, 3, 4).reshape(nty * ts, ntx * ts, D)
    alp = out_a.reshape(nty, ntx, ts, ts).permute(0, 2, 1, 3).reshape(nty * ts, ntx * ts, 1)
    return img[:height, :width], alp[:height, :width]


def _conic(cov2d: Tensor) -> Tensor:
    """Upper triangle (a, b, c) of the inverse 2D covariance, as gsplat stores it. [N, 2, 2] -> [N, 3]."""
    det = (cov2d[:, 0, 0] * cov2d[:, 1, 1] - cov2d[:, 0, 1] * cov2d[:, 1, 0]).clamp_min(1e-12)
    return torch.stack([cov2d[:, 1, 1] / det, -0.5 * (cov2d[:, 0, 1] + cov2d[:, 1, 0]) / det,
                        cov2d[:, 0, 0] / det], -1)


def _composite(mean2d: Tensor, conic: Tensor, opac: Tensor, colors: Tensor, slot_ok: Tensor, px: Tensor,
               py: Tensor, T: Tensor, acc_c: Tensor, acc_a: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Blend a chunk of depth-sorted Gaussians into tiles.

    mean2d [G, k, 2], conic [G, k, 3], opac [G, k], colors [G, k, D], slot_ok [G, k], px/py [G, P],
    T (transmittance so far) [G, P], acc_c [G, P, D], acc_a [G, P]. Returns updated (T, acc_c, acc_a).
    """
    dx = mean2d[:, None, :, 0] - px[:, :, None]  # [G, P, k]
    dy = mean2d[:, None, :, 1] - py[:, :, None]
    a, b, c = conic[:, None, :, 0], conic[:, None, :, 1], conic[:, None, :, 2]  # [G, 1, k]
    sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy  # [G, P, k]
    alpha = torch.clamp_max(opac[:, None, :] * torch.exp(-sigma), ALPHA_MAX)
    use = slot_ok[:, None, :] & (sigma >= 0) & (alpha >= ALPHA_MIN)
    alpha = torch.where(use, alpha, torch.zeros_like(alpha))
    T_incl = T[:, :, None] * torch.cumprod(1.0 - alpha, dim=-1)  # transmittance after each Gaussian
    T_excl = torch.cat([T[:, :, None], T_incl[:, :, :-1]], dim=-1)  # before each Gaussian
    w = torch.where(T_incl > T_MIN, alpha * T_excl, torch.zeros_like(alpha))  # [G, P, k]
    acc_c = acc_c + torch.einsum("gpk,gkd->gpd", w, colors)
    acc_a = acc_a + w.sum(-1)
    return T_incl[:, :, -1], acc_c, acc_a
