"""Trainer and inference speed on one GPU, before/after variants in one call, with the time split.

    python benchmarks/bench_speed.py prep --data DIR                  # CPU: shards + replayed batches
    python benchmarks/bench_speed.py run --data DIR --out OUT.json [--parts hw,attn,train,infer,curve,profile]
        [--variants base:bs=8:compile=1 ...] [--split base:bs=8] [--tree OLD_CHECKOUT] [--curve-steps 40]

`prep` writes analytic shards (training/synthetic.py) at 128 and 256 px and reads batches from them
through the real loader once, saved as tensors (loaded with weights_only): every variant, and an old
checkout run with --tree, replays the very same batches. `run` measures, on the GPU:
- hw: the two ceilings (bf16 8192^3 matrix product on random data; device-to-device copy).
- attn: SDPA fwd+bwd per backend (flash, cudnn, efficient) at the training and inference shapes,
  and each backend's error against a float32 math reference.
- train: whole optimiser steps per variant (forward, render, losses with LPIPS, backward, clip, AdamW):
  median synced step, back-to-back throughput, MFU (model matrix FLOPs / step / 989 TFLOP/s, as
  before), peak memory. `--split` adds the time split of one variant: transformer fwd+bwd, slicing
  fwd+bwd, gsplat fwd+bwd, losses (LPIPS alone too) fwd+bwd, clip + optimiser.
- infer: `base` at batch 1 reconstructing from 4 and 24 views, then rendering 24 frames at 256 px.
- curve: the loss of `--curve-steps` steps from one seed on the replayed batches (compare two runs).
- profile: the top CUDA kernels of two steps of the first variant (torch.profiler table).

Variant syntax: PRESET[:key=value...], keys bs (batch), ckpt (0/1), compile (0/1), attn (auto, cudnn,
flash, default), lpbf16 (0/1), budget (torch.compile activation memory budget, 0 = off).
With --tree the old checkout's `training` package is imported instead; knobs it lacks are reported
as unavailable. LPIPS uses a VGG of the real shape with random weights (same cost as real ones).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

PEAK_BF16 = 989e12
ROOT = Path(__file__).resolve().parents[1]
# BENCH_SMOKE=1: run the code paths on a CPU with the tiny preset and the torch rasteriser (numbers
# meaningless), to catch mistakes before spending GPU time.
SMOKE = os.environ.get("BENCH_SMOKE") == "1"
BACKEND = "torch" if SMOKE else "gsplat"


def _setup_path(tree: str | None) -> None:
    sys.path.insert(0, str(Path(tree).resolve()) if tree else str(ROOT))


def _fast_module():
    """training.fast from the same checkout as `training` (an editable install could supply a newer one)."""
    import importlib

    import training

    mod = importlib.import_module("training.fast")
    if Path(mod.__file__).resolve().parent != Path(training.__file__).resolve().parent:
        raise ImportError("training.fast is not part of this checkout")
    return mod


# -- prep (CPU) ------------------------------------------------------------------------------------


def _sample(args):
    from training import synthetic

    i, size = args
    return synthetic.make_sample(f"bench{i}", 1000 + i, views=8, frames=4, size=size, depth=False)


def prep(data: Path, n_batches: int = 2, only: str | None = None) -> None:
    """only: "PRESET:BATCH" (e.g. base:8) to write just that preset's batches of that size."""
    import torch

    from training import data as data_mod
    from training import shardspec, synthetic
    from training.config import preset

    data.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max(1, min(16, os.cpu_count() or 1))) as ex:
        sizes = (32,) if SMOKE else (128, 256)
        if only:
            from training.config import preset as _preset

            sizes = (_preset(only.split(":")[0]).data.image_size,)
        for size in sizes:
            samples = list(ex.map(_sample, [(i, size) for i in range(8)]))
            synthetic.commit_shard(data / f"ds{size}", 0, samples)
    for name in ("tiny",) if SMOKE else ("small", "base"):
        if only and name != only.split(":")[0]:
            continue
        cfg = preset(name)
        S = cfg.data.image_size
        urls = shardspec.resolve_shards(str(data / f"ds{S}"))
        sizes_bs = {4, 8, 16, cfg.batch_size} if name != "small" else {8, 16, 32, 64, cfg.batch_size}
        for bs in [int(only.split(":")[1])] if only else sorted(sizes_bs):
            it = iter(data_mod.make_dataset(urls, cfg.data, batch_size=bs, seed=0))
            out = []
            for _ in range(n_batches):
                b = next(it)
                out.append({k: v for k, v in b.items() if isinstance(v, torch.Tensor)})
            torch.save(out, data / f"batches-{name}-{bs}.pt")
    print(f"prep: batches in {data}", flush=True)


