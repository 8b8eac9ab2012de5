"""The L4GM family on one GPU: training step time, samples/s and MFU per preset, and inference of a
16-frame window at 256 px (video + 3 t0 views in, 16 frames of Gaussians out, each rendered once).

    python benchmarks/bench_l4gm_gpu.py --out l4gm_speed.json [--presets l4gm-small,l4gm-base] [--steps 8]
    python benchmarks/bench_l4gm_gpu.py --out headdim.json --only-variants --variants l4gm-base
    python benchmarks/bench_l4gm_gpu.py --out v.json --only-variants --train-variants "l4gm-base:ckpt=0" --split "l4gm-base:ckpt=0:lp=1"

Training steps run as the trainer runs them (training/fast.setup_model: cuDNN-first attention on Hopper,
regionally compiled multi-view and temporal blocks); inference by default as `pipeline reconstruct`
runs it (eager, cuDNN-first attention on Hopper, no TF32). `--variants P` adds P's head-dim question: head dim
width/heads vs twice that (l4gm-base: 16 x 64 vs 8 x 128), each for the training step (as the trainer:
compiled, cuDNN-first on Hopper) and 16-frame inference (eager flash, eager cuDNN, compiled cuDNN).

Inputs are random images with real camera geometry, already on the GPU: this measures the GPU side
(model, rendering, losses, optimiser), not the loader. FLOPs count the model's matrix products and
attention scores (training/models/l4gm/model.py: forward_flops; training = 3x forward); MFU and the FLOP floor
are against the dense bf16 peak of 989 TFLOP/s (H100/H200 SXM datasheet). `--device cpu` with the
l4gm-tiny preset is a smoke run of the script itself (small --frames / --size), nothing to report.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import traceback
from pathlib import Path

import torch

from common import PEAK_BF16, fp8_frames_report, repo_on_path, sync_time  # noqa: E402 (benchmarks/ is sys.path[0])

repo_on_path()

from training.models import fast  # noqa: E402
from training.config import preset  # noqa: E402
from training.geometry import intrinsics, orbit_cameras  # noqa: E402
from training.models.l4gm.model import VideoReconstructor, forward_flops  # noqa: E402
from training.render.frames import render_frames, resolve_backend  # noqa: E402
from l4gm_train import autocast_for, bench_split, parse_variant, setup_fresh, window_batch  # noqa: E402
from l4gm_train import bench_training as bench_variant  # noqa: E402


def _model_cfg(name: str, heads: int | None, temporal: bool | None = None):
    cfg = preset(name)
    if heads is not None:
        cfg.model.heads = heads
    if temporal is not None:
        cfg.model.temporal_attention = temporal
    cfg.model.__post_init__()  # the config's own checks (width divisible by heads, even head dim)
    return cfg


def bench_training(name: str, steps: int, dev, heads: int | None = None, attention: str = "auto",
                   compile_model: bool = True) -> dict:
    """One optimiser step (forward, render every target, losses, backward, AdamW) as the trainer runs it:
    `attention` and `compile_model` as training/fast.setup_model takes them (the trainer: auto, compiled).
    The preset's settings, no LPIPS (as every row before 2026-12-07); --train-variants for the rest."""
    v = parse_variant(name + ("" if heads is None else f":nh={heads}"))
    return bench_variant(v, steps, dev, attention, compile_model)


