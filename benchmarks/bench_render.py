"""Render speed on this machine: per-asset overhead, seconds per image, persistent worker vs fresh process.

    nice python benchmarks/bench_render.py                      # all three parts, prints Markdown tables
    nice python benchmarks/bench_render.py --parts compare --compare-count 20 --json out.json

Parts:
- overhead: one RenderWorker renders every asset once with the debug preset; per asset it reports the
  scene reset, the import, the preparation (clip, evaluated geometry at every time, normalisation) and
  the scene setup (engine, light, compositor, camera), and per image the render call and the rest
  (reading the passes back, encoding PNGs).
- images: seconds per image for each preset at 128, 256 and 512 px (the preset's samples and engine;
  only 2 times x 2 views per asset, since the cost of one image does not depend on how many there are).
- compare: the same assets rendered (a) by one persistent worker and (b) by a fresh `python` + `bpy`
  process per asset, the way the Objaverse-XL rendering scripts start Blender once per object;
  throughput of both and their ratio (debug preset by default: small renders, where the per-asset
  start-up matters most; `--compare-preset lrm4d --compare-resolution 128` for heavier ones).
- eevee: EEVEE's first sample (shader compilation) and its seconds per image after that.

Assets: procedural ones (render.procedural, always there) and the real glTF models in
../shared/assets/gltf when present. The CPU may be shared: the load average is printed before and
after each part; re-run on a quiet machine for clean numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
GLTF = Path(os.environ.get("OBJAVERSE4D_SHARED", REPO.parent / "shared")) / "assets" / "gltf"
STATIC = {"Box", "Duck"}


def load() -> str:
    a, b, c = os.getloadavg()
    return f"{a:.2f} / {b:.2f} / {c:.2f}"


def assets(count: int, workdir: Path) -> list[tuple[str, Path]]:
    from render.procedural import generate_assets

    out = [(p.stem, p) for p in generate_assets(workdir / "procedural", count, 123)]
    if GLTF.is_dir():
        out += [(p.stem, p) for p in sorted(GLTF.glob("*.glb"))]
    return out


def row(uid: str, **settings) -> dict:
    return {"uid": uid, "clip": 0, "source": "local", "static": uid in STATIC,
            "render_settings": json.dumps(settings) if settings else None}


def part_overhead(items, threads) -> dict:
    from render.presets import get_preset
    from render.worker import RenderWorker

    spec = get_preset("debug")
    with RenderWorker(spec, threads=threads) as w:
        w.render(row(items[0][0]), items[0][1])  # warm-up: first import, Cycles kernels
        results = [w.render(row(uid), path) for uid, path in items]
    ok = [r for r in results if r.status == "ok"]
    per = {k: [r.stats[k] for r in ok] for k in ("reset_s", "import_s", "prepare_s", "scene_s")}
    setup = [sum(r.stats[k] for k in per) for r in ok]
    render_per_image = [r.stats["render_s"] / r.stats["images"] for r in ok]
    other_per_image = [(r.seconds - sum(r.stats[k] for k in per) - r.stats["render_s"]) / r.stats["images"] for r in ok]
    return {"spec": "debug (64 px, 4 times x 4 views, 4 spp)", "assets": len(ok),
            "not_ok": {r.key: r.reason for r in results if r.status != "ok"},
            **{k: statistics.mean(v) for k, v in per.items()}, "setup_s": statistics.mean(setup),
            "setup_s_max": max(setup), "render_s_per_image": statistics.mean(render_per_image),
            "readback_encode_s_per_image": statistics.mean(other_per_image),
            "sample_s": statistics.mean(r.seconds for r in ok)}


def part_images(items, presets, resolutions, threads) -> list[dict]:
    from render.presets import get_preset
    from render.worker import RenderWorker

    rows = []
    for name in presets:
        for res in resolutions:
            spec = get_preset(name, resolution=res, num_frames=2, fixed_views=1, random_views=1, max_window_s=10.0,
                              allow_static=True)  # a looping clip seen at its two ends still yields images
            with RenderWorker(spec, threads=threads) as w:
                w.render(row(items[0][0]), items[0][1])  # warm-up
                t_render, n, t_total = 0.0, 0, 0.0
                for uid, path in items:
                    r = w.render(row(uid), path)
                    if r.status == "ok":
                        t_render += r.stats["render_s"]
                        t_total += r.seconds - sum(r.stats[k] for k in ("reset_s", "import_s", "prepare_s", "scene_s"))
                        n += r.stats["images"]
            full = get_preset(name)
            rows.append({"preset": name, "resolution": res, "samples": spec.samples, "images": n,
                         "render_s_per_image": t_render / n, "image_s_incl_encode": t_total / n,
                         "images_per_sample_in_preset": full.num_frames * full.num_views})
    return rows


SINGLE = """
import json, sys, time
t0 = time.perf_counter()
sys.path.insert(0, {repo!r})
from render.presets import get_preset
from render.worker import RenderWorker
w = RenderWorker(get_preset({preset!r}, **{overrides!r}), threads={threads!r})
r = w.render({row!r}, {path!r})
w.close()
print(json.dumps({{"status": r.status, "seconds": r.seconds, "in_process_s": time.perf_counter() - t0}}))
"""


def part_compare(items, threads, preset: str, overrides: dict) -> dict:
    from render.presets import get_preset
    from render.worker import RenderWorker

    spec = get_preset(preset, **overrides)
    t = time.perf_counter()
    with RenderWorker(spec, threads=threads) as w:
        persistent = [w.render(row(uid), path).status for uid, path in items]
    persistent_s = time.perf_counter() - t

    t = time.perf_counter()
    fresh = []
    for uid, path in items:
        code = SINGLE.format(repo=str(REPO), threads=threads, row=row(uid), path=str(path), preset=preset,
                             overrides=overrides)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        fresh.append(json.loads(out.stdout.strip().splitlines()[-1])["status"])
    fresh_s = time.perf_counter() - t
    assert fresh == persistent, (fresh, persistent)
    n = len(items)
    return {"spec": f"{preset} {overrides or ''} ({spec.resolution} px, {spec.num_frames} times x {spec.num_views} views, "
                    f"{spec.samples} spp)", "assets": n, "ok": persistent.count("ok"),
            "persistent_s": persistent_s, "fresh_s": fresh_s, "persistent_assets_per_min": 60 * n / persistent_s,
            "fresh_assets_per_min": 60 * n / fresh_s, "ratio": fresh_s / persistent_s}


def part_eevee(items, threads) -> dict:
    from render.presets import get_preset
    from render.worker import RenderWorker

    spec = get_preset("debug", engine="eevee", resolution=128, num_frames=2, fixed_views=2, samples=16, allow_static=True)
    with RenderWorker(spec, threads=threads) as w:
        t = time.perf_counter()
        first = w.render(row(items[0][0]), items[0][1])
        first_s = time.perf_counter() - t
        r = w.render(row(items[0][0]), items[0][1])
    return {"spec": "eevee, 128 px, 16 samples", "first_sample_s": first_s, "first_images": first.stats.get("images"),
            "render_s_per_image": r.stats["render_s"] / r.stats["images"], "images": r.stats["images"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", nargs="+", default=["overhead", "images", "compare", "eevee"],
                    choices=["overhead", "images", "compare", "eevee"])
    ap.add_argument("--procedural", type=int, default=4, help="procedural assets to add to the real models")
    ap.add_argument("--presets", nargs="+", default=["debug", "lrm4d", "l4gm"])
    ap.add_argument("--resolutions", nargs="+", type=int, default=[128, 256, 512])
    ap.add_argument("--image-assets", type=int, default=3, help="assets per (preset, resolution) in the images part")
    ap.add_argument("--compare-count", type=int, default=12, help="assets in the persistent-vs-fresh comparison")
    ap.add_argument("--compare-preset", default="debug", help="preset of the persistent-vs-fresh comparison")
    ap.add_argument("--compare-resolution", type=int, default=None, help="resolution override for the comparison")
    ap.add_argument("--threads", type=int, default=None, help="render threads (default: all cores)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()

    import bpy  # noqa: F401  (imported here so that its start-up is not in any measurement)

    report = {"date": time.strftime("%Y-%m-%d"), "host": platform.node(), "cpus": os.cpu_count(),
              "python": platform.python_version(), "blender": bpy.app.version_string, "parts": {}}
    with tempfile.TemporaryDirectory() as tmp:
        items = assets(args.procedural, Path(tmp))
        print(f"{len(items)} assets; load average {load()}", flush=True)
        if "overhead" in args.parts:
            la = load()
            report["parts"]["overhead"] = {**part_overhead(items, args.threads), "load_before": la, "load_after": load()}
            print(json.dumps(report["parts"]["overhead"], indent=1), flush=True)
        if "images" in args.parts:
            la = load()
            report["parts"]["images"] = {"rows": part_images(items[:args.image_assets] if not GLTF.is_dir() else
                                                             [i for i in items if i[0] in ("CesiumMan", "Fox")] + items[:1],
                                                             args.presets, args.resolutions, args.threads),
                                         "load_before": la, "load_after": load()}
            print(json.dumps(report["parts"]["images"], indent=1), flush=True)
        if "compare" in args.parts:
            la = load()
            sel = [i for i in items if i[0] not in STATIC][:args.compare_count]
            over = {"resolution": args.compare_resolution} if args.compare_resolution else {}
            report["parts"]["compare"] = {**part_compare(sel, args.threads, args.compare_preset, over),
                                          "load_before": la, "load_after": load()}
            print(json.dumps(report["parts"]["compare"], indent=1), flush=True)
        if "eevee" in args.parts:
            la = load()
            report["parts"]["eevee"] = {**part_eevee(items, args.threads), "load_before": la, "load_after": load()}
            print(json.dumps(report["parts"]["eevee"], indent=1), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
