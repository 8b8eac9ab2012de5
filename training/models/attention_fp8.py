"""FP8 attention for inference on Hopper: cuDNN's fused FP8 flash attention, one scale per tensor.

Why: at 24 input views `base` attends over 24,576 tokens, and the bf16 cuDNN kernel already runs at two thirds of
the H100's bf16 peak (BENCHMARKS.md, "Speed, third round"); the float8 tensor cores do twice the work per cycle.
PyTorch's `scaled_dot_product_attention` has no FP8 path, so this module calls cuDNN through the cuDNN frontend's
Python graph API (package `nvidia-cudnn-frontend`, module `cudnn`), which links the cuDNN that PyTorch loaded.

What is computed, per call of `sdpa(q, k, v)` (q, k, v: [B, heads, L, head_dim], any float dtype):
- q, k and v are each cast to float8 e4m3 with one scale per tensor, amax -> 448 (the largest e4m3 value); the
  amax is a device reduction, so nothing syncs with the host and the call can be captured in a CUDA graph;
- cuDNN computes softmax(q k^T / sqrt(d)) v with float32 accumulation; the probabilities are cast to e4m3 scaled
  by 448 (their largest value, before normalisation, is 1), and the output is written as e4m3 (Hopper's FP8
  kernel has no bf16 output) scaled by 448 / amax(v) (the output is a convex combination of v's rows, so its
  magnitude never exceeds amax(v));
- the output is scaled back and returned in q's dtype.
Inference only: there is no backward (a call that records gradients raises). The numerics change (three
mantissa bits on q, k, v, the probabilities and the output), so it is switched on only by inference:
`pipeline reconstruct --fast` where it can run (measured on an H100 before it became that default: BENCHMARKS.md,
"FP8 attention, measured"), `--fp8-attention`, and `pipeline eval --fp8-attention` (`fast.fp8_attention`).

The cuDNN call is a torch custom op (`objaverse4d::cudnn_fp8_sdpa`), so `torch.compile`d blocks keep it as one
opaque call and fuse the casts around it. Graphs are built once per (shape, device, scale) and cached.

`reference` is the pure-torch twin of the kernel's arithmetic (the tests hold the kernel to it). A shape cuDNN has
no FP8 plan for (it says so when the graph is built) is computed by the twin instead; each such shape is logged
once and listed in `FALLBACK_SHAPES`, so a benchmark can say which of its calls did not run the FP8 kernel.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import torch
from torch import Tensor

log = logging.getLogger(__name__)

E4M3_MAX = 448.0  # the largest finite float8 e4m3 value
PACKAGE = "nvidia-cudnn-frontend"
FALLBACK_SHAPES: set[tuple[int, ...]] = set()  # q shapes cuDNN had no FP8 plan for (computed by PyTorch instead)


def unavailable_reason(device: torch.device | str) -> str | None:
    """Why FP8 attention cannot run on `device`, or None when it can."""
    device = torch.device(device)
    if device.type != "cuda":
        return f"FP8 attention needs a CUDA device (this run is on {device.type})"
    cap = torch.cuda.get_device_capability(device)
    if cap < (9, 0):
        return (f"FP8 attention needs cuDNN's FP8 flash attention, on Hopper (sm_90) or newer; "
                f"{torch.cuda.get_device_name(device)} is sm_{cap[0]}{cap[1]}")
    try:
        import cudnn  # noqa: F401
    except ImportError:
        return (f"FP8 attention needs the cuDNN frontend's Python module: pip install {PACKAGE} (on a host "
                "without a package index, carry its wheel)")
    return None


def quantize(x: Tensor) -> tuple[Tensor, Tensor]:
    """x as float8 e4m3 scaled so that its largest magnitude maps to 448, and the descale ([1, 1, 1, 1] float32,
    the factor that maps the float8 values back). No host sync."""
    amax = x.detach().abs().amax().float().clamp_min(1e-12)
    scale = E4M3_MAX / amax
    x8 = (x.float() * scale).clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)
    return x8, (1.0 / scale).reshape(1, 1, 1, 1)


def sdpa(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Drop-in for `F.scaled_dot_product_attention(q, k, v)` (no mask, no dropout, default scale) in FP8.
    q, k, v: [B, heads, L, head_dim]; returns [B, heads, L, head_dim] in q's dtype."""
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
        raise RuntimeError("FP8 attention is for inference only (it has no backward): run under torch.no_grad(), "
                           "or train without it")
    q8, dq = quantize(q)
    k8, dk = quantize(k)
    v8, dv = quantize(v)
    o8 = torch.ops.objaverse4d.cudnn_fp8_sdpa(q8, k8, v8, dq, dk, dv, 1.0 / dv, q.shape[-1] ** -0.5)
    return (o8.float() * dv).to(q.dtype)


