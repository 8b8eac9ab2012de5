"""Does it learn? Train a preset on rendered procedural clips, then score held-out clips.

    python benchmarks/gpu_learn.py --train DIR_OR_SPEC --heldout DIR_OR_SPEC --out OUTDIR \
        [--minutes 3] [--preset small] [--set data.image_size=64 ...]

A short calibration run measures the step time; the real run then gets as many steps as fit in the
time budget, with its cosine schedule over exactly those steps (and --max-minutes as a safety). The
held-out clips (other procedural assets, never trained on) are scored with a fixed seed: PSNR of the
model on novel-view and novel-time targets next to the mean-colour and nearest-input baselines
(training/baselines.py); the same on a few training clips for reference. Writes OUTDIR/learn.json,
OUTDIR/learn_grid.png (held-out: inputs, predictions, ground truth) and OUTDIR/learn_metrics.jsonl.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training import checkpoint as ckpt  # noqa: E402
from training import data  # noqa: E402
from training import shardspec  # noqa: E402
from training.baselines import evaluate  # noqa: E402
from training.config import apply_overrides, preset  # noqa: E402
from training.model import Reconstructor  # noqa: E402
from training.render import render_gaussians, resolve_backend  # noqa: E402
from training.train import train  # noqa: E402
from training.viz import save_grid  # noqa: E402

log = logging.getLogger("gpu_learn")


def eval_batches(spec: str, cfg, seed: int, passes: int, limit: int | None = None) -> list[dict]:
    """Every clip of `spec` once per pass, with seeded (view, time) picks: the same pairs for any model."""
    out = []
    for p in range(passes):
        ds = data.make_dataset(shardspec.resolve_shards(spec), cfg.data, batch_size=8, seed=seed, epoch=p, resampled=False)
        out += list(ds)
    return out[:limit] if limit else out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", required=True)
    ap.add_argument("--heldout", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--run", default="/tmp/gpu_learn_run")
    ap.add_argument("--minutes", type=float, default=3.0, help="training time budget (calibration included)")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--set", dest="sets", action="append", default=[])
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname).1s %(name)s: %(message)s")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    base_sets = ["grid_every=0", "log_every=50", "data.batches_per_epoch=2000", *a.sets]

    calib = apply_overrides(preset(a.preset), [*base_sets, "steps=60", "ckpt_every=1000", "optim.warmup_steps=10"])
    shutil.rmtree(a.run + "_calib", ignore_errors=True)
    t0 = time.monotonic()
    m = train(calib, a.train, a.run + "_calib")
    calib_s = time.monotonic() - t0
    step_s = m["step_time_s"]  # the last logging window: loader warm, kernels compiled
    remaining = a.minutes * 60 - (time.monotonic() - t_start)
    steps = max(100, int(remaining / step_s * 0.85))
    log.info("calibration: %.3f s/step (%.0f s in all); training %d steps", step_s, calib_s, steps)

    cfg = apply_overrides(preset(a.preset), [*base_sets, f"steps={steps}", f"ckpt_every={steps}",
                                             f"max_minutes={max(0.5, remaining / 60)}",
                                             f"optim.warmup_steps={min(500, steps // 10)}"])
    shutil.rmtree(a.run, ignore_errors=True)
    t0 = time.monotonic()
    last = train(cfg, a.train, a.run)
    train_s = time.monotonic() - t0
    shutil.copy(Path(a.run) / "metrics.jsonl", out / "learn_metrics.jsonl")

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    _, state = ckpt.load_latest(a.run)
    model = Reconstructor(cfg.model).to(dev)
    model.load_state_dict(state["model"])
    backend = resolve_backend(cfg.render, dev)
    held = eval_batches(a.heldout, cfg, seed=1234, passes=3)
    seen = eval_batches(a.train, cfg, seed=1234, passes=1, limit=len(held))
    res = {
        "preset": a.preset, "overrides": a.sets, "steps": int(state["step"]), "train_s": round(train_s, 1),
        "step_s_calibration": step_s, "final_train_metrics": last, "device": str(dev),
        "heldout": evaluate(model, held, cfg, backend, dev), "train_clips": evaluate(model, seen, cfg, backend, dev),
        "heldout_clips": len({k for b in held for k in b["key"]}),
    }
    b = {k: (v.to(dev) if isinstance(v, torch.Tensor) else v) for k, v in held[0].items()}
    with torch.no_grad():
        model.eval()
        g = model(b["in_rgb"], b["in_cond"], b["in_c2w"], b["in_K"], b["in_time"])
        S = cfg.data.image_size
        pred, _ = render_gaussians(g, b["tg_c2w"], b["tg_K"], b["tg_time"], S, S, b["background"], cfg.render, backend)
    save_grid(out / "learn_grid.png", {k: (v.cpu() if isinstance(v, torch.Tensor) else v) for k, v in b.items()},
              pred.cpu())
    (out / "learn.json").write_text(json.dumps(res, indent=1))
    print(json.dumps({k: v for k, v in res.items() if k != "final_train_metrics"}, indent=1))


if __name__ == "__main__":
    main()
