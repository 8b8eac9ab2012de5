"""GPU speed settings in one place: attention kernel choice, tensor-core float32, regional torch.compile.

None of these changes what the model computes beyond float rounding (bf16 autocast stays where it
was; the parity and same-seed loss-curve checks in BENCHMARKS.md cover them). On a CPU every function
here is a no-op, so the CPU tests and the torch rasteriser run exactly the eager code.

- `configure(device)`: TF32 for float32 matrix products (LPIPS, slicing) and, on Hopper (sm_90), the
  cuDNN attention kernels ahead of FlashAttention-2 in SDPA's priority list (about 2x faster there
  for our head dim 64; other GPUs keep PyTorch's order). Process-wide; call it once per process.
- `compile_blocks(model)`: `torch.compile` each transformer block (training/blocks.Block, in either
  family) in place (regional compilation: the 24 identical blocks share one compiled graph per
  sequence shape, so compiling takes seconds, not minutes; state-dict keys are unchanged). Norms,
  residual adds, GELU and the QK-norm fuse into few kernels.
- `compile_slicing()`: the 4D-to-3D slicing (training/render/slicing.py) as one compiled function.
- `compile_activations(model)`: the head's Gaussian activations as one compiled function (`compile_head` setting).
- `GraphedCall(fn)`: inference through a CUDA graph per input shape (batch-1 reconstruction is launch-bound).
- `fp8_attention(model)`: inference-only FP8 attention (cuDNN, Hopper; training/models/attention_fp8.py). Unlike the
  settings above it changes numerics beyond rounding, so training and evaluation never turn it on by themselves;
  `pipeline reconstruct --fast` does, where it can run (training/export/reconstruct.py: resolve_fp8_attention).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

log = logging.getLogger(__name__)

_DEFAULT_SDP_ORDER: list[int] | None = None  # PyTorch's own priority order, read before the first change


def is_hopper(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.get_device_capability(device) == (9, 0)


def configure(device: torch.device | str, attention: str = "auto", tf32: bool = True) -> str:
    """Process-wide fast settings for `device`. attention: auto (cuDNN first on Hopper), cudnn, flash,
    default (PyTorch's own order). tf32=False leaves float32 matrix products as they are (evaluation:
    its LPIPS metric stays float32). Returns the attention choice in effect."""
    device = torch.device(device)
    if device.type != "cuda":
        return "default"
    if tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    choice = ("cudnn" if is_hopper(device) else "default") if attention == "auto" else attention
    set_attention_priority(choice)
    return choice


def set_attention_priority(choice: str) -> None:
    """Put one SDPA backend first; shapes it cannot serve fall back to the next, as before."""
    from torch.nn.attention import SDPBackend

    order = {
        "cudnn": [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                  SDPBackend.MATH],
        "flash": [SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                  SDPBackend.MATH],
        "default": None,
    }
    if choice not in order:
        raise ValueError(f"attention backend {choice!r}: one of {sorted(order)}")
    global _DEFAULT_SDP_ORDER
    if _DEFAULT_SDP_ORDER is None:
        _DEFAULT_SDP_ORDER = list(torch._C._get_sdp_priority_order())
    if order[choice] is None:
        torch._C._set_sdp_priority_order(_DEFAULT_SDP_ORDER)
        return
    torch.backends.cuda.enable_cudnn_sdp(True)
    first = [int(b) for b in order[choice]]  # what sdpa_kernel(..., set_priority=True) sets, kept for the process
    torch._C._set_sdp_priority_order(first + [b for b in torch._C._get_sdp_priority_order() if b not in first])


def transformer_blocks(model: nn.Module) -> list[nn.Module]:
    """Every training/blocks.Block of `model`, in module order (what compile_blocks compiles)."""
    from training.models.blocks import Block

    return [m for m in model.modules() if isinstance(m, Block)]


def compile_blocks(model: nn.Module) -> int:
    """torch.compile every transformer block of `model` (a training/blocks.Block, wherever the family keeps
    it: the 4D-LRM `blocks`, the L4GM multi-view and temporal blocks) in place, CUDA only. Returns how
    many were compiled. Blocks of one width share a graph per sequence shape."""
    blocks = transformer_blocks(model)
    if not blocks or not any(p.is_cuda for p in model.parameters()):
        return 0
    import torch._dynamo

    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    for blk in blocks:
        blk.compile(dynamic=False)  # one static graph per shape: the step's shapes never change
    return len(blocks)


def compile_slicing(on: bool = True) -> None:
    """Route CUDA slicing through one compiled function (training/render/slicing.py keeps the eager twin)."""
    from training.render import slicing

    slicing.use_compiled(on)


def compile_activations(model: nn.Module) -> bool:
    """torch.compile the model's `activate` (head outputs -> bounded Gaussian parameters: ~20 elementwise
    ops over every pixel) in place, CUDA only. Returns whether it was compiled."""
    if not hasattr(model, "activate") or not any(p.is_cuda for p in model.parameters()):
        return False
    model.activate = torch.compile(model.activate, dynamic=False)
    return True


def float8_blocks(model: nn.Module, recipe: str = "rowwise") -> int:
    """The transformer blocks' linear layers (attention qkv/proj, MLP) as torchao's float8 training linears
    (recipe rowwise: e4m3 inputs, weights and output gradients, each scaled per row; tensorwise: one scale per
    tensor, cheaper casts; matrix products on the float8 tensor cores of sm_89+), in place, CUDA only. The patch embedding and the Gaussian head stay in bf16.
    Parameters and their state-dict names do not change, so checkpoints load either way. Returns how many
    layers were converted. A speed knob that changes numerics (the `fp8` setting)."""
    if not any(p.is_cuda for p in model.parameters()):
        return 0
    dev = next(p for p in model.parameters() if p.is_cuda).device
    if torch.cuda.get_device_capability(dev) < (8, 9):
        raise RuntimeError(f"--set fp8=true needs float8 tensor cores (sm_89 or newer); {torch.cuda.get_device_name(dev)} "
                           "has none")
    try:
        from torchao.float8 import Float8LinearConfig, convert_to_float8_training
    except ImportError as exn:
        raise RuntimeError("--set fp8=true needs torchao (pip install torchao; on a host without a package index, "
                           "carry its wheel)") from exn
    config = Float8LinearConfig.from_recipe_name(recipe)

    def eligible(mod: nn.Module, _fqn: str) -> bool:  # float8 matrix products need dimensions divisible by 16
        return isinstance(mod, nn.Linear) and mod.in_features % 16 == 0 and mod.out_features % 16 == 0

    n = 0
    for blk in transformer_blocks(model):
        before = sum(type(m) is nn.Linear for m in blk.modules())
        convert_to_float8_training(blk, config=config, module_filter_fn=eligible)
        n += before - sum(type(m) is nn.Linear for m in blk.modules())
    return n


def fp8_attention(model: nn.Module) -> int:
    """Every transformer block's attention as cuDNN's FP8 flash attention (training/models/attention_fp8.py:
    inference only, Hopper or newer, needs the nvidia-cudnn-frontend package), in place. Returns how many
    blocks were switched; raises RuntimeError naming what is missing where it cannot run. Changes numerics: used by
    `pipeline reconstruct --fast` where it can run (or `--fp8-attention`) and `pipeline eval --fp8-attention`."""
    from training.models import attention_fp8

    blocks = transformer_blocks(model)
    first = next(model.parameters(), None)
    reason = attention_fp8.unavailable_reason(first.device if first is not None else torch.device("cpu"))
    if reason:
        raise RuntimeError(reason)
    for blk in blocks:
        blk.attn.sdpa = attention_fp8.sdpa
    return len(blocks)


def setup_model(model: nn.Module, device: torch.device, compile_model: bool, attention: str = "auto",
                compile_head: bool = False, tf32: bool = True, fp8: bool = False, fp8_recipe: str = "rowwise",
                fp8_attn: bool = False) -> str:
    """What the trainer, evaluation, reconstruction and the benchmarks do with a fresh model on `device`.
    Returns a short summary. compile_head (with compile_model): the Gaussian activations too
    (`compile_activations`); tf32: see `configure`; fp8: the blocks' linear layers in float8 (`float8_blocks`,
    before compiling, so the casts fuse into the compiled blocks); fp8_attn: inference-only FP8 attention
    (`fp8_attention`; raises where it cannot run, CPU included)."""
    choice = configure(device, attention, tf32)
    n = 0
    head = False
    n8 = 0
    if fp8_attn:
        fp8_attention(model)
        choice = "cudnn-fp8"
    if device.type == "cuda":
        if fp8:
            n8 = float8_blocks(model, fp8_recipe)
        if compile_model:
            n = compile_blocks(model)
            head = compile_head and compile_activations(model)
        compile_slicing(compile_model)
    return (f"attention={choice}, compiled blocks={n}" + (", compiled head" if head else "")
            + (f", float8 linears={n8} ({fp8_recipe})" if n8 else ""))


class GraphedCall:
    """`fn(*tensors)` replayed from a CUDA graph, one graph per input shape (inference: no autograd).

    The first call with a new shape runs `fn` a few times on a side stream (compiles, cuDNN plans) and
    captures one call; later calls copy the inputs into the captured buffers and replay it: one launch
    instead of hundreds, which is what batch-1 inference is bound by. `fn` must not sync with the CPU
    (no .item(), no data-dependent shapes; gsplat's rasteriser does, so rendering stays outside).
    Outputs are copied out (clone=True) or are the captured buffers, overwritten by the next call.
    On a CPU, or for non-CUDA inputs, `fn` runs as it is."""

    def __init__(self, fn, warmup: int = 3, clone: bool = True):
        self.fn, self.warmup, self.clone = fn, warmup, clone
        self.graphs: dict = {}

    def __call__(self, *args):
        if not all(a is None or (isinstance(a, torch.Tensor) and a.is_cuda) for a in args):
            return self.fn(*args)
        key = tuple(None if a is None else (tuple(a.shape), a.dtype, a.device) for a in args)
        if key not in self.graphs:
            self.graphs[key] = self._capture(args)
        graph, static_in, static_out = self.graphs[key]
        for buf, a in zip(static_in, args):
            if a is not None:
                buf.copy_(a)
        graph.replay()
        return _map_tensors(static_out, torch.clone) if self.clone else static_out

    def _capture(self, args):
        static_in = [None if a is None else a.clone() for a in args]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.no_grad():
            for _ in range(self.warmup):
                self.fn(*static_in)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(graph):
            static_out = self.fn(*static_in)
        log.info("captured a CUDA graph of %s for input shapes %s", getattr(self.fn, "__name__", "fn"),
                 [None if a is None else tuple(a.shape) for a in args])
        return graph, static_in, static_out


def _map_tensors(x, fn):
    """fn applied to every tensor in x (a tensor, tuple/list, dict or dataclass of them)."""
    import dataclasses

    if isinstance(x, torch.Tensor):
        return fn(x)
    if isinstance(x, (tuple, list)):
        return type(x)(_map_tensors(v, fn) for v in x)
    if isinstance(x, dict):
        return {k: _map_tensors(v, fn) for k, v in x.items()}
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return dataclasses.replace(x, **{f.name: _map_tensors(getattr(x, f.name), fn) for f in dataclasses.fields(x)
                                         if f.init})
    return x
