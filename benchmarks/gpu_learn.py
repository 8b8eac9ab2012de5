"""Does it learn? Train a preset on rendered procedural clips, then score held-out clips with `pipeline eval`.

    python benchmarks/gpu_learn.py --train DIR_OR_SPEC --heldout DIR_OR_SPEC --out OUTDIR \
        [--minutes 3 | --train-minutes 2 | --steps N] [--preset small] [--set data.image_size=64 ...]

With --minutes, a short calibration run measures the step time and the real run gets as many steps as
fit (cosine schedule over exactly those steps, --max-minutes as a safety); --steps skips the
calibration. --train-minutes N is for comparing runs at equal GPU time: after the calibration run (not
counted), the real run's loop gets exactly N minutes of wall time (the trainer's max_minutes deadline
stops it, with a checkpoint), its cosine schedule planned over 1.1x the steps N minutes hold at the
calibrated step time (so the deadline, not the step count, ends it; the schedule fraction reached is
reported); learn.json records the steps reached and the samples seen. The checkpoint is then scored with the evaluation protocol (training/models/lrm4d/protocol.py:
`sparse4-v2/<family>@<size>`, fixed seeded pairs, target kinds by camera) on the held-out clips (other
procedural assets, never trained on: `seen_in_training` false) and on the training clips: PSNR and
psnr_obj (inside the target's object box) of the model next to the nearest-input and mean-colour
baselines. Writes OUTDIR/learn.json (summaries per group), OUTDIR/heldout_metrics.parquet,
OUTDIR/train_metrics.parquet, OUTDIR/learn_grid.png (the worst held-out sample: inputs, predictions,
ground truth) and OUTDIR/learn_metrics.jsonl (the training log). With --eval-fp8-attention the held-out clips
are scored a second time with the inference-only FP8 attention (`pipeline eval --fp8-attention`), into
OUTDIR/heldout_fp8attn_metrics.parquet; learn.json's `fp8_attention` then holds that summary and the per-sample
paired difference of psnr_obj (FP8 minus the default attention, same checkpoint, same pairs).

    python benchmarks/gpu_learn.py --table OUT.md LEARN_JSON [LEARN_JSON ...]

puts learn.json files side by side as one Markdown table (benchmarks/device.py learn's learn_table.md).
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

from training.data import shardspec  # noqa: E402
from training.config import apply_overrides, preset  # noqa: E402
from training.evaluate import evaluate  # noqa: E402
from training.train import train  # noqa: E402

log = logging.getLogger("gpu_learn")


def _f(x, nd: int = 2) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def table(paths: list[str]) -> str:
    """A Markdown table of learn.json files side by side: training time, steps, samples, held-out PSNR
    (psnr_obj) of the model and the two baselines, and on the training clips."""
    head = ("| family (preset) | protocol | training wall time | steps reached (planned) x batch | samples seen | "
            "samples/s | held-out PSNR (obj) | nearest input | mean colour | held-out LPIPS | "
            "training clips PSNR (nearest input) |")
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for path in paths:
        try:
            r = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exn:
            rows.append(f"| {path}: not read ({exn}) |")
            continue
        h, t = r.get("heldout") or {}, r.get("train_clips") or {}
        planned = r.get("steps_planned")
        rows.append(
            f"| {r.get('family', '?')} ({r['preset']}) | {r.get('protocol')} | {r.get('train_s')} s "
            f"({r.get('train_minutes') or '-'} min loop) | {r['steps']} ({planned if planned else '-'}) x "
            f"{r.get('batch_size', '?')} | {r.get('samples_seen', '-')} | {r.get('samples_per_s', '-')} | "
            f"{_f(h.get('psnr'))} ({_f(h.get('psnr_obj'))}) | {_f(h.get('psnr_nearest_input'))} "
            f"({_f(h.get('psnr_obj_nearest_input'))}) | {_f(h.get('psnr_mean_colour'))} "
            f"({_f(h.get('psnr_obj_mean_colour'))}) | {_f(h.get('lpips'), 3)} | {_f(t.get('psnr'))} "
            f"({_f(t.get('psnr_nearest_input'))}) |")
    return "\n".join(rows) + "\n"


def fp8_attention_score(run: str, heldout: str, out: Path) -> dict:
    """The held-out clips scored again with FP8 attention; its summary and the paired per-sample difference of
    psnr_obj against OUT/heldout_metrics.parquet (the default attention's scores of the same checkpoint on the
    same pairs)."""
    import pandas as pd

    t0 = time.monotonic()
    try:
        res = evaluate(run, heldout, out / "heldout_fp8attn_metrics.parquet", worst=0, progress=False,
                       fp8_attention=True)
    except Exception as exn:  # noqa: BLE001 (the main result stands; say why this one is missing)
        log.exception("FP8-attention scoring failed")
        return {"error": f"{type(exn).__name__}: {exn}"[:500]}
    a = pd.read_parquet(out / "heldout_metrics.parquet")
    b = pd.read_parquet(out / "heldout_fp8attn_metrics.parquet")
    both = a.merge(b, on="key", suffixes=("", "_fp8"))  # one row per sample key (DESIGN.md's metrics file)
    diff = (both["psnr_obj_fp8"] - both["psnr_obj"]).dropna()
    return {"heldout": res.summary, "eval_s": round(time.monotonic() - t0, 1), "paired_samples": int(len(diff)),
            "psnr_obj_diff_mean": round(float(diff.mean()), 4) if len(diff) else None,
            "psnr_obj_diff_std": round(float(diff.std()), 4) if len(diff) > 1 else None,
            "psnr_obj_diff_min": round(float(diff.min()), 4) if len(diff) else None}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--table":  # gpu_learn.py --table OUT.md learn1.json learn2.json ...
        if len(sys.argv) < 4:
            sys.exit("usage: gpu_learn.py --table OUT.md LEARN_JSON [LEARN_JSON ...]")
        text = table(sys.argv[3:])
        Path(sys.argv[2]).write_text(text)
        print(text)
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", required=True)
    ap.add_argument("--heldout", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--run", default="/tmp/gpu_learn_run")
    ap.add_argument("--minutes", type=float, default=3.0, help="training time budget (calibration included)")
    ap.add_argument("--train-minutes", type=float, default=0.0,
                    help="exactly this much training wall time after an uncounted calibration run (equal-minutes "
                         "comparisons; with several runs sharing a GPU, a calibration taken while the others start "
                         "plans too few steps and the run ends early: use --steps there)")
    ap.add_argument("--calib-steps", type=int, default=60, help="steps of the calibration run")
    ap.add_argument("--steps", type=int, default=0, help="train exactly this many steps (no calibration run)")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--eval-fp8-attention", action="store_true",
                    help="also score the held-out clips with FP8 attention (CUDA, Hopper, nvidia-cudnn-frontend)")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname).1s %(name)s: %(message)s")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    base_sets = ["grid_every=0", "log_every=50", "data.batches_per_epoch=2000", *a.sets]

    if a.steps < 0 or a.minutes <= 0 or a.train_minutes < 0 or a.calib_steps < 2:
        ap.error("--steps and --train-minutes must be >= 0, --minutes > 0, --calib-steps >= 2")
    step_s = calib_s = compile_fallback = None
    if a.steps:
        steps = a.steps
        remaining = a.minutes * 60
    else:
        def calibrate() -> dict:
            calib = apply_overrides(preset(a.preset), [*base_sets, f"steps={a.calib_steps}", "ckpt_every=100000",
                                                       f"log_every={a.calib_steps // 2}", "optim.warmup_steps=10"])
            shutil.rmtree(a.run + "_calib", ignore_errors=True)
            return train(calib, a.train, a.run + "_calib")

        try:
            m = calibrate()
        except Exception as exn:  # noqa: BLE001 (a compile failure must not cost the whole comparison)
            if not torch.cuda.is_available() or "compile=false" in base_sets:
                raise
            compile_fallback = f"{type(exn).__name__}: {exn}"[:300]
            log.exception("calibration failed; retrying with --set compile=false (recorded in learn.json)")
            base_sets.append("compile=false")
            m = calibrate()
        step_s = m["step_time_s"]  # the last logging window: loader warm, kernels compiled
        calib_s = time.monotonic() - t_start
        if a.train_minutes:
            remaining = a.train_minutes * 60
            steps = max(10, int(remaining / step_s * 1.1))  # more than the deadline allows: the deadline ends it
        else:
            remaining = a.minutes * 60 - calib_s
            steps = max(100, int(remaining / step_s * 0.85))
        log.info("calibration: %.3f s/step (%.1f s in all); training %d steps", step_s, calib_s, steps)

    limit = remaining / 60 if a.train_minutes else max(0.5, remaining / 60)
    cfg = apply_overrides(preset(a.preset), [*base_sets, f"steps={steps}", f"ckpt_every={steps}",
                                             f"max_minutes={limit}", f"optim.warmup_steps={min(500, steps // 10)}"])
    shutil.rmtree(a.run, ignore_errors=True)
    t0 = time.monotonic()
    last = train(cfg, a.train, a.run)
    train_s = time.monotonic() - t0
    reached = int(last.get("step", steps))
    shutil.copy(Path(a.run) / "metrics.jsonl", out / "learn_metrics.jsonl")

    t0 = time.monotonic()
    held = evaluate(a.run, a.heldout, out / "heldout_metrics.parquet", worst=1, grids_dir=out / "grids", progress=False)
    seen = evaluate(a.run, a.train, out / "train_metrics.parquet", worst=0, progress=False)
    eval_s = time.monotonic() - t0
    fp8 = fp8_attention_score(a.run, a.heldout, out) if a.eval_fp8_attention else None
    if held.worst:
        shutil.copy(held.worst[0], out / "learn_grid.png")
    res = {
        "preset": a.preset, "overrides": a.sets, "family": cfg.model.family, "batch_size": cfg.batch_size,
        "train_minutes": a.train_minutes or None, "steps_planned": steps, "steps": reached,
        "samples_seen": reached * cfg.batch_size, "schedule_fraction": round(reached / steps, 3),
        "stopped_by_deadline": reached < steps, "train_s": round(train_s, 1),
        "samples_per_s": round(reached * cfg.batch_size / train_s, 1), "eval_s": round(eval_s, 1),
        "step_s_calibration": step_s, "calibration_s": None if calib_s is None else round(calib_s, 1),
        "compiled": cfg.compile and torch.cuda.is_available(), "compile_fallback": compile_fallback,
        "final_train_metrics": last,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu", "protocol": held.tag,
        "heldout": held.summary, "train_clips": seen.summary, "heldout_skipped": held.skipped,
        "train_shards": len(shardspec.resolve_shards(a.train)), "heldout_shards": len(shardspec.resolve_shards(a.heldout)),
        "fp8_attention": fp8,
    }
    (out / "learn.json").write_text(json.dumps(res, indent=1))
    print(json.dumps({k: v for k, v in res.items() if k != "final_train_metrics"}, indent=1))


if __name__ == "__main__":
    main()
