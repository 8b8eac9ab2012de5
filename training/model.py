"""The feed-forward 4D reconstructor: posed, timed input images -> per-pixel 4D Gaussians.

Every input image becomes patches of [rgb, Plücker(6), time(1)]; one pre-norm transformer (SDPA
attention with RMS-normalised queries and keys) attends over the tokens of all inputs together; a
linear head turns each token back into one 4D Gaussian per input pixel (GS-LRM / 4D-LRM style).
Single-device code: DDP wrapping happens in training/ddp.py only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from training.config import ModelConfig
from training.geometry import pixel_rays
from training.slicing import Gaussians4D

IN_CHANNELS = 10  # rgb 3 + Plücker 6 + time 1
# Raw head channels per pixel: distance 1, time centre 1, rgb 3, spatial scales 3, time scale 1,
# left quaternion 4, right quaternion 4, opacity 1.
GAUSS_CHANNELS = 18
TIME_SCALE_LOG_RANGE = 3.0  # temporal std within time_scale_init * exp(+-3)


class Attention(nn.Module):
    def __init__(self, width: int, heads: int, qk_norm: bool):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.proj = nn.Linear(width, width, bias=False)
        hd = width // heads
        self.q_norm = nn.RMSNorm(hd) if qk_norm else nn.Identity()
        self.k_norm = nn.RMSNorm(hd) if qk_norm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        B, L, D = x.shape  # [B, L, D]
        q, k, v = self.qkv(x).reshape(B, L, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)  # [B, h, L, hd] x3
        q, k = self.q_norm(q), self.k_norm(k)
        y = F.scaled_dot_product_attention(q, k, v)  # [B, h, L, hd]
        return self.proj(y.transpose(1, 2).reshape(B, L, D))


class Block(nn.Module):
    def __init__(self, width: int, heads: int, mlp_ratio: float, qk_norm: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads, qk_norm)
        self.norm2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, width))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Reconstructor(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        p, D = cfg.patch_size, cfg.width
        self.embed = nn.Linear(IN_CHANNELS * p * p, D)
        self.blocks = nn.ModuleList(Block(D, cfg.heads, cfg.mlp_ratio, cfg.qk_norm) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(D)
        self.head = nn.Linear(D, GAUSS_CHANNELS * p * p)
        self.apply(_init)
        for blk in self.blocks:  # residual branches scaled down with depth (GPT-2 style)
            nn.init.normal_(blk.attn.proj.weight, std=0.02 / math.sqrt(2 * cfg.depth))
            nn.init.normal_(blk.mlp[2].weight, std=0.02 / math.sqrt(2 * cfg.depth))
        nn.init.normal_(self.head.weight, std=1e-3)  # start from the neutral Gaussians the activations define
        nn.init.zeros_(self.head.bias)

    def forward(self, in_rgb: Tensor, in_cond: Tensor, in_c2w: Tensor, in_K: Tensor, in_time: Tensor) -> Gaussians4D:
        """in_rgb [B, V, 3, S, S] in [0, 1], in_cond [B, V, 7, S, S] (Plücker + time), in_c2w [B, V, 4, 4],
        in_K [B, V, 3, 3], in_time [B, V]. Returns B x (V*S*S) Gaussians."""
        B, V, _, S, _ = in_rgb.shape
        p = self.cfg.patch_size
        n = S // p
        x = torch.cat([in_rgb * 2 - 1, in_cond], dim=2)  # [B, V, 10, S, S]
        x = x.reshape(B, V, IN_CHANNELS, n, p, n, p).permute(0, 1, 3, 5, 2, 4, 6)  # [B, V, n, n, 10, p, p]
        x = self.embed(x.reshape(B, V * n * n, IN_CHANNELS * p * p))  # [B, L, D]
        for blk in self.blocks:
            if self.cfg.grad_checkpoint and self.training and torch.is_grad_enabled():
                x = checkpoint(blk, x, use_reentrant=False)
            else:
                x = blk(x)
        raw = self.head(self.norm(x)).float()  # [B, L, 18*p*p]
        raw = raw.reshape(B, V, n, n, GAUSS_CHANNELS, p, p).permute(0, 1, 2, 5, 3, 6, 4)  # [B, V, n, p, n, p, 18]
        raw = raw.reshape(B, V, S, S, GAUSS_CHANNELS)
        return self.activate(raw, in_rgb, in_c2w, in_K, in_time)

    def activate(self, raw: Tensor, in_rgb: Tensor, in_c2w: Tensor, in_K: Tensor, in_time: Tensor) -> Gaussians4D:
        """Bounded, well-initialised Gaussian parameters from raw head outputs [B, V, S, S, 18]."""
        cfg = self.cfg
        B, V, S = raw.shape[:3]
        o, d = pixel_rays(in_c2w.float(), in_K.float(), S, S)  # [B, V, S, S, 3] x2
        cam_dist = o.norm(dim=-1, keepdim=True)  # [B, V, S, S, 1]
        lo = (cam_dist - cfg.dist_span).clamp_min(0.05)
        hi = cam_dist + cfg.dist_span
        dist = lo + (hi - lo) * torch.sigmoid(raw[..., 0:1])  # [B, V, S, S, 1]: bounded, along the pixel ray
        means = o + dist * d  # [B, V, S, S, 3]
        t_in = in_time.float()[:, :, None, None, None]  # [B, V, 1, 1, 1]
        mu_t = t_in + cfg.time_span * torch.tanh(raw[..., 1:2])
        c_in = in_rgb.float().permute(0, 1, 3, 4, 2).clamp(0.02, 0.98)  # [B, V, S, S, 3]
        rgb = torch.sigmoid(raw[..., 2:5] + torch.logit(c_in))  # starts as its own pixel's colour
        fx = in_K.float()[:, :, 0, 0][:, :, None, None, None]  # [B, V, 1, 1, 1]
        footprint = dist / fx  # world size of one pixel at that distance
        R = cfg.scale_log_range
        scales = footprint * torch.exp(R * torch.tanh(raw[..., 5:8] / R))
        Rt = TIME_SCALE_LOG_RANGE
        scale_t = cfg.time_scale_init * torch.exp(Rt * torch.tanh(raw[..., 8:9] / Rt))
        ident = raw.new_tensor([1.0, 0.0, 0.0, 0.0])
        q_l = F.normalize(raw[..., 9:13] + ident, dim=-1)
        q_r = F.normalize(raw[..., 13:17] + ident, dim=-1)
        opacity = torch.sigmoid(raw[..., 17:18] + math.log(cfg.opacity_init / (1 - cfg.opacity_init)))
        N = V * S * S
        return Gaussians4D(
            means=means.reshape(B, N, 3), mu_t=mu_t.reshape(B, N), rgb=rgb.reshape(B, N, 3),
            scales=scales.reshape(B, N, 3), scale_t=scale_t.reshape(B, N), q_l=q_l.reshape(B, N, 4),
            q_r=q_r.reshape(B, N, 4), opacity=opacity.reshape(B, N),
        )


def _init(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def train_flops_per_sample(cfg: ModelConfig, n_in: int, image_size: int) -> float:
    """Model FLOPs of one training sample (forward + backward = 3x forward) for MFU, counting matrix
    products only: 2 FLOPs per multiply-add in every Linear, plus attention's QK^T and AV."""
    L = n_in * (image_size // cfg.patch_size) ** 2  # tokens
    D, p = cfg.width, cfg.patch_size
    hidden = int(D * cfg.mlp_ratio)
    per_token = 2 * (IN_CHANNELS * p * p * D + cfg.depth * (4 * D * D + 2 * D * hidden) + D * GAUSS_CHANNELS * p * p)
    attn = cfg.depth * 2 * 2 * L * L * D
    return 3.0 * (per_token * L + attn)
