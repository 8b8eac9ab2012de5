"""Issue 23's experiment, the runs: one command per (scenario, arm), its seeds at once, every shard built
from the render cache (benchmarks/data_engine_loop.py), every step the real `pipeline` command.

    python benchmarks/data_engine_experiment.py loop-arm --out .exp23 --scenario shifted --arm groups_diverse \\
        --seeds 0,1,2 --device cuda
    python benchmarks/data_engine_experiment.py loop-report --out .exp23

Per seed (made once, shared by the arms, under a lock): round 0 = `small` trained STEPS0 steps on the round-0
clips, scored by `pipeline eval` on the round-0 clips (what topk/reducible mine), on the target validation
clips (what the target arms aim at) and on the test clips (the starting point). Each arm then runs the real
`pipeline mine` with the same render budget (the size's budget of pool clips), builds the new shards from the
cache, trains STEPS1 more steps from the round-0 checkpoint on round 0 + its new clips (same steps for every
arm), and is scored on the test clips:

| arm | pipeline mine | training weights |
|---|---|---|
| random | --pool-strategy random --pool-seed SEED | uniform |
| topk | per-clip top-k loss (today's), --pool-strategy similar | uniform |
| reducible | per-clip RHO-LOSS: --strategy reducible on the validation clips (current minus reference loss), --pool-strategy similar (pool clips like the reducible ones) | uniform |
| groups | --pool-strategy target --within random (group budget from the validation clips' copy-baseline deficits) | uniform |
| groups_diverse | --pool-strategy target --within diverse (k-center in each group) | uniform |
| groups_rho | groups_diverse with --signal reference (group deficit = reference minus current psnr_obj on the validation clips) | uniform |
| combo | groups_diverse + --group-weights | group shares |
| groups_robust | groups_diverse with --deficit-clip 3 (each validation clip's deficit clipped to the median +- 3 robust sd) | uniform |
| combo_robust | groups_robust + --group-weights | group shares |
| target_mix | --pool-strategy target --group-eta 0 --within diverse + --group-weights: budget and draws by the target's own group shares (with the floor), no deficit | group shares |

The reference (reducible, groups_rho; made once per seed under a lock) is `small` trained STEPS0 steps (as round
0: it runs beside round 0, not after it) from scratch on round 0 plus the whole pool (rendered in the cache): the RHO-LOSS reference trained on more
data of the candidates' distribution, so `current - reference` is what the pool's data can still teach (a
reference trained on the validation clips alone scored worse than the current model on every round-0 clip
in the CPU check: nothing was "reducible"). RHO's excess is taken on the validation clips, which neither model
trained on (on round-0 clips the current model has seen each clip more often than the reference, so its loss
is lower there whatever the data teaches). When no validation clip has a positive excess, `reducible` falls
back to the random draw and says so in its result.

Render core-seconds: the cached samples' own CPU seconds (`cpu_s` of the shard parquet, one render thread).
GPU seconds: wall seconds of the arm's own `pipeline train` / `pipeline eval` processes (the reference run
included for the arms that use it, counted in each; round 0 counted once per seed, apart). The random arm also scores its middle checkpoint (the control's
learning curve: still rising at the budget, or flat).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from data_engine_common import KINDS, committed, sh, sh_all, spec
from data_engine_loop import GROUP_BY, loop_cfg

LOOP_ARMS = ("random", "topk", "reducible", "groups", "groups_diverse", "groups_rho", "combo", "groups_robust",
             "combo_robust", "target_mix")
TARGET_ARMS = ("groups", "groups_diverse", "groups_rho", "combo", "groups_robust", "combo_robust", "target_mix")
WEIGHTED_ARMS = ("combo", "combo_robust", "target_mix")  # the next round trains with mine's group weights


@contextmanager
def locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _shards(p: Path) -> list[int]:
    import pandas as pd

    return sorted({int(s) for s in pd.read_parquet(p, columns=["shard"])["shard"]})


def setup_scenario(out: Path, s: str) -> Path:
    """DIR/S/data: round-0, validation and test shards, copied from the cache (once)."""
    from data_engine_cache import copy_rows

    from contracts.layout import committed_shards, read_stats
    from manifests import read_manifest

    d = out / s / "data"
    with locked(out / s / "setup.lock"):
        base = read_stats(out / "cache" / "data", committed_shards(out / "cache" / "data")[0]).get("spec")
        for role in ("round0", "val", "test"):
            copy_rows(out / "cache", read_manifest(out / s / f"{role}.parquet").assign(render_settings=None), d, base)
    return d


def _gpu(args: list[str], log: Path, cost: dict, what: str) -> None:
    cost[what] = round(cost.get(what, 0.0) + sh(args, log), 1)


def _made_once(out: Path, s: str, seed: int, name: str, shards: str, roles: tuple[str, ...], device: str,
               workers: int) -> dict:
    """`small` trained STEPS0 steps from scratch on SHARDS (DIR/S/seedN/NAME), scored on each role's clips; made
    once per seed under a lock, so arms running at once share it."""
    from data_engine_experiment import train_args

    c = loop_cfg(out)
    d = out / s / f"seed{seed}"
    done = d / f"{name}.json"
    with locked(d / f"{name}.lock"):
        if done.exists():
            return json.loads(done.read_text())
        run, log, cost = d / name, d / f"{name}_log.txt", {}
        shutil.rmtree(run, ignore_errors=True)
        _gpu(train_args(c, shards, run, c["steps0"], seed, device, None, workers), log, cost, "train_s")
        ck = run / "checkpoints" / f"step-{c['steps0']:08d}.pt"
        r: dict = {"checkpoint": str(ck), "metrics": {role: str(d / f"{name}_on_{role}.parquet") for role in roles}}
        # the roles' evaluations at once (each process's start is most of its time), each with its own log
        took = sh_all([(_eval(ck, spec(out / s / "data", _shards(out / s / f"{role}.parquet")), Path(r["metrics"][role]),
                              device), d / f"{name}_eval_{role}_log.txt") for role in roles])
        cost["eval_s"] = round(sum(took), 1)
        r.update(cost, gpu_s=round(sum(cost.values()), 1))
        if "test" in roles:
            r["test"] = _scores(out, s, Path(r["metrics"]["test"]))
        done.write_text(json.dumps(r, indent=1))
        return r


def round0(out: Path, s: str, seed: int, device: str, workers: int) -> dict:
    """The seed's round 0, scored on the round-0 (mined), validation (target) and test (start) clips."""
    shards = spec(out / s / "data", _shards(out / s / "round0.parquet"))
    return _made_once(out, s, seed, "round0", shards, ("round0", "val", "test"), device, workers)


