"""The L4GM family's training step on one GPU, per variant, with its time split (bench_l4gm_gpu.py's training
side; it runs the step as the trainer does).

Variant syntax: PRESET[:key=value...], keys bs (batch), ckpt (0/1: activation checkpointing), head (0/1: the
Gaussian activations compiled too; default the preset's compile_head), nh (attention heads), lp (0/1: the LPIPS
term with a random-weight VGG of the real shape, at the preset's loss.lpips_every unless lpevery is given; default
0, as the rows before 2026-12-07 were measured), lpevery (LPIPS on every k-th step, weighted k x there).
Random images with real camera geometry, already on the GPU (the loader is not measured).
"""

from __future__ import annotations

import statistics
import time

import torch

import common  # noqa: E402 (benchmarks/ on sys.path)
from common import PEAK_BF16, peak_gib, positive_lin, repo_on_path, sync_time  # noqa: E402

repo_on_path()

from training.config import preset  # noqa: E402
from training.geometry import intrinsics, orbit_cameras, plucker_image  # noqa: E402
from training.losses.lpips import LPIPS  # noqa: E402
from training.losses.terms import reconstruction_losses  # noqa: E402
from training.models import fast  # noqa: E402
from training.models.blocks import count_parameters  # noqa: E402
from training.models.l4gm.model import VideoReconstructor, forward_flops, forward_render  # noqa: E402
from training.render.frames import render_frames, resolve_backend  # noqa: E402
from training.render.gaussians3d import Gaussians3D  # noqa: E402
from training.train import build_optimizer  # noqa: E402

KEYS = ("bs", "ckpt", "head", "nh", "lp", "lpevery", "packed", "tile")


def parse_variant(spec: str) -> dict:
    """'l4gm-base:ckpt=0:bs=2' -> {'preset': 'l4gm-base', 'spec': ..., 'ckpt': '0', 'bs': '2'}; an unknown preset or
    key fails here, before any GPU time is spent."""
    preset(spec.split(":")[0])  # the preset exists
    return common.parse_variant(spec, KEYS)


def window_batch(B: int, W: int, n0: int, M: int, S: int, dev) -> dict:
    """A batch in the L4GM loader's layout: a W-frame video of one orbit view + n0 t0 views, M targets per time."""
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


def setup_fresh(model, dev, attention: str = "auto", compile_model: bool = True, tf32: bool = True,
                compile_head: bool = False, fp8_attn: bool = False) -> str:
    """What the trainer (and, with compile_model=False, tf32=False, `pipeline reconstruct`) does with a fresh
    model (training/models/fast.py), from a clean compile cache, so a variant's attention choice and settings are
    the ones its compiled graphs were traced with."""
    import torch._dynamo

    torch._dynamo.reset()
    return fast.setup_model(model, dev, compile_model, attention, tf32=tf32, compile_head=compile_head,
                            fp8_attn=fp8_attn)


def autocast_for(dev):
    import contextlib

    return torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else contextlib.nullcontext()


class Step:
    """One variant's model, optimiser, batch and LPIPS net, set up as the trainer sets them up."""

    def __init__(self, v: dict, dev, attention: str = "auto", compile_model: bool = True):
        cfg = preset(v["preset"])
        if "bs" in v:
            cfg.batch_size = int(v["bs"])
        if "ckpt" in v:
            cfg.model.grad_checkpoint = v["ckpt"] == "1"
        if "nh" in v:
            cfg.model.heads = int(v["nh"])
        cfg.model.__post_init__()  # the config's own checks (width divisible by heads, even head dim)
        if "lpevery" in v:
            cfg.loss.lpips_every = int(v["lpevery"])
        if "packed" in v:  # gsplat's packed mode (render.packed): only the Gaussians each camera sees
            cfg.render.packed = v["packed"] == "1"
        if "tile" in v:
            cfg.render.tile_size = int(v["tile"])
        self.cfg, self.dev = cfg, dev
        d, m = cfg.data, cfg.model
        torch.manual_seed(0)
        self.model = VideoReconstructor(m).to(dev).train()
        head = v.get("head", "1" if cfg.compile_head else "0") == "1"
        self.speed = setup_fresh(self.model, dev, attention, compile_model, compile_head=head)
        self.opt = build_optimizer(self.model, cfg.optim, dev)
        self.batch = window_batch(cfg.batch_size, d.window, d.n_t0_views, d.n_target, d.image_size, dev)
        self.autocast = autocast_for(dev)
        self.backend = resolve_backend(cfg.render, dev)
        self.lp = None
        if v.get("lp", "0") == "1":
            self.lp = positive_lin(LPIPS(bf16=cfg.loss.lpips_bf16, size=cfg.loss.lpips_size)).to(dev)
            if cfg.loss.lpips_bf16 and dev.type == "cuda":
                self.lp = self.lp.to(memory_format=torch.channels_last)
        self.lp_every = cfg.loss.lpips_every if self.lp is not None else 1
        self.n = 0

    def __call__(self):
        cfg, b = self.cfg, self.batch
        lp = self.lp if self.n % self.lp_every == 0 else None  # the trainer's loss.lpips_every
        self.n += 1
        _g, rgb, alpha = forward_render(self.model, b, cfg, self.backend, self.autocast)
        losses = reconstruction_losses(rgb, alpha, b["tg_rgb"], b["tg_alpha"], cfg.loss, lp,
                                       lpips_scale=self.lp_every)
        self.opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        return losses


