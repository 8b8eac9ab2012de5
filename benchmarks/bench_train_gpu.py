"""Trainer and inference speed on one GPU: samples/s, MFU, gsplat's share of a step, 24-frame inference.

The 2026-11-21 numbers in BENCHMARKS.md came from this script; benchmarks/bench_speed.py measures more
(variants, the time split, an old checkout for "before"). Both use the trainer's GPU settings
(training/models/fast.py: compiled blocks and slicing, bf16 LPIPS) when the preset asks for them.

    python benchmarks/bench_train_gpu.py --out speed.json [--presets small,base] [--steps 12]

Batches come from analytic shards (training/data/synthetic.py) written at each preset's resolution and
read through the real loader once, then replayed from GPU memory: this measures the GPU side alone
(the loader has its own benchmark, bench_train_loader.py). Weights are freshly initialised; the
LPIPS term uses a randomly initialised VGG of the real shape (same cost as real weights).
MFU counts model matrix FLOPs only (training/models/lrm4d/model.py: train_flops_per_sample), against the H100
SXM's dense bf16 peak of 989 TFLOP/s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
import traceback
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from common import PEAK_BF16, positive_lin, repo_on_path, sync_time  # noqa: E402 (benchmarks/ is sys.path[0])

repo_on_path()

from training.data import stream as data  # noqa: E402
from training.models import fast
from training.data import synthetic

from training.data import shardspec  # noqa: E402
from training.config import base, preset  # noqa: E402
from training.losses.terms import reconstruction_losses  # noqa: E402
from training.losses.lpips import LPIPS  # noqa: E402
from training.models.lrm4d.model import Reconstructor, count_parameters, train_flops_per_sample  # noqa: E402
from training.render.frames import render_gaussians  # noqa: E402
from training.render.slicing import slice_at  # noqa: E402
from training.models.registry import forward_render  # noqa: E402
from training.train import build_optimizer  # noqa: E402
from speed_data import inference_case  # noqa: E402 (benchmarks/ is sys.path[0] when run as a script)

def _sample(args):
    i, size = args
    return synthetic.make_sample(f"bench{i}", 1000 + i, views=8, frames=4, size=size, depth=False)


def gpu_batches(cfg, n_batches: int, tmp: Path, device) -> list[dict]:
    S = cfg.data.image_size
    n_samples = max(2, min(8, n_batches * cfg.batch_size // 2))
    with ProcessPoolExecutor(max(1, min(16, os.cpu_count() or 1))) as ex:
        samples = list(ex.map(_sample, [(i, S) for i in range(n_samples)]))
    ds = tmp / f"ds{S}"
    synthetic.commit_shard(ds, 0, samples)
    it = iter(data.make_dataset(shardspec.resolve_shards(str(ds)), cfg.data, batch_size=cfg.batch_size, seed=0))
    out = []
    for _ in range(n_batches):
        b = next(it)
        out.append({k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in b.items()})
    return out


def bench_training(name: str, steps: int, tmp: Path, device) -> dict:
    cfg = preset(name)
    cfg.render.backend = "gsplat"
    batches = gpu_batches(cfg, 4, tmp, device)  # before the model: the sample pool forks
    torch.manual_seed(0)
    model = Reconstructor(cfg.model).to(device)
    fast.setup_model(model, device, cfg.compile)
    opt = build_optimizer(model, cfg.optim, device)
    lp = LPIPS(bf16=cfg.loss.lpips_bf16).to(device)
    if lp.bf16:
        lp = lp.to(memory_format=torch.channels_last)
    positive_lin(lp)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16)

    def step(b):
        _, rgb, alpha = forward_render(model, b, cfg, "gsplat", autocast)
        losses = reconstruction_losses(rgb, alpha, b["tg_rgb"], b["tg_alpha"], cfg.loss, lp)
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for i in range(3):
        step(batches[i % len(batches)])
    torch.cuda.reset_peak_memory_stats()
    k = iter(range(10**9))
    t_step = statistics.median(sync_time(lambda: step(batches[next(k) % len(batches)]), steps))
    peak = torch.cuda.max_memory_allocated() / 2**30
    b = batches[0]
    with torch.no_grad(), autocast:
        g = model(b["in_rgb"], b["in_cond"], b["in_c2w"], b["in_K"], b["in_time"])
    g = g.float()
    leaves = {k2: v.detach().requires_grad_(True) for k2, v in g.__dict__.items()}
    S = cfg.data.image_size
    from training.render.slicing import Gaussians4D
    from training.render import raster_gsplat
    from training.geometry import world_to_camera

    def render_fb():
        rgb, alpha = render_gaussians(Gaussians4D(**leaves), b["tg_c2w"], b["tg_K"], b["tg_time"], S, S,
                                      b["background"], cfg.render, "gsplat")
        (rgb.square().mean() + alpha.mean()).backward()

    sl = slice_at(Gaussians4D(**leaves), b["tg_time"])
    s_leaves = [t.detach().contiguous().requires_grad_(True) for t in (sl.means, sl.covars, sl.opacities, sl.colors)]
    view = world_to_camera(b["tg_c2w"])[:, :, None]
    Ks = b["tg_K"][:, :, None]
    bg = b["background"][:, None, None, :].expand(b["tg_time"].shape + (1, 3))

    def gsplat_fb():
        rgb, alpha = raster_gsplat.rasterize(*s_leaves, view, Ks, S, S, backgrounds=bg)
        (rgb.square().mean() + alpha.mean()).backward()

    render_fb(), gsplat_fb()
    t_render = statistics.median(sync_time(render_fb, 5))
    t_gsplat = statistics.median(sync_time(gsplat_fb, 5))
    flops = train_flops_per_sample(cfg.model, cfg.data.n_in, S) * cfg.batch_size
    return {
        "preset": name, "params_M": round(count_parameters(model) / 1e6, 1), "batch_size": cfg.batch_size,
        "image_size": S, "n_in": cfg.data.n_in, "n_target": cfg.data.n_target,
        "gaussians_per_sample": cfg.data.n_in * S * S, "grad_checkpoint": cfg.model.grad_checkpoint,
        "step_s": round(t_step, 4), "samples_per_s": round(cfg.batch_size / t_step, 2),
        "model_tflops_per_step": round(flops / 1e12, 2), "mfu": round(flops / t_step / PEAK_BF16, 4),
        "slice_plus_gsplat_fwd_bwd_s": round(t_render, 4), "gsplat_fwd_bwd_s": round(t_gsplat, 4),
        "gsplat_share_of_step": round(t_gsplat / t_step, 3), "peak_mem_GiB": round(peak, 1), "lpips": True,
    }


def bench_inference(n_views: int, frames: int = 24, reps: int = 5) -> dict:
    cfg = base()
    dev = torch.device("cuda")
    S = cfg.data.image_size
    torch.manual_seed(0)
    model = Reconstructor(cfg.model).to(dev).eval()
    fast.setup_model(model, dev, cfg.compile)
    rgb, cond, c2w, K, t_in, tg_c2w, tg_K, tg_t, bg = inference_case(n_views, frames, S, dev)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16)
    state = {}

    def recon():
        with torch.no_grad(), autocast:
            state["g"] = model(rgb, cond, c2w, K, t_in)

    def render():
        with torch.no_grad():
            state["img"] = render_gaussians(state["g"], tg_c2w, tg_K, tg_t, S, S, bg, cfg.render, "gsplat")

    for _ in range(2):
        recon(), render()
    t_r = sync_time(recon, reps)
    t_d = sync_time(render, reps)
    t_all = sync_time(lambda: (recon(), render()), reps)
    return {"input_views": n_views, "frames": frames, "image_size": S, "gaussians": n_views * S * S,
            "reconstruct_s": round(statistics.median(t_r), 4), "render_24_s": round(statistics.median(t_d), 4),
            "total_s": round(statistics.median(t_all), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--presets", default="small,base")
    ap.add_argument("--steps", type=int, default=12)
    a = ap.parse_args()
    assert torch.cuda.is_available(), "needs a CUDA GPU"
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    res: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "training": [], "inference": [],
                 "errors": []}
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.presets.split(","):
            try:
                res["training"].append(bench_training(name, a.steps, Path(tmp), torch.device("cuda")))
                print(json.dumps(res["training"][-1]), flush=True)
            except Exception:  # noqa: BLE001 (record and go on: one lease, several measurements)
                res["errors"].append(traceback.format_exc())
                print(res["errors"][-1], flush=True)
            torch.cuda.empty_cache()
    for v in (4, 24):
        try:
            res["inference"].append(bench_inference(v))
            print(json.dumps(res["inference"][-1]), flush=True)
        except Exception:  # noqa: BLE001
            res["errors"].append(traceback.format_exc())
            print(res["errors"][-1], flush=True)
        torch.cuda.empty_cache()
    Path(a.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