def _eval(ck: Path, shards: str, metrics: Path, device: str) -> list[str]:
    return ["eval", "--checkpoint", str(ck), "--shards", shards, "--out", str(metrics), "--device", device,
            "--worst", "0", "--no-progress"]


def _scores(out: Path, s: str, metrics: Path) -> dict:
    """psnr_obj and psnr on the test clips: all, and per group of the scenario's group column."""
    import pandas as pd

    from manifests.signals import group_labels

    m = pd.read_parquet(metrics)
    t = pd.read_parquet(out / s / "test.parquet")
    lab = dict(zip(zip(t["uid"], t["clip"].astype(int)), group_labels(t, GROUP_BY[s], probe=False)))
    m["group"] = [lab.get((u, int(k)), "?") for u, k in zip(m["uid"], m["clip"])]
    res = {"all": {"clips": len(m), "psnr_obj": float(m["psnr_obj"].mean()), "psnr": float(m["psnr"].mean())}}
    for g, x in m.groupby("group"):
        res[str(g)] = {"clips": len(x), "psnr_obj": float(x["psnr_obj"].mean()), "psnr": float(x["psnr"].mean())}
    return res


def _reference(out: Path, s: str, seed: int, device: str, workers: int) -> dict:
    """RHO-LOSS's reference (module docstring): round 0 plus the whole pool, scored on the round-0 and validation
    clips. The pool's shards go to DIR/S/pool_data, apart from DIR/S/data: mine's new shard numbers never see them."""
    from data_engine_cache import copy_rows

    from contracts.layout import committed_shards, read_stats
    from manifests import read_manifest

    pool_data = out / s / "pool_data"
    with locked(out / s / "setup.lock"):
        base = read_stats(out / "cache" / "data", committed_shards(out / "cache" / "data")[0]).get("spec")
        copy_rows(out / "cache", read_manifest(out / s / "pool.parquet").assign(render_settings=None), pool_data, base)
    shards = spec(out / s / "data", _shards(out / s / "round0.parquet")) + "::" + spec(pool_data, _shards(out / s / "pool.parquet"))
    return _made_once(out, s, seed, "reference", shards, ("round0", "val"), device, workers)


