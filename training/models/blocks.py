"""What both model families share: attention, the pre-norm transformer block, patchify/unpatchify,
the pieces of a per-pixel Gaussian head, weight init and FLOP counting.

Neither family's details live here: training/models/lrm4d/model.py (4D-LRM) and training/models/l4gm/model.py (L4GM)
compose these pieces. State-dict key names come from the attribute names below (`attn.qkv`,
`mlp.0`, ...), so renaming one breaks every saved checkpoint.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from training.geometry import pixel_rays


class Attention(nn.Module):
    # the attention kernel; training/models/fast.fp8_attention swaps in an inference-only FP8 one per instance
    sdpa = staticmethod(F.scaled_dot_product_attention)

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
        q, k = _qk_norm(q, self.q_norm), _qk_norm(k, self.k_norm)
        y = self.sdpa(q, k, v)  # [B, h, L, hd]
        return self.proj(y.transpose(1, 2).reshape(B, L, D))


def _qk_norm(x: Tensor, norm: nn.Module) -> Tensor:
    """RMSNorm in float32 (statistics, gain, eps as nn.RMSNorm on a float32 input), rounded once back to
    x's dtype. Under bf16 autocast this is the fused kernel; nn.RMSNorm itself would meet a bf16 input
    with a float32 gain and fall back to a slow composite of several kernels (same values)."""
    if not isinstance(norm, nn.RMSNorm):
        return norm(x)
    return F.rms_norm(x.float(), norm.normalized_shape, norm.weight, norm.eps).to(x.dtype)


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


def run_block(blk: nn.Module, x: Tensor, grad_checkpoint: bool) -> Tensor:
    """One block, recomputed in backward when `grad_checkpoint` and grads are being recorded."""
    if grad_checkpoint and blk.training and torch.is_grad_enabled():
        return checkpoint(blk, x, use_reentrant=False)
    return blk(x)


# -- patches ---------------------------------------------------------------------------------------


def patchify(x: Tensor, p: int) -> Tensor:
    """[B, V, C, S, S] -> [B, V, n*n, C*p*p] with n = S // p (row-major patches, channel-major inside)."""
    B, V, C, S, _ = x.shape
    n = S // p
    x = x.reshape(B, V, C, n, p, n, p).permute(0, 1, 3, 5, 2, 4, 6)  # [B, V, n, n, C, p, p]
    return x.reshape(B, V, n * n, C * p * p)


def unpatchify(x: Tensor, p: int, channels: int) -> Tensor:
    """[B, V, n*n, C*p*p] -> [B, V, S, S, C] (channels last), the inverse layout of `patchify`."""
    B, V, L, _ = x.shape
    n = math.isqrt(L)
    x = x.reshape(B, V, n, n, channels, p, p).permute(0, 1, 2, 5, 3, 6, 4)  # [B, V, n, p, n, p, C]
    return x.reshape(B, V, n * p, n * p, channels)


# -- per-pixel Gaussian head pieces ----------------------------------------------------------------


def ray_depth_means(raw_dist: Tensor, c2w: Tensor, K: Tensor, dist_span: float,
                    anchor: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Centres on each pixel's own ray at a bounded distance: |camera - anchor| +- dist_span.
    raw_dist [B, V, S, S, 1], c2w [B, V, 4, 4], K [B, V, 3, 3], anchor [B, V, 3] -> (means [B, V, S, S, 3],
    dist [B, V, S, S, 1]). The anchor is the point a view's camera is framed on: the object's per-time box
    centre under framing 'track' (DESIGN.md §2, the loader's in_anchor), so the range follows a travelling
    object; None (or zeros, framing 'union') measures from the origin, bit for bit as before anchors."""
    S = raw_dist.shape[2]
    o, d = pixel_rays(c2w.float(), K.float(), S, S)  # [B, V, S, S, 3] x2
    rel = o if anchor is None else o - anchor.float()[:, :, None, None, :]  # camera relative to its anchor
    cam_dist = rel.norm(dim=-1, keepdim=True)  # [B, V, S, S, 1]
    lo = (cam_dist - dist_span).clamp_min(0.05)
    hi = cam_dist + dist_span
    dist = lo + (hi - lo) * torch.sigmoid(raw_dist)  # [B, V, S, S, 1]
    return o + dist * d, dist


def pixel_colour(raw_rgb: Tensor, in_rgb: Tensor) -> Tensor:
    """rgb [B, V, S, S, 3] in (0, 1) that starts as its own input pixel's colour; in_rgb [B, V, 3, S, S]."""
    c_in = in_rgb.float().permute(0, 1, 3, 4, 2).clamp(0.02, 0.98)  # [B, V, S, S, 3]
    return torch.sigmoid(raw_rgb + torch.logit(c_in))


def footprint_scales(raw_scale: Tensor, dist: Tensor, K: Tensor, log_range: float) -> Tensor:
    """Spatial std [B, V, S, S, 3] = the pixel's world footprint at its distance * exp(+-log_range)."""
    fx = K.float()[:, :, 0, 0][:, :, None, None, None]  # [B, V, 1, 1, 1]
    footprint = dist / fx
    return footprint * torch.exp(log_range * torch.tanh(raw_scale / log_range))


def unit_quaternion(raw_q: Tensor) -> Tensor:
    """[..., 4] (w, x, y, z), starting at the identity rotation."""
    # + (1, 0, 0, 0) without a host-made tensor: a CUDA graph cannot capture a host-to-device copy
    return F.normalize(torch.cat([raw_q[..., :1] + 1.0, raw_q[..., 1:]], dim=-1), dim=-1)


def opacity_from_raw(raw_o: Tensor, init: float) -> Tensor:
    """Opacity in (0, 1) that starts at `init`."""
    return torch.sigmoid(raw_o + math.log(init / (1 - init)))


# -- init and counting -----------------------------------------------------------------------------


def init_weights(m: nn.Module) -> None:
    """Truncated-normal Linear weights (std 0.02), zero biases, unit LayerNorms (use with Module.apply)."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def scale_residual_init(blocks: nn.ModuleList, depth: int) -> None:
    """Residual output projections scaled down with depth (GPT-2 style)."""
    for blk in blocks:
        nn.init.normal_(blk.attn.proj.weight, std=0.02 / math.sqrt(2 * depth))
        nn.init.normal_(blk.mlp[2].weight, std=0.02 / math.sqrt(2 * depth))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def block_flops_per_token(width: int, mlp_ratio: float) -> float:
    """Forward matrix-product FLOPs of one block per token, attention scores excluded (2 per MAC)."""
    hidden = int(width * mlp_ratio)
    return 2.0 * (4 * width * width + 2 * width * hidden)


def attention_score_flops(n_seq: int, seq_len: int, width: int) -> float:
    """Forward FLOPs of QK^T and AV for `n_seq` independent sequences of `seq_len` tokens."""
    return 2.0 * 2.0 * n_seq * seq_len * seq_len * width