def reference(q8: Tensor, k8: Tensor, v8: Tensor, descale_q: Tensor, descale_k: Tensor, descale_v: Tensor,
              scale_o: Tensor, attn_scale: float, block: int = 1024) -> Tensor:
    """The kernel's arithmetic in plain torch (float32 products): softmax(q k^T * attn_scale) v with the
    unnormalised probabilities (largest 1) cast to float8 with scale 448 before the product with v, the row sums
    taken before that cast, and the output cast to float8 with `scale_o`. q8, k8, v8: float8 [B, H, L, D];
    returns float8 [B, H, L, D]. Queries go `block` at a time, so memory stays at [B, H, block, L] floats.
    (The kernel's online softmax quantises each key block against the running row maximum; this twin against the
    final one: the same up to float8 rounding.)"""
    q = q8.float() * descale_q.float()  # [B, H, L, D]
    k = k8.float() * descale_k.float()
    v = v8.float() * descale_v.float()
    out = torch.empty(q8.shape, dtype=torch.float8_e4m3fn, device=q8.device)
    for i in range(0, q.shape[2], block):
        s = (q[:, :, i:i + block] @ k.transpose(-1, -2)) * attn_scale  # [B, H, b, L]
        p = torch.exp(s - s.amax(-1, keepdim=True))  # unnormalised probabilities, largest 1
        rows = p.sum(-1, keepdim=True)  # [B, H, b, 1]
        p = (p * E4M3_MAX).to(torch.float8_e4m3fn).float() / E4M3_MAX  # through float8, scale_s = 448
        o = (p @ v) / rows * scale_o.float()  # [B, H, b, D]
        out[:, :, i:i + block] = o.clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)
    return out


# -- the cuDNN graph ------------------------------------------------------------------------------------------


@dataclass
class _Plan:
    graph: object
    handle: object
    tensors: dict  # name -> cudnn tensor
    workspace: Tensor
    constants: dict  # name -> device tensor (descale_s, scale_s)


_PLANS: dict = {}
_HANDLES: dict = {}
_LOCK = threading.Lock()


def _handle(device: torch.device):
    import cudnn

    key = device.index
    if key not in _HANDLES:
        _HANDLES[key] = cudnn.create_handle()
    return _HANDLES[key]


def _plan(shape: tuple[int, ...], device: torch.device, attn_scale: float) -> _Plan | None:
    """The built cuDNN graph for this shape, or None when cuDNN has no FP8 plan for it (logged once)."""
    key = (shape, device.index, attn_scale)
    with _LOCK:
        if key in _PLANS:
            return _PLANS[key]
        import cudnn

        D = shape[-1]
        handle = _handle(device)
        try:
            if D % 16 or D > 256:
                raise ValueError(f"head dim {D}: cuDNN's FP8 attention takes multiples of 16 up to 256")
            graph, t = _build(cudnn, handle, shape, attn_scale)
        except Exception as exn:  # noqa: BLE001 (cudnn raises its own error types): this shape falls back
            log.warning("FP8 attention: cuDNN has no FP8 plan for q/k/v of shape %s on %s (%s); its pure-torch twin "
                        "computes it (no speed gain)", list(shape), torch.cuda.get_device_name(device), exn)
            FALLBACK_SHAPES.add(shape)
            _PLANS[key] = None
            return None
        workspace = torch.empty(max(1, graph.get_workspace_size()), dtype=torch.uint8, device=device)
        constants = {"descale_s": torch.full((1, 1, 1, 1), 1.0 / E4M3_MAX, dtype=torch.float32, device=device),
                     "scale_s": torch.full((1, 1, 1, 1), E4M3_MAX, dtype=torch.float32, device=device)}
        _PLANS[key] = _Plan(graph, handle, t, workspace, constants)
        return _PLANS[key]


