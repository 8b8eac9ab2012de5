"""Reconstruction losses and image metrics: MSE on colour, alpha mask term, SSIM, LPIPS (optional)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from training.config import LossConfig
from training.losses.lpips import LPIPS


def psnr(pred: Tensor, target: Tensor) -> Tensor:
    """Per-image PSNR in dB for images in [0, 1]. pred, target: [..., C, H, W] -> [...]."""
    mse = (pred.float() - target.float()).pow(2).flatten(-3).mean(-1)
    return -10.0 * torch.log10(mse.clamp_min(1e-10))


def _gauss_window(size: int, sigma: float, channels: int, device, dtype) -> Tensor:
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()  # [C, 1, k, k]


def ssim(pred: Tensor, target: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Per-image SSIM (Wang et al. 2004, Gaussian window, zero padding). [N, C, H, W] -> [N]."""
    C = pred.shape[1]
    k = min(window, pred.shape[-1], pred.shape[-2]) // 2 * 2 + 1  # odd, no larger than the image
    w = _gauss_window(k, sigma, C, pred.device, pred.dtype)
    conv = lambda x: F.conv2d(x, w, padding=k // 2, groups=C)  # noqa: E731
    mu_x, mu_y = conv(pred), conv(target)
    sxx = conv(pred * pred) - mu_x ** 2
    syy = conv(target * target) - mu_y ** 2
    sxy = conv(pred * target) - mu_x * mu_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2))
    return s.flatten(1).mean(-1)


def reconstruction_losses(pred_rgb: Tensor, pred_alpha: Tensor, tg_rgb: Tensor, tg_alpha: Tensor, cfg: LossConfig,
                          lpips_net: LPIPS | None = None, lpips_scale: float = 1.0) -> dict[str, Tensor]:
    """All terms and their weighted sum under "loss". Images [B, T, C, H, W] in [0, 1].

    LPIPS appears only when `lpips_net` is given (its weights exist locally) and its weight is > 0; it
    enters the sum as cfg.lpips * lpips_scale * LPIPS (the trainer passes lpips_scale = k on the steps of
    `loss.lpips_every=k`, so the LPIPS gradient is the same in expectation over steps).
    """
    pr, tr = pred_rgb.float().flatten(0, 1), tg_rgb.float().flatten(0, 1)  # [B*T, 3, H, W]
    out: dict[str, Tensor] = {}
    out["mse"] = F.mse_loss(pr, tr)
    out["mask"] = F.mse_loss(pred_alpha.float(), tg_alpha.float())
    total = cfg.mse * out["mse"] + cfg.mask * out["mask"]
    if cfg.ssim > 0:
        out["ssim"] = 1.0 - ssim(pr, tr).mean()
        total = total + cfg.ssim * out["ssim"]
    if lpips_net is not None and cfg.lpips > 0:
        out["lpips"] = lpips_net(pr, tr).mean()
        total = total + cfg.lpips * lpips_scale * out["lpips"]
    out["loss"] = total
    with torch.no_grad():
        out["psnr"] = psnr(pr.clamp(0, 1), tr).mean()
    return out


# -- object-region metrics (DESIGN.md §5: psnr_obj and its SSIM/LPIPS twins) ----------------------------

OBJ_ALPHA = 0.1      # a pixel belongs to the object when the target's alpha exceeds this
LPIPS_MIN_BOX = 16   # VGG's deepest LPIPS tap needs 16 px: smaller boxes grow (centred, inside the image)


def object_boxes(alpha: Tensor, threshold: float = OBJ_ALPHA) -> list[tuple[int, int, int, int]]:
    """Per image, (y0, y1, x0, x1) (end exclusive) of the bounding box of alpha > threshold; the whole
    image when no pixel qualifies. alpha: [N, 1, H, W]."""
    N, _, H, W = alpha.shape
    on = alpha.detach()[:, 0] > threshold  # [N, H, W]
    rows, cols = on.any(-1), on.any(-2)  # [N, H], [N, W]
    out = []
    for i in range(N):
        ys, xs = rows[i].nonzero().flatten(), cols[i].nonzero().flatten()
        if len(ys) == 0:
            out.append((0, H, 0, W))
        else:
            out.append((int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1))
    return out


def psnr_in_boxes(pred: Tensor, target: Tensor, boxes: list[tuple[int, int, int, int]]) -> Tensor:
    """PSNR over the pixels inside each image's box. pred, target: [N, C, H, W] -> [N]."""
    mse = torch.stack([(pred[i, :, y0:y1, x0:x1].float() - target[i, :, y0:y1, x0:x1].float()).pow(2).mean()
                       for i, (y0, y1, x0, x1) in enumerate(boxes)]) if boxes else pred.new_zeros(0)
    return -10.0 * torch.log10(mse.clamp_min(1e-10))


def ssim_in_boxes(pred: Tensor, target: Tensor, boxes: list[tuple[int, int, int, int]]) -> Tensor:
    """SSIM of each image's box crop (the window shrinks to fit a small box). [N, C, H, W] -> [N]."""
    return torch.stack([ssim(pred[i:i + 1, :, y0:y1, x0:x1], target[i:i + 1, :, y0:y1, x0:x1])[0]
                        for i, (y0, y1, x0, x1) in enumerate(boxes)]) if boxes else pred.new_zeros(0)


def _grow(lo: int, hi: int, size: int, need: int) -> tuple[int, int]:
    """[lo, hi) widened to at least `need` (centred, shifted to stay inside [0, size))."""
    if hi - lo >= need or size <= need:
        return (lo, hi) if hi - lo >= need else (0, size)
    c = (lo + hi) / 2
    lo = int(round(c - need / 2))
    lo = min(max(0, lo), size - need)
    return lo, lo + need


def lpips_in_boxes(net: LPIPS, pred: Tensor, target: Tensor, boxes: list[tuple[int, int, int, int]]) -> Tensor:
    """LPIPS of each image's box crop, the box grown to at least LPIPS_MIN_BOX px. [N, 3, H, W] -> [N]."""
    H, W = pred.shape[-2:]
    out = []
    for i, (y0, y1, x0, x1) in enumerate(boxes):
        y0, y1 = _grow(y0, y1, H, LPIPS_MIN_BOX)
        x0, x1 = _grow(x0, x1, W, LPIPS_MIN_BOX)
        out.append(net(pred[i:i + 1, :, y0:y1, x0:x1], target[i:i + 1, :, y0:y1, x0:x1])[0])
    return torch.stack(out) if out else pred.new_zeros(0)
