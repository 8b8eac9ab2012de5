"""Does the data engine pay? Arms of one data-engine round at equal budgets, scored on held-out clips.

    python benchmarks/data_engine_experiment.py prepare --out DIR [--size cpu|gpu] [--rare-kind skin] [--assets A]
    python benchmarks/data_engine_experiment.py cache --out DIR [--cache DIR/cache]
    python benchmarks/data_engine_experiment.py round0 --out DIR --seed S [--device cuda] [--steps0 N --steps1 N]
    python benchmarks/data_engine_experiment.py arm --out DIR --arm ARM --seed S [--device cpu|cuda]
        [--render-cache DIR/cache] [--num-workers W] [--concurrent N] [--steps0 N --steps1 N]
    python benchmarks/data_engine_experiment.py report --out DIR
    python benchmarks/data_engine_experiment.py all --out DIR --seeds 0,1,2 [--size cpu] [--device cpu]

Every step is the real `pipeline` command in a subprocess (printed as it runs), as a user would type it.

prepare: procedural assets (render/procedural/legacy.py: asset i of a seed always moves with kind
KINDS[i % 3] = rigid, morph or skin) in three disjoint sets: a round-0 set skewed so that the rare kind
(`--rare-kind`, default skin) is rare, a pool of every kind (curated, not rendered), and held-out clips of
every kind (rendered, never trained on). Renders round 0 and the held-out set into DIR/data.

arm (per seed): round 0 is trained once per seed (`tiny` on CPU, `small` on a GPU, --set seed=S) and
evaluated on its own clips; then each arm mines from those metrics, renders its extra clips into its own
folder and trains the same number of further steps from the same round-0 checkpoint:

| arm | extra renders (the render budget, K clips at base density) | weights |
|---|---|---|
| control | K pool clips drawn at random (--pool-strategy random, seed S) | uniform |
| reweight | the same K random pool clips | hard round-0 clips x4 |
| rerender | K/4 hardest round-0 clips again, denser (2x times, 2x views: ~4x the images each) | uniform |
| pool | K pool clips most like the hard ones (--pool-strategy similar) | uniform |
| combo | K pool clips like the hard ones | hard round-0 clips x4 |

cache (for a host without Blender, e.g. the GPU machine: benchmarks/device.py data-engine): renders beforehand
every clip an arm can ask for, with the arms' own flags and --threads 1: each pool row at base density, and
each round-0 row with the denser settings `pipeline mine --rerender-fraction` writes for it (the same
manifests.mining.rerender_settings on the recorded round-0 spec). `arm --render-cache DIR/cache` then still
runs the real `pipeline mine`, and builds its next.parquet's new shards (mine's shard numbers and rows, so
`--weights next.parquet` applies as after a render) from the cached samples, byte for byte, instead of
calling `pipeline render`; a row not cached with the same render_settings, or a cache rendered with another
spec than round 0, is refused. The render cost is the cached samples' own one-core seconds, and the result
says `render_source: cache ...` (the table marks it). Rendering is deterministic for given settings, so
the shards are the ones `pipeline render` would make (tests/pipeline/test_data_engine_cache.py).
round0 trains and scores one seed's round 0 alone, so seeds can run at once; --steps0/--steps1 override
the size's step counts (give every arm the same); --concurrent records how many runs shared the machine
(train_s is inflated by the sharing).

Each arm's final checkpoint is scored with `pipeline eval` on the held-out clips; the report gives, per
kind, PSNR and psnr_obj as mean +- std over seeds, the paired difference to the control, and each arm's
cost (images rendered, render core-seconds from the shards' own timings, training seconds). Writes
DIR/experiment.json and prints a Markdown table.

This file holds the CLI, prepare and the arms (round 0, one arm); the shared settings and the `pipeline`
runner live in benchmarks/data_engine_common.py, the render cache in benchmarks/data_engine_cache.py, the
table in benchmarks/data_engine_report.py.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "benchmarks"))  # the data_engine_* modules beside this file (a test loads it by path)

from data_engine_cache import from_cache, make_cache  # noqa: E402
from data_engine_common import ARMS, KINDS, SIZES, committed, kind_of, load_cfg, render_flags, sh, spec  # noqa: E402
from data_engine_report import report  # noqa: E402


# -- prepare ------------------------------------------------------------------------------------------


def prepare(out: Path, size: str, rare: str, assets: Path | None = None) -> None:
    import pandas as pd

    from manifests import read_manifest, write_manifest
    from manifests.pool import probe_gltf
    from manifests.shards import assign_shards

    c = {**SIZES[size], "size": size, "rare_kind": rare}
    out.mkdir(parents=True, exist_ok=True)
    log = out / "prepare.log"
    parts = {}
    for name, seed, count in (("round0", 300, c["round0"]), ("pool", 301, c["pool"]), ("heldout", 302, c["heldout"])):
        m = out / f"curated_{name}.parquet"
        if not m.exists():
            sh(["curate", "--source", "procedural", "--categories", "legacy", "--count", str(count), "--seed", str(seed), "--assets-out",
                str((assets or out / "assets") / name), "--shard-size", str(c["shard_size"]), "--out", str(m)], log)
        parts[name] = probe_gltf(read_manifest(m))  # skinned/morphed as columns: mining needs no asset files then
    r0 = parts["round0"]
    rare_uids = sorted(u for u in set(r0["uid"]) if kind_of(u) == rare)[: c["rare_keep"]]
    r0 = r0[(r0["uid"].map(kind_of) != rare) | r0["uid"].isin(rare_uids)]
    r0 = assign_shards(r0, c["shard_size"])
    held = assign_shards(parts["heldout"], c["shard_size"], first_shard=int(r0["shard"].max()) + 1)
    pool = assign_shards(parts["pool"], c["shard_size"], first_shard=int(held["shard"].max()) + 1)
    write_manifest(r0, out / "round0.parquet", command="data_engine_experiment prepare", settings=c)
    write_manifest(held, out / "heldout.parquet", command="data_engine_experiment prepare", settings=c)
    write_manifest(pool, out / "pool.parquet", command="data_engine_experiment prepare", settings=c)
    both = pd.concat([r0, held], ignore_index=True)
    write_manifest(both, out / "rendered.parquet", command="data_engine_experiment prepare", settings=c)
    t = sh(["render", "--manifest", str(out / "rendered.parquet"), "--shards", "all", "--out", str(out / "data"),
            *render_flags(c)], log)
    c.update(round0_shards=sorted({int(s) for s in r0["shard"]}), heldout_shards=sorted({int(s) for s in held["shard"]}),
             render0_s=round(t, 1), kinds={u: kind_of(u) for u in pd.concat([both, pool])["uid"]},
             counts={n: {k: int((d["uid"].map(kind_of) == k).sum()) for k in KINDS}
                     for n, d in (("round0", r0), ("heldout", held), ("pool", pool))})
    (out / "experiment_config.json").write_text(json.dumps(c, indent=1))
    print(f"prepared {out}: clips per kind {c['counts']}")


# -- one arm --------------------------------------------------------------------------------------------


def train_args(c: dict, shards: str, run: Path, steps: int, seed: int, device: str, weights: Path | None,
               workers: int | None = None) -> list[str]:
    total = c["steps0"] + c["steps1"]
    workers = workers if workers is not None else (1 if device == "cpu" else 8)
    a = ["train", "--shards", shards, "--out", str(run), "--preset", c["preset"], "--steps", str(steps),
         "--batch-size", str(c["batch"]), "--num-workers", str(workers), "--device", device,
         "--log-every", "25", "--grid-every", "0", "--ckpt-every", str(c["steps0"]),
         "--set", f"seed={seed}", "--set", f"optim.schedule_steps={total}",
         "--set", f"optim.warmup_steps={max(1, total // 20)}", "--set", f"data.image_size={c['image_size']}",
         "--set", "data.batches_per_epoch=50", "--set", "keep_checkpoints=100"]
    return a + (["--weights", str(weights)] if weights else [])


def run_cfg(out: Path, steps0: int | None = None, steps1: int | None = None) -> dict:
    """The experiment's config with the step counts a run overrides (every arm of a comparison must use the same)."""
    c = load_cfg(out)
    c.update({k: v for k, v in (("steps0", steps0), ("steps1", steps1)) if v is not None})
    return c


