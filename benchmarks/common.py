"""What several benchmark scripts share: the repository root on sys.path, the bf16 peak that MFU is counted
against, synced wall-clock timing, peak GPU memory, the random-weight LPIPS file the devices train with, the
DDP variant names, and the readers that turn a device run's raw outputs into one headline line each
(benchmarks/device.py prints them in its summary table).

Nothing here imports `training` or torch at module level: bench_speed.py chooses which checkout's `training`
package is imported (--tree), and the device runner imports this file before any wheel is installed.

    python3 benchmarks/common.py random-lpips PATH    # an LPIPS weights file of the real shape, random weights
"""

from __future__ import annotations

import json
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

    torch.save(positive_lin(LPIPS()).state_dict(), str(path))
    return Path(path)


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


def speed_line(path: str | Path) -> str:
    """bench_speed.py run's JSON: MFU and step time per training variant, inference ms per row."""
    r = _json(path)
    if r is None:
        return "no result"
    parts = [f"{t['variant']} MFU {100 * t['mfu']:.1f}% step {t['step_ms_median_synced']:.0f} ms"
             for t in r.get("training", [])]
    parts += [f"infer {i.get('input_views')}v {i.get('mode')}{'' if not i.get('heads') else ' nh' + str(i['heads'])}"
              f" {i.get('total_ms')} ms" for i in r.get("inference", [])]
    parts += [f"split {s.get('variant')}" for s in r.get("split", [])]
    parts += [f"curve {c.get('variant')} last loss {(c.get('loss') or [None])[-1]}" for c in r.get("curve", [])]
    if r.get("errors"):
        parts.append(f"{len(r['errors'])} error(s)")
    return "; ".join(parts) or "no rows"


def l4gm_line(path: str | Path) -> str:
    """bench_l4gm_gpu.py's JSON: MFU per training row, seconds per 16-frame inference row."""
    r = _json(path)
    if r is None:
        return "no result"
    parts = [f"{t.get('preset')} nh{t.get('heads')} MFU {100 * (t.get('mfu') or 0):.1f}% step {t.get('step_s')} s"
             for t in r.get("training", [])]
    parts += [f"{i.get('preset')} nh{i.get('heads')} {i.get('frames')}f {i.get('setup', '')} total {i.get('total_s')} s"
              for i in r.get("inference", [])]
    if r.get("errors"):
        parts.append(f"{len(r['errors'])} error(s)")
    return "; ".join(parts) or "no rows"


def learn_line(path: str | Path) -> str:
    """gpu_learn.py's learn.json: steps, held-out PSNR / psnr_obj / SSIM / LPIPS, training clips' PSNR."""
    r = _json(path)
    if r is None:
        return "no learn.json"
    h, t = r.get("heldout") or {}, r.get("train_clips") or {}
    final = {k: _r(v) for k, v in (r.get("final_train_metrics") or {}).items() if k in ("loss", "mse", "lpips")}
    return str({"steps": r.get("steps"), "psnr": _r(h.get("psnr")), "psnr_obj": _r(h.get("psnr_obj")),
                "ssim": _r(h.get("ssim")), "lpips": _r(h.get("lpips")), "train_psnr": _r(t.get("psnr")),
                "final": final})


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