def _lrm4d_sample(args):
    """One sample in the lrm4d render preset's shape (24 times x 12 views, 256 px, PNG + 16-bit depth):
    analytic scenes (training/synthetic.py) ray-cast at 2 times, shown at the 24 times with a +-2/255
    dither inside the object so the PNGs are as large as Blender renders'."""
    import io

    import numpy as np
    from PIL import Image

    from contracts import layout
    from training import synthetic

    i, seed = args
    small = synthetic.make_sample(f"lrm4d{i}", seed, views=12, frames=2, size=256, depth=True)
    key = f"lrm4d{i}_000"
    meta = json.loads(small[layout.json_member(key)])
    T = 24
    meta.update(num_frames=T, times=[t / (T - 1) for t in range(T)], times_s=[2.0 * t / (T - 1) for t in range(T)],
                c2w=[meta["c2w"][0]] * T, duration_s=2.0)
    out = {layout.json_member(key): json.dumps(meta).encode()}
    rng = np.random.default_rng(seed)
    for t in range(T):
        for v in range(12):
            with Image.open(io.BytesIO(small[layout.image_member(key, t % 2, v, "png")])) as im:
                a = np.asarray(im.convert("RGBA")).astype(np.int16)
            inside = a[..., 3:4] > 0
            a[..., :3] += rng.integers(-2, 3, a[..., :3].shape, dtype=np.int16) * inside
            buf = io.BytesIO()
            Image.fromarray(a.clip(0, 255).astype(np.uint8), "RGBA").save(buf, format="PNG")
            out[layout.image_member(key, t, v, "png")] = buf.getvalue()
            out[layout.depth_member(key, t, v)] = small[layout.depth_member(key, t % 2, v)]
    return out