def _build(cudnn, handle, shape: tuple[int, ...], attn_scale: float):
    """The cuDNN FP8 attention graph for contiguous [B, H, L, D] float8 q, k, v, built and planned; raises where
    cuDNN cannot serve the shape. Returns the graph and its tensors by name."""
    _B, H, L, D = shape
    e4m3, fp32 = cudnn.data_type.FP8_E4M3, cudnn.data_type.FLOAT
    graph = cudnn.pygraph(io_data_type=e4m3, intermediate_data_type=fp32, compute_data_type=fp32, handle=handle)
    stride = (H * L * D, L * D, D, 1)  # contiguous [B, H, L, D]
    t = {n: graph.tensor(name=n, dim=list(shape), stride=list(stride), data_type=e4m3) for n in ("q", "k", "v")}
    for n in ("descale_q", "descale_k", "descale_v", "descale_s", "scale_s", "scale_o"):
        t[n] = graph.tensor(name=n, dim=[1, 1, 1, 1], stride=[1, 1, 1, 1], data_type=fp32)
    o, _stats, amax_s, amax_o = graph.sdpa_fp8(
        q=t["q"], k=t["k"], v=t["v"], descale_q=t["descale_q"], descale_k=t["descale_k"],
        descale_v=t["descale_v"], descale_s=t["descale_s"], scale_s=t["scale_s"], scale_o=t["scale_o"],
        generate_stats=False, attn_scale=attn_scale, name="fp8_sdpa")
    o.set_output(True).set_dim(list(shape)).set_stride(list(stride)).set_data_type(e4m3)
    for a in (amax_s, amax_o):
        a.set_output(True).set_dim([1, 1, 1, 1]).set_stride([1, 1, 1, 1]).set_data_type(fp32)
    t.update(o=o, amax_s=amax_s, amax_o=amax_o)
    graph.validate()
    graph.build_operation_graph()
    graph.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
    graph.check_support()
    graph.build_plans()
    return graph, t


@torch.library.custom_op("objaverse4d::cudnn_fp8_sdpa", mutates_args=())
def cudnn_fp8_sdpa(q8: Tensor, k8: Tensor, v8: Tensor, descale_q: Tensor, descale_k: Tensor, descale_v: Tensor,
                   scale_o: Tensor, attn_scale: float) -> Tensor:
    """cuDNN FP8 flash attention on float8 e4m3 q, k, v [B, H, L, D] with their descales; returns the float8
    output scaled by scale_o. See the module docstring."""
    q8, k8, v8 = q8.contiguous(), k8.contiguous(), v8.contiguous()
    plan = _plan(tuple(q8.shape), q8.device, float(attn_scale))
    if plan is None:  # no cuDNN FP8 plan for this shape: the twin computes it
        return reference(q8, k8, v8, descale_q, descale_k, descale_v, scale_o, float(attn_scale))
    import cudnn

    out = torch.empty(q8.shape, dtype=torch.float8_e4m3fn, device=q8.device)
    amax_s = torch.empty((1, 1, 1, 1), dtype=torch.float32, device=q8.device)
    amax_o = torch.empty_like(amax_s)
    t = plan.tensors
    pack = {t["q"]: q8, t["k"]: k8, t["v"]: v8, t["descale_q"]: descale_q.float().contiguous(),
            t["descale_k"]: descale_k.float().contiguous(), t["descale_v"]: descale_v.float().contiguous(),
            t["descale_s"]: plan.constants["descale_s"], t["scale_s"]: plan.constants["scale_s"],
            t["scale_o"]: scale_o.float().contiguous(), t["o"]: out, t["amax_s"]: amax_s, t["amax_o"]: amax_o}
    cudnn.set_stream(handle=plan.handle, stream=torch.cuda.current_stream(q8.device).cuda_stream)
    plan.graph.execute(pack, plan.workspace, handle=plan.handle)
    return out


@cudnn_fp8_sdpa.register_fake
def _(q8, k8, v8, descale_q, descale_k, descale_v, scale_o, attn_scale):
    return torch.empty(q8.shape, dtype=torch.float8_e4m3fn, device=q8.device)
