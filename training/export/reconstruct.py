"""`pipeline reconstruct`: a checkpoint of either model family + one input clip -> Gaussians per output
frame as 3D Gaussian Splatting .ply files, a turntable animation through time (GIF), and a JSON of what
was run (DESIGN.md §6).

Input (`--input`): a rendered sample `DIR_OR_TAR#KEY` (a dataset folder or one shard tar, local), or a
folder of the user's own images with a `cameras.json` (training/data/clip.py reads both). The family's
`reconstruct` hook (training/models/registry.py; lrm4d/recon.py, l4gm/recon.py) chooses its inputs from
the clip, runs the model and renders the turntable; this module does what is common: the checkpoint,
options, the background, .ply files, the animation and the record. The model places Gaussians within
model.dist_span of each camera's anchor distance (training/models/blocks.py): a sample's anchors are its
`cameras.offsets` (framing 'track'), a folder's each frame's optional `anchor` (DESIGN.md §6; the origin
where absent). Inputs are composited on, and renders drawn over, the background the checkpoint trained
on (data.background; `random`: grey 0.5). The .ply files hold the full 3DGS record, or with --compact
the short one (training/export/ply.py).
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
from training.checkpoint import checkpoint_family
from training.config import TrainConfig
from training.data.clip import InputError, load_input
from training.export.ply import write_ply
from training.geometry import intrinsics, look_at
from training.models.registry import get_family
from training.render.frames import resolve_backend

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
    model = get_family(cfg.model.family).build_model(cfg.model)
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


def resolve_fp8_attention(requested: bool | None, fast_gpu: bool, dev: torch.device) -> tuple[bool, str | None]:
    """Whether this reconstruction runs attention in FP8, and a note when --fast wanted it and cannot have it.
    requested True (`--fp8-attention`): on, or InputError naming what is missing; False (`--bf16-attention`): off;
    None: on with --fast where the kernel can run (measured on an H100: 24 views 153.5 -> 125.4 ms, an l4gm-base
    16-frame window 201.7 -> 177.0 ms, 4 views 14.1 -> 14.3 ms; trained `small` held-out psnr_obj -0.003 to
    0.000 dB; BENCHMARKS.md "FP8 attention for inference"), else off with the reason as the note."""
    if requested is False or (requested is None and not fast_gpu):
        return False, None
    from training.models.attention_fp8 import unavailable_reason

    reason = unavailable_reason(dev)
    if reason is None:
        return True, None
    if requested:
        raise InputError(f"--fp8-attention: {reason}")
    return False, f"--fast: attention stays bf16 (FP8 attention unavailable: {reason})"


@torch.no_grad()
def reconstruct(checkpoint: str, spec: str, out: str | os.PathLike, *, times: str | None = None,
                device: str | None = None, window: int | None = None, anim_frames: int = 24,
                anim_size: int | None = None, interp: bool = False, fast_gpu: bool = False,
                compact: bool = False, fp8_attention: bool | None = None) -> Result:
    """Run one reconstruction and write OUT/frame-NNN.ply, OUT/turntable.gif, OUT/reconstruct.json.
    compact (`--compact`): the 14-float .ply record instead of the full 3DGS one (training/export/ply.py).
    fast_gpu (`--fast`, CUDA only): the model in bf16 autocast with compiled transformer blocks, as it
    trains and as BENCHMARKS.md times inference; slicing, covariances and rendering stay float32 (no TF32).
    fp8_attention (`--fp8-attention` / `--bf16-attention`): the blocks' attention as the inference-only FP8 kernel
    (training/models/attention_fp8.py; CUDA on Hopper or newer, with the nvidia-cudnn-frontend package); None
    (neither flag): on with --fast where that kernel can run, see `resolve_fp8_attention`."""
    t_start = _time.perf_counter()
    req_times = parse_times(times)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if fast_gpu and dev.type != "cuda":
        raise InputError(f"--fast: bf16 with compiled blocks needs a CUDA device; this run is on {dev.type} "
                         "(leave --fast out there)")
    fp8_attention, fp8_note = resolve_fp8_attention(fp8_attention, fast_gpu, dev)
    if fp8_note:
        log.info("%s", fp8_note)
    model, cfg, state, ckpt_path = load_model(checkpoint, dev)
    from training.models import fast

    # default: the attention priority only (no-op on a CPU): one forward pass does not repay compiling, and
    # the model runs in float32 (no TF32); --fast: compiled blocks (repaid over many windows) under bf16
    fast.setup_model(model, dev, compile_model=fast_gpu, tf32=False, fp8_attn=fp8_attention)

    def precision():  # only the model's forward passes: slicing, covariances and rendering stay float32
        return torch.autocast("cuda", dtype=torch.bfloat16) if fast_gpu else contextlib.nullcontext()

    family = cfg.model.family
    fam = get_family(family)
    if interp and not cfg.data.interp:
        log.warning("--interp with a checkpoint not trained as an interpolation model (data.interp=false)")
    backend = resolve_backend(cfg.render, dev)
    clip = load_input(spec)
    S = cfg.data.image_size
    bg = background_of(cfg.data.background)  # inputs and renders on what the checkpoint trained on
    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    t_model = _time.perf_counter()
    frames, out_times, inputs_used, turntable = fam.reconstruct(
        model, cfg, clip, times=req_times, window=window, interp=interp, backend=backend, background=bg, device=dev,
        precision=precision())
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
    images = [turntable(c2w[j], K[j], j, anim_frames, size) for j in range(anim_frames)]
    anim = save_gif(outdir / "turntable.gif", torch.stack(images))
    summary = {
        "command": " ".join(sys.argv), "checkpoint": str(ckpt_path), "step": int(state.get("step", -1)),
        "family": family, "preset": cfg.preset, "input": spec, "input_kind": clip.kind, "clip": clip.name,
        "image_size": S, "device": str(dev), "backend": backend, "inputs": inputs_used,
        "outputs": [{"ply": p.name, "time": float(t), "gaussians": int(fr["means"].shape[0])}
                    for p, t, fr in zip(plys, out_times, frames)],
        "times_requested": req_times, "interpolated": interp, "fast": fast_gpu, "fp8_attention": fp8_attention,
        **({"fp8_attention_note": fp8_note} if fp8_note else {}),
        "animation": anim.name,
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
