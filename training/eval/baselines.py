"""Held-out PSNR of the model next to two baselines, split by what is novel about each target.

- mean colour: each target predicted as its own mean colour (an upper bound on any constant guess);
- nearest input: each target predicted as the input image closest in time (then in viewing direction),
  copied as is: what a model that ignores 3D and motion would do.
A target is "novel time" when no input shows its frame; else "known view" when an input shows its view
at another frame (an L4GM t0 view at a later time), "novel view" when no input shows its view at all;
else "seen" (an input pair rendered again).

`evaluate` below is a quick check on loader batches for tests of learning (analytic and procedural
clips with fixed cameras only: it classifies by view index). Numbers to report come from `pipeline eval`
(training/models/lrm4d/protocol.py, training/eval/protocol.py): targets by camera, psnr_obj, seen and held-out clips apart.
"""

from __future__ import annotations

from collections import defaultdict

import torch

from training.config import TrainConfig
from training.losses.terms import psnr
from training.render.frames import render_gaussians


def nearest_input(batch: dict) -> torch.Tensor:
    """Per target, the input nearest in time, then in viewing direction. Returns [B, T, 3, S, S]."""
    dt = (batch["tg_time"][:, :, None] - batch["in_time"][:, None, :]).abs()  # [B, T, V]
    fwd_t = batch["tg_c2w"][..., :3, 2]  # [B, T, 3] viewing directions
    fwd_i = batch["in_c2w"][..., :3, 2]  # [B, V, 3]
    cos = torch.einsum("btc,bvc->btv", fwd_t, fwd_i)
    score = dt * 1e3 - cos  # time first, direction breaks ties
    idx = score.argmin(-1)  # [B, T]
    return torch.stack([batch["in_rgb"][b, idx[b]] for b in range(idx.shape[0])])


def categories(batch: dict) -> list[list[str]]:
    """'novel_time', 'known_view', 'novel_view' or 'seen' for every target of every sample."""
    out = []
    for b in range(batch["tg_pairs"].shape[0]):
        ins = {tuple(p) for p in batch["in_pairs"][b].tolist()}
        frames, views = {t for t, _ in ins}, {v for _, v in ins}
        row = []
        for t, v in batch["tg_pairs"][b].tolist():
            row.append("seen" if (t, v) in ins else "novel_time" if t not in frames
                       else "known_view" if v in views else "novel_view")
        out.append(row)
    return out


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: list[dict], cfg: TrainConfig, backend: str,
             device: torch.device) -> dict[str, float]:
    """Mean PSNR of the model and both baselines, overall and per target category."""
    model.eval()
    sums: dict[str, list[float]] = defaultdict(list)
    for batch in batches:
        batch = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
        g = model(batch["in_rgb"], batch["in_cond"], batch["in_c2w"], batch["in_K"], batch["in_time"],
                  in_anchor=batch.get("in_anchor"))
        S = cfg.data.image_size
        pred, _ = render_gaussians(g, batch["tg_c2w"], batch["tg_K"], batch["tg_time"], S, S, batch["background"],
                                   cfg.render, backend)
        tg = batch["tg_rgb"]
        p_model = psnr(pred.clamp(0, 1), tg)  # [B, T]
        p_mean = psnr(tg.mean(dim=(-1, -2), keepdim=True).expand_as(tg), tg)
        p_near = psnr(nearest_input(batch), tg)
        for b, row in enumerate(categories(batch)):
            for t, cat in enumerate(row):
                for name, val in (("psnr", p_model), ("psnr_mean_colour", p_mean), ("psnr_nearest_input", p_near)):
                    sums[name].append(float(val[b, t]))
                    sums[f"{name}/{cat}"].append(float(val[b, t]))
    model.train()
    return {k: sum(v) / len(v) for k, v in sorted(sums.items())} | {"targets": len(sums["psnr"])}