def _same_steps(marker: Path, c: dict, what: str) -> None:
    """Round 0 and the arms are made once and reused; reusing them under other step counts (round 0's
    schedule spans steps0 + steps1) would mix runs silently, so the counts are recorded and checked."""
    want = {"steps0": int(c["steps0"]), "steps1": int(c["steps1"])}
    if marker.exists():
        had = json.loads(marker.read_text())
        if had != want:
            raise SystemExit(f"{what} was made with {had}, this run asks for {want}: use another --out, or delete "
                             f"{marker.parent} to redo it")
    else:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps(want))


def round0(out: Path, c: dict, seed: int, device: str, workers: int | None = None) -> tuple[Path, Path]:
    """The seed's round-0 checkpoint and its metrics on the round-0 clips (both made once)."""
    d = out / f"seed{seed}"
    run = d / "round0"
    ck = run / "checkpoints" / f"step-{c['steps0']:08d}.pt"
    metrics = d / "round0_metrics.parquet"
    _same_steps(d / "round0_steps.json", c, f"{d}: round 0")
    if not ck.exists():
        t = sh(train_args(c, spec(out / "data", c["round0_shards"]), run, c["steps0"], seed, device, None, workers),
               d / "log.txt")
        (d / "round0_train_s.txt").write_text(f"{t:.1f}")
    if not metrics.exists():
        sh(["eval", "--checkpoint", str(ck), "--shards", spec(out / "data", c["round0_shards"]), "--out", str(metrics),
            "--device", device, "--worst", "0", "--no-progress"], d / "log.txt")
    return ck, metrics