def _positives(cur: Path, ref: Path) -> int:
    import pandas as pd

    a = pd.read_parquet(cur).groupby(["uid", "clip"])["loss"].mean()
    b = pd.read_parquet(ref).groupby(["uid", "clip"])["loss"].mean()
    return int(((a - b).dropna() > 0).sum())


def run_arm(out: Path, s: str, arm: str, seed: int, device: str, workers: int) -> dict:
    import pandas as pd

    from data_engine_cache import copy_rows
    from data_engine_experiment import train_args

    c = loop_cfg(out)
    setup_scenario(out, s)
    rr = _reference(out, s, seed, device, workers) if arm in ("reducible", "groups_rho") else None  # beside round 0
    r0 = round0(out, s, seed, device, workers)
    d = out / s / f"seed{seed}" / arm
    if (d / "result.json").exists():
        return json.loads((d / "result.json").read_text())
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    log, cost, note = d / "log.txt", {}, None
    sd = out / s / f"seed{seed}"
    mine = ["mine", "--metrics", str(sd / "round0_on_round0.parquet"), "--manifest", str(out / s / "round0.parquet"),
            "--renders", str(out / s / "data"), "--out", str(d / "next.parquet"), "--shard-size", str(c["shard_size"]),
            "--rerender-fraction", "0", "--boost", "1", "--fraction", "0.25", "--pool", str(out / s / "pool.parquet"),
            "--render-budget", str(c["budget"]), "--no-pool-probe"]
    target = ["--target-metrics", str(sd / "round0_on_val.parquet"), "--target-manifest", str(out / s / "val.parquet"),
              "--group-by", GROUP_BY[s]]
    if arm == "random":
        mine += ["--pool-strategy", "random", "--pool-seed", str(seed)]
    elif arm == "topk":
        mine += ["--pool-strategy", "similar"]
    elif arm == "reducible":
        cost["reference_s"] = rr["gpu_s"]
        # per-clip RHO on the validation clips, which neither model trained on: current minus reference loss is
        # what more data (the pool) teaches there; the pool clips like those clips are picked
        ref = rr["metrics"]["val"]
        mine[2], mine[4] = str(sd / "round0_on_val.parquet"), str(out / s / "val.parquet")  # --metrics, --manifest
        if _positives(sd / "round0_on_val.parquet", Path(ref)):
            mine += ["--strategy", "reducible", "--reference-metrics", ref, "--pool-strategy", "similar"]
        else:  # no round-0 clip the reference gets more right: nothing reducible to resemble
            note = "no validation clip with current loss > reference loss: fell back to --pool-strategy random"
            mine += ["--pool-strategy", "random", "--pool-seed", str(seed)]
    elif arm in TARGET_ARMS:
        mine += ["--pool-strategy", "target", *target, "--within", "random" if arm == "groups" else "diverse",
                 "--pool-seed", str(seed)] + (["--group-weights"] if arm in WEIGHTED_ARMS else []) \
            + (["--deficit-clip", "3"] if arm in ("groups_robust", "combo_robust") else []) \
            + (["--group-eta", "0"] if arm == "target_mix" else [])
        if arm == "groups_rho":
            cost["reference_s"] = rr["gpu_s"]
            mine += ["--signal", "reference", "--target-reference-metrics", rr["metrics"]["val"]]
    else:
        raise SystemExit(f"unknown arm {arm!r}; arms: {', '.join(LOOP_ARMS)}")
    sh(mine, log)
    nxt = pd.read_parquet(d / "next.parquet")
    new = nxt[nxt["round"] > 0]
    base_spec = json.loads(next((out / "cache" / "data").glob("shard-*.stats.json")).read_text()).get("spec")
    copy_rows(out / "cache", new, d / "data", base_spec)
    run = d / "run"
    (run / "checkpoints").mkdir(parents=True)
    ck0 = Path(r0["checkpoint"])
    shutil.copy2(ck0, run / "checkpoints" / ck0.name)
    shutil.copy2(ck0.parents[1] / "config.json", run / "config.json")
    shards = spec(out / s / "data", _shards(out / s / "round0.parquet")) + "::" + spec(d / "data", committed(d / "data"))
    weights = d / "next.parquet" if arm in WEIGHTED_ARMS else None
    _gpu(train_args(c, shards, run, c["steps0"] + c["steps1"], seed, device, weights, workers), log, cost, "train_s")
    test = spec(out / s / "data", _shards(out / s / "test.parquet"))
    _gpu(_eval(run, test, d / "test_metrics.parquet", device), log, cost, "eval_s")
    # the result is written as soon as the final score exists: a run killed in the optional curve below keeps it
    shared = int(os.environ.get("LOOP_CONCURRENT", "1"))  # arm runs sharing the host: GPU seconds inflate with it
    res = _result(out, s, arm, seed, new, cost, r0, note, shared)
    if arm == "random":
        mid = c["steps0"] + c["steps1"] // 2
        ck = run / "checkpoints" / f"step-{mid:08d}.pt"
        if ck.exists():
            _gpu(_eval(ck, test, d / "test_metrics_mid.parquet", device), log, cost, "curve_eval_s")
            res["curve"] = {c["steps0"]: r0["test"]["all"]["psnr_obj"],
                            mid: _scores(out, s, d / "test_metrics_mid.parquet")["all"]["psnr_obj"],
                            c["steps0"] + c["steps1"]: res["test"]["all"]["psnr_obj"]}
            res["cost"], res["gpu_s"] = cost, round(sum(cost.values()), 1)  # the curve's evaluation counted too
            (d / "result.json").write_text(json.dumps(res, indent=1))
    return res


