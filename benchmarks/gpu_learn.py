"""Does it learn? Train a preset on rendered procedural clips, then score held-out clips with `pipeline eval`.

    python benchmarks/gpu_learn.py --train DIR_OR_SPEC --heldout DIR_OR_SPEC --out OUTDIR \
        [--minutes 3 | --steps N] [--preset small] [--set data.image_size=64 ...]

With --minutes, a short calibration run measures the step time and the real run gets as many steps as
fit (cosine schedule over exactly those steps, --max-minutes as a safety); --steps skips the
calibration. The checkpoint is then scored with the evaluation protocol (training/evaluate.py:
`sparse4-v2/<family>@<size>`, fixed seeded pairs, target kinds by camera) on the held-out clips (other
procedural assets, never trained on: `seen_in_training` false) and on the training clips: PSNR and
psnr_obj (inside the target's object box) of the model next to the nearest-input and mean-colour
baselines. Writes OUTDIR/learn.json (summaries per group), OUTDIR/heldout_metrics.parquet,
OUTDIR/train_metrics.parquet, OUTDIR/learn_grid.png (the worst held-out sample: inputs, predictions,
ground truth) and OUTDIR/learn_metrics.jsonl (the training log).
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

from training import shardspec  # noqa: E402
from training.config import apply_overrides, preset  # noqa: E402
from training.evaluate import evaluate  # noqa: E402
from training.train import train  # noqa: E402

log = logging.getLogger("gpu_learn")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", required=True)
    ap.add_argument("--heldout", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--run", default="/tmp/gpu_learn_run")
    ap.add_argument("--minutes", type=float, default=3.0, help="training time budget (calibration included)")
    ap.add_argument("--steps", type=int, default=0, help="train exactly this many steps (no calibration run)")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--set", dest="sets", action="append", default=[])
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname).1s %(name)s: %(message)s")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    base_sets = ["grid_every=0", "log_every=50", "data.batches_per_epoch=2000", *a.sets]

    step_s = None
    if a.steps:
        steps = a.steps
        remaining = a.minutes * 60
    else:
        calib = apply_overrides(preset(a.preset), [*base_sets, "steps=60", "ckpt_every=1000", "optim.warmup_steps=10"])
        shutil.rmtree(a.run + "_calib", ignore_errors=True)
        m = train(calib, a.train, a.run + "_calib")
        step_s = m["step_time_s"]  # the last logging window: loader warm, kernels compiled
        remaining = a.minutes * 60 - (time.monotonic() - t_start)
        steps = max(100, int(remaining / step_s * 0.85))
        log.info("calibration: %.3f s/step; training %d steps", step_s, steps)

    cfg = apply_overrides(preset(a.preset), [*base_sets, f"steps={steps}", f"ckpt_every={steps}",
                                             f"max_minutes={max(0.5, remaining / 60)}",
                                             f"optim.warmup_steps={min(500, steps // 10)}"])
    shutil.rmtree(a.run, ignore_errors=True)
    t0 = time.monotonic()
    last = train(cfg, a.train, a.run)
    train_s = time.monotonic() - t0
    shutil.copy(Path(a.run) / "metrics.jsonl", out / "learn_metrics.jsonl")

    t0 = time.monotonic()
    held = evaluate(a.run, a.heldout, out / "heldout_metrics.parquet", worst=1, grids_dir=out / "grids", progress=False)
    seen = evaluate(a.run, a.train, out / "train_metrics.parquet", worst=0, progress=False)
    eval_s = time.monotonic() - t0
    if held.worst:
        shutil.copy(held.worst[0], out / "learn_grid.png")
    res = {
        "preset": a.preset, "overrides": a.sets, "steps": int(last.get("step", steps)), "train_s": round(train_s, 1),
        "eval_s": round(eval_s, 1), "step_s_calibration": step_s, "final_train_metrics": last,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu", "protocol": held.tag,
        "heldout": held.summary, "train_clips": seen.summary, "heldout_skipped": held.skipped,
        "train_shards": len(shardspec.resolve_shards(a.train)), "heldout_shards": len(shardspec.resolve_shards(a.heldout)),
    }
    (out / "learn.json").write_text(json.dumps(res, indent=1))
    print(json.dumps({k: v for k, v in res.items() if k != "final_train_metrics"}, indent=1))


if __name__ == "__main__":
    main()
