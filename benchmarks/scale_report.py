"""Parts of benchmarks/bench_scale.py: bytes per sample of each preset from real renders (`sizes`),
and the before/after table of `measure` results (`table`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PY = sys.executable


# -- bytes per sample of each preset, from real renders ------------------------------------------------

def preset_sizes(workdir: Path, assets: int = 2) -> dict:
    """Render `assets` procedural clips per preset at the preset's resolution and spp but with 1 and 2
    times of 2 fixed views (the images are what they would be; only their count is cut), then
    extrapolate bytes per sample to the preset's T x V: mean PNG and depth bytes per image from the
    renders, the JSON's fixed and per-(time, view) bytes from the two sizes."""
    import tarfile

    from render.presets import get_preset

    workdir.mkdir(parents=True, exist_ok=True)
    man = workdir / "m.parquet"
    if not man.exists():
        subprocess.run([PY, "-m", "pipeline", "-q", "curate", "--source", "procedural", "--count", str(assets), "--seed",
                        "9", "--max-clips-per-asset", "1", "--assets-out", str(workdir / "assets"),
                        "--shard-size", "64", "--out", str(man)], check=True)
    out: dict = {}
    for name in ("debug", "lrm4d", "l4gm"):
        spec = get_preset(name)
        full_pairs = spec.num_frames * spec.num_views
        got = {}
        for frames in (1, 2):
            d = workdir / f"{name}-{frames}"
            if not (d / "shard-000000.stats.json").exists():
                subprocess.run([PY, "-m", "pipeline", "-q", "render", "--manifest", str(man), "--shard", "0", "--out",
                                str(d), "--no-ray", "--no-progress", "--preset", name, "--frames", str(frames),
                                "--views", "2", "--random-views", "0", "--allow-static", "--min-coverage", "0"],
                               check=True)
            with tarfile.open(d / "shard-000000.tar") as tf:
                sizes = [(m.name, m.size) for m in tf.getmembers()]
            got[frames] = sizes
        rgba = [z for n, z in got[2] if n.endswith((".png", ".webp")) and ".depth." not in n and ".normal." not in n]
        depth = [z for n, z in got[2] if ".depth." in n]
        json1 = [z for n, z in got[1] if n.endswith(".json")]
        json2 = [z for n, z in got[2] if n.endswith(".json")]
        per_pair_json = (sum(json2) / len(json2) - sum(json1) / len(json1)) / 2  # 2 more (time, view) pairs
        fixed_json = sum(json1) / len(json1) - 2 * per_pair_json
        img, dep = sum(rgba) / len(rgba), sum(depth) / len(depth)
        header = 1024  # tar header + padding per member, about
        sample = full_pairs * (img + dep + 2 * header) + fixed_json + per_pair_json * full_pairs + header
        out[name] = {"resolution": spec.resolution, "samples_spp": spec.samples, "images_per_sample": full_pairs,
                     "png_bytes_mean": round(img), "depth_bytes_mean": round(dep),
                     "json_bytes_full": round(fixed_json + per_pair_json * full_pairs),
                     "sample_mb": round(sample / 1e6, 2), "clips_measured": len(json2)}
        print(json.dumps({name: out[name]}), flush=True)
    return out


# -- the before/after table --------------------------------------------------------------------------

ROWS = [("one more commit: requests", "commit", lambda r: r["result"]["commits"][-1]["requests"]),
        ("one more commit: seconds", "commit", lambda r: round(r["result"]["commits"][-1]["seconds"], 3)),
        ("end-of-run index: requests", "commit", lambda r: r["result"]["end_of_run_index"]["requests"]),
        ("end-of-run index: seconds", "commit", lambda r: round(r["result"]["end_of_run_index"]["seconds"], 2)),
        ("status: seconds (2nd run)", "status_2", lambda r: r["wall_s"]),
        ("status: requests (2nd run)", "status_2", lambda r: r.get("requests")),
        ("status: peak RSS MiB", "status_2", lambda r: r["max_rss_mib"]),
        ("status: seconds (1st run)", "status_1", lambda r: r["wall_s"]),
        ("status --from-index: seconds", "status_from_index", lambda r: r["wall_s"]),
        ("status --from-index: requests", "status_from_index", lambda r: r.get("requests")),
        ("training start to first batch: seconds", "train_start", lambda r: round(r["result"]["first_batch_s"], 2)),
        ("training start: process wall s", "train_start", lambda r: r["wall_s"]),
        ("training start: requests", "train_start", lambda r: r.get("requests")),
        ("training start: peak RSS MiB", "train_start", lambda r: r["max_rss_mib"]),
        ("follow poll, nothing new: requests", "follow", lambda r: r["result"]["poll_requests"]),
        ("follow poll, nothing new: seconds", "follow", lambda r: round(r["result"]["poll_s"], 3)),
        ("preview one shard: seconds", "preview", lambda r: r["wall_s"]),
        ("preview one shard: requests", "preview", lambda r: r.get("requests"))]


def table(files: list[str]) -> str:
    runs = [json.loads(Path(f).read_text()) for f in files]
    head = [f"{r['label']} {w} ({r['shards']})" for r in runs for w in ("local", "s3") if w in r]
    lines = ["| measure | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for name, key, get in ROWS:
        cells = []
        for r in runs:
            for w in ("local", "s3"):
                if w not in r:
                    continue
                try:
                    v = get(r[w][key])
                except (KeyError, TypeError, IndexError):
                    v = None
                cells.append("" if v is None else str(v))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