def _result(out: Path, s: str, arm: str, seed: int, new, cost: dict, r0: dict, note: str | None,
            concurrent: int | None) -> dict:
    """Write and return DIR/S/seedN/ARM/result.json from the arm's final test metrics, its new rows and shards.
    Empty COST (a salvaged run) gives gpu_s None; shards absent (a results.tgz unpacked elsewhere) give None
    render numbers: unknown, never zero. CONCURRENT: arm runs that shared the host (None: unknown)."""
    import pandas as pd

    c = loop_cfg(out)
    d = out / s / f"seed{seed}" / arm
    m = pd.read_parquet(d / "test_metrics.parquet")
    assert not m["seen_in_training"].any(), "test clips must never be trained on"
    images, core_s, wall_s = None, None, None
    if (d / "data").is_dir():
        images, core_s, wall_s = 0, 0.0, 0.0
        for n in committed(d / "data"):
            p = pd.read_parquet(d / "data" / f"shard-{n:06d}.parquet")
            ok = p[p["status"] == "ok"]
            images += int((ok["num_frames"] * ok["num_views"]).sum())
            core_s += float(ok["cpu_s"].sum())   # CPU seconds of the render process (one thread: --threads 1)
            wall_s += float(ok["seconds"].sum())  # its wall seconds (inflated when the CPU box was shared)
        core_s, wall_s = round(core_s, 1), round(wall_s, 1)
    res = {"scenario": s, "arm": arm, "seed": seed, "steps0": c["steps0"], "steps1": c["steps1"],
           "budget": c["budget"], "new_clips": len(new), "new_images": images, "render_core_s": core_s,
           "render_wall_s": wall_s, "gpu_s": round(sum(cost.values()), 1) if cost else None, "cost": cost,
           "round0_gpu_s": r0["gpu_s"], "new_by_group": {str(k): int(v) for k, v in _new_groups(out, s, new).items()},
           "protocol": str(m["protocol"].iloc[0]), "test": _scores(out, s, d / "test_metrics.parquet"),
           "round0_test": r0["test"], "note": note,
           "concurrent_runs": concurrent,
           "curve": None}  # the random arm adds its learning curve afterwards (run_arm)
    (d / "result.json").write_text(json.dumps(res, indent=1))
    return res


