"""The L4GM-family reconstructor: a monocular video plus a few views of its first time -> one set of
pixel-aligned 3D Gaussians per time of the window.

Input: per time t of a window of T, V = 1 + n_t0 views: the video frame at t and the n_t0 extra views
of the window's first time (the same images at every t, as in L4GM). Every view becomes patches of
[rgb, Plücker(6), time(1)]. The backbone alternates two kinds of pre-norm transformer blocks (from
training/models/blocks.py, shared with the 4D-LRM family):
- multi-view: the tokens of the V views of one time attend to each other;
- temporal (switchable, L4GM's main ablation): the tokens of one view index attend over all T times.
Without temporal blocks no information passes between times: every time is reconstructed on its own.
L4GM itself uses LGM's convolutional U-Net with these two attentions; we use a plain transformer on
patches (the same blocks as the 4D-LRM family), which makes FLOPs easy to count and shares kernels.

Output per time: one Gaussian per gauss_stride x gauss_stride input pixels of every view, its centre
on that pixel's ray at a bounded distance (GS-LRM style), so V * (S / stride)^2 Gaussians per time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from training.models.blocks import (
    Block, attention_score_flops, block_flops_per_token, footprint_scales, init_weights, opacity_from_raw, patchify,
    pixel_colour, ray_depth_means, run_block, scale_residual_init, unit_quaternion, unpatchify,
)
from training.config import ModelConfig
from training.render.gaussians3d import Gaussians3D
from training.geometry import scale_intrinsics

IN_CHANNELS = 10  # rgb 3 + Plücker 6 + time 1
# Raw head channels per Gaussian: distance 1, rgb 3, scales 3, quaternion 4, opacity 1.
GAUSS_CHANNELS = 12


class VideoReconstructor(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.family != "l4gm":
            raise ValueError(f"model.family={cfg.family!r}: VideoReconstructor is the l4gm family's model")
        self.cfg = cfg
        p, D = cfg.patch_size, cfg.width
        q = p // cfg.gauss_stride  # Gaussians per token side
        self.embed = nn.Linear(IN_CHANNELS * p * p, D)
        self.view_blocks = nn.ModuleList(Block(D, cfg.heads, cfg.mlp_ratio, cfg.qk_norm) for _ in range(cfg.depth))
        self.time_blocks = (nn.ModuleList(Block(D, cfg.heads, cfg.mlp_ratio, cfg.qk_norm) for _ in range(cfg.depth))
                            if cfg.temporal_attention else None)
        self.norm = nn.LayerNorm(D)
        self.head = nn.Linear(D, GAUSS_CHANNELS * q * q)
        self.apply(init_weights)
        n_blocks = cfg.depth * (2 if cfg.temporal_attention else 1)
        scale_residual_init(self.view_blocks, n_blocks)
        if self.time_blocks is not None:
            scale_residual_init(self.time_blocks, n_blocks)
        nn.init.normal_(self.head.weight, std=1e-3)  # start from the neutral Gaussians the activations define
        nn.init.zeros_(self.head.bias)

    def forward(self, in_rgb: Tensor, in_cond: Tensor, in_c2w: Tensor, in_K: Tensor, window: int,
                in_anchor: Tensor | None = None) -> Gaussians3D:
        """The data loader's flat layout: the first `window` entries are the video at each time, the rest
        the t0 views. in_rgb [B, T+n0, 3, S, S] in [0, 1], in_cond [B, T+n0, 7, S, S], in_c2w [B, T+n0, 4, 4],
        in_K [B, T+n0, 3, 3], in_anchor [B, T+n0, 3] (what each input's camera is framed on; None = the
        origin). Returns Gaussians3D [B, T, V*(S/stride)^2, ...] with V = 1 + n0."""
        views = [expand_window(x, window) for x in (in_rgb, in_cond, in_c2w, in_K)]
        anchor = None
        if in_anchor is not None:  # time t's Gaussians show the object at t: every view of t uses the video's anchor
            anchor = expand_window(in_anchor, window)[:, :, :1].expand(-1, -1, views[0].shape[2], -1)  # [B, T, V, 3]
        return self.forward_views(*views, anchor=anchor)

    def forward_views(self, rgb: Tensor, cond: Tensor, c2w: Tensor, K: Tensor,
                      anchor: Tensor | None = None) -> Gaussians3D:
        """rgb [B, T, V, 3, S, S], cond [B, T, V, 7, S, S], c2w [B, T, V, 4, 4], K [B, T, V, 3, 3],
        anchor [B, T, V, 3] (training/blocks.ray_depth_means; None = the origin)."""
        cfg = self.cfg
        B, T, V, _, S, _ = rgb.shape
        p = cfg.patch_size
        x = patchify(torch.cat([rgb * 2 - 1, cond], dim=3).flatten(0, 1), p)  # [B*T, V, L, 10*p*p]
        L = x.shape[2]
        x = self.embed(x).reshape(B, T, V, L, -1)  # [B, T, V, L, D]
        D = x.shape[-1]
        for i, blk in enumerate(self.view_blocks):
            x = run_block(blk, x.reshape(B * T, V * L, D), cfg.grad_checkpoint).reshape(B, T, V, L, D)
            if self.time_blocks is not None:
                y = x.transpose(1, 2).reshape(B * V, T * L, D)  # one view index over all times
                y = run_block(self.time_blocks[i], y, cfg.grad_checkpoint)
                x = y.reshape(B, V, T, L, D).transpose(1, 2)
        raw = self.head(self.norm(x)).float()  # [B, T, V, L, 12*q*q]
        q = p // cfg.gauss_stride
        raw = unpatchify(raw.reshape(B * T, V, L, -1), q, GAUSS_CHANNELS)  # [B*T, V, S', S', 12]
        return self.activate(raw, rgb.flatten(0, 1), c2w.flatten(0, 1), K.flatten(0, 1), B, T,
                             None if anchor is None else anchor.flatten(0, 1))

    def activate(self, raw: Tensor, rgb: Tensor, c2w: Tensor, K: Tensor, B: int, T: int,
                 anchor: Tensor | None = None) -> Gaussians3D:
        """Bounded, well-initialised Gaussians from raw head outputs [B*T, V, S', S', 12]."""
        cfg = self.cfg
        s = cfg.gauss_stride
        V, Sg = raw.shape[1], raw.shape[2]
        Kg = scale_intrinsics(K.float(), 1.0 / s, 1.0 / s)  # the camera at the Gaussian grid's resolution
        if s > 1:
            rgb = F.avg_pool2d(rgb.float().flatten(0, 1), s).reshape(B * T, V, 3, Sg, Sg)
        means, dist = ray_depth_means(raw[..., 0:1], c2w, Kg, cfg.dist_span, anchor)  # [B*T, V, S', S', 3], [.., 1]
        colour = pixel_colour(raw[..., 1:4], rgb)  # starts as its own pixel's colour
        scales = footprint_scales(raw[..., 4:7], dist, Kg, cfg.scale_log_range)
        quats = unit_quaternion(raw[..., 7:11])
        opacity = opacity_from_raw(raw[..., 11:12], cfg.opacity_init)
        N = V * Sg * Sg
        return Gaussians3D(means=means.reshape(B, T, N, 3), rgb=colour.reshape(B, T, N, 3),
                           scales=scales.reshape(B, T, N, 3), quats=quats.reshape(B, T, N, 4),
                           opacity=opacity.reshape(B, T, N))


def expand_window(x: Tensor, window: int) -> Tensor:
    """Flat inputs [B, T+n0, ...] (video at each time, then t0 views) -> [B, T, 1+n0, ...]: the t0 views
    are repeated at every time of the window (a view, not a copy, until something writes to it)."""
    vid, t0 = x[:, :window], x[:, window:]  # [B, T, ...], [B, n0, ...]
    B, n0 = t0.shape[:2]
    t0 = t0[:, None].expand(B, window, n0, *t0.shape[2:])
    return torch.cat([vid[:, :, None], t0], dim=2)


def forward_flops(cfg: ModelConfig, window: int, n_views: int, image_size: int) -> float:
    """Forward matrix-product FLOPs of one sample (2 per multiply-add), attention scores included."""
    L = (image_size // cfg.patch_size) ** 2  # tokens per view
    D, p = cfg.width, cfg.patch_size
    q = p // cfg.gauss_stride
    tokens = window * n_views * L
    n_blocks = cfg.depth * (2 if cfg.temporal_attention else 1)
    per_token = 2 * (IN_CHANNELS * p * p * D + D * GAUSS_CHANNELS * q * q) + n_blocks * block_flops_per_token(
        D, cfg.mlp_ratio)
    attn = cfg.depth * attention_score_flops(window, n_views * L, D)  # multi-view: one sequence per time
    if cfg.temporal_attention:
        attn += cfg.depth * attention_score_flops(n_views, window * L, D)  # temporal: one sequence per view
    return per_token * tokens + attn


def train_flops_per_sample(cfg: ModelConfig, window: int, n_views: int, image_size: int) -> float:
    """Forward + backward (3x forward) model FLOPs of one training sample, for MFU."""
    return 3.0 * forward_flops(cfg, window, n_views, image_size)


def forward_render(model: nn.Module, batch: dict, cfg, backend: str, autocast, size: int | None = None):
    """The family's step: reconstruct each window time's Gaussians from the flat inputs and render every
    target at its own time. Returns (Gaussians3D, rgb [B, T*M, 3, S, S], alpha [B, T*M, 1, S, S]) with the
    targets in the loader's time-major order, so losses and metrics read them like 4D-LRM targets."""
    from training.render.frames import render_frames

    W = window_of(batch)
    with autocast:
        g = model(batch["in_rgb"], batch["in_cond"], batch["in_c2w"], batch["in_K"], window=W,
                  in_anchor=batch.get("in_anchor"))
    B, n = batch["tg_c2w"].shape[:2]
    M = n // W
    S = size or cfg.data.image_size
    rgb, alpha = render_frames(g, batch["tg_c2w"].reshape(B, W, M, 4, 4), batch["tg_K"].reshape(B, W, M, 3, 3),
                               S, S, batch["background"], cfg.render, backend)
    return g, rgb.flatten(1, 2), alpha.flatten(1, 2)


def window_of(batch: dict) -> int:
    """The batch's window length T, from the shape of `window_frames` [B, T] (l4gm_samples): reading the
    value of a CUDA tensor (`int(batch["window"])`) would make every step wait for the GPU."""
    if "window_frames" not in batch:
        raise KeyError("an l4gm batch needs 'window_frames' [B, T] (training/l4gm_samples.BuildWindowSample)")
    return int(batch["window_frames"].shape[-1])
