"""`pipeline reconstruct` for the 4D-LRM family: n_in (view, time) pairs of the clip -> one set of 4D
Gaussians, sliced at every output time (the clip's rendered times, or `--times`).

Inputs from a rendered sample: frames spread over the clip, fixed views spread around it; from a
folder of the user's images: every image."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from training.data.clip import Clip, Frame, InputError, anchor_at, spread, to_views
from training.render.gaussians3d import covariance_to_scale_rot
from training.render.frames import render_gaussians
from training.render.slicing import slice_at


def choose_inputs(clip: Clip, n_in: int) -> list[Frame]:
    if clip.kind == "folder":
        return clip.frames
    by = {(fr.frame, fr.view): fr for fr in clip.frames}
    frames = sorted({fr.frame for fr in clip.frames})
    fixed = sorted({fr.view for fr in clip.frames if fr.fixed}) or sorted({fr.view for fr in clip.frames})
    idx = np.linspace(0, len(frames) - 1, n_in).round().astype(int)
    views = spread(fixed, n_in)
    chosen = [by.get((frames[i], v)) for i, v in zip(idx, views)]
    return [c for c in chosen if c is not None] or clip.frames[:n_in]


def reconstruct_clip(model: torch.nn.Module, cfg: Any, clip: Clip, *, times: list[float] | None, window: int | None,
                     interp: bool, backend: str, background: torch.Tensor, device: torch.device, precision: Any):
    """-> (frames, out_times, inputs_used, turntable): frames are per output time dicts of CPU tensors
    (means, rgb, opacity, scales, quats); turntable(c2w [4, 4], K [3, 3], j, n, size) renders animation
    frame j of n (time sweeping the output span, cameras moved to the anchor of that time)."""
    if window is not None:
        raise InputError(f"--window {window}: an l4gm option (this checkpoint is of the lrm4d family)")
    if interp:
        raise InputError("--interp: an l4gm option (this checkpoint is of the lrm4d family)")
    S = cfg.data.image_size
    chosen = choose_inputs(clip, cfg.data.n_in)
    v = to_views(chosen, S, background)
    x = lambda t: t[None].to(device)  # noqa: E731
    with precision:
        g4 = model(x(v.rgb), x(v.cond()), x(v.c2w), x(v.K), x(v.time), in_anchor=x(v.anchors()))
    g4 = g4.float()
    out_times = times if times is not None else clip.times
    sl = slice_at(g4, torch.tensor([out_times], device=device))  # [1, F, N, ...]
    scales, quats = covariance_to_scale_rot(sl.covars[0, 0].cpu())  # time-independent covariance
    frames = [dict(means=sl.means[0, k].cpu(), rgb=sl.colors[0, k].cpu(), opacity=sl.opacities[0, k].cpu(),
                   scales=scales, quats=quats) for k in range(len(out_times))]
    inputs_used = [{"frame": f.frame, "view": f.view, "time": f.time, "source": f.source} for f in chosen]
    lo, hi = min(out_times), max(out_times)
    bg = background[None].to(device)

    def turntable(c2w: torch.Tensor, K: torch.Tensor, j: int, n: int, size: int) -> torch.Tensor:
        t = lo + (hi - lo) * j / max(1, n - 1)
        c2w = c2w.clone()
        c2w[:3, 3] += torch.from_numpy(anchor_at(clip, t))
        rgb, _ = render_gaussians(g4, c2w[None, None].to(device), K[None, None].to(device),
                                  torch.tensor([[t]], device=device), size, size, bg, cfg.render, backend)
        return rgb[0, 0].cpu()

    return frames, out_times, inputs_used, turntable
