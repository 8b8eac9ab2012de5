"""bench_speed.py's measurements of the training step: one variant's model, optimiser, LPIPS and step
(`Setup`), whole steps per variant (train), the time split of one step (split), the loss curve of one
seed (curve) and the top CUDA kernels of two steps (profile).

Imported by benchmarks/bench_speed.py (which puts the checkout to measure first on sys.path); the
`training` imports stay inside the functions for that reason.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from common import PEAK_BF16, positive_lin
from speed_data import load_batches
from speed_kernels import _events_ms, _fast_module, _med
# BENCH_SMOKE=1: run the code paths on a CPU with the tiny preset and the torch rasteriser (numbers
# meaningless), to catch mistakes before spending GPU time (see bench_speed.py).
SMOKE = os.environ.get("BENCH_SMOKE") == "1"
BACKEND = "torch" if SMOKE else "gsplat"


# -- training --------------------------------------------------------------------------------------


class Setup:
    """One variant's model, optimiser, LPIPS and step function."""

    def __init__(self, v: dict, data: Path, device):
        import torch

        from training.config import preset
        from training.losses.lpips import LPIPS
        from training.models.lrm4d.model import Reconstructor
        from training.device import autocast_for
        from training.train import build_optimizer

        self.v = v
        cfg = preset(v["preset"])
        cfg.render.backend = BACKEND
        if "bs" in v:
            cfg.batch_size = int(v["bs"])
        if "ckpt" in v:
            cfg.model.grad_checkpoint = v["ckpt"] == "1"
        if "nh" in v:  # attention heads (head dim = width / nh): the linear layers keep their shapes
            cfg.model.heads = int(v["nh"])
            cfg.model.__post_init__()  # the config's own checks (width divisible, even head dim)
        if "packed" in v:  # gsplat's packed mode (render.packed): only the Gaussians each camera sees
            cfg.render.packed = v["packed"] == "1"
        if "tile" in v:
            cfg.render.tile_size = int(v["tile"])
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
            kw = {"compile_head": True} if v.get("head", "1" if cfg.compile_head else "0") == "1" else {}  # preset's
            if v.get("fp8", "0") != "0":  # 1 = rowwise (the setting's default recipe), or a recipe name
                kw["fp8"] = True
                kw["fp8_recipe"] = "rowwise" if v["fp8"] == "1" else v["fp8"]
            self.speed = _fast_module().setup_model(self.model, device, want_compile, v.get("attn", "auto"), **kw)
        except TypeError:
            self.speed = _fast_module().setup_model(self.model, device, want_compile, v.get("attn", "auto"))
            self.avail["head"] = False
            if v.get("fp8", "0") != "0":
                self.avail["fp8"] = False
        except ImportError:
            if not os.environ.get("BENCH_SPEED_TREE"):  # only an old checkout (--tree) may lack it
                raise
            self.speed = "no training.models.fast in this tree (eager, PyTorch's attention order)"
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.opt = build_optimizer(self.model, cfg.optim, device)
        try:
            lp_kw = {"size": int(v["lpsize"])} if int(v.get("lpsize", 0)) else {}
            self.lp = LPIPS(bf16=v.get("lpbf16", "1") == "1", **lp_kw)
        except TypeError:
            self.lp = LPIPS()
            self.avail["lpbf16/lpsize"] = False
        self.lp_every = int(v.get("lpevery", cfg.loss.lpips_every))  # the preset's loss.lpips_every by default
        # cuDNN autotuning of the convolutions (LPIPS's VGG); process-wide, so every variant sets it
        torch.backends.cudnn.benchmark = v.get("cudnnbench", "0") == "1"
        self.lp = self.lp.to(device)
        if getattr(self.lp, "bf16", False):
            self.lp = self.lp.to(memory_format=torch.channels_last)
        positive_lin(self.lp)
        self.autocast = autocast_for(cfg, device)
        self.i = 0

    def step(self, b=None):
        import torch

        from training.losses.terms import reconstruction_losses
        from training.models.registry import forward_render

        if b is None:
            b = self.batches[self.i % len(self.batches)]
            self.i += 1
        self.n_steps = getattr(self, "n_steps", 0) + 1
        lp = self.lp if (self.n_steps - 1) % self.lp_every == 0 else None  # the trainer's loss.lpips_every
        _, rgb, alpha = forward_render(self.model, b, self.cfg, BACKEND, self.autocast)
        losses = reconstruction_losses(rgb, alpha, b["tg_rgb"], b["tg_alpha"], self.cfg.loss, lp, lpips_scale=self.lp_every)
        self.opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        return losses