def bench_inference(name: str, dev, frames: int = 16, size: int = 256, reps: int = 5, temporal: bool | None = None,
                    heads: int | None = None, attention: str = "auto", compile_model: bool = False,
                    render_too: bool = True, graph: bool = False, fp8_attn: bool = False) -> dict:
    """Reconstruct a `frames`-frame window (video + 3 t0 views, batch 1) and render each frame once.
    `attention`: the SDPA priority (training/models/fast.py: auto = cuDNN first on Hopper, as `pipeline
    reconstruct` runs; cudnn; flash; default = PyTorch's order); `compile_model`: the blocks compiled
    as the trainer compiles them (`pipeline reconstruct` does with --fast, eager otherwise); `graph`: the reconstruction
    replayed from a CUDA graph (training/fast.GraphedCall), checked against the direct call; `fp8_attn`: the
    inference-only FP8 attention (training/models/attention_fp8.py), its frames compared with bf16 attention's."""
    cfg = _model_cfg(name, heads, temporal)
    m = cfg.model
    m.grad_checkpoint = False
    n0 = 3
    torch.manual_seed(0)
    model = VideoReconstructor(m).to(dev).eval()
    b = window_batch(1, frames, n0, 1, size, dev)
    cam = orbit_cameras(frames, 2.1, elevation_deg=20.0)[None, :, None].to(dev)  # one turntable view per frame
    Kr = intrinsics(49.1, size, size).expand(1, frames, 1, 3, 3).contiguous().to(dev)
    bg = torch.ones(1, 3, device=dev)
    autocast = autocast_for(dev)
    backend = resolve_backend(cfg.render, dev)
    state = {}
    args = (b["in_rgb"], b["in_cond"], b["in_c2w"], b["in_K"])
    ref_img = None
    if fp8_attn:  # the frames with bf16 attention first, eager, before FP8 is switched in
        with torch.no_grad():
            with autocast:
                g_ref = model(*args, window=frames)
            ref_img = render_frames(g_ref, cam, Kr, size, size, bg, cfg.render, backend)[0]
        del g_ref
    speed = setup_fresh(model, dev, attention, compile_model, tf32=compile_model, fp8_attn=fp8_attn)

    def forward(*a):
        with torch.no_grad(), autocast:
            return model(*a, window=frames)

    fn = forward
    extra = {}
    if graph and dev.type == "cuda":
        fn = fast.GraphedCall(forward, clone=False)
        ref, got = forward(*args), fn(*args)
        extra["graph_vs_direct_max_abs_diff"] = max(
            float((getattr(got, k).float() - getattr(ref, k).float()).abs().max()) for k in ref.__dict__)
        speed += ", CUDA graph"

    def recon():
        state["g"] = fn(*args)

    def render():
        with torch.no_grad():
            state["img"] = render_frames(state["g"], cam, Kr, size, size, bg, cfg.render, backend)

    t0 = time.perf_counter()
    for _ in range(2):
        recon()
        if render_too:
            render()
    warm_s = time.perf_counter() - t0
    t_r = statistics.median(sync_time(recon, reps, dev))
    t_d = statistics.median(sync_time(render, reps, dev)) if render_too else float("nan")
    t_all = statistics.median(sync_time(lambda: (recon(), render()), reps, dev)) if render_too else float("nan")
    if ref_img is not None and render_too:
        recon(), render()
        extra.update(fp8_frames_report(state["img"][0], ref_img))
    flops = forward_flops(m, frames, 1 + n0, size)
    return {"fp8_attention": fp8_attn, "preset": name, "temporal_attention": m.temporal_attention, "heads": m.heads,
            "head_dim": m.width // m.heads, "setup": speed, "frames": frames, "image_size": size,
            "gaussians_per_frame": int(state["g"].means.shape[2]), "forward_tflop": round(flops / 1e12, 2),
            "flop_floor_s": round(flops / PEAK_BF16, 4), "reconstruct_s": round(t_r, 4),
            "render_s": round(t_d, 4), "total_s": round(t_all, 4), "warmup_2_s": round(warm_s, 1),
            "achieved_tflop_per_s": round(flops / t_r / 1e12, 1), **extra}


