"""bench_speed.py's timing helpers and its measurements outside the training step: the two ceilings,
SDPA backends, inference. `training` imports stay inside the functions (bench_speed.py chooses the checkout).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path


def _fast_module():
    """The checkout's speed-settings module: `training/models/fast.py` (since the split of training/ by idea) or
    `training/fast.py` (older checkouts run with --tree). It must lie inside the imported `training` package (an
    editable install could supply a newer one); ImportError when the checkout has none."""
    import importlib

    import training

    root = Path(training.__file__).resolve().parent
    for name in ("training.models.fast", "training.fast"):
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError:
            continue
        if Path(mod.__file__).resolve().is_relative_to(root):
            return mod
    raise ImportError(f"no speed-settings module (training/models/fast.py or training/fast.py) in the checkout at {root}")


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


# the keys of a `bench_speed.py` training variant (speed_train.Setup reads them): batch, checkpointing, heads,
# gsplat's packed mode and tile, compile, activation-memory budget, compiled head, float8 linears, attention, LPIPS
# size / bf16 / schedule, cuDNN autotuning
KEYS = ("bs", "ckpt", "nh", "packed", "tile", "compile", "budget", "head", "fp8", "attn", "lpsize", "lpbf16",
        "lpevery", "cudnnbench")


def parse_variant(spec: str) -> dict:
    """'small:lpevery=4:packed=1' -> {'preset': 'small', 'spec': ..., 'lpevery': '4', 'packed': '1'}; an unknown
    key fails here (it once would have measured the preset's default under the variant's name)."""
    from common import parse_variant as parse

    return parse(spec, KEYS)


# -- hardware ceilings, attention, inference ------------------------------------------------------


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


def bench_infer(n_views: int, mode: str = "fast", frames: int = 24, reps: int = 5, heads: int | None = None,
                tile: int = 0, profile_path=None, packed: bool = False, attn: str = "bf16", lin: str = "bf16") -> dict:
    """`base` at batch 1: reconstruct from n_views, render `frames` at 256 px. mode: eager, fast (compiled
    blocks, cuDNN attention), graph (fast + the reconstruction replayed from a CUDA graph, fast.GraphedCall;
    checked against, and timed beside, the direct call of the same compiled model on the same inputs),
    graphall (graph with the Gaussian activations compiled too and the slicing at the 24 times inside the
    graph: only gsplat's rasteriser, which syncs, runs outside; reconstruct_ms then includes the slicing).
    heads: attention heads (None = the preset's); tile: gsplat's tile size (0 = the preset's render.tile_size).
    packed: gsplat's packed mode (only the Gaussians each camera sees, `render.packed`).
    attn: bf16 (cuDNN's bf16 flash attention, the default) or fp8 (training/models/attention_fp8.py: the
    inference-only FP8 kernel; the row then also says how far its 24 rendered frames are from those of the same
    model with bf16 attention, run eagerly first: PSNR and largest difference over the frames).
    lin: bf16 (the default), fp8 or fp8t: the blocks' linear layers in float8 for inference too (torchao's
    Float8Linear, the trainer's `fp8` setting: rowwise or tensorwise scales; the weights are cast each call), with
    the same distance report from the bf16 frames; compiled modes only.
    profile_path: also write the top CUDA kernels of two (reconstruct, render) rounds there (torch.profiler)."""
    if attn not in ("bf16", "fp8"):
        raise ValueError(f"attn {attn!r}: bf16 or fp8")
    if lin not in ("bf16", "fp8", "fp8t"):
        raise ValueError(f"lin {lin!r}: bf16, fp8 (rowwise) or fp8t (tensorwise)")
    if lin != "bf16" and mode not in ("fast", "graph", "graphall"):
        raise ValueError(f"lin {lin!r} needs a compiled mode (fast, graph, graphall), not {mode!r}")
    import torch

    from speed_data import inference_case
    from training.config import base
    from training.models.lrm4d.model import Reconstructor, train_flops_per_sample
    from training.render.frames import rasterize_sliced, render_gaussians

    cfg = base()
    if heads:
        cfg.model.heads = heads
        cfg.model.__post_init__()
    if tile:
        cfg.render.tile_size = tile
    cfg.render.packed = packed
    dev = torch.device("cuda")
    S = cfg.data.image_size
    torch.manual_seed(0)
    model = Reconstructor(cfg.model).to(dev).eval()
    rgb, cond, c2w, K, t_in, tg_c2w, tg_K, tg_t, bg = inference_case(n_views, frames, S, dev)
    ref_img = None
    if attn == "fp8" or lin != "bf16":  # the same model's frames in bf16, before FP8 is switched in
        with torch.no_grad():
            with torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False):
                g_ref = model(rgb, cond, c2w, K, t_in)
            ref_img = render_gaussians(g_ref.float(), tg_c2w, tg_K, tg_t, S, S, bg, cfg.render, "gsplat")[0]
        del g_ref
    speed = "eager"
    if mode in ("fast", "graph", "graphall"):
        speed = _fast_module().setup_model(model, dev, True, compile_head=mode == "graphall", fp8_attn=attn == "fp8",
                                           fp8=lin != "bf16", fp8_recipe="tensorwise" if lin == "fp8t" else "rowwise")
    elif attn == "fp8":
        speed = f"eager, fp8 attention in {_fast_module().fp8_attention(model)} blocks"
    state = {}

    def forward(rgb, cond, c2w, K, t_in):
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False):
            return model(rgb, cond, c2w, K, t_in)

    row = {"input_views": n_views, "mode": mode, "heads": cfg.model.heads, "tile": cfg.render.tile_size, "packed": packed,
           "attn": attn, "lin": lin, "speed": speed,
           "frames": frames,
           "gaussians": n_views * S * S}
    fn = forward
    if mode == "graphall":
        from training.render.slicing import slice_at

        def forward(rgb, cond, c2w, K, t_in, tg_t, _model_call=forward):  # noqa: F811 (model + slicing)
            return slice_at(_model_call(rgb, cond, c2w, K, t_in).float(), tg_t.float())

    if mode in ("graph", "graphall"):
        fn = _fast_module().GraphedCall(forward, clone=False)
        args = (rgb, cond, c2w, K, t_in) + ((tg_t,) if mode == "graphall" else ())
        ref = forward(*args)
        got = fn(*args)
        row["graph_vs_fast_max_rel_err"] = max(
            float((getattr(got, k).float() - getattr(ref, k).float()).norm() / getattr(ref, k).float().norm().clamp_min(1e-12))
            for k in ref.__dict__)
        rgb2 = torch.rand_like(rgb)  # new inputs through the same graph: the copy-in works
        ref2, got2 = forward(rgb2, *args[1:]), fn(rgb2, *args[1:])
        col = "colors" if mode == "graphall" else "rgb"
        row["graph_vs_fast_new_input_max_abs_diff"] = float(
            (getattr(got2, col).float() - getattr(ref2, col).float()).abs().max())
    else:
        args = (rgb, cond, c2w, K, t_in)

    def recon():
        state["g"] = fn(*args)

    def render():
        with torch.no_grad():
            if mode == "graphall":  # sliced already, in the graph
                state["img"] = rasterize_sliced(state["g"], tg_c2w, tg_K, S, S, bg, cfg.render, "gsplat")
            else:
                state["img"] = render_gaussians(state["g"], tg_c2w, tg_K, tg_t, S, S, bg, cfg.render, "gsplat")

    for _ in range(3):
        recon(), render()
    if mode in ("graph", "graphall"):  # the same calls made directly, in the same process: the graph's gain
        row["reconstruct_direct_ms"] = _med(_events_ms(lambda: forward(*args), reps))
    t_r = _med(_events_ms(recon, reps))
    t_d = _med(_events_ms(render, reps))
    t_all = _med(_events_ms(lambda: (recon(), render()), reps))
    if ref_img is not None:  # FP8 against bf16 attention: the frames a user would see
        from common import fp8_frames_report

        recon(), render()
        row.update(fp8_frames_report(state["img"][0], ref_img))
    fwd_flops = train_flops_per_sample(cfg.model, n_views, S) / 3
    row.update(reconstruct_ms=t_r, render_24_ms=t_d, total_ms=t_all, transformer_tflops=round(fwd_flops / t_r / 1e9, 1))
    if profile_path:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
            for _ in range(2):
                recon(), render()
            torch.cuda.synchronize()
        Path(profile_path).write_text(
            f"inference {mode}, {n_views} views, {frames} frames: 2 rounds of reconstruct + render\n"
            + prof.key_averages().table(sort_by="cuda_time_total", row_limit=40, max_name_column_width=90))
        row["profile"] = str(profile_path)
    return row