def bench_training(v: dict, steps: int, dev, attention: str = "auto", compile_model: bool = True) -> dict:
    """Whole optimiser steps of variant v: median synced step and back-to-back mean (the one used for
    samples/s and MFU when LPIPS runs on every k-th step, since a median would pick one kind of step)."""
    t0 = time.perf_counter()
    s = Step(v, dev, attention, compile_model)
    cfg, d, m = s.cfg, s.cfg.data, s.cfg.model
    for _ in range(3):  # compiles here
        s()
    warm_s = time.perf_counter() - t0
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = sync_time(s, steps, dev)
    n = max(steps, 2 * s.lp_every)
    n -= n % s.lp_every
    t = sync_time(lambda: [s() for _ in range(n)], 1, dev)[0] / n
    st = statistics.median(times)
    best = t if s.lp_every > 1 else min(st, t)
    B = cfg.batch_size
    flops = 3.0 * forward_flops(m, d.window, 1 + d.n_t0_views, d.image_size) * B
    return {"variant": v["spec"], "preset": v["preset"], "params_M": round(count_parameters(s.model) / 1e6, 1),
            "heads": m.heads, "head_dim": m.width // m.heads, "setup": s.speed, "batch": B, "window": d.window,
            "views_per_time": 1 + d.n_t0_views, "targets_per_time": d.n_target, "image_size": d.image_size,
            "gauss_stride": m.gauss_stride, "grad_checkpoint": m.grad_checkpoint,
            "lpips": None if s.lp is None else f"every {s.lp_every}", "step_s": round(st, 4),
            "step_s_back_to_back": round(t, 4), "step_s_min": round(min(times), 4),
            "warmup_3_steps_s": round(warm_s, 1), "samples_per_s": round(B / best, 2),
            "train_tflop_per_step": round(flops / 1e12, 2), "mfu": round(flops / best / PEAK_BF16, 4),
            "peak_mem_gib": peak_gib(dev)}


def bench_split(v: dict, dev, reps: int = 6) -> dict:
    """Each part of a step forward + backward on its own with the step's real tensors, against the whole step:
    the model (blocks, head, activations), rendering every target (gsplat or the torch twin), the losses
    (LPIPS alone too when the variant has it), clipping + AdamW."""
    s = Step(v, dev)
    cfg, b = s.cfg, s.batch
    for _ in range(3):
        s()
    med = lambda f: round(1e3 * statistics.median(sync_time(f, reps, dev)), 2)  # noqa: E731
    every = s.lp_every
    out = {"variant": v["spec"], "whole_step_ms": round(1e3 * sync_time(lambda: [s() for _ in range(every * 4)], 1,
                                                                         dev)[0] / (every * 4), 2)}
    W = b["window_frames"].shape[-1]

    def model():
        with s.autocast:
            g = s.model(b["in_rgb"], b["in_cond"], b["in_c2w"], b["in_K"], window=W)
        sum((t.float() * 1e-3).sum() for t in g.__dict__.values()).backward()

    out["model_fwd_bwd_ms"] = med(model)
    with s.autocast:
        g = s.model(b["in_rgb"], b["in_cond"], b["in_c2w"], b["in_K"], window=W)
    leaves = {k: t.detach().float().requires_grad_(True) for k, t in g.__dict__.items()}
    B, n = b["tg_c2w"].shape[:2]
    M = n // W
    S = cfg.data.image_size
    cams = (b["tg_c2w"].reshape(B, W, M, 4, 4), b["tg_K"].reshape(B, W, M, 3, 3))

    def render():
        rgb, alpha = render_frames(Gaussians3D(**leaves), *cams, S, S, b["background"], cfg.render, s.backend)
        (rgb.square().mean() + alpha.mean()).backward()

    out["render_fwd_bwd_ms"] = med(render)
    with torch.no_grad():
        rgb, alpha = render_frames(Gaussians3D(**leaves), *cams, S, S, b["background"], cfg.render, s.backend)
    rgb_l = rgb.flatten(1, 2).detach().requires_grad_(True)
    alpha_l = alpha.flatten(1, 2).detach().requires_grad_(True)

    def losses(lp):
        def f():
            reconstruction_losses(rgb_l, alpha_l, b["tg_rgb"], b["tg_alpha"], cfg.loss, lp)["loss"].backward()
        return f

    out["losses_fwd_bwd_ms"] = med(losses(None))
    if s.lp is not None:
        out["losses_with_lpips_fwd_bwd_ms"] = med(losses(s.lp))
        out["lpips_every"] = every
    s()

    def optim():
        torch.nn.utils.clip_grad_norm_(s.model.parameters(), 1.0)
        s.opt.step()

    out["clip_adamw_ms"] = med(optim)
    return out
