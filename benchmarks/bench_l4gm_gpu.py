"""The L4GM family on one GPU: training step time, samples/s and MFU per preset, and inference of a
16-frame window at 256 px (video + 3 t0 views in, 16 frames of Gaussians out, each rendered once).

    python benchmarks/bench_l4gm_gpu.py --out l4gm_speed.json [--presets l4gm-small,l4gm-base] [--steps 8]

Inputs are random images with real camera geometry, already on the GPU: this measures the GPU side
(model, rendering, losses, optimiser), not the loader. FLOPs count the model's matrix products and
attention scores (training/l4gm_model.py: forward_flops; training = 3x forward); MFU and the FLOP floor
are against the dense bf16 peak of 989 TFLOP/s (H100/H200 SXM datasheet).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.blocks import count_parameters  # noqa: E402
from training.config import preset  # noqa: E402
from training.geometry import intrinsics, orbit_cameras, plucker_image  # noqa: E402
from training.l4gm_model import VideoReconstructor, forward_flops, forward_render  # noqa: E402
from training.losses import reconstruction_losses  # noqa: E402
from training.render import render_frames  # noqa: E402
from training.train import build_optimizer  # noqa: E402

PEAK_BF16 = 989e12


def _sync_time(fn, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        out.append(time.perf_counter() - t)
    return out


def _window_batch(B: int, W: int, n0: int, M: int, S: int, dev) -> dict:
    n = W + n0
    c2w = orbit_cameras(B * n, 1.5 * 1.4, elevation_deg=10.0).reshape(B, n, 4, 4)
    K = intrinsics(49.1, S, S).expand(B, n, 3, 3).contiguous()
    t = torch.cat([torch.linspace(0, 1, W).expand(B, W), torch.zeros(B, n0)], 1)
    cond = torch.cat([plucker_image(c2w, K, S, S), t[..., None, None, None].expand(B, n, 1, S, S)], 2)
    tg_c2w = orbit_cameras(B * W * M, 2.1, elevation_deg=25.0, phase=0.3).reshape(B, W * M, 4, 4)
    tg_K = intrinsics(49.1, S, S).expand(B, W * M, 3, 3).contiguous()
    b = {"in_rgb": torch.rand(B, n, 3, S, S), "in_cond": cond, "in_c2w": c2w, "in_K": K,
         "window": torch.full((B,), W), "window_frames": torch.arange(W).expand(B, W),
         "tg_c2w": tg_c2w, "tg_K": tg_K, "background": torch.ones(B, 3),
         "tg_rgb": torch.rand(B, W * M, 3, S, S), "tg_alpha": (torch.rand(B, W * M, 1, S, S) > 0.5).float()}
    return {k: v.to(dev) for k, v in b.items()}


def bench_training(name: str, steps: int, dev) -> dict:
    cfg = preset(name)
    d, m = cfg.data, cfg.model
    torch.manual_seed(0)
    model = VideoReconstructor(m).to(dev).train()
    opt = build_optimizer(model, cfg.optim, dev)
    B = cfg.batch_size
    batch = _window_batch(B, d.window, d.n_t0_views, d.n_target, d.image_size, dev)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16)

    def step():
        _g, rgb, alpha = forward_render(model, batch, cfg, "gsplat", autocast)
        losses = reconstruction_losses(rgb, alpha, batch["tg_rgb"], batch["tg_alpha"], cfg.loss, None)
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for _ in range(3):
        step()
    torch.cuda.reset_peak_memory_stats()
    times = _sync_time(step, steps)
    st = statistics.median(times)
    flops = 3.0 * forward_flops(m, d.window, 1 + d.n_t0_views, d.image_size) * B
    return {"preset": name, "params_M": round(count_parameters(model) / 1e6, 1), "batch": B, "window": d.window,
            "views_per_time": 1 + d.n_t0_views, "targets_per_time": d.n_target, "image_size": d.image_size,
            "gauss_stride": m.gauss_stride, "grad_checkpoint": m.grad_checkpoint, "step_s": round(st, 4),
            "samples_per_s": round(B / st, 2), "train_tflop_per_step": round(flops / 1e12, 2),
            "mfu": round(flops / st / PEAK_BF16, 4), "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1)}


def bench_inference(name: str, dev, frames: int = 16, size: int = 256, reps: int = 5, temporal: bool | None = None,
                    heads: int | None = None, backend: str | None = None, render_too: bool = True) -> dict:
    """`backend`: an SDPA backend to force (flash, cudnn, efficient); None = PyTorch's choice."""
    import contextlib

    from torch.nn.attention import SDPBackend, sdpa_kernel

    cfg = preset(name)
    m = cfg.model
    if temporal is not None:
        m.temporal_attention = temporal
    if heads is not None:
        m.heads = heads
    m.grad_checkpoint = False
    n0 = 3
    torch.manual_seed(0)
    model = VideoReconstructor(m).to(dev).eval()
    b = _window_batch(1, frames, n0, 1, size, dev)
    cam = orbit_cameras(frames, 2.1, elevation_deg=20.0)[None, :, None].to(dev)  # one turntable view per frame
    Kr = intrinsics(49.1, size, size).expand(1, frames, 1, 3, 3).contiguous().to(dev)
    bg = torch.ones(1, 3, device=dev)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16)
    state = {}

    kernel = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
              "efficient": SDPBackend.EFFICIENT_ATTENTION}.get(backend or "")

    def recon():
        with torch.no_grad(), autocast, (sdpa_kernel(kernel) if kernel else contextlib.nullcontext()):
            state["g"] = model(b["in_rgb"], b["in_cond"], b["in_c2w"], b["in_K"], window=frames)

    def render():
        with torch.no_grad():
            state["img"] = render_frames(state["g"], cam, Kr, size, size, bg, cfg.render, "gsplat")

    for _ in range(2):
        recon()
        if render_too:
            render()
    t_r = statistics.median(_sync_time(recon, reps))
    t_d = statistics.median(_sync_time(render, reps)) if render_too else float("nan")
    t_all = statistics.median(_sync_time(lambda: (recon(), render()), reps)) if render_too else float("nan")
    flops = forward_flops(m, frames, 1 + n0, size)
    return {"preset": name, "temporal_attention": m.temporal_attention, "heads": m.heads, "sdpa": backend or "auto",
            "frames": frames, "image_size": size,
            "gaussians_per_frame": int(state["g"].means.shape[2]), "forward_tflop": round(flops / 1e12, 2),
            "flop_floor_s": round(flops / PEAK_BF16, 4), "reconstruct_s": round(t_r, 4),
            "render_16_s": round(t_d, 4), "total_s": round(t_all, 4),
            "achieved_tflop_per_s": round(flops / t_r / 1e12, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--presets", default="l4gm-small,l4gm-base")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--variants", action="store_true",
                    help="also the base preset's inference with 8 heads (head dim 128) and the cuDNN/flash SDPA backends")
    ap.add_argument("--only-variants", action="store_true", help="the variants alone, reconstruction only "
                    "(no gsplat: runs while gsplat compiles)")
    a = ap.parse_args()
    dev = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = True
    res: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "training": [], "inference": []}
    jobs = []
    if not a.only_variants:
        jobs += [("training", lambda n=n: bench_training(n, a.steps, dev)) for n in a.presets.split(",")]
        jobs += [("inference", lambda n=n: bench_inference(n, dev)) for n in a.presets.split(",")]
        jobs += [("inference", lambda: bench_inference("l4gm-base", dev, temporal=False))]
    if a.variants or a.only_variants:
        for heads, be in ((16, None), (16, "cudnn"), (8, "flash"), (8, "cudnn")):
            jobs.append(("inference", lambda h=heads, be=be: bench_inference("l4gm-base", dev, heads=h, backend=be,
                                                                            render_too=not a.only_variants)))
    for kind, fn in jobs:
        try:
            r = fn()
        except Exception as exn:  # noqa: BLE001 (record and go on to the next measurement)
            r = {"error": f"{type(exn).__name__}: {exn}"[:500], "trace": traceback.format_exc()[-1500:]}
        print(kind, json.dumps(r), flush=True)
        res[kind].append(r)
        Path(a.out).write_text(json.dumps(res, indent=2))
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
