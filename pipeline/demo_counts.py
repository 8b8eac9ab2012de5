"""What each stage of `pipeline demo` produced, counted from the files it wrote (for demo.json and the
report): curation, render, training, evaluation and mining counts, and the training run's metric lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_train_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The logged lines of a training run (RUN/metrics.jsonl), oldest first."""
    text = (Path(run_dir) / "metrics.jsonl").read_text(encoding="utf-8")
    return [json.loads(x) for x in text.splitlines() if x.strip()]


def curate_counts(manifest: Path, dropped: Path) -> dict[str, Any]:
    import pandas as pd

    from manifests import read_manifest

    df = read_manifest(manifest)
    out: dict[str, Any] = {"assets": int(df["uid"].nunique()), "clips": len(df)}
    if dropped.exists():
        d = pd.read_parquet(dropped)
        out["dropped"] = {str(k): int(v) for k, v in d["reason"].value_counts().items()}
    return out

def render_counts(data: Path, shards: list[int]) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from contracts.layout import parquet_name, read_stats

    counts: dict[str, Any] = {"shards": len(shards), "ok": 0, "failed": 0, "rejected": 0, "images": 0, "reasons": {}}
    for n in shards:
        st = read_stats(data, n)
        counts["images"] += int(st.get("images") or 0)
        for r in pq.read_table(data / parquet_name(n), columns=["status", "reason"]).to_pylist():
            counts[r["status"]] += 1
            if r["reason"]:
                counts["reasons"][r["reason"]] = counts["reasons"].get(r["reason"], 0) + 1
    return counts

def train_counts(run_dir: Path) -> dict[str, Any]:
    lines = read_train_metrics(run_dir)
    last = lines[-1] if lines else {}
    return {"step": last.get("step"), "loss": last.get("loss"), "psnr": last.get("psnr"),
            "samples_per_s": last.get("samples_per_s")}

def eval_counts(path: Path) -> dict[str, Any]:
    import pandas as pd

    d = pd.read_parquet(path)
    out: dict[str, Any] = {"samples": len(d), "seen": int((d["seen_in_training"] == True).sum()),  # noqa: E712
                           "heldout": int((d["seen_in_training"] == False).sum())}  # noqa: E712
    for col in ("psnr", "psnr_obj", "loss", "psnr_nearest_input", "psnr_obj_nearest_input", "psnr_mean_colour"):
        out[col] = float(d[col].mean())
    return out

def mine_counts(before: Path, after: Path) -> dict[str, Any]:
    from manifests import read_manifest

    a, b = read_manifest(before), read_manifest(after)
    reasons = b["mine_reason"].dropna().map(lambda s: s.split(":")[0]).value_counts() if "mine_reason" in b else {}
    return {"rows_in": len(a), "rows_out": len(b), "left_out": len(a) - len(b),
            "upweighted": int(reasons.get("upweight", 0)), "rerender": int(reasons.get("rerender", 0))}