def variant_jobs(name: str, steps: int, dev, frames: int, size: int, render_too: bool, train_too: bool,
                 train_attention: tuple[str, ...] = ("auto",)) -> list:
    """The head-dim question for `name` (l4gm-base: 16 heads of 64 vs 8 heads of 128; the linear layers
    keep their shapes, the QK-norm gains' length and the attention split change): the training step as
    the trainer runs it (compiled; attention `train_attention`, default auto: cuDNN first on Hopper), and
    inference eager under flash-first and cuDNN-first attention and compiled under cuDNN-first."""
    h = preset(name).model.heads
    jobs = []
    if train_too:
        for att in train_attention:
            for heads in (h, h // 2):
                jobs.append(("training", lambda heads=heads, att=att: bench_training(name, steps, dev, heads, att)))
    # the likely winners first (a budget may cut the list): cuDNN eager and compiled, then flash eager
    for heads, att, comp in ((h // 2, "cudnn", False), (h, "cudnn", False), (h // 2, "cudnn", True), (h, "cudnn", True),
                             (h // 2, "flash", False), (h, "flash", False)):
        jobs.append(("inference", lambda heads=heads, att=att, comp=comp: bench_inference(
            name, dev, frames, size, heads=heads, attention=att, compile_model=comp, render_too=render_too)))
    return jobs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--presets", default="l4gm-small,l4gm-base")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--frames", type=int, default=16, help="inference window")
    ap.add_argument("--size", type=int, default=256, help="inference image size")
    ap.add_argument("--device", default="cuda", help="cuda; cpu only for a smoke run of tiny presets")
    ap.add_argument("--variants", default="",
                    help="a preset whose head-dim variants to time too (training step and inference, head dim "
                         "width/heads vs 2x that, under the attention backends), e.g. l4gm-base")
    ap.add_argument("--only-variants", action="store_true", help="the variants alone (not the per-preset rows)")
    ap.add_argument("--train-attention", default="auto",
                    help="comma list of attention settings for the variants' training steps (auto,cudnn,flash)")
    ap.add_argument("--infer-modes", default="eager",
                    help="comma list for the presets' inference rows: eager (as pipeline reconstruct), compiled "
                         "(blocks compiled as in training; reconstruct --fast), graph (compiled + CUDA graph); "
                         "MODE+fp8 with the inference-only FP8 attention (reconstruct --fp8-attention)")
    ap.add_argument("--infer-only", action="store_true",
                    help="the presets' inference rows only (no training step, no temporal-attention-off row)")
    ap.add_argument("--train-variants", default="",
                    help="space-separated training-step variants PRESET[:k=v...] (benchmarks/l4gm_train.py: bs, ckpt, packed, tile, "
                         "head, nh, lp, lpevery), e.g. 'l4gm-base:ckpt=0 l4gm-small:bs=8:lp=1'")
    ap.add_argument("--split", default="", help="space-separated variants whose time split to take (model, render, "
                    "losses, optimiser; each fwd+bwd on its own)")
    ap.add_argument("--no-render", action="store_true", help="inference reconstructs only and no training step "
                    "(no gsplat: runs while gsplat compiles)")
    a = ap.parse_args()
    dev = torch.device(a.device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    res: dict = {"device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu", "torch": torch.__version__,
                 "training": [], "inference": [], "split": []}
    presets = [n for n in a.presets.split(",") if n]
    inf = dict(frames=a.frames, size=a.size, render_too=not a.no_render)
    jobs = []
    if not a.only_variants:
        if not a.no_render and not a.infer_only:
            jobs += [("training", lambda n=n: bench_training(n, a.steps, dev)) for n in presets]
        for spec in a.infer_modes.split(","):
            mode, _, opt = spec.partition("+")
            if mode not in ("eager", "compiled", "graph") or opt not in ("", "fp8"):
                raise SystemExit(f"--infer-modes: {spec!r} is not one of eager, compiled, graph (each optionally +fp8)")
            jobs += [("inference", lambda n=n, mode=mode, opt=opt: bench_inference(
                n, dev, compile_model=mode != "eager", graph=mode == "graph", fp8_attn=opt == "fp8", **inf))
                for n in presets]
        if not a.infer_only:
            jobs += [("inference", lambda: bench_inference(presets[-1], dev, temporal=False, **inf))]
    tv, sp = [parse_variant(x) for x in a.train_variants.split()], [parse_variant(x) for x in a.split.split()]
    jobs += [("training", lambda v=v: bench_variant(v, a.steps, dev)) for v in tv]
    jobs += [("split", lambda v=v: bench_split(v, dev)) for v in sp]
    if a.variants:
        jobs += variant_jobs(a.variants, a.steps, dev, a.frames, a.size, not a.no_render, not a.no_render,
                             tuple(x for x in a.train_attention.split(",") if x))
    for kind, fn in jobs:
        try:
            r = fn()
        except Exception as exn:  # noqa: BLE001 (record and go on to the next measurement)
            r = {"error": f"{type(exn).__name__}: {exn}"[:500], "trace": traceback.format_exc()[-1500:]}
        print(kind, json.dumps(r), flush=True)
        res[kind].append(r)
        Path(a.out).write_text(json.dumps(res, indent=2))
        if dev.type == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
