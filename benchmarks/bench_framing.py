"""Benchmark: how much of the image an object covers under framing 'union' and 'track' (DESIGN.md §2).

Renders every clip of the shared animated glTF models (../shared/assets/gltf, at most --max-clips per file),
clip 0 of --procedural procedural assets, and "travelling" copies of the in-place movers (the shared
characters and the procedural assets with the whole scene carried --travel times its own size along
glTF x over each clip, tests/render/glb.py `with_travel`), once per framing, with the lrm4d camera
layout (8 fixed views on two rings, radius 2.1, fov 49.1) at a small size. Coverage is the fraction of
pixels with alpha > 0; per sample it reports the mean over all images, the median view and the best
view (each view's mean over time), the per-time camera travel, how often the object touches the
image border, and where the surfaces lie along the pixel rays against the reconstructor's distance bound
(|camera - anchor| +- model.dist_span, training/models/blocks.py, the anchor being the time's camera offset; and,
for comparison, measured from the origin as before anchors). Prints a Markdown table of the median and 10th percentile per group and framing, and
writes every row to --out (JSON lines).

    nice python benchmarks/bench_framing.py --out .scratch/framing.jsonl

One Blender process; about 3 s per (asset, framing) at 64 px, 6 times, 8 views on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED = ROOT.parent / "shared" / "assets" / "gltf"
FRAMINGS = ("union", "track")
STATS = ("coverage_mean", "coverage_median_view", "coverage_max_view", "touches_border", "track_travel",
         "normalization_scale")


def ray_span(members: dict[str, bytes], key: str, dist_span: float) -> dict:
    """Where the surfaces lie along the pixel rays against the reconstructor's bound |camera - anchor| +-
    dist_span (training/models/blocks.py ray_depth_means; anchor = cameras.offsets[t], training/data/decode.py
    camera_anchors): the largest | ray distance - |camera - anchor| | over all surface pixels (the smallest
    dist_span that holds every surface) and the fraction of surface pixels outside the bound; the same
    measured from the origin (`_origin`: the bound before anchors, what a model given no anchors uses)."""
    from render import passes
    from training.data.decode import camera_anchors

    meta = json.loads(members[f"{key}.json"])
    c2w, K = np.array(meta["c2w"]), np.array(meta["K"])  # [T, V, 4, 4], [V, 3, 3]
    anchors = camera_anchors(key, meta)  # [T, 3]
    need, outside, total = 0.0, 0, 0
    need_o, outside_o = 0.0, 0
    for t in range(meta["num_frames"]):
        for v in range(meta["num_views"]):
            depth = passes.decode_depth(members[f"{key}.t{t:03d}.v{v:03d}.depth.png"], meta["depth_scale"])
            H, W = depth.shape
            j, i = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
            stretch = np.sqrt(1 + ((j - K[v, 0, 2]) / K[v, 0, 0]) ** 2 + ((i - K[v, 1, 2]) / K[v, 1, 1]) ** 2)
            ray = (depth * stretch)[depth > 0]  # distance along the unit pixel ray
            gap = np.abs(ray - np.linalg.norm(c2w[t, v, :3, 3] - anchors[t]))
            gap_o = np.abs(ray - np.linalg.norm(c2w[t, v, :3, 3]))
            if len(gap):
                need, need_o = max(need, float(gap.max())), max(need_o, float(gap_o.max()))
                outside += int((gap > dist_span).sum())
                outside_o += int((gap_o > dist_span).sum())
                total += len(gap)
    return {"span_needed": need, "outside_default_span": outside / total if total else 0.0,
            "span_needed_origin": need_o, "outside_default_span_origin": outside_o / total if total else 0.0}


def render(worker, path: Path, clip: int, uid: str, framing: str, dist_span: float) -> dict:
    row = {"uid": uid, "clip": clip, "source": "local",
           "render_settings": json.dumps({"framing": framing, "min_coverage": 0.0})}
    r = worker.render(row, path)
    span = ray_span(r.members, r.key, dist_span) if r.status == "ok" else {}
    return {"uid": uid, "clip": clip, "framing": framing, "status": r.status, "reason": r.reason,
            "seconds": round(r.seconds, 2), **{k: r.stats.get(k) for k in STATS}, **span}


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="JSON lines, one per (asset, clip, framing)")
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--procedural", type=int, default=6, help="procedural assets (seed 0), clip 0 of each")
    ap.add_argument("--travel", type=float, default=3.0, help="travelling copies move this many times their size")
    ap.add_argument("--max-clips", type=int, default=3, help="clips per shared file (InterpolationTest has 9)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dist-span", type=float, default=1.0, help="the reconstructor's model.dist_span to check against")
    args = ap.parse_args()

    from manifests.gltf_info import read_gltf_info
    from render.presets import get_preset
    from render.procedural import generate_assets
    from render.worker import RenderWorker
    from tests.render.glb import with_travel

    spec = get_preset("lrm4d", resolution=args.resolution, num_frames=args.frames, random_views=0, samples=4)
    tmp = Path(tempfile.mkdtemp(prefix="bench-framing-"))
    jobs: list[tuple[str, str, Path, int]] = []  # (group, uid, path, clip)
    for p in sorted(SHARED.glob("*.glb")):
        for c in read_gltf_info(p).animations[: args.max_clips]:
            jobs.append(("gltf", p.stem, p, c.index))
    for p in generate_assets(tmp / "procedural", args.procedural, 0):
        jobs.append(("procedural", p.stem, p, 0))
    movers = [j for j in jobs if j[0] == "procedural" or j[1] in ("CesiumMan", "Fox", "RiggedSimple")]

    rows: list[dict] = []
    t0 = time.perf_counter()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with RenderWorker(spec, threads=args.threads) as worker, open(args.out, "w") as f:
        def run(group: str, uid: str, path: Path, clip: int) -> list[dict]:
            out = []
            for framing in FRAMINGS:
                r = {"group": group, **render(worker, path, clip, uid, framing, args.dist_span)}
                f.write(json.dumps(r) + "\n")
                f.flush()
                out.append(r)
                print(f"{group:<12} {uid:<24} clip {clip} {framing:<6} {r['status']:<8} "
                      f"mean {r['coverage_mean'] or 0:.4f} best {r['coverage_max_view'] or 0:.4f} "
                      f"travel {r['track_travel'] or 0:.2f} span {r.get('span_needed', 0):.2f}", file=sys.stderr)
            return out

        for job in jobs:
            rows += run(*job)
        for group, uid, path, clip in movers:
            union = next(r for r in rows if r["uid"] == uid and r["clip"] == clip and r["framing"] == "union")
            if union["status"] != "ok":
                continue
            size = 1.0 / union["normalization_scale"]  # the in-place clip's union box: about the object's size
            moved = with_travel(path, tmp / f"{uid}_c{clip}_travel.glb", args.travel * size)
            rows += run(f"{group}+travel", f"{uid}_c{clip}_travel", moved, clip)
    wall = time.perf_counter() - t0

    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {wall:.0f} s wall; "
          f"{args.resolution} px, {args.frames} times, {spec.fixed_views} views, travel x{args.travel}\n")
    print("| group | framing | n ok | coverage mean: median | p10 | median view: median | p10 | best view: median | p10 "
          "| touches border | camera travel: median | max | span needed: max, anchor / origin "
          "| outside span: max, anchor / origin |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for group in dict.fromkeys(r["group"] for r in rows):
        for framing in FRAMINGS:
            ok = [r for r in rows if r["group"] == group and r["framing"] == framing and r["status"] == "ok"]
            col = {k: [r[k] for r in ok] for k in STATS}
            print(f"| {group} | {framing} | {len(ok)} | {pct(col['coverage_mean'], 50):.4f} | {pct(col['coverage_mean'], 10):.4f} "
                  f"| {pct(col['coverage_median_view'], 50):.4f} | {pct(col['coverage_median_view'], 10):.4f} "
                  f"| {pct(col['coverage_max_view'], 50):.4f} | {pct(col['coverage_max_view'], 10):.4f} "
                  f"| {np.mean(col['touches_border']) if ok else float('nan'):.2f} "
                  f"| {pct(col['track_travel'], 50):.2f} | {max(col['track_travel'], default=float('nan')):.2f} "
                  f"| {max((r['span_needed'] for r in ok), default=float('nan')):.2f} "
                  f"/ {max((r['span_needed_origin'] for r in ok), default=float('nan')):.2f} "
                  f"| {max((r['outside_default_span'] for r in ok), default=float('nan')):.3f} "
                  f"/ {max((r['outside_default_span_origin'] for r in ok), default=float('nan')):.3f} |")
    bad = [r for r in rows if r["status"] != "ok"]
    for r in bad:
        print(f"not ok: {r['group']} {r['uid']} clip {r['clip']} {r['framing']}: {r['status']} {r['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
