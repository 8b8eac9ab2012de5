"""`pipeline reconstruct` for the L4GM family: the video (one fixed view at every rendered time; a folder:
view 0) and the t0 views (other fixed views of the first time; a folder: the other views) -> one set of
3D Gaussians per video frame (a checkpoint trained without t0 views, data.n_t0_views=0, takes the video
alone; one trained with them refuses a folder that has none), through autoregressive windows (training/models/l4gm/longvideo.py), or
at 3x the frame rate with `--interp`."""

from __future__ import annotations

from typing import Any

import torch

from training.data.clip import Clip, Frame, InputError, anchor_at, spread, to_views
from training.models.l4gm.longvideo import interpolate_video, reconstruct_video
from training.render.frames import render_frames


def choose_inputs(clip: Clip, n_t0: int) -> tuple[list[Frame], list[Frame]]:
    """(video frames in time order, t0 views)."""
    if clip.kind == "folder":
        video = sorted([fr for fr in clip.frames if fr.view == 0], key=lambda f: f.time)
        if not video:
            raise InputError(f"--input {clip.name}: no frames of view 0 (the video) in cameras.json")
        t0 = [fr for fr in clip.frames if fr.view != 0]
        if not t0 and n_t0 > 0:
            raise InputError(f"--input {clip.name}: cameras.json has frames of view 0 (the video) only; this "
                             f"checkpoint was trained with data.n_t0_views={n_t0} extra views at the video's first "
                             f"time: add images of other views (view 1, 2, ...) at time {video[0].time}")
        bad = [fr.source for fr in t0 if abs(fr.time - video[0].time) > 1e-6]
        if bad:
            raise InputError(f"--input {clip.name}: views other than 0 must show the video's first time "
                             f"{video[0].time}; {bad[:3]} do not")
        return video, t0
    fixed = sorted({fr.view for fr in clip.frames if fr.fixed})
    if len(fixed) < 1 + n_t0:
        raise InputError(f"--input {clip.name}: {len(fixed)} fixed view(s); the video and {n_t0} t0 views need {1 + n_t0}")
    by = {(fr.frame, fr.view): fr for fr in clip.frames}
    frames = sorted({fr.frame for fr in clip.frames})  # every rendered time of the clip
    # the video needs its view at every time, a t0 view the first time (as the training picker asks)
    complete = [v for v in fixed if all((t, v) in by for t in frames)]
    if not complete:
        gaps = {v: [t for t in frames if (t, v) not in by][:3] for v in fixed}
        raise InputError(f"--input {clip.name}: no fixed view has an image at every one of the clip's {len(frames)} "
                         f"times, so none can be the video (missing frames per view: {gaps})")
    v0 = complete[0]
    at_first = [v for v in fixed if v != v0 and (frames[0], v) in by]
    if len(at_first) < n_t0:
        raise InputError(f"--input {clip.name}: {len(at_first)} other fixed view(s) have an image at the first time "
                         f"(frame {frames[0]}); {n_t0} t0 views are needed")
    ring = fixed[fixed.index(v0):] + fixed[:fixed.index(v0)]
    t0_views = spread(ring, n_t0, skip_first=True)  # spread around the object from the video's view
    if not set(t0_views) <= set(at_first) or len(set(t0_views)) < n_t0:
        t0_views = spread(at_first, n_t0)
    return [by[(t, v0)] for t in frames], [by[(frames[0], v)] for v in t0_views]


def reconstruct_clip(model: torch.nn.Module, cfg: Any, clip: Clip, *, times: list[float] | None, window: int | None,
                     interp: bool, backend: str, background: torch.Tensor, device: torch.device, precision: Any):
    """-> (frames, out_times, inputs_used, turntable), as training/models/lrm4d/recon.py: one output frame
    per video frame (3x with interp), each rendered only at its own time."""
    if times is not None:
        raise InputError("--times applies to the lrm4d family (4D Gaussians sliced at any time); an l4gm "
                         "checkpoint outputs one frame per video frame")
    if window is not None and window < 2:
        raise InputError(f"--window {window}: an l4gm option, at least 2")
    if interp and window is not None:
        raise InputError("--interp: an l4gm option (windows of 4 frames, so no --window)")
    S = cfg.data.image_size
    video, t0 = choose_inputs(clip, cfg.data.n_t0_views)
    if interp:
        g3, windows = interpolate_video(model, to_views(video, S, background), to_views(t0, S, background), cfg.render,
                                        backend, background, precision)
        vt = [f.time for f in video]
        out_times = [vt[k] + j / 3 * (vt[k + 1] - vt[k]) for k in range(len(vt) - 1) for j in range(3)] + vt[-1:]
    else:
        g3, windows = reconstruct_video(model, to_views(video, S, background), to_views(t0, S, background),
                                        window or cfg.data.window, cfg.render, backend, background, precision)
        out_times = [f.time for f in video]
    frames = [dict(means=g3.means[0, k].cpu(), rgb=g3.rgb[0, k].cpu(), opacity=g3.opacity[0, k].cpu(),
                   scales=g3.scales[0, k].cpu(), quats=g3.quats[0, k].cpu()) for k in range(len(out_times))]
    inputs_used = {"video": [{"frame": f.frame, "view": f.view, "time": f.time, "source": f.source} for f in video],
                   "t0": [{"frame": f.frame, "view": f.view, "time": f.time, "source": f.source} for f in t0],
                   "windows": [list(w["span"]) for w in windows]}
    bg = background[None].to(device)

    def turntable(c2w: torch.Tensor, K: torch.Tensor, j: int, n: int, size: int) -> torch.Tensor:
        k = min(len(frames) - 1, j * len(frames) // n)
        c2w = c2w.clone()
        c2w[:3, 3] += torch.from_numpy(anchor_at(clip, out_times[k]))  # (interpolated frames too)
        rgb, _ = render_frames(g3.frames([k]), c2w[None, None, None].to(device), K[None, None, None].to(device),
                               size, size, bg, cfg.render, backend)
        return rgb[0, 0, 0].cpu()

    return frames, out_times, inputs_used, turntable