def arm(out: Path, name: str, seed: int, device: str, cache: Path | None = None, workers: int | None = None,
        concurrent: int = 1, steps0: int | None = None, steps1: int | None = None) -> dict:
    import pandas as pd

    c = run_cfg(out, steps0, steps1)
    ck0, m0 = round0(out, c, seed, device, workers)
    d = out / f"seed{seed}" / name
    result = d / "result.json"
    if result.exists():
        res = json.loads(result.read_text())
        had = {k: res.get(k) for k in ("steps0", "steps1")}
        if had != {"steps0": int(c["steps0"]), "steps1": int(c["steps1"])}:
            raise SystemExit(f"{d} was made with {had}, this run asks for steps0={c['steps0']} steps1={c['steps1']}: "
                             f"use another --out, or delete {d} to redo it")
        return res
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    log = d / "log.txt"
    K = c["budget"]
    scored = len(pd.read_parquet(m0, columns=["key"]))
    mine = ["mine", "--metrics", str(m0), "--manifest", str(out / "round0.parquet"), "--renders", str(out / "data"),
            "--out", str(d / "next.parquet"), "--shard-size", str(c["shard_size"])]
    if name in ("control", "reweight"):
        mine += ["--fraction", "0.25", "--pool", str(out / "pool.parquet"), "--render-budget", str(K),
                 "--pool-strategy", "random", "--pool-seed", str(seed), "--rerender-fraction", "0"]
    elif name in ("pool", "combo"):
        mine += ["--fraction", "0.25", "--pool", str(out / "pool.parquet"), "--render-budget", str(K),
                 "--rerender-fraction", "0"]
    else:  # rerender: K/4 denser re-renders cost about the images of K base clips
        n = max(1, round(K / 4))
        mine += ["--rerender-fraction", f"{n / scored:.6f}", "--fraction", f"{max(0.25, n / scored):.6f}"]
    mine += ["--boost", "4" if name in ("reweight", "combo") else "1"]
    sh(mine, log)
    nxt = pd.read_parquet(d / "next.parquet")
    new_shards = sorted({int(s) for s in nxt.loc[nxt["round"] > 0, "shard"]})
    data1 = d / "data"
    render_s = 0.0
    if new_shards and cache is not None:  # the same rows and shards, copied from the renders made beforehand
        t0 = time.perf_counter()
        from_cache(cache, out, nxt, data1)
        render_s = time.perf_counter() - t0
    elif new_shards:
        render_s = sh(["render", "--manifest", str(d / "next.parquet"), "--shards", ",".join(map(str, new_shards)),
                       "--out", str(data1), *render_flags(c), "--threads", "1"], log)
    run = d / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy2(ck0, run / "checkpoints" / ck0.name)
    shutil.copy2(ck0.parents[1] / "config.json", run / "config.json")
    shards = spec(out / "data", c["round0_shards"]) + ("::" + spec(data1, committed(data1)) if committed(data1) else "")
    weights = d / "next.parquet" if name in ("reweight", "combo", "rerender") else None
    train_s = sh(train_args(c, shards, run, c["steps0"] + c["steps1"], seed, device, weights, workers), log)
    metrics = d / "heldout_metrics.parquet"
    sh(["eval", "--checkpoint", str(run), "--shards", spec(out / "data", c["heldout_shards"]), "--out", str(metrics),
        "--device", device, "--worst", "0", "--no-progress"], log)
    m = pd.read_parquet(metrics)
    assert not m["seen_in_training"].any(), "held-out clips must never be trained on"
    m["kind"] = m["uid"].map(kind_of)
    images, core_s = 0, 0.0
    for n in committed(data1):
        p = pd.read_parquet(data1 / f"shard-{n:06d}.parquet")
        ok = p[p["status"] == "ok"]
        images += int((ok["num_frames"] * ok["num_views"]).sum()) if "num_frames" in ok else 0
        core_s += float(ok["seconds"].sum())  # --threads 1: wall seconds of one core per sample (the cache's own)
    res = {"arm": name, "seed": seed, "new_clips": int((nxt["round"] > 0).sum()), "new_images": images,
           "render_core_s": round(core_s, 1), "render_wall_s": round(render_s, 1),
           "render_source": f"cache {cache}" if cache is not None and new_shards else "rendered",
           "train_s": round(train_s, 1), "concurrent_runs": concurrent, "steps0": c["steps0"], "steps1": c["steps1"],
           "protocol": str(m["protocol"].iloc[0]),
           "new_by_kind": {k: int((nxt.loc[nxt["round"] > 0, "uid"].map(kind_of) == k).sum()) for k in KINDS},
           "heldout": {k: {"clips": int((m["kind"] == k).sum()), "psnr": float(m.loc[m["kind"] == k, "psnr"].mean()),
                           "psnr_obj": float(m.loc[m["kind"] == k, "psnr_obj"].mean())} for k in KINDS},
           "heldout_all": {"clips": len(m), "psnr": float(m["psnr"].mean()), "psnr_obj": float(m["psnr_obj"].mean())}}
    result.write_text(json.dumps(res, indent=1))
    print(json.dumps(res))
    return res