def salvage(out: Path) -> list[Path]:
    """Results of arm runs killed after their final evaluation (before the result was written there, as in the
    2026-12-07 19:06 UTC call, whose `random` runs were cut in the optional curve): each arm folder with
    test_metrics.parquet and next.parquet but no result.json gets one, its GPU seconds unknown (None) and a note
    saying so. Returns the result files written."""
    import pandas as pd

    made = []
    for d in sorted(out.glob("*/seed*/*/test_metrics.parquet")):
        d = d.parent
        s, seed, arm = d.parents[1].name, int(d.parent.name.removeprefix("seed")), d.name
        r0 = d.parent / "round0.json"
        if (d / "result.json").exists() or not (d / "next.parquet").exists() or not r0.exists():
            continue
        nxt = pd.read_parquet(d / "next.parquet")
        _result(out, s, arm, seed, nxt[nxt["round"] > 0], {}, json.loads(r0.read_text()),
                "salvaged: killed after its final evaluation; GPU s not recorded", None)
        made.append(d / "result.json")
    return made


def _new_groups(out: Path, s: str, new):
    from manifests.signals import group_labels

    return group_labels(new, GROUP_BY[s], probe=False).value_counts().sort_index()


def loop_arm(out: Path, s: str, arm: str, seeds: list[int], device: str, workers: int, gpu_base: int = 0) -> None:
    """One command per arm: the seeds at once (one process each; seed i on GPU (gpu_base + i) % GPUs)."""
    setup_scenario(out, s)
    ngpu = 1
    if device == "cuda":
        import torch

        ngpu = max(1, torch.cuda.device_count())
    procs = []
    t0 = time.perf_counter()
    for i, seed in enumerate(seeds):
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": str((gpu_base + i) % ngpu)} if device == "cuda" else dict(os.environ)
        logf = open(out / s / f"arm-{arm}-seed{seed}.txt", "w")
        procs.append(subprocess.Popen([sys.executable, __file__.replace("data_engine_arms", "data_engine_experiment"),
                                       "loop-seed", "--out", str(out), "--scenario", s, "--arm", arm, "--seed",
                                       str(seed), "--device", device, "--num-workers", str(workers)],
                                      stdout=logf, stderr=subprocess.STDOUT, env=env))
    rcs = [p.wait() for p in procs]
    print(json.dumps({"scenario": s, "arm": arm, "seeds": seeds, "rc": rcs, "wall_s": round(time.perf_counter() - t0, 1)}))
    if any(rcs):
        raise SystemExit(f"{s}/{arm}: seed run(s) failed (rc {rcs}); logs: {out / s}/arm-{arm}-seed*.txt")
