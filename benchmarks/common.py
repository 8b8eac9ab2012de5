"""What several benchmark scripts share: the repository root on sys.path, the bf16 peak that MFU is counted
against, synced wall-clock timing, peak GPU memory, FP8-against-bf16 frames, the random-weight LPIPS file the devices train with, the
DDP variant names, and the readers that turn a device run's raw outputs into one headline line each
(benchmarks/device.py prints them in its summary table).

Nothing here imports `training` or torch at module level: bench_speed.py chooses which checkout's `training`
package is imported (--tree), and the device runner imports this file before any wheel is installed.

    python3 benchmarks/common.py random-lpips PATH    # an LPIPS weights file of the real shape, random weights
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# dense bf16 peak of an H100/H200 SXM (datasheet): every MFU and FLOP floor in BENCHMARKS.md is against it
PEAK_BF16 = 989e12


def repo_on_path() -> Path:
    """Put the repository root first on sys.path (a script run as `python3 benchmarks/X.py` has benchmarks/
    there instead) and return it."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return ROOT


def fp8_frames_report(img, ref) -> dict:
    """How far frames rendered with FP8 attention (`img`) are from the same model's bf16-attention frames (`ref`,
    same shape, values in [0, 1]): PSNR and largest difference, and the attention shapes that fell back from
    cuDNN's FP8 kernel to its torch twin in this process ([] = every call ran the kernel)."""
    import math

    from training.models import attention_fp8

    diff = img.float() - ref.float()
    mse = float((diff ** 2).mean())
    return {"fp8_vs_bf16_frames_psnr": round(-10 * math.log10(max(mse, 1e-12)), 2),
            "fp8_vs_bf16_frames_max_abs": round(float(diff.abs().max()), 4),
            "fp8_fallback_shapes": sorted(list(s) for s in attention_fp8.FALLBACK_SHAPES)}


def parse_variant(spec: str, keys: tuple[str, ...]) -> dict:
    """'PRESET:k=v:k=v' -> {'preset': PRESET, 'spec': spec, k: v, ...}; a key outside `keys`, or an item that is not
    KEY=VALUE, fails here, by name, before any GPU time is spent (a typo must not measure the preset's default)."""
    name, *kv = spec.split(":")
    v = {"preset": name, "spec": spec}
    for item in kv:
        k, sep, val = item.partition("=")
        if not sep or k not in keys:
            raise SystemExit(f"variant {spec!r}: {item!r} is not KEY=VALUE with KEY one of {', '.join(keys)}")
        v[k] = val
    return v


def sync_time(fn, reps: int, dev=None) -> list[float]:
    """Seconds of `reps` calls of fn, each between two device synchronisations (none on a CPU device)."""
    import torch

    on_cuda = dev is None or getattr(dev, "type", dev) == "cuda"
    sync = torch.cuda.synchronize if on_cuda else (lambda: None)
    out = []
    for _ in range(reps):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t)
    return out


def peak_gib(dev=None) -> float | None:
    """Peak allocated GPU memory in GiB since the last reset (None on a CPU device)."""
    import torch

    if dev is not None and getattr(dev, "type", dev) != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated() / 2**30, 1)


def positive_lin(lp):
    """An LPIPS module's lin weights made positive (a random init has negative ones, real weights do not):
    the loss then has the real cost and sign without the real VGG/LPIPS weights, which the devices lack."""
    for lin in lp.lin:
        lin.weight.data.abs_()
    return lp


def random_lpips(path: str | Path) -> Path:
    """Write an LPIPS weights file of the real shape with random weights (lin weights positive)."""
    import torch

    repo_on_path()
    from training.losses.lpips import LPIPS

    Path(path).parent.mkdir(parents=True, exist_ok=True)  # the runner's --work folder may not exist yet
    torch.save(positive_lin(LPIPS()).state_dict(), str(path))
    return Path(path)


