"""The feed-forward 4D reconstructor: posed, timed input images -> per-pixel 4D Gaussians.

Every input image becomes patches of [rgb, Plücker(6), time(1)]; one pre-norm transformer (SDPA
attention with RMS-normalised queries and keys) attends over the tokens of all inputs together; a
linear head turns each token back into one 4D Gaussian per input pixel (GS-LRM / 4D-LRM style).
Single-device code: DDP wrapping happens in training/ddp.py only.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from training.models.blocks import (
    Attention, Block, attention_score_flops, block_flops_per_token, count_parameters, footprint_scales,
    init_weights, opacity_from_raw, patchify, pixel_colour, ray_depth_means, run_block, scale_residual_init,
    unit_quaternion, unpatchify,
)
from training.config import ModelConfig
from training.render.frames import render_gaussians
from training.render.slicing import Gaussians4D

IN_CHANNELS = 10  # rgb 3 + Plücker 6 + time 1
# Raw head channels per pixel: distance 1, time centre 1, rgb 3, spatial scales 3, time scale 1,
# left quaternion 4, right quaternion 4, opacity 1.
GAUSS_CHANNELS = 18
TIME_SCALE_LOG_RANGE = 3.0  # temporal std within time_scale_init * exp(+-3)

# Attention, Block and count_parameters live in training/models/blocks.py; re-exported for older imports.
__all__ = ["Attention", "Block", "Reconstructor", "count_parameters", "train_flops_per_sample"]


class Reconstructor(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        p, D = cfg.patch_size, cfg.width
        self.embed = nn.Linear(IN_CHANNELS * p * p, D)
        self.blocks = nn.ModuleList(Block(D, cfg.heads, cfg.mlp_ratio, cfg.qk_norm) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(D)
        self.head = nn.Linear(D, GAUSS_CHANNELS * p * p)
        self.apply(init_weights)
        scale_residual_init(self.blocks, cfg.depth)
        nn.init.normal_(self.head.weight, std=1e-3)  # start from the neutral Gaussians the activations define
        nn.init.zeros_(self.head.bias)

    def forward(self, in_rgb: Tensor, in_cond: Tensor, in_c2w: Tensor, in_K: Tensor, in_time: Tensor,
                in_anchor: Tensor | None = None) -> Gaussians4D:
        """in_rgb [B, V, 3, S, S] in [0, 1], in_cond [B, V, 7, S, S] (Plücker + time), in_c2w [B, V, 4, 4],
        in_K [B, V, 3, 3], in_time [B, V], in_anchor [B, V, 3] (the loader's: what each input's camera is
        framed on; None = the origin). Returns B x (V*S*S) Gaussians."""
        B, V = in_rgb.shape[:2]
        p = self.cfg.patch_size
        x = patchify(torch.cat([in_rgb * 2 - 1, in_cond], dim=2), p)  # [B, V, n*n, 10*p*p]
        x = self.embed(x.reshape(B, -1, x.shape[-1]))  # [B, L, D]
        for blk in self.blocks:
            x = run_block(blk, x, self.cfg.grad_checkpoint)
        raw = self.head(self.norm(x)).float()  # [B, L, 18*p*p]
        raw = unpatchify(raw.reshape(B, V, -1, raw.shape[-1]), p, GAUSS_CHANNELS)  # [B, V, S, S, 18]
        return self.activate(raw, in_rgb, in_c2w, in_K, in_time, in_anchor)

    def activate(self, raw: Tensor, in_rgb: Tensor, in_c2w: Tensor, in_K: Tensor, in_time: Tensor,
                 in_anchor: Tensor | None = None) -> Gaussians4D:
        """Bounded, well-initialised Gaussian parameters from raw head outputs [B, V, S, S, 18]."""
        cfg = self.cfg
        B, V, S = raw.shape[:3]
        # centres within |camera - anchor| +- dist_span along each ray  [B, V, S, S, 3], [.., 1]
        means, dist = ray_depth_means(raw[..., 0:1], in_c2w, in_K, cfg.dist_span, in_anchor)
        t_in = in_time.float()[:, :, None, None, None]  # [B, V, 1, 1, 1]
        mu_t = t_in + cfg.time_span * torch.tanh(raw[..., 1:2])
        rgb = pixel_colour(raw[..., 2:5], in_rgb)  # starts as its own pixel's colour
        scales = footprint_scales(raw[..., 5:8], dist, in_K, cfg.scale_log_range)
        Rt = TIME_SCALE_LOG_RANGE
        scale_t = cfg.time_scale_init * torch.exp(Rt * torch.tanh(raw[..., 8:9] / Rt))
        q_l = unit_quaternion(raw[..., 9:13])
        q_r = unit_quaternion(raw[..., 13:17])
        opacity = opacity_from_raw(raw[..., 17:18], cfg.opacity_init)
        N = V * S * S
        return Gaussians4D(
            means=means.reshape(B, N, 3), mu_t=mu_t.reshape(B, N), rgb=rgb.reshape(B, N, 3),
            scales=scales.reshape(B, N, 3), scale_t=scale_t.reshape(B, N), q_l=q_l.reshape(B, N, 4),
            q_r=q_r.reshape(B, N, 4), opacity=opacity.reshape(B, N),
        )


def train_flops_per_sample(cfg: ModelConfig, n_in: int, image_size: int) -> float:
    """Model FLOPs of one training sample (forward + backward = 3x forward) for MFU, counting matrix
    products only: 2 FLOPs per multiply-add in every Linear, plus attention's QK^T and AV."""
    L = n_in * (image_size // cfg.patch_size) ** 2  # tokens
    D, p = cfg.width, cfg.patch_size
    per_token = 2 * (IN_CHANNELS * p * p * D + D * GAUSS_CHANNELS * p * p) + cfg.depth * block_flops_per_token(
        D, cfg.mlp_ratio)
    attn = cfg.depth * attention_score_flops(1, L, D)
    return 3.0 * (per_token * L + attn)


def forward_render(model: nn.Module, batch: dict, cfg, backend: str, autocast, size: int | None = None):
    """The 4D-LRM family's step: one set of 4D Gaussians from all inputs, sliced at every target's time
    and rendered at `size` (default: the config's image size). Returns (gaussians, rgb, alpha)."""
    with autocast:
        g = model(batch["in_rgb"], batch["in_cond"], batch["in_c2w"], batch["in_K"], batch["in_time"],
                  in_anchor=batch.get("in_anchor"))
    S = size or cfg.data.image_size
    rgb, alpha = render_gaussians(g, batch["tg_c2w"], batch["tg_K"], batch["tg_time"], S, S, batch["background"],
                                  cfg.render, backend)
    return g, rgb, alpha
