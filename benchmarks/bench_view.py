"""`pipeline view` on a CPU: start time on a 1,000-shard dataset and the time to draw one sample of
the lrm4d preset's size (24 times x 12 views, 256 px). Targets (issue 24): start < 5 s, draw < 2 s.

    python benchmarks/bench_view.py [--work /tmp/bench_view] [--shards 1000] [--repeats 3] [--size 256]

Datasets (built once under --work, reused): `many/`, --shards shards of one tiny analytic sample each
(2 views x 2 times, 8 px), committed by the real ShardWriter (tar, parquet, member index, stats.json,
index.json); `lrm4d/`, one shard of 4 samples at the lrm4d layout (an analytic sample of
training/data/synthetic.py rendered once at --size, its members copied under 4 keys), member index included.

Measured:
- start: `pipeline view DIR --port 0` in a fresh process, from launch until it prints its URL (the
  listing of every shard, the first shard's stats.json and parquet, the first sample read and drawn
  into the scene, and viser's server up), median of --repeats; also the in-process part (`start()`).
- draw: in one viewer process, each lrm4d sample selected in turn (the sample dropdown's callback:
  its JSON by one ranged read, then time 0's 12 images and 12 depth maps, decoded, back-projected to
  coloured points, frustums and images encoded into scene messages); and moving the time slider to a
  time not read yet (the same for one time). Server side: no browser is attached (the browser's own
  drawing is not timed here; the browser tests only check that it draws).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from contracts import layout  # noqa: E402


def make_many(d: Path, shards: int) -> Path:
    from pipeline.shards import ShardWriter
    from render.result import SampleResult
    from training.data import synthetic

    if (d / layout.INDEX_NAME).exists() and len(layout.committed_shards(d)) == shards:
        return d
    t0 = time.perf_counter()
    members = synthetic.make_sample("tiny", 0, views=2, frames=2, size=8)
    for n in range(shards):
        key = f"s{n:06d}_000"
        w = ShardWriter(d, n)
        w.add(SampleResult(f"s{n:06d}", 0, key, "ok", None, None, 0.0,
                           members={name.replace("tiny_000", key, 1): data for name, data in members.items()}))
        w.commit()
    layout.write_index(d)
    print(f"built {shards} shards in {time.perf_counter() - t0:.0f} s: {d}", flush=True)
    return d


def make_lrm4d(d: Path, size: int, samples: int = 4) -> Path:
    from pipeline.shards import ShardWriter
    from render.result import SampleResult
    from training.data import synthetic

    if (d / layout.INDEX_NAME).exists():
        return d
    t0 = time.perf_counter()
    base = synthetic.make_sample("lrm", 0, views=12, frames=24, size=size)
    print(f"rendered one 24 x 12 sample at {size} px in {time.perf_counter() - t0:.0f} s", flush=True)
    w = ShardWriter(d, 0)
    for i in range(samples):
        key = f"lrm{i}_000"
        w.add(SampleResult(f"lrm{i}", 0, key, "ok", None, None, 0.0,
                           members={name.replace("lrm_000", key, 1): data for name, data in base.items()}))
    w.commit()
    layout.write_index(d)
    return d


def time_start(d: Path, repeats: int) -> dict:
    walls, inner = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        p = subprocess.Popen([sys.executable, "-m", "pipeline", "view", str(d), "--port", "0"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            for line in p.stdout:
                m = re.search(r"viewer ready in ([0-9.]+) s", line)
                if m:
                    walls.append(time.perf_counter() - t0)
                    inner.append(float(m.group(1)))
                    break
            else:
                raise RuntimeError(f"pipeline view {d} exited with {p.wait()} before printing its URL")
        finally:
            p.terminate()
            p.wait()
    return {"start_s_median": statistics.median(walls), "start_s_all": walls,
            "in_process_s_median": statistics.median(inner)}


def time_draw(d: Path) -> dict:
    from viewer.server import start

    r = start(str(d), port=0)
    try:
        app = r.app
        labels = list(app.sample_dd.options)
        draws, steps = [], []
        for lab in labels[1:] + labels[:1]:  # each sample selected in turn (the first was drawn at start)
            t0 = time.perf_counter()
            app.sample_dd.value = lab
            draws.append(time.perf_counter() - t0)
            assert app.reader is not None and app.layer.frustums, app.sample_info.content
            t0 = time.perf_counter()
            app.time.slider.value = 7
            steps.append(time.perf_counter() - t0)
        reader = app.reader
        points = int(app.layer.cloud.points.shape[0])
        return {"draw_s_median": statistics.median(draws), "draw_s_all": draws,
                "time_step_s_median": statistics.median(steps), "time_step_s_all": steps,
                "times": reader.T, "views": reader.V, "size": reader.width, "depth_points": points}
    finally:
        r.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench_view"))
    ap.add_argument("--shards", type=int, default=1000)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    many = make_many(args.work / f"many-{args.shards}", args.shards)
    lrm = make_lrm4d(args.work / f"lrm4d-{args.size}", args.size)
    out = {"machine": f"{platform.node()} ({os.cpu_count()} CPUs, {platform.machine()})",
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "shards": args.shards,
           **time_start(many, args.repeats), **time_draw(lrm)}
    print(json.dumps(out, indent=1))
    print(f"start on {args.shards} shards: {out['start_s_median']:.2f} s (target < 5 s; in process "
          f"{out['in_process_s_median']:.2f} s); draw a {out['times']} x {out['views']} sample at {out['size']} px: "
          f"{out['draw_s_median']:.2f} s (target < 2 s); one new time: {out['time_step_s_median']:.2f} s")


if __name__ == "__main__":
    main()
