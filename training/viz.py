"""Image grids for eyes: per sample, a row of inputs, a row of predictions and a row of ground truth,
targets sorted by time and labelled with their time and view."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

LABEL_H = 12
MIN_TILE = 96  # small training images are enlarged (nearest) to at least this many pixels


def _tile(img: torch.Tensor, size: int, label: str) -> Image.Image:
    """img [3, H, W] in [0, 1] -> a labelled PIL tile of width `size`."""
    arr = (img.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    im = Image.fromarray(arr, "RGB").resize((size, size), Image.NEAREST)
    out = Image.new("RGB", (size, size + LABEL_H), (40, 40, 40))
    out.paste(im, (0, LABEL_H))
    ImageDraw.Draw(out).text((2, 0), label, fill=(230, 230, 230))
    return out


def make_grid(batch: dict, pred_rgb: torch.Tensor, max_samples: int = 2) -> Image.Image:
    """batch: a training batch (in_rgb, in_time, in_pairs, tg_rgb, tg_time, tg_pairs);
    pred_rgb [B, T, 3, S, S]. Returns one PIL image."""
    B = min(max_samples, pred_rgb.shape[0])
    S = pred_rgb.shape[-1]
    size = max(S, MIN_TILE)
    n_in, n_t = batch["in_rgb"].shape[1], pred_rgb.shape[1]
    cols = max(n_in, n_t)
    th = size + LABEL_H
    grid = Image.new("RGB", (cols * (size + 2), B * 3 * (th + 2) + (B - 1) * 6), (0, 0, 0))
    y = 0
    for b in range(B):
        for i in range(n_in):
            t, v = batch["in_pairs"][b, i].tolist()
            lab = f"in t={float(batch['in_time'][b, i]):.2f} v{v}"
            grid.paste(_tile(batch["in_rgb"][b, i], size, lab), (i * (size + 2), y))
        order = torch.argsort(batch["tg_time"][b]).tolist()
        for row, (src, name) in enumerate(((pred_rgb, "pred"), (batch["tg_rgb"], "gt"))):
            yy = y + (row + 1) * (th + 2)
            for c, j in enumerate(order):
                v = int(batch["tg_pairs"][b, j, 1])
                lab = f"{name} t={float(batch['tg_time'][b, j]):.2f} v{v}"
                grid.paste(_tile(src[b, j], size, lab), (c * (size + 2), yy))
        y += 3 * (th + 2) + 6
    return grid


def save_grid(path: str | os.PathLike, batch: dict, pred_rgb: torch.Tensor) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    make_grid(batch, pred_rgb).save(tmp, format="PNG")
    os.replace(tmp, path)
    return path
