"""Benchmark: procedural animated assets (render.procedural).

Generates N assets of a category mix in one call (one process) and reports seconds per asset, GLB sizes, clip
counts and which kinds of motion appear, plus the process's resident memory after the first and the last
asset (a long-lived process must stay flat because Blender is reset before each asset); with --per-category,
seconds per asset and GLB size of each category apart.

    nice python benchmarks/bench_procedural.py --count 50 --seed 0 [--categories legacy] [--per-category 4]

Reads the GLBs back with json + struct only (no project code) for the structure columns.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path


def rss_mib() -> float:
    """Resident memory of this process now, MiB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def glb_json(path: Path) -> dict:
    data = path.read_bytes()
    (json_len,) = struct.unpack_from("<I", data, 12)
    return json.loads(data[20 : 20 + json_len])


def kinds(doc: dict) -> set[str]:
    joints = {j for s in doc.get("skins", []) for j in s["joints"]}
    out = set()
    for a in doc.get("animations", []):
        for ch in a["channels"]:
            node, path = ch["target"]["node"], ch["target"]["path"]
            out.add("morph" if path == "weights" else "skin" if node in joints else "rigid")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--categories", default=None, help="mix (default: render.procedural's default mix)")
    ap.add_argument("--per-category", type=int, default=0, help="also time N assets of every category apart")
    args = ap.parse_args()

    t0 = time.perf_counter()
    import bpy  # noqa: F401  (timed apart: the import is a once-per-process cost)

    from render.procedural import generate_assets

    import_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        generate_assets(out / "warm", 1, args.seed + 1)  # first call pays the exporter's lazy imports
        rss_first = rss_mib()
        per_cat = {}
        if args.per_category:
            from render.procedural import GENERATORS

            for cat in GENERATORS:
                t = time.perf_counter()
                made = generate_assets(out / cat, args.per_category, args.seed, categories=cat)
                per_cat[cat] = ((time.perf_counter() - t) / args.per_category, statistics.mean(p.stat().st_size / 1024 for p in made))
        t = time.perf_counter()
        paths = generate_assets(out / "run", args.count, args.seed, categories=args.categories)
        total_s = time.perf_counter() - t
        rss_last = rss_mib()
        sizes = [p.stat().st_size / 1024 for p in paths]
        docs = [glb_json(p) for p in paths]
    clips = [len(d.get("animations", [])) for d in docs]
    spans = [max(d["accessors"][s["input"]]["max"][0] for s in a["samplers"]) for d in docs for a in d["animations"]]
    kind_count = {k: sum(k in kinds(d) for d in docs) for k in ("rigid", "morph", "skin")}
    verts = [sum(d["accessors"][p["attributes"]["POSITION"]]["count"] for m in d["meshes"] for p in m["primitives"]) for d in docs]
    load = os.getloadavg()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}, load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"import bpy + render.procedural: {import_s:.2f} s")
    print(f"assets: {args.count}, seed {args.seed}, mix {args.categories or 'default'}")
    print(f"seconds/asset: {total_s / args.count:.3f} ({total_s:.1f} s for {args.count}, one process, build + export)")
    print(f"GLB KiB: mean {statistics.mean(sizes):.1f}, min {min(sizes):.1f}, max {max(sizes):.1f}")
    print(f"vertices/asset: mean {statistics.mean(verts):.0f}, max {max(verts)}")
    print(f"clips/asset: mean {statistics.mean(clips):.2f} (min {min(clips)}, max {max(clips)}); "
          f"clip seconds: min {min(spans):.2f}, max {max(spans):.2f}")
    print(f"assets with each kind of motion: {kind_count}")
    print(f"RSS after the warm-up asset {rss_first:.0f} MiB, after {args.count} more {rss_last:.0f} MiB")
    for cat, (sec, kib) in per_cat.items():
        print(f"  {cat}: {sec:.2f} s/asset, GLB {kib:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