# -- processes -------------------------------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children first), from /proc: torchrun starts its ranks in sessions of their
    own, so killing torchrun's process group leaves them running (and holding their GPUs)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def proc_start(pid: int) -> int | None:
    """A process's start time (clock ticks after boot; None once it is gone): a pid seen earlier is the same
    process only while this is unchanged."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def kill_tree(pid: int, sig: int = signal.SIGKILL) -> None:
    """`sig` to a process started with its own process group, that group, and every process below it."""
    for p in [*descendants(pid), pid]:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


# -- DDP settings by name (benchmarks/device.py ddp --ddp-variants) ----------------------------------------

DDP_PARTS = {
    "default": [],
    "gradview": ["ddp.gradient_as_bucket_view=true"],
    "static": ["ddp.static_graph=true"],
    "bf16hook": ["ddp.comm_hook=bf16"],
    "nosplit": ["ddp.split_compiled=false"],
    # PyTorch's own DDP settings (the trainer's defaults before 2026-11-29)
    "torch": ["ddp.bucket_cap_mb=25", "ddp.gradient_as_bucket_view=false", "ddp.comm_hook=none",
              "ddp.split_compiled=true"],
}


def ddp_variant_sets(name: str) -> list[str]:
    """A DDP variant name, a '+'-joined list of parts (default, bucketN, gradview, static, bf16hook, nosplit,
    torch), as trainer --set arguments: e.g. 'nosplit+bucket100' -> ['ddp.split_compiled=false',
    'ddp.bucket_cap_mb=100']."""
    out: list[str] = []
    for part in name.split("+"):
        if part.startswith("bucket") and part[6:].isdigit():
            out.append(f"ddp.bucket_cap_mb={int(part[6:])}")
        elif part in DDP_PARTS:
            out += DDP_PARTS[part]
        else:
            raise ValueError(f"DDP variant {name!r}: unknown part {part!r} (known: bucketN, {', '.join(DDP_PARTS)})")
    return out


# -- headline readers: one line from a result file (the device runner's summary) -------------------------


def _r(x, nd: int = 4):
    return None if x is None else round(x, nd)


def _json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def metrics_line(run: str | Path, label: str = "") -> str:
    """A trainer run folder's metrics.jsonl: mean samples/s, step time and data wait of the log lines after
    the first (compile, warm-up), the per-rank data-wait spread and the last loss."""
    try:
        lines = [json.loads(x) for x in (Path(run) / "metrics.jsonl").read_text().splitlines() if x.strip()]
    except (OSError, ValueError) as e:
        return f"{label}: no metrics ({e})"
    if not lines:
        return f"{label}: no metrics lines"
    w = lines[1:] or lines

    def f(k):
        return sum(x.get(k, 0) or 0 for x in w) / len(w)

    return (f"{label}: steps {lines[-1].get('step')}, samples/s {f('samples_per_s'):.1f}, "
            f"step {f('step_time_s') * 1000:.0f} ms, data wait {f('data_wait_s') * 1000:.1f} ms "
            f"(ranks {f('data_wait_min_s') * 1000:.1f}-{f('data_wait_max_s') * 1000:.1f} ms), "
            f"last loss {lines[-1].get('loss', float('nan')):.4f} mse {lines[-1].get('mse', float('nan')):.5f}")


def _rows_line(path: str | Path, formats: dict) -> str:
    """One line from a benchmark's JSON of row lists: each row of each key through its format; rows that
    hold an error (and a top-level `errors` list) are counted instead."""
    r = _json(path)
    if r is None:
        return "no result"
    parts, errors = [], len(r.get("errors") or [])
    for key, fmt in formats.items():
        for row in r.get(key) or []:
            if "error" in row:
                errors += 1
            else:
                parts.append(fmt(row))
    if errors:
        parts.append(f"{errors} error(s)")
    return "; ".join(parts) or "no rows"


def speed_line(path: str | Path) -> str:
    """bench_speed.py run's JSON: MFU and step time per training variant, inference ms per row."""
    return _rows_line(path, {
        "training": lambda t: f"{t['variant']} MFU {100 * t['mfu']:.1f}% step {t['step_ms_median_synced']:.0f} ms",
        "inference": lambda i: f"infer {i.get('input_views')}v {i.get('mode')}"
                               f"{' nh' + str(i['heads']) if i.get('heads') else ''}{' packed' if i.get('packed') else ''}"
                               f" {i.get('total_ms')} ms",
        "split": lambda x: f"split {x.get('variant')} transformer {x.get('transformer_fwd_bwd_ms')} ms",
        "curve": lambda c: f"curve {c.get('variant')} last loss {(c.get('loss') or [None])[-1]}",
    })


def l4gm_line(path: str | Path) -> str:
    """bench_l4gm_gpu.py's JSON: MFU per training row, seconds per 16-frame inference row."""
    return _rows_line(path, {
        "training": lambda t: f"{t.get('variant') or t.get('preset')} nh{t.get('heads')} MFU {100 * (t.get('mfu') or 0):.1f}% "
                              f"step {t.get('step_s')} s",
        "inference": lambda i: f"{i.get('preset')} nh{i.get('heads')} {i.get('frames')}f {i.get('setup', '')} "
                               f"total {i.get('total_s')} s",
    })


def learn_line(path: str | Path) -> str:
    """gpu_learn.py's learn.json: steps, held-out PSNR / psnr_obj / SSIM / LPIPS, training clips' PSNR."""
    r = _json(path)
    if r is None:
        return "no learn.json"
    h, t = r.get("heldout") or {}, r.get("train_clips") or {}
    final = {k: _r(v) for k, v in (r.get("final_train_metrics") or {}).items() if k in ("loss", "mse", "lpips")}
    line = {"steps": r.get("steps"), "psnr": _r(h.get("psnr")), "psnr_obj": _r(h.get("psnr_obj")),
            "ssim": _r(h.get("ssim")), "lpips": _r(h.get("lpips")), "train_psnr": _r(t.get("psnr")), "final": final}
    fp8 = r.get("fp8_attention")
    if fp8:  # gpu_learn --eval-fp8-attention: the paired psnr_obj difference, or why it is missing
        line["fp8_attn_psnr_obj_diff"] = fp8.get("error") or (_r(fp8.get("psnr_obj_diff_mean")), _r(fp8.get("psnr_obj_diff_std")))
    return str(line)


def last_line(path: str | Path, width: int = 160) -> str:
    """The last non-empty line of a text file (pytest's tally, a script's last word)."""
    try:
        lines = [x for x in Path(path).read_text(errors="replace").splitlines() if x.strip()]
    except OSError:
        return "no output"
    return lines[-1][:width] if lines else "empty"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "random-lpips":
        print(random_lpips(sys.argv[2]))
    else:
        sys.exit("usage: python3 benchmarks/common.py random-lpips PATH")
