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
- infer: `base` at batch 1 reconstructing from 4 and 24 views, then rendering 24 frames at 256 px,
  per --infer-modes (eager, fast = compiled blocks, graph = fast + CUDA graph of the reconstruction).
- curve: the loss of `--curve-steps` steps from one seed on the replayed batches (compare two runs).
- profile: the top CUDA kernels of two steps of the first variant (torch.profiler table).

Variant syntax: PRESET[:key=value...], keys bs (batch), ckpt (0/1), compile (0/1), attn (auto, cudnn,
flash, default), lpbf16 (0/1), budget (torch.compile activation memory budget, 0 = off), head (0/1:
compile the Gaussian activations too), lpsize (LPIPS at this many px, 0 = full), lpevery (LPIPS on every
k-th step; the row's step time is then an average over k-step cycles, so use steps divisible by k),
cudnnbench (0/1: torch.backends.cudnn.benchmark, autotuned VGG convolutions; not a trainer setting yet).
The parts run in the order --parts names them.
With --tree the old checkout's `training` package is imported instead; knobs it lacks are reported
as unavailable. LPIPS uses a VGG of the real shape with random weights (same cost as real ones).
The data side lives in benchmarks/speed_data.py, the timing helpers, ceilings, SDPA and inference in
benchmarks/speed_kernels.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import traceback
from pathlib import Path

PEAK_BF16 = 989e12
ROOT = Path(__file__).resolve().parents[1]
# BENCH_SMOKE=1: run the code paths on a CPU with the tiny preset and the torch rasteriser (numbers
# meaningless), to catch mistakes before spending GPU time.
SMOKE = os.environ.get("BENCH_SMOKE") == "1"
BACKEND = "torch" if SMOKE else "gsplat"


def _setup_path(tree: str | None) -> None:
    sys.path.insert(0, str(Path(tree).resolve()) if tree else str(ROOT))


from speed_data import bench_loader, load_batches, prep, prep_lrm4d  # noqa: E402 (benchmarks/ is sys.path[0])
from speed_kernels import _events_ms, _fast_module, _med, bench_attention, bench_hw, bench_infer, parse_variant  # noqa: E402


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
            kw = {"compile_head": True} if v.get("head", "0") == "1" else {}
            self.speed = _fast_module().setup_model(self.model, device, want_compile, v.get("attn", "auto"), **kw)
        except TypeError:
            self.speed = _fast_module().setup_model(self.model, device, want_compile, v.get("attn", "auto"))
            self.avail["head"] = False
        except ImportError:
            self.speed = "no training.fast in this tree (eager, PyTorch's attention order)"
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.opt = build_optimizer(self.model, cfg.optim, device)
        try:
            lp_kw = {"size": int(v["lpsize"])} if int(v.get("lpsize", 0)) else {}
            self.lp = LPIPS(bf16=v.get("lpbf16", "1") == "1", **lp_kw)
        except TypeError:
            self.lp = LPIPS()
            self.avail["lpbf16/lpsize"] = False
        self.lp_every = int(v.get("lpevery", 1))
        # cuDNN autotuning of the convolutions (LPIPS's VGG); process-wide, so every variant sets it
        torch.backends.cudnn.benchmark = v.get("cudnnbench", "0") == "1"
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
        self.n_steps = getattr(self, "n_steps", 0) + 1
        lp = self.lp if (self.n_steps - 1) % self.lp_every == 0 else None  # the trainer's loss.lpips_every
        _, rgb, alpha = forward_render(self.model, b, self.cfg, BACKEND, self.autocast)
        losses = reconstruction_losses(rgb, alpha, b["tg_rgb"], b["tg_alpha"], self.cfg.loss, lp)
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

    def run_part(part: str) -> None:
        if part == "hw":
            attempt("hw", bench_hw)
        elif part == "attn":
            attempt("attention", lambda: {"rows": bench_attention()})
        elif part == "train":
            for spec in a.variants:
                attempt("training", bench_train, parse_variant(spec), data, a.steps, dev)
        elif part == "split":
            for spec in a.split:
                attempt("split", bench_split, parse_variant(spec), data, dev)
        elif part == "infer":
            for mode in a.infer_modes.split(","):
                for n in (int(x) for x in a.infer_views.split(",")):
                    attempt("inference", bench_infer, n, mode)
        elif part == "curve":
            for spec in a.curve:
                attempt("curve", bench_curve, parse_variant(spec), data, a.curve_steps, dev)
        elif part == "profile":
            for i, spec in enumerate(a.profile):
                attempt("profile", bench_profile, parse_variant(spec), data, dev, out_path.with_suffix(f".prof{i}.txt"))

    unknown = set(a.parts.split(",")) - {"hw", "attn", "train", "split", "infer", "curve", "profile"}
    if unknown:
        raise SystemExit(f"--parts: unknown part(s) {sorted(unknown)}")
    for part in a.parts.split(","):
        run_part(part)
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
    ap.add_argument("--infer-modes", default="fast,graph", help="comma list of eager, fast, graph (CUDA graph)")
    ap.add_argument("--infer-views", default="4,24", help="comma list of input view counts for the infer part")
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