def main() -> None:
    from data_engine_arms import LOOP_ARMS
    from data_engine_loop import SCENARIOS

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--size", choices=sorted(SIZES), default="cpu")
    p.add_argument("--rare-kind", choices=KINDS, default="skin")
    p.add_argument("--assets", type=Path, default=None, help="folder for the generated .glb files [OUT/assets]")
    p = sub.add_parser("cache")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--cache", type=Path, default=None, help="[OUT/cache]")
    p = sub.add_parser("round0")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--num-workers", type=int, default=None)
    p.add_argument("--steps0", type=int, default=None)
    p.add_argument("--steps1", type=int, default=None)
    p = sub.add_parser("arm")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--arm", required=True, choices=ARMS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--render-cache", type=Path, default=None, help="take the arm's new renders from this `cache` folder")
    p.add_argument("--num-workers", type=int, default=None, help="DataLoader workers per training run")
    p.add_argument("--concurrent", type=int, default=1, help="runs sharing the machine (recorded with train_s)")
    p.add_argument("--steps0", type=int, default=None, help="override the size's round-0 steps (same for every arm)")
    p.add_argument("--steps1", type=int, default=None, help="override the size's further steps (same for every arm)")
    p = sub.add_parser("report")
    p.add_argument("--out", required=True, type=Path)
    p = sub.add_parser("loop-prepare", help="issue 23: scenarios and the render cache (benchmarks/data_engine_loop.py)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--assets", type=Path, default=None, help="folder for the generated .glb files [OUT/assets]")
    p.add_argument("--size", choices=("gpu", "cpu"), default="gpu", help="cpu: a check of the flow, numbers mean nothing")
    p.add_argument("--scenarios", default="matched,shifted,real",
                   help="which scenarios to prepare (comma list; `category` is prepared alone, in its own OUT)")
    for name in ("loop-arm", "loop-seed"):  # issue 23: one command per (scenario, arm); loop-seed is one seed of it
        p = sub.add_parser(name, help="issue 23: benchmarks/data_engine_arms.py")
        p.add_argument("--out", required=True, type=Path)
        p.add_argument("--scenario", required=True, choices=SCENARIOS)
        p.add_argument("--arm", required=True, choices=LOOP_ARMS)
        p.add_argument("--seeds" if name == "loop-arm" else "--seed", default="0,1,2" if name == "loop-arm" else "0")
        p.add_argument("--device", default="cpu")
        p.add_argument("--num-workers", type=int, default=2)
        p.add_argument("--gpu-base", type=int, default=0, help="loop-arm: seed i runs on GPU (base + i) %% GPUs")
    p = sub.add_parser("loop-report")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--salvage", action="store_true",
                   help="first write result.json for arm runs killed after their final evaluation (GPU s unknown)")
    p = sub.add_parser("all")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--size", choices=sorted(SIZES), default="cpu")
    p.add_argument("--rare-kind", choices=KINDS, default="skin")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--device", default="cpu")
    a = ap.parse_args()
    if a.cmd == "prepare":
        prepare(a.out, a.size, a.rare_kind, a.assets)
    elif a.cmd == "cache":
        make_cache(a.out, a.cache or a.out / "cache")
    elif a.cmd == "round0":
        round0(a.out, run_cfg(a.out, a.steps0, a.steps1), a.seed, a.device, a.num_workers)
    elif a.cmd == "arm":
        arm(a.out, a.arm, a.seed, a.device, a.render_cache, a.num_workers, a.concurrent, a.steps0, a.steps1)
    elif a.cmd == "report":
        report(a.out)
    elif a.cmd == "loop-prepare":
        from data_engine_loop import prepare_loop

        prepare_loop(a.out, a.assets, a.size, scenarios=tuple(x for x in a.scenarios.split(",") if x))
    elif a.cmd == "loop-arm":
        from data_engine_arms import loop_arm

        loop_arm(a.out, a.scenario, a.arm, [int(x) for x in a.seeds.split(",")], a.device, a.num_workers, a.gpu_base)
    elif a.cmd == "loop-seed":
        from data_engine_arms import run_arm

        print(json.dumps(run_arm(a.out, a.scenario, a.arm, int(a.seed), a.device, a.num_workers)))
    elif a.cmd == "loop-report":
        from data_engine_arms import salvage
        from data_engine_report import loop_report

        for r in salvage(a.out) if a.salvage else []:
            print(f"salvaged {r}", file=sys.stderr)
        loop_report(a.out)
    else:
        if not (a.out / "experiment_config.json").exists():
            prepare(a.out, a.size, a.rare_kind)
        for s in (int(x) for x in a.seeds.split(",")):
            for name in a.arms.split(","):
                arm(a.out, name, s, a.device)
        report(a.out)


if __name__ == "__main__":
    main()
