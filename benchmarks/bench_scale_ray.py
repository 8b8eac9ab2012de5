"""Part of benchmarks/bench_scale.py (`ray`): the Ray scheduler on a manifest of Objaverse size.

    python benchmarks/bench_scale.py ray --rows 100000 --subset 64 --standin-rows 2000,10000 --work W --json OUT

`ray` times the Ray scheduler (`pipeline.runner.run_render`) on a generated manifest of ROWS rows (64
per shard) pointing at one procedural clip: the manifest written and read and `runner.plan` on the whole
(the bookkeeping before dispatch); the real render (debug preset at 16 px and 1 sample per pixel, 4
times x 4 views, one actor of 2 threads) on the first SUBSET rows; then the Ray pool with a render
stand-in (an actor that returns a fixed tiny ok sample without Blender; labelled as such) on the first
K rows for each K of --standin-rows (dispatch, result transfer, shard writing, commits, index), to show
the overhead per sample does not grow with K.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

PY = sys.executable


class StandInActor:
    """RENDER STAND-IN (no Blender): what a render actor returns, for one fixed tiny ok sample, so that
    the scheduler's dispatch and bookkeeping are measured alone. Never used by the pipeline itself."""

    def __init__(self, *args, **kwargs):
        self.done = 0

    def render(self, row: dict) -> tuple:
        from contracts.uids import sample_key
        from render.result import SampleResult

        key = sample_key(str(row["uid"]), int(row["clip"]))
        self.done += 1
        res = SampleResult(uid=str(row["uid"]), clip=int(row["clip"]), key=key, status="ok", reason=None, detail=None,
                           seconds=0.0, members={f"{key}.json": b'{"stand_in": true}'}, stats={"images": 0})
        return res, {"rss": 0, "pid": os.getpid(), "node": "standin", "done": self.done}

    def close(self) -> None:
        pass


def ray_bench(rows: int, subset: int, standin_rows: list[int], workdir: Path) -> dict:
    import pandas as pd

    from manifests.schema import read_manifest, write_manifest
    from pipeline import runner, scheduler
    from render.presets import get_preset

    workdir.mkdir(parents=True, exist_ok=True)
    assets = workdir / "assets"
    if not assets.exists():
        subprocess.run([PY, "-m", "pipeline", "-q", "curate", "--source", "procedural", "--count", "1", "--seed", "5",
                        "--assets-out", str(assets), "--out", str(workdir / "one.parquet")], check=True)
    one = read_manifest(workdir / "one.parquet").iloc[[-1]]
    t0 = time.perf_counter()
    big = pd.concat([one] * rows, ignore_index=True)
    big["uid"] = [f"obj{i:07d}" for i in range(rows)]
    big["shard"] = [i // 64 for i in range(rows)]
    write_manifest(big, workdir / "big.parquet")
    manifest = read_manifest(workdir / "big.parquet")
    out: dict = {"rows": rows, "shards": int(manifest["shard"].max()) + 1,
                 "manifest_write_read_s": round(time.perf_counter() - t0, 2)}
    everything = sorted(set(int(x) for x in manifest["shard"]))
    t0 = time.perf_counter()
    work, _, _ = runner.plan(manifest, everything, workdir / "planned", False, False)
    out["plan_whole_s"] = round(time.perf_counter() - t0, 2)  # rows -> shards, committed check: the bookkeeping before
    assert sum(len(r) for r in work.values()) == rows

    # the real render (Blender, debug preset at 16 px and 1 spp: 4 times x 4 views) on the first rows, one actor
    spec = get_preset("debug", resolution=16, samples=1)
    sub = manifest.iloc[:subset]
    cfg = scheduler.PoolConfig(workers=1, cpus_per_worker=2, progress=False, num_cpus=2)
    t0 = time.perf_counter()
    summ = runner.run_render(sub, sorted(set(int(x) for x in sub["shard"])), spec, workdir / "real", use_ray=True,
                             pool_cfg=cfg, progress=False)
    wall = time.perf_counter() - t0
    worker_s = sum(json.loads(p.read_text())["samples_seconds"] for p in (workdir / "real").glob("*.stats.json"))
    out["real_render"] = {"samples": sum(summ.samples.values()), "statuses": summ.samples, "images": summ.images,
                          "wall_s": round(wall, 2), "worker_s_per_sample": round(worker_s / max(1, len(sub)), 3),
                          "wall_s_per_sample": round(wall / max(1, len(sub)), 3)}
    print(json.dumps(out), flush=True)

    # the RENDER STAND-IN: dispatch + bookkeeping + commits, no Blender, on the first K rows
    scheduler.RenderActorImpl = StandInActor  # RenderPool makes its actor class from this name
    out["stand_in"] = []
    for k in standin_rows:
        part = manifest.iloc[:k]
        cfg = scheduler.PoolConfig(workers=2, cpus_per_worker=1, progress=False, num_cpus=2)
        t0 = time.perf_counter()
        summ = runner.run_render(part, sorted(set(int(x) for x in part["shard"])), spec, workdir / f"standin-{k}",
                                 use_ray=True, pool_cfg=cfg, progress=False)
        wall = time.perf_counter() - t0
        out["stand_in"].append({"label": "RENDER STAND-IN (no Blender): dispatch and bookkeeping only", "rows": k,
                                "samples": sum(summ.samples.values()), "shards_committed": len(summ.rendered),
                                "wall_s": round(wall, 1), "overhead_ms_per_sample": round(wall / k * 1000, 2),
                                "workers": 2})
        print(json.dumps(out["stand_in"][-1]), flush=True)
    return out