def bench_train(v: dict, data: Path, steps: int, device) -> dict:
    import torch

    from training.models.lrm4d.model import count_parameters, train_flops_per_sample

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
        last = s.step()
    torch.cuda.synchronize()
    thr_ms = (time.perf_counter() - t) / steps * 1e3
    S = cfg.data.image_size
    flops = train_flops_per_sample(cfg.model, cfg.data.n_in, S) * cfg.batch_size
    best = thr_ms if s.lp_every > 1 else min(med, thr_ms)  # lpevery: a median would pick one kind of step
    row = {"variant": v["spec"], "speed": s.speed, "params_M": round(count_parameters(s.model) / 1e6, 1),
           "batch_size": cfg.batch_size, "grad_checkpoint": cfg.model.grad_checkpoint, "image_size": S,
           "step_ms_median_synced": med, "step_ms_back_to_back": round(thr_ms, 2),
           "samples_per_s": round(cfg.batch_size / best * 1e3, 2),
           "model_tflops_per_step": round(flops / 1e12, 2), "achieved_tflops": round(flops / best / 1e9, 1),
           "mfu": round(flops / (best / 1e3) / PEAK_BF16, 4),
           "peak_mem_GiB": round(torch.cuda.max_memory_allocated() / 2**30, 1), "warmup_s": round(warm_s, 1),
           # after 3 + 2 x steps steps from seed 0 on the same batches: variants of the same loss should agree
           # to bf16 noise; mse is comparable across the LPIPS knobs too
           "last_step_mse": round(float(last["mse"]), 6), "last_step_loss": round(float(last["loss"]), 6),
           "unavailable": s.avail}
    return row


def bench_split(v: dict, data: Path, device, reps: int = 6) -> dict:
    """Each part fwd+bwd on its own, with the step's real inputs; their sum against the whole step."""
    import torch

    from training.render import raster_gsplat
    from training.geometry import world_to_camera
    from training.losses.terms import reconstruction_losses
    from training.render.frames import render_gaussians
    from training.render.slicing import Gaussians4D, slice_at

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
    from training.models.lrm4d.model import train_flops_per_sample

    fl = train_flops_per_sample(cfg.model, cfg.data.n_in, S) * cfg.batch_size
    out["transformer_tflops"] = round(fl / out["transformer_fwd_bwd_ms"] / 1e9, 1)
    out["transformer_only_mfu"] = round(fl / (out["transformer_fwd_bwd_ms"] / 1e3) / PEAK_BF16, 4)
    # LPIPS FLOPs: VGG-16 convolutions to relu5_3 on the prediction (fwd + input-grad bwd) and target (fwd)
    out["lpips_tflops_per_step"] = round(_vgg_flops(S) * pr.shape[0] * 3 / 1e12, 2)
    return out


def _vgg_flops(S: int) -> float:
    from training.losses.lpips import _VGG_CFG

    fl, c, hw = 0.0, 3, S * S
    for x in _VGG_CFG:
        if x == "M":
            hw //= 4
        else:
            fl += 2 * 9 * c * x * hw
            c = x
    return fl


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
    from training.models.lrm4d.model import train_flops_per_sample

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
