"""`pipeline reconstruct`: a checkpoint of either model family + one input clip -> Gaussians per output
frame as 3D Gaussian Splatting .ply files, a turntable animation through time (GIF), and a JSON of what
was run (DESIGN.md §6).

Input (`--input`): a rendered sample `DIR_OR_TAR#KEY` (a dataset folder or one shard tar, local), or a
folder of the user's own images with a `cameras.json` ({"frames": [{"file", "c2w", "K", "time", "view",
"anchor"}]}, OpenCV cameras in the normalised space, time in [0, 1]; RGBA, or RGB on a white background);
read, and the model's inputs chosen, in training/recon_inputs.py. The model places Gaussians within
model.dist_span of each camera's anchor distance (training/blocks.py): a sample's anchors are its
`cameras.offsets` (framing 'track'), a folder's each frame's optional `anchor` (DESIGN.md §6; the origin
where absent). Inputs are composited on, and renders drawn over, the background the checkpoint trained
on (data.background; `random`: grey 0.5). The .ply files hold the full 3DGS record, or with --compact
the short one (training/ply.py).

- lrm4d: inputs are n_in (view, time) pairs (from a sample: frames spread over the clip, fixed views
  spread around it; from a folder: every image). The 4D Gaussians are sliced at `--times` (default: the
  clip's rendered times), one .ply per time.
- l4gm: the video is one fixed view at every rendered time (a folder: view 0) and the t0 views are other
  fixed views of the first time (a folder: the other views); one .ply per video frame. Videos longer
  than `--window` run as autoregressive windows overlapping by one frame (training/l4gm_longvideo.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import time as _time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from training import checkpoint as ckpt
from training.config import TrainConfig
from training.families import build_model, checkpoint_family
from training.geometry import intrinsics, look_at
from training.l4gm_longvideo import interpolate_video, reconstruct_video
from training.ply import covariance_to_scale_rot, write_ply
from training.recon_inputs import (InputError, anchor_at, choose_l4gm_inputs, choose_lrm4d_inputs, load_input,
                                   to_views)
from training.render import render_frames, render_gaussians, resolve_backend

log = logging.getLogger(__name__)


# -- arguments -------------------------------------------------------------------------------------


def parse_times(text: str | None) -> list[float] | None:
    """'0.1,0.35,0.6' -> [0.1, 0.35, 0.6]; every value a finite real in [0, 1]."""
    if text is None:
        return None
    out = []
    for part in text.split(","):
        try:
            v = float(part.strip())
        except ValueError:
            raise InputError(f"--times {text!r}: {part.strip()!r} is not a number (want e.g. 0.1,0.35,0.6)") from None
        if not (math.isfinite(v) and 0.0 <= v <= 1.0):
            raise InputError(f"--times {text!r}: {v} is outside [0, 1] (clip time is normalised)")
        out.append(v)
    if not out:
        raise InputError(f"--times {text!r}: no times given")
    return out


# -- checkpoint ------------------------------------------------------------------------------------

PLY_FULL = ("3DGS full record: x y z nx ny nz(0) f_dc_0..2 f_rest_0..44(0) opacity(logit) scale_0..2(log) "
            "rot_0..3(wxyz), normalised space")
PLY_COMPACT = "3DGS compact: x y z f_dc_0..2 opacity(logit) scale_0..2(log) rot_0..3(wxyz), normalised space"


def background_of(name: str) -> torch.Tensor:
    """The colour [3] inputs are composited on and renders drawn over, for a checkpoint trained on `name`
    (data.background): white, black, or for `random` (a grey drawn per sample) the mean grey 0.5."""
    return {"white": torch.ones(3), "black": torch.zeros(3)}.get(name, torch.full((3,), 0.5))


def load_model(path: str | os.PathLike, device: torch.device) -> tuple[torch.nn.Module, TrainConfig, dict, Path]:
    try:
        state, p = ckpt.read_checkpoint(path)
    except (FileNotFoundError, ValueError) as exn:
        raise InputError(str(exn)) from None
    cfg = TrainConfig.from_dict(state["config"])
    if cfg.model.family != checkpoint_family(state):
        raise InputError(f"--checkpoint {p}: family {checkpoint_family(state)!r} disagrees with its config")
    model = build_model(cfg.model)
    model.load_state_dict(state["model"])
    return model.to(device).eval(), cfg, state, p


# -- outputs ---------------------------------------------------------------------------------------


def turntable_cameras(n: int, radius: float, size: int, elevation_deg: float = 15.0) -> tuple[torch.Tensor, torch.Tensor]:
    """n cameras once around the object (world +Z up): c2w [n, 4, 4], K [n, 3, 3]."""
    az = torch.arange(n, dtype=torch.float32) * (2 * math.pi / n)
    el = math.radians(elevation_deg)
    eye = torch.stack([radius * math.cos(el) * torch.cos(az), radius * math.cos(el) * torch.sin(az),
                       torch.full_like(az, radius * math.sin(el))], -1)
    return look_at(eye, torch.zeros_like(eye)), intrinsics(49.1, size, size).expand(n, 3, 3).clone()


def save_gif(path: Path, frames: torch.Tensor, fps: float = 12.0) -> Path:
    """frames [n, 3, H, W] in [0, 1] -> an endlessly looping GIF, atomically."""
    imgs = [Image.fromarray((f.permute(1, 2, 0).clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)) for f in frames]
    tmp = path.with_name(f".{path.name}.tmp")
    imgs[0].save(tmp, format="GIF", save_all=True, append_images=imgs[1:], duration=int(1000 / fps), loop=0)
    os.replace(tmp, path)
    return path


@dataclass
class Result:
    plys: list[Path]
    animation: Path
    record: Path
    summary: dict


@torch.no_grad()
def reconstruct(checkpoint: str, spec: str, out: str | os.PathLike, *, times: str | None = None,
                device: str | None = None, window: int | None = None, anim_frames: int = 24,
                anim_size: int | None = None, interp: bool = False, fast_gpu: bool = False,
                compact: bool = False) -> Result:
    """Run one reconstruction and write OUT/frame-NNN.ply, OUT/turntable.gif, OUT/reconstruct.json.
    compact (`--compact`): the 14-float .ply record instead of the full 3DGS one (training/ply.py).
    fast_gpu (`--fast`, CUDA only): the model in bf16 autocast with compiled transformer blocks, as it
    trains and as BENCHMARKS.md times inference; slicing, covariances and rendering stay float32 (no TF32)."""
    t_start = _time.perf_counter()
    req_times = parse_times(times)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if fast_gpu and dev.type != "cuda":
        raise InputError(f"--fast: bf16 with compiled blocks needs a CUDA device; this run is on {dev.type} "
                         "(leave --fast out there)")
    model, cfg, state, ckpt_path = load_model(checkpoint, dev)
    from training import fast

    # default: the attention priority only (no-op on a CPU): one forward pass does not repay compiling, and
    # the model runs in float32 (no TF32); --fast: compiled blocks (repaid over many windows) under bf16
    fast.setup_model(model, dev, compile_model=fast_gpu, tf32=False)

    def precision():  # only the model's forward passes: slicing, covariances and rendering stay float32
        return torch.autocast("cuda", dtype=torch.bfloat16) if fast_gpu else contextlib.nullcontext()

    family = cfg.model.family
    if family == "l4gm" and req_times is not None:
        raise InputError("--times applies to the lrm4d family (4D Gaussians sliced at any time); an l4gm "
                         "checkpoint outputs one frame per video frame")
    if window is not None and (family != "l4gm" or window < 2):
        raise InputError(f"--window {window}: an l4gm option, at least 2")
    if interp and (family != "l4gm" or window is not None):
        raise InputError("--interp: an l4gm option (windows of 4 frames, so no --window)")
    if interp and not cfg.data.interp:
        log.warning("--interp with a checkpoint not trained as an interpolation model (data.interp=false)")
    backend = resolve_backend(cfg.render, dev)
    clip = load_input(spec)
    S = cfg.data.image_size
    bg = background_of(cfg.data.background)  # inputs and renders on what the checkpoint trained on
    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    t_model = _time.perf_counter()
    if family == "lrm4d":
        chosen = choose_lrm4d_inputs(clip, cfg.data.n_in)
        v = to_views(chosen, S, bg)
        x = lambda t: t[None].to(dev)  # noqa: E731
        with precision():
            g4 = model(x(v.rgb), x(v.cond()), x(v.c2w), x(v.K), x(v.time), in_anchor=x(v.anchors()))
        g4 = g4.float()
        out_times = req_times if req_times is not None else clip.times
        from training.slicing import slice_at

        sl = slice_at(g4, torch.tensor([out_times], device=dev))  # [1, F, N, ...]
        scales, quats = covariance_to_scale_rot(sl.covars[0, 0].cpu())  # time-independent covariance
        frames = [dict(means=sl.means[0, k].cpu(), rgb=sl.colors[0, k].cpu(), opacity=sl.opacities[0, k].cpu(),
                       scales=scales, quats=quats) for k in range(len(out_times))]
        inputs_used = [{"frame": f.frame, "view": f.view, "time": f.time, "source": f.source} for f in chosen]
    else:
        video, t0 = choose_l4gm_inputs(clip, cfg.data.n_t0_views)
        W = window or cfg.data.window
        if interp:
            g3, windows = interpolate_video(model, to_views(video, S, bg), to_views(t0, S, bg), cfg.render, backend,
                                            bg, precision())
            vt = [f.time for f in video]
            out_times = [vt[k] + j / 3 * (vt[k + 1] - vt[k]) for k in range(len(vt) - 1) for j in range(3)] + vt[-1:]
        else:
            g3, windows = reconstruct_video(model, to_views(video, S, bg), to_views(t0, S, bg), W, cfg.render,
                                            backend, bg, precision())
            out_times = [f.time for f in video]
        frames = [dict(means=g3.means[0, k].cpu(), rgb=g3.rgb[0, k].cpu(), opacity=g3.opacity[0, k].cpu(),
                       scales=g3.scales[0, k].cpu(), quats=g3.quats[0, k].cpu()) for k in range(len(out_times))]
        inputs_used = {"video": [{"frame": f.frame, "view": f.view, "time": f.time, "source": f.source} for f in video],
                       "t0": [{"frame": f.frame, "view": f.view, "time": f.time, "source": f.source} for f in t0],
                       "windows": [list(w["span"]) for w in windows]}
    model_s = _time.perf_counter() - t_model
    plys = []
    for k, fr in enumerate(frames):
        plys.append(write_ply(outdir / f"frame-{k:03d}.ply", fr["means"], fr["rgb"], fr["opacity"], fr["scales"],
                              fr["quats"], compact=compact))
    # turntable through time: one camera step and one time step per animation frame, around the anchor
    # of that time (a tracked sample's cameras follow the object; the origin otherwise)
    size = anim_size or S
    radius = float(np.mean([np.linalg.norm(f.c2w[:3, 3] - np.asarray(f.anchor)) for f in clip.frames]))
    c2w, K = turntable_cameras(anim_frames, radius, size)
    images = []
    for j in range(anim_frames):
        if family == "lrm4d":
            lo, hi = min(out_times), max(out_times)
            t = lo + (hi - lo) * j / max(1, anim_frames - 1)
            c2w[j, :3, 3] += torch.from_numpy(anchor_at(clip, t))
            rgb, _ = render_gaussians(g4, c2w[j][None, None].to(dev), K[j][None, None].to(dev),
                                      torch.tensor([[t]], device=dev), size, size, bg[None].to(dev), cfg.render, backend)
            images.append(rgb[0, 0].cpu())
        else:
            k = min(len(frames) - 1, j * len(frames) // anim_frames)
            c2w[j, :3, 3] += torch.from_numpy(anchor_at(clip, out_times[k]))  # (interpolated frames too)
            rgb, _ = render_frames(g3.frames([k]), c2w[j][None, None, None].to(dev), K[j][None, None, None].to(dev),
                                   size, size, bg[None].to(dev), cfg.render, backend)
            images.append(rgb[0, 0, 0].cpu())
    anim = save_gif(outdir / "turntable.gif", torch.stack(images))
    summary = {
        "command": " ".join(sys.argv), "checkpoint": str(ckpt_path), "step": int(state.get("step", -1)),
        "family": family, "preset": cfg.preset, "input": spec, "input_kind": clip.kind, "clip": clip.name,
        "image_size": S, "device": str(dev), "backend": backend, "inputs": inputs_used,
        "outputs": [{"ply": p.name, "time": float(t), "gaussians": int(fr["means"].shape[0])}
                    for p, t, fr in zip(plys, out_times, frames)],
        "times_requested": req_times, "interpolated": interp, "fast": fast_gpu, "animation": anim.name,
        "animation_frames": anim_frames,
        "ply_layout": (PLY_COMPACT if compact else PLY_FULL), "background": cfg.data.background,
        "background_rgb": [float(c) for c in bg],
        "seconds": {"model": round(model_s, 4), "total": round(_time.perf_counter() - t_start, 4)},
    }
    rec = outdir / "reconstruct.json"
    tmp = rec.with_name(f".{rec.name}.tmp")
    tmp.write_text(json.dumps(summary, indent=2))
    os.replace(tmp, rec)
    log.info("wrote %d .ply frame(s), %s and %s to %s", len(plys), anim.name, rec.name, outdir)
    return Result(plys, anim, rec, summary)
