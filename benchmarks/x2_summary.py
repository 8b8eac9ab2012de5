"""The headline lines of an x2 device call's results folder, for its summary.txt (benchmarks/x2_speed.sh,
benchmarks/x2_quality.sh).

    python3 benchmarks/x2_summary.py OUT [learn] [infer]

learn: one line per learning run (OUT/learn/NAME/learn.json: held-out PSNR, psnr_obj, SSIM, LPIPS, training
clips' PSNR, the last training metrics); infer: `base` inference rows (the `after.json` inside
OUT/g0/results.tgz, gpu_suite.sh's archive) and l4gm inference rows (OUT/l4gm_infer.log). Default: both.
"""

from __future__ import annotations

import json
import sys
import tarfile
from pathlib import Path

BASE_KEYS = ("input_views", "heads", "tile", "mode", "reconstruct_ms", "reconstruct_direct_ms", "render_24_ms",
             "total_ms", "transformer_tflops", "graph_vs_fast_max_rel_err", "graph_vs_fast_new_input_max_abs_diff")
L4GM_KEYS = ("preset", "setup", "heads", "reconstruct_s", "render_s", "total_s", "achieved_tflop_per_s",
             "graph_vs_direct_max_abs_diff", "error")


def _r(x):
    return None if x is None else round(x, 4)


def learn_lines(out: Path) -> list[str]:
    lines = []
    for p in sorted(out.glob("learn/*/learn.json")):
        r = json.loads(p.read_text())
        h, t = r.get("heldout") or {}, r.get("train_clips") or {}
        final = {k: _r(v) for k, v in (r.get("final_train_metrics") or {}).items() if k in ("loss", "mse", "lpips")}
        lines.append(f"learn {p.parent.name} " + str({
            "steps": r.get("steps"), "psnr": _r(h.get("psnr")), "psnr_obj": _r(h.get("psnr_obj")),
            "ssim": _r(h.get("ssim")), "lpips": _r(h.get("lpips")), "train_psnr": _r(t.get("psnr")), "final": final}))
    return lines


def infer_lines(out: Path) -> list[str]:
    lines = []
    try:
        with tarfile.open(out / "g0" / "results.tgz") as tf:
            rows = json.load(tf.extractfile("./after.json")).get("inference", [])
        lines += ["infer " + str({k: r.get(k) for k in BASE_KEYS}) for r in rows]
    except (OSError, ValueError, KeyError, tarfile.TarError) as e:
        lines.append(f"no base inference rows: {e}")
    log = out / "l4gm_infer.log"
    for line in log.read_text().splitlines() if log.exists() else []:
        if line.startswith("inference"):
            r = json.loads(line.split(" ", 1)[1])
            lines.append("l4gm " + str({k: r.get(k) for k in L4GM_KEYS}))
    return lines


def main(argv: list[str]) -> None:
    out, parts = Path(argv[0]), argv[1:] or ["learn", "infer"]
    for part in parts:
        for line in {"learn": learn_lines, "infer": infer_lines}[part](out):
            print(line)


if __name__ == "__main__":
    main(sys.argv[1:])