def prep_lrm4d(data: Path, n_samples: int = 32, per_shard: int = 8) -> None:
    n_samples = int(os.environ.get("LRM4D_SAMPLES", n_samples))
    from training import synthetic

    with ProcessPoolExecutor(max(1, min(16, os.cpu_count() or 1))) as ex:
        samples = list(ex.map(_lrm4d_sample, [(i, 5000 + i) for i in range(n_samples)]))
    from contracts import layout

    for k in range(0, n_samples, per_shard):
        tar = synthetic.commit_shard(data, k // per_shard, samples[k:k + per_shard])
        # the member index `pipeline render` writes with every shard: the loader then reads only picked members
        layout.write_member_index(layout.tar_member_offsets(tar), data / layout.members_name(k // per_shard))
    n_bytes = sum(len(b) for smp in samples for b in smp.values())
    png = [len(b) for smp in samples for k2, b in smp.items() if k2.endswith(".png") and ".depth." not in k2]
    print(json.dumps({"lrm4d_samples": n_samples, "MB_per_sample": round(n_bytes / n_samples / 1e6, 2),
                      "rgba_png_KB_mean": round(sum(png) / len(png) / 1e3, 1)}), flush=True)


def bench_loader(shards: str, workers: list[int], batches: int, preset_name: str, pin: bool) -> list[dict]:
    """The trainer's own DataLoader (make_loader) alone: samples/s after the first batch, per worker count."""
    import torch

    from training import data as data_mod
    from training import shardspec
    from training.config import preset

    torch.set_num_threads(1)
    urls = shardspec.resolve_shards(shards)
    rows = []
    for w in workers:
        cfg = preset(preset_name)
        cfg.data.num_workers = w
        cfg.data.batches_per_epoch = batches
        loader = data_mod.make_loader(urls, cfg.data, batch_size=cfg.batch_size, seed=0, pin_memory=pin)
        it = iter(loader)
        next(it)  # workers started, shuffle buffers filled
        t, n = time.perf_counter(), 0
        for b in it:
            n += len(b["key"])
        dt = time.perf_counter() - t
        row = {"workers": w, "batch_size": cfg.batch_size, "samples_per_s": round(n / dt, 1),
               "samples_per_s_per_worker": round(n / dt / max(1, w), 2), "pin_memory": pin, "samples": n}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


# -- helpers ---------------------------------------------------------------------------------------


def _events_ms(fn, reps: int, warm: int = 1) -> list[float]:
    import torch

    for _ in range(warm):
        fn()
    out = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        out.append(a.elapsed_time(b))
    return out


def _med(xs):
    return round(statistics.median(xs), 3)


def parse_variant(spec: str) -> dict:
    name, *kv = spec.split(":")
    v = {"preset": name, "spec": spec}
    for item in kv:
        k, val = item.split("=", 1)
        v[k] = val
    return v


def load_batches(data: Path, name: str, bs: int, device) -> list[dict]:
    import torch

    path = data / f"batches-{name}-{bs}.pt"
    return [{k: t.to(device) for k, t in b.items()} for b in torch.load(path, weights_only=True)]


# -- hardware ceilings, attention ------------------------------------------------------------------


def bench_hw() -> dict:
    import torch

    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    ms = _med(_events_ms(lambda: a @ b, 10, warm=3))
    x = torch.randn(2**30 // 4, device="cuda")  # 1 GiB
    y = torch.empty_like(x)
    cp = _med(_events_ms(lambda: y.copy_(x), 10, warm=3))
    return {"matmul_8192_bf16_tflops": round(2 * 8192**3 / ms / 1e9, 1),
            "copy_GBps_read_plus_write": round(2 * x.numel() * 4 / cp / 1e6, 1)}


def bench_attention() -> list[dict]:
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    rows = []
    backends = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
                "efficient": SDPBackend.EFFICIENT_ATTENTION}
    # accuracy against a float32 math reference, fresh random inputs
    g = torch.Generator(device="cuda").manual_seed(1)
    q, k, v = (torch.randn(2, 16, 1024, 64, device="cuda", generator=g) for _ in range(3))
    do = torch.randn(2, 16, 1024, 64, device="cuda", generator=g)
    ref_in = [t.clone().requires_grad_(True) for t in (q, k, v)]
    with sdpa_kernel(SDPBackend.MATH):
        ref = F.scaled_dot_product_attention(*ref_in)
    ref.backward(do)
    for name, be in backends.items():
        row = {"backend": name}
        try:
            ins = [t.bfloat16().requires_grad_(True) for t in (q, k, v)]
            with sdpa_kernel(be):
                out = F.scaled_dot_product_attention(*ins)
            out.backward(do.bfloat16())
            rel = lambda a, b: float((a.float() - b).norm() / b.norm())  # noqa: E731
            row["rel_err_out"] = round(rel(out, ref), 5)
            row["rel_err_grads"] = [round(rel(i.grad, r.grad), 5) for i, r in zip(ins, ref_in)]
            for label, (B, L, bwd) in {"train_b8_L4096": (8, 4096, True), "infer_L4096": (1, 4096, False),
                                       "infer_L24576": (1, 24576, False)}.items():
                qq, kk, vv = (torch.randn(B, 16, L, 64, device="cuda", dtype=torch.bfloat16,
                                          requires_grad=bwd) for _ in range(3))
                fl = 4 * B * 16 * L * L * 64
                with sdpa_kernel(be):
                    if bwd:
                        dd = torch.randn_like(qq)
                        fwd = _med(_events_ms(lambda: F.scaled_dot_product_attention(qq, kk, vv), 5))
                        both = _med(_events_ms(lambda: F.scaled_dot_product_attention(qq, kk, vv).backward(dd), 5))
                        row[label] = {"fwd_ms": fwd, "fwd_tflops": round(fl / fwd / 1e9, 1), "bwd_ms": round(both - fwd, 3),
                                      "bwd_tflops_2.5x": round(2.5 * fl / (both - fwd) / 1e9, 1)}
                    else:
                        with torch.no_grad():
                            fwd = _med(_events_ms(lambda: F.scaled_dot_product_attention(qq, kk, vv), 5))
                        row[label] = {"fwd_ms": fwd, "fwd_tflops": round(fl / fwd / 1e9, 1)}
        except Exception as e:  # noqa: BLE001 (a backend that cannot serve the shape is a result)
            row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


# -- training --------------------------------------------------------------------------------------


class Setup:
    """One variant's model, optimiser, LPIPS and step function."""

    def __init__(self, v: dict, data: Path, device):
        import torch

        from training.config import preset
        from training.lpips import LPIPS
        from training.model import Reconstructor
        from training.train import autocast_for, build_optimizer

        self.v = v
        cfg = preset(v["preset"])
        cfg.render.backend = BACKEND
        if "bs" in v:
            cfg.batch_size = int(v["bs"])
        if "ckpt" in v:
            cfg.model.grad_checkpoint = v["ckpt"] == "1"
        self.avail = {}
        want_compile = v.get("compile", "1") == "1"
        if hasattr(cfg, "compile"):
            cfg.compile = want_compile
        self.cfg = cfg
        self.batches = load_batches(data, v["preset"], cfg.batch_size, device)
        if float(v.get("budget", 0)) > 0:
            import torch._functorch.config as fc

            fc.activation_memory_budget = float(v["budget"])
        torch.manual_seed(0)
        self.model = Reconstructor(cfg.model).to(device)
        try:
            self.speed = _fast_module().setup_model(self.model, device, want_compile, v.get("attn", "auto"))
        except ImportError:
            self.speed = "no training.fast in this tree (eager, PyTorch's attention order)"
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.opt = build_optimizer(self.model, cfg.optim, device)
        try:
            self.lp = LPIPS(bf16=v.get("lpbf16", "1") == "1")
        except TypeError:
            self.lp = LPIPS()
            self.avail["lpbf16"] = False
        self.lp = self.lp.to(device)
        if getattr(self.lp, "bf16", False):
            self.lp = self.lp.to(memory_format=torch.channels_last)
        for lin in self.lp.lin:
            lin.weight.data.abs_()
        self.autocast = autocast_for(cfg, device)
        self.i = 0

    def step(self, b=None):
        import torch

        from training.losses import reconstruction_losses
        from training.train import forward_render

        if b is None:
            b = self.batches[self.i % len(self.batches)]
            self.i += 1
        _, rgb, alpha = forward_render(self.model, b, self.cfg, BACKEND, self.autocast)
        losses = reconstruction_losses(rgb, alpha, b["tg_rgb"], b["tg_alpha"], self.cfg.loss, self.lp)
        self.opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        return losses


def bench_train(v: dict, data: Path, steps: int, device) -> dict:
    import torch

    from training.model import count_parameters, train_flops_per_sample

    t0 = time.perf_counter()
    s = Setup(v, data, device)
    cfg = s.cfg
    for _ in range(3):
        s.step()
    torch.cuda.synchronize()
    warm_s = time.perf_counter() - t0
    torch.cuda.reset_peak_memory_stats()
    med = _med(_events_ms(s.step, steps, warm=0))
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        s.step()
    torch.cuda.synchronize()
    thr_ms = (time.perf_counter() - t) / steps * 1e3
    S = cfg.data.image_size
    flops = train_flops_per_sample(cfg.model, cfg.data.n_in, S) * cfg.batch_size
    best = min(med, thr_ms)
    row = {"variant": v["spec"], "speed": s.speed, "params_M": round(count_parameters(s.model) / 1e6, 1),
           "batch_size": cfg.batch_size, "grad_checkpoint": cfg.model.grad_checkpoint, "image_size": S,
           "step_ms_median_synced": med, "step_ms_back_to_back": round(thr_ms, 2),
           "samples_per_s": round(cfg.batch_size / best * 1e3, 2),
           "model_tflops_per_step": round(flops / 1e12, 2), "achieved_tflops": round(flops / best / 1e9, 1),
           "mfu": round(flops / (best / 1e3) / PEAK_BF16, 4),
           "peak_mem_GiB": round(torch.cuda.max_memory_allocated() / 2**30, 1), "warmup_s": round(warm_s, 1),
           "unavailable": s.avail}
    return row


def bench_split(v: dict, data: Path, device, reps: int = 6) -> dict:
    """Each part fwd+bwd on its own, with the step's real inputs; their sum against the whole step."""
    import torch

    from training import raster_gsplat
    from training.geometry import world_to_camera
    from training.losses import reconstruction_losses
    from training.render import render_gaussians
    from training.slicing import Gaussians4D, slice_at

    s = Setup(v, data, device)
    cfg, b = s.cfg, s.batches[0]
    S = cfg.data.image_size
    for _ in range(3):
        s.step()
    out = {"variant": v["spec"], "whole_step_ms": _med(_events_ms(s.step, reps))}

    def transformer():
        with s.autocast:
            g = s.model(b["in_rgb"], b["in_cond"], b["in_c2w"], b["in_K"], b["in_time"])
        sum((t.float() * 1e-3).sum() for t in g.__dict__.values()).backward()

    out["transformer_fwd_bwd_ms"] = _med(_events_ms(transformer, reps))

    with s.autocast:  # with grad: the compiled training graph (no_grad would compile another)
        g = s.model(b["in_rgb"], b["in_cond"], b["in_c2w"], b["in_K"], b["in_time"]).float().detach()
    leaves = {k: t.detach().requires_grad_(True) for k, t in g.__dict__.items()}

    def slicing():
        sl = slice_at(Gaussians4D(**leaves), b["tg_time"])
        (sl.means.sum() + sl.covars.sum() + sl.opacities.sum() + sl.colors.sum()).backward()

    out["slicing_fwd_bwd_ms"] = _med(_events_ms(slicing, reps))

    def render():
        rgb, alpha = render_gaussians(Gaussians4D(**leaves), b["tg_c2w"], b["tg_K"], b["tg_time"], S, S,
                                      b["background"], cfg.render, BACKEND)
        (rgb.square().mean() + alpha.mean()).backward()

    out["slice_plus_gsplat_fwd_bwd_ms"] = _med(_events_ms(render, reps))
    sl = slice_at(Gaussians4D(**leaves), b["tg_time"])
    sl_leaves = [t.detach().contiguous().requires_grad_(True) for t in (sl.means, sl.covars, sl.opacities, sl.colors)]
    view = world_to_camera(b["tg_c2w"])[:, :, None]
    Ks = b["tg_K"][:, :, None]
    bg = b["background"][:, None, None, :].expand(b["tg_time"].shape + (1, 3))

    def gsplat():
        rgb, alpha = raster_gsplat.rasterize(*sl_leaves, view, Ks, S, S, backgrounds=bg)
        (rgb.square().mean() + alpha.mean()).backward()

    out["gsplat_fwd_bwd_ms"] = _med(_events_ms(gsplat, reps))
    with torch.no_grad():
        rgb, alpha = render_gaussians(Gaussians4D(**leaves), b["tg_c2w"], b["tg_K"], b["tg_time"], S, S,
                                      b["background"], cfg.render, BACKEND)
    rgb_l, alpha_l = rgb.detach().requires_grad_(True), alpha.detach().requires_grad_(True)

    def losses():
        reconstruction_losses(rgb_l, alpha_l, b["tg_rgb"], b["tg_alpha"], cfg.loss, s.lp)["loss"].backward()

    out["losses_fwd_bwd_ms"] = _med(_events_ms(losses, reps))
    pr, tr = rgb_l.flatten(0, 1), b["tg_rgb"].flatten(0, 1)

    def lpips():
        s.lp(pr, tr).mean().backward()

    out["lpips_fwd_bwd_ms"] = _med(_events_ms(lpips, reps))
    s.step()  # grads in place

    def optim():
        torch.nn.utils.clip_grad_norm_(s.model.parameters(), 1.0)
        s.opt.step()

    out["clip_plus_adamw_ms"] = _med(_events_ms(optim, reps))
    parts = ("transformer_fwd_bwd_ms", "slice_plus_gsplat_fwd_bwd_ms", "losses_fwd_bwd_ms", "clip_plus_adamw_ms")
    out["sum_of_parts_ms"] = round(sum(out[p] for p in parts), 3)
    from training.model import train_flops_per_sample

    fl = train_flops_per_sample(cfg.model, cfg.data.n_in, S) * cfg.batch_size
    out["transformer_tflops"] = round(fl / out["transformer_fwd_bwd_ms"] / 1e9, 1)
    out["transformer_only_mfu"] = round(fl / (out["transformer_fwd_bwd_ms"] / 1e3) / PEAK_BF16, 4)
    # LPIPS FLOPs: VGG-16 convolutions to relu5_3 on the prediction (fwd + input-grad bwd) and target (fwd)
    out["lpips_tflops_per_step"] = round(_vgg_flops(S) * pr.shape[0] * 3 / 1e12, 2)
    return out


def _vgg_flops(S: int) -> float:
    from training.lpips import _VGG_CFG

    fl, c, hw = 0.0, 3, S * S
    for x in _VGG_CFG:
        if x == "M":
            hw //= 4
        else:
            fl += 2 * 9 * c * x * hw
            c = x
    return fl


# -- inference -------------------------------------------------------------------------------------


def bench_infer(n_views: int, fast_on: bool, frames: int = 24, reps: int = 5) -> dict:
    import torch

    from training.config import base
    from training.geometry import intrinsics, orbit_cameras, plucker_image
    from training.model import Reconstructor, train_flops_per_sample
    from training.render import render_gaussians

    cfg = base()
    dev = torch.device("cuda")
    S = cfg.data.image_size
    torch.manual_seed(0)
    model = Reconstructor(cfg.model).to(dev).eval()
    speed = "eager"
    if fast_on:
        speed = _fast_module().setup_model(model, dev, True)
    c2w = orbit_cameras(n_views, 2.1, elevation_deg=15.0)[None].to(dev)  # [1, V, 4, 4]
    K = intrinsics(49.1, S, S).expand(1, n_views, 3, 3).contiguous().to(dev)
    t_in = torch.linspace(0, 1, n_views, device=dev)[None]
    rgb = torch.rand(1, n_views, 3, S, S, device=dev)
    cond = torch.cat([plucker_image(c2w, K, S, S), t_in[..., None, None, None].expand(1, n_views, 1, S, S)], 2)
    tg_c2w = orbit_cameras(frames, 2.1, elevation_deg=25.0, phase=0.3)[None].to(dev)  # a camera path
    tg_K = intrinsics(49.1, S, S).expand(1, frames, 3, 3).contiguous().to(dev)
    tg_t = torch.linspace(0, 1, frames, device=dev)[None]
    bg = torch.ones(1, 3, device=dev)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16)
    state = {}

    def recon():
        with torch.no_grad(), autocast:
            state["g"] = model(rgb, cond, c2w, K, t_in)

    def render():
        with torch.no_grad():
            state["img"] = render_gaussians(state["g"], tg_c2w, tg_K, tg_t, S, S, bg, cfg.render, "gsplat")

    for _ in range(3):
        recon(), render()
    t_r = _med(_events_ms(recon, reps))
    t_d = _med(_events_ms(render, reps))
    t_all = _med(_events_ms(lambda: (recon(), render()), reps))
    fwd_flops = train_flops_per_sample(cfg.model, n_views, S) / 3
    return {"input_views": n_views, "speed": speed, "frames": frames, "gaussians": n_views * S * S,
            "reconstruct_ms": t_r, "render_24_ms": t_d, "total_ms": t_all,
            "transformer_tflops": round(fwd_flops / t_r / 1e9, 1)}


# -- loss curve, profile ---------------------------------------------------------------------------


def bench_curve(v: dict, data: Path, steps: int, device) -> dict:
    """Loss per step from seed 0 on the replayed batches, warm-up 10 steps to lr 4e-4."""
    import torch

    v = dict(v)
    s = Setup(v, data, device)
    s.cfg.optim.warmup_steps = 10
    from training.train import lr_factor

    for grp in s.opt.param_groups:
        grp["initial_lr"] = grp["lr"]
    losses, psnrs = [], []
    warm = min(5, steps - 1)
    for i in range(steps):
        if i == warm:  # compiled by now: time the remaining steps back to back (no per-step sync)
            torch.cuda.synchronize()
            t = time.perf_counter()
        for grp in s.opt.param_groups:
            grp["lr"] = grp["initial_lr"] * lr_factor(i, s.cfg.optim, 10_000)
        out = s.step()
        losses.append(out["loss"].detach())
        psnrs.append(out["psnr"].detach())
    torch.cuda.synchronize()
    step_s = (time.perf_counter() - t) / (steps - warm)
    from training.model import train_flops_per_sample

    cfg = s.cfg
    flops = train_flops_per_sample(cfg.model, cfg.data.n_in, cfg.data.image_size) * cfg.batch_size
    return {"variant": v["spec"], "speed": s.speed, "batch_size": cfg.batch_size,
            "grad_checkpoint": cfg.model.grad_checkpoint, "step_ms": round(step_s * 1e3, 2),
            "samples_per_s": round(cfg.batch_size / step_s, 2), "mfu": round(flops / step_s / PEAK_BF16, 4),
            "peak_mem_GiB": round(torch.cuda.max_memory_allocated() / 2**30, 1),
            "loss": [round(float(x), 6) for x in losses], "psnr": [round(float(x), 4) for x in psnrs]}


def bench_profile(v: dict, data: Path, device, path: Path) -> None:
    import torch
    from torch.profiler import ProfilerActivity, profile

    s = Setup(v, data, device)
    for _ in range(3):
        s.step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
        for _ in range(2):
            s.step()
        torch.cuda.synchronize()
    path.write_text(f"{v['spec']}: 2 steps\n" + prof.key_averages().table(sort_by="cuda_time_total", row_limit=40,
                                                                         max_name_column_width=90))


# -- main ------------------------------------------------------------------------------------------


def _cpu_shims() -> None:
    """BENCH_SMOKE on a CPU: wall-clock stand-ins for the CUDA timing and memory calls."""
    import torch

    class Event:
        def __init__(self, enable_timing=True):
            self.t = 0.0

        def record(self):
            self.t = time.perf_counter()

        def synchronize(self):
            pass

        def elapsed_time(self, other):
            return (other.t - self.t) * 1e3

    torch.cuda.Event = Event
    for name in ("synchronize", "reset_peak_memory_stats", "empty_cache"):
        setattr(torch.cuda, name, lambda *a, **k: None)
    torch.cuda.max_memory_allocated = lambda *a, **k: 0
    torch.cuda.get_device_name = lambda *a, **k: "cpu (smoke)"


def run(a) -> None:
    import torch

    if SMOKE:
        _cpu_shims()
    else:
        assert torch.cuda.is_available(), "needs a CUDA GPU"
    dev = torch.device("cpu" if SMOKE else "cuda")
    data = Path(a.data)
    parts = set(a.parts.split(","))
    out_path = Path(a.out)
    res: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "tree": a.tree or str(ROOT),
                 "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "errors": []}

    def save():
        out_path.write_text(json.dumps(res, indent=1))

    def attempt(key, fn, *args):
        try:
            r = fn(*args)
            if r is not None:
                res.setdefault(key, []).append(r)
                print(json.dumps(r), flush=True)
        except Exception:  # noqa: BLE001 (record and go on: one lease, many measurements)
            res["errors"].append(traceback.format_exc())
            print(res["errors"][-1], flush=True)
        torch.cuda.empty_cache()
        save()

    if "hw" in parts:
        attempt("hw", bench_hw)
    if "attn" in parts:
        attempt("attention", lambda: {"rows": bench_attention()})
    if "train" in parts:
        for spec in a.variants:
            attempt("training", bench_train, parse_variant(spec), data, a.steps, dev)
    if "split" in parts:
        for spec in a.split:
            attempt("split", bench_split, parse_variant(spec), data, dev)
    if "infer" in parts:
        for fast_on in ([False, True] if a.infer_modes == "both" else [a.infer_modes == "fast"]):
            for n in (4, 24):
                attempt("inference", bench_infer, n, fast_on)
    if "curve" in parts:
        for spec in a.curve:
            attempt("curve", bench_curve, parse_variant(spec), data, a.curve_steps, dev)
    if "profile" in parts:
        for i, spec in enumerate(a.profile):
            attempt("profile", bench_profile, parse_variant(spec), data, dev, out_path.with_suffix(f".prof{i}.txt"))
    save()
    for r in res.get("training", []):
        print(f"{r['variant']:<48} bs {r['batch_size']:>2}  step {r['step_ms_median_synced']:8.1f} ms  "
              f"b2b {r['step_ms_back_to_back']:8.1f} ms  {r['samples_per_s']:7.1f} samples/s  "
              f"MFU {100 * r['mfu']:5.1f}%  peak {r['peak_mem_GiB']:6.1f} GiB", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("cmd", choices=["prep", "prep-lrm4d", "loader", "run"])
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", default="speed.json")
    ap.add_argument("--tree", default=None, help="import `training` from this checkout (an old version)")
    ap.add_argument("--parts", default="hw,attn,train,split,infer")
    ap.add_argument("--variants", nargs="*", default=["small", "base"])
    ap.add_argument("--split", nargs="*", default=["base"])
    ap.add_argument("--curve", nargs="*", default=["base:bs=4"])
    ap.add_argument("--profile", nargs="*", default=["base"])
    ap.add_argument("--infer-modes", default="fast", choices=["fast", "eager", "both"])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--curve-steps", type=int, default=40)
    ap.add_argument("--workers", default="1,2,4,8", help="loader: DataLoader worker counts")
    ap.add_argument("--batches", type=int, default=40, help="loader: batches per worker count")
    ap.add_argument("--preset", default="base", help="loader: the preset whose data settings are used")
    a = ap.parse_args()
    _setup_path(a.tree)
    if a.cmd == "prep":
        prep(Path(a.data), only=os.environ.get("PREP_ONLY") or None)
    elif a.cmd == "prep-lrm4d":
        prep_lrm4d(Path(a.data))
    elif a.cmd == "loader":
        rows = bench_loader(a.data, [int(w) for w in a.workers.split(",")], a.batches, a.preset, pin=True)
        Path(a.out).write_text(json.dumps({"cpus": os.cpu_count(), "loader": rows}, indent=1))
    else:
        run(a)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
