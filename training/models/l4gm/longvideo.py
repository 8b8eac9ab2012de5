"""L4GM-family inference on videos longer than one window: autoregressive windows that overlap by one
frame. The first window takes the given t0 views; every later window's t0 views are renders of the
previous window's last-frame Gaussians from the same t0 cameras (as in L4GM), so the reconstruction
carries on without new multi-view input. The overlapping frame is kept from the earlier window.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from training.config import RenderConfig
from training.render.gaussians3d import Gaussians3D
from training.data.clip import Views
from training.render.frames import render_frames


def window_spans(n_frames: int, window: int) -> list[tuple[int, int]]:
    """[start, end) of each window: length `window` (the last may be shorter), consecutive windows sharing
    one frame. 10 frames, window 4 -> (0, 4), (3, 7), (6, 10)."""
    if window < 2 and n_frames > 1:
        raise ValueError(f"--window {window}: windows that overlap by one frame need at least 2 frames")
    spans, start = [], 0
    while True:
        end = min(start + window, n_frames)
        spans.append((start, end))
        if end >= n_frames:
            return spans
        start = end - 1


@torch.no_grad()
def reconstruct_video(model: nn.Module, video: Views, t0: Views, window: int, render_cfg: RenderConfig, backend: str,
                      background: Tensor, autocast=None) -> tuple[Gaussians3D, list[dict]]:
    """Gaussians for every video frame ([1, T_video, N, ...]) and a record of each window (its span and
    the t0 images it was given, [n0, 3, S, S], for inspection and tests). background [3]."""
    import contextlib

    autocast = autocast or contextlib.nullcontext()
    dev = next(model.parameters()).device
    T = video.rgb.shape[0]
    S = video.rgb.shape[-1]
    parts: list[Gaussians3D] = []
    record: list[dict] = []
    t0_now = t0
    for i, (a, b) in enumerate(window_spans(T, window)):
        vid = video.take(slice(a, b))
        if i > 0 and t0.rgb.shape[0] > 0:  # the t0 views of this window: renders of the previous window's last frame
            last = parts[-1].frames([-1])  # [1, 1, N, ...]
            # the t0 cameras follow the object as tracked cameras do: moved to the video's anchor now
            anchor = vid.anchors()[:1].expand(t0.c2w.shape[0], 3)  # [n0, 3]
            c2w = t0.c2w.clone()
            c2w[:, :3, 3] += anchor - t0.anchors()
            rgb, _alpha = render_frames(last, c2w[None, None].to(dev), t0.K[None, None].to(dev), S, S,
                                        background[None].to(dev), render_cfg, backend)  # [1, 1, n0, 3, S, S]
            t0_now = Views(rgb[0, 0].clamp(0, 1).cpu(), c2w, t0.K, torch.full_like(t0.time, float(vid.time[0])),
                           anchor)
        flat = lambda x, y: torch.cat([x, y])[None].to(dev)  # noqa: E731  video frames, then t0 views
        with autocast:
            g = model(flat(vid.rgb, t0_now.rgb), flat(vid.cond(), t0_now.cond()), flat(vid.c2w, t0_now.c2w),
                      flat(vid.K, t0_now.K), window=b - a, in_anchor=flat(vid.anchors(), t0_now.anchors()))
        g = g.float()
        parts.append(g if i == 0 else g.frames(slice(1, None)))
        record.append({"span": (a, b), "t0_rgb": t0_now.rgb.clone()})
    out = Gaussians3D(**{k: torch.cat([getattr(p, k) for p in parts], dim=1) for k in Gaussians3D.__dataclass_fields__})
    return out, record


def interpolation_views(video: Views) -> Views:
    """The interpolation model's dense input video, 3 (T - 1) + 1 frames: every pair of consecutive frames
    (k, k+1) gives [k, 2/3 k + 1/3 (k+1), 1/3 k + 2/3 (k+1)], then the last frame. An in-between frame's
    image, time and anchor are blends of its two ends; its camera is the nearer end's camera moved by the
    anchor's change (a tracked camera follows the object: DESIGN.md §2 offsets), so every frame's camera
    keeps the offset from its own anchor that the real frames have (a camera framed on the origin, zero
    anchors, stays put)."""
    rgb, c2w, K, times, anchors = [], [], [], [], []
    anc = video.anchors()  # [T, 3]
    for k in range(video.rgb.shape[0] - 1):
        for j in range(3):
            a = j / 3
            near = k if a < 0.5 else k + 1  # the nearer real frame's camera (a fixed view barely moves)
            anchor = (1 - a) * anc[k] + a * anc[k + 1]
            cam = video.c2w[near].clone()
            cam[:3, 3] += anchor - anc[near]
            rgb.append((1 - a) * video.rgb[k] + a * video.rgb[k + 1])
            c2w.append(cam)
            K.append(video.K[near])
            times.append((1 - a) * video.time[k] + a * video.time[k + 1])
            anchors.append(anchor)
    anchors.append(anc[-1])
    rgb.append(video.rgb[-1])
    c2w.append(video.c2w[-1])
    K.append(video.K[-1])
    times.append(video.time[-1])
    return Views(torch.stack(rgb), torch.stack(c2w), torch.stack(K), torch.stack([torch.as_tensor(t) for t in times]),
                 torch.stack(anchors))


@torch.no_grad()
def interpolate_video(model: nn.Module, video: Views, t0: Views, render_cfg: RenderConfig, backend: str,
                      background: Tensor, autocast=None) -> tuple[Gaussians3D, list[dict]]:
    """The interpolation model at inference: 3x the frame rate. Every pair of consecutive video frames
    (a, b) becomes a 4-frame window [a, 2/3 a + 1/3 b, 1/3 a + 2/3 b, b] (blends, as in training, at the
    times in between, with cameras and anchors to match: `interpolation_views`); consecutive windows share
    a frame, and each window after the first takes renders of the previous window's last frame as its t0
    views. Returns Gaussians for 3 (T - 1) + 1 frames."""
    if video.rgb.shape[0] < 2:
        raise ValueError("interpolation needs a video of at least 2 frames")
    return reconstruct_video(model, interpolation_views(video), t0, 4, render_cfg, backend, background, autocast)
