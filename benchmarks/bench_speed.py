"""Trainer and inference speed on one GPU, before/after variants in one call, with the time split.

    python benchmarks/bench_speed.py prep --data DIR                  # CPU: shards + replayed batches
    python benchmarks/bench_speed.py run --data DIR --out OUT.json [--parts hw,attn,train,infer,curve,profile]
        [--variants base:bs=8:compile=1 ...] [--split base:bs=8] [--tree OLD_CHECKOUT] [--curve-steps 40]

`prep` writes analytic shards (training/data/synthetic.py) at 128 and 256 px and reads batches from them
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
  per --infer-modes (eager, fast = compiled blocks, graph = fast + CUDA graph of the reconstruction,
  graphall = graph + compiled activations and the slicing inside the graph), --infer-heads, --infer-tiles, --infer-packed,
  --infer-attn (bf16, fp8: the FP8 attention kernel, with its frames' distance from bf16's), --infer-lin (bf16, fp8,
  fp8t: float8 linear layers, rowwise or tensorwise scales, with the same distance).
- inferprof: the top CUDA kernels (torch.profiler) of reconstructing from the largest --infer-views count and
  rendering 24 frames, in the first --infer-modes mode (written beside OUT.json as OUT.inferprofN.txt).
- curve: the loss of `--curve-steps` steps from one seed on the replayed batches (compare two runs).
- profile: the top CUDA kernels of two steps of the first variant (torch.profiler table).

Variant syntax: PRESET[:key=value...], keys bs (batch), nh (attention heads), ckpt (0/1), compile (0/1),
attn (auto, cudnn, flash, default), lpbf16 (0/1), budget (torch.compile activation memory budget, 0 = off),
head (0/1: compile the Gaussian activations too; default the preset's compile_head), lpsize (LPIPS at this
many px, 0 = full), lpevery (LPIPS on every k-th step, weighted k x; default the preset's loss.lpips_every;
the row's step time is then an average over k-step cycles, so use steps divisible by k), cudnnbench (0/1:
torch.backends.cudnn.benchmark, autotuned VGG convolutions; not a trainer setting yet), fp8 (0, 1 = rowwise, rowwise, tensorwise: the blocks'
linear layers in float8 through torchao, the trainer's `fp8` and `fp8_recipe` settings; carry the torchao wheel),
packed (0/1: gsplat's packed mode, `render.packed`), tile (gsplat's tile size, `render.tile_size`).
The parts run in the order --parts names them.
With --tree the old checkout's `training` package is imported instead; knobs it lacks are reported
as unavailable. LPIPS uses a VGG of the real shape with random weights (same cost as real ones).
The data side lives in benchmarks/speed_data.py, the timing helpers, ceilings, SDPA and inference in
benchmarks/speed_kernels.py, the training-step measurements (train, split, curve, profile) in
benchmarks/speed_train.py.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# BENCH_SMOKE=1: run the code paths on a CPU with the tiny preset and the torch rasteriser (numbers
# meaningless), to catch mistakes before spending GPU time.
SMOKE = os.environ.get("BENCH_SMOKE") == "1"


def _setup_path(tree: str | None) -> None:
    sys.path.insert(0, str(Path(tree).resolve()) if tree else str(ROOT))
    if tree:  # an old checkout may lack the speed settings: measured eager then, and said so per row
        os.environ["BENCH_SPEED_TREE"] = str(tree)


from speed_data import bench_loader, prep, prep_lrm4d  # noqa: E402 (benchmarks/ is sys.path[0])
from speed_kernels import bench_attention, bench_hw, bench_infer, parse_variant  # noqa: E402
from speed_train import bench_curve, bench_profile, bench_split, bench_train  # noqa: E402


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

    parts = a.parts.split(",")
    # every variant the run will use, parsed (and so checked) once, before any GPU time
    variants = {part: [parse_variant(spec) for spec in specs] if part in parts else []
                for part, specs in (("train", a.variants), ("split", a.split), ("curve", a.curve), ("profile", a.profile))}
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

    def attempt(key, fn, *args, **kw):
        try:
            r = fn(*args, **kw)
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
            for v in variants["train"]:
                attempt("training", bench_train, v, data, a.steps, dev)
        elif part == "split":
            for v in variants["split"]:
                attempt("split", bench_split, v, data, dev)
        elif part == "infer":
            for lin, attn, packed, tile, heads, mode, n in itertools.product(
                    a.infer_lin.split(","), a.infer_attn.split(","),
                    [p == "1" for p in a.infer_packed.split(",")], [int(t) for t in a.infer_tiles.split(",")],
                    [int(h) if h else None for h in a.infer_heads.split(",")], a.infer_modes.split(","),
                    [int(x) for x in a.infer_views.split(",")]):
                attempt("inference", bench_infer, n, mode, 24, 5, heads, tile, None, packed, attn=attn, lin=lin)
        elif part == "inferprof":  # the kernels of the first mode x the largest view count
            n = max(int(x) for x in a.infer_views.split(","))
            attempt("inference", bench_infer, n, a.infer_modes.split(",")[0], 24, 5, None, 0,
                    out_path.with_suffix(f".inferprof{n}.txt"))
        elif part == "curve":
            for v in variants["curve"]:
                attempt("curve", bench_curve, v, data, a.curve_steps, dev)
        elif part == "profile":
            for i, v in enumerate(variants["profile"]):
                attempt("profile", bench_profile, v, data, dev, out_path.with_suffix(f".prof{i}.txt"))

    unknown = set(parts) - {"hw", "attn", "train", "split", "infer", "inferprof", "curve", "profile"}
    if unknown:
        raise SystemExit(f"--parts: unknown part(s) {sorted(unknown)}")
    for part in parts:
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
    ap.add_argument("--infer-modes", default="fast,graph", help="comma list of eager, fast, graph (CUDA graph), graphall")
    ap.add_argument("--infer-views", default="4,24", help="comma list of input view counts for the infer part")
    ap.add_argument("--infer-heads", default="", help="comma list of attention head counts for the infer part "
                    "(empty = the preset's)")
    ap.add_argument("--infer-tiles", default="0", help="comma list of gsplat tile sizes for the infer part "
                    "(0 = the preset's)")
    ap.add_argument("--infer-packed", default="0", help="comma list of 0/1: gsplat's packed mode for the infer part "
                    "(render.packed; 0 = the preset's unpacked path)")
    ap.add_argument("--infer-attn", default="bf16", help="comma list of bf16, fp8: the attention kernel for the infer "
                    "part (fp8: inference-only cuDNN FP8, training/models/attention_fp8.py)")
    ap.add_argument("--infer-lin", default="bf16", help="comma list of bf16, fp8, fp8t: the blocks' linear layers "
                    "for the infer part (fp8: float8 with rowwise scales, fp8t tensorwise; torchao, compiled modes)")
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
