"""The device stage of benchmarks/procedural_transfer.py (no bpy): train every (arm, seed) at once on one GPU
for the same minutes, score each checkpoint on every held-out set, and put the numbers in tables.

    python benchmarks/procedural_transfer.py device --data DATA --out OUT [--arms old,new,new-notex@0,...] [--seeds 0,1]
        [--train-minutes 4 | --steps 1500 --train-minutes 6] [--set key=value ...]
    python benchmarks/procedural_transfer.py table OUT

device: one benchmarks/gpu_learn.py process per (arm, seed), all started together on the one GPU (equal
wall minutes on a shared card = equal GPU minutes), `small` at 64 px, batch 16, compile off (ten concurrent
compiles would eat the budget), one loader worker each. With --train-minutes alone each run plans its steps from
its own calibration and stops at the deadline; a calibration taken while the others start is slow, and such a run
plans too few steps and ends early (2026-12-07 16:14 UTC: `old` planned 1,028 and 1,243 steps against 1,619-1,685
for the rest). --steps N gives every run exactly N steps (equal compute at equal batch), with --train-minutes
then only a deadline; the table flags runs whose steps differ by more than 10 %; gpu_learn scores heldout/gltf itself, then every
checkpoint is scored on heldout/gltf-val, heldout/proc-old and heldout/proc-new with `pipeline eval`'s protocol
(training.models.lrm4d.protocol.evaluate: fixed seeded pairs, the same for every checkpoint). OUT/<arm>-s<seed>/ holds
learn.json and one <set>_metrics.parquet per held-out set.

table: psnr_obj of the model next to the nearest-input and mean-colour baselines per arm and held-out set
(mean over seeds, with the seeds' spread), the gain over copying, new minus old, and per real asset.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SETS = ("gltf", "gltf-val", "proc-old", "proc-new")
DEFAULT_SETS = ["data.image_size=64", "batch_size=16", "data.num_workers=1", "compile=false"]


def train_spec(data: Path, arm: str) -> str:
    """An arm's training shards: train/ARM, or for `A+B` (e.g. new+new-x) both folders joined with '::'."""
    return "::".join(str(data / "train" / part) for part in arm.split("+"))


def learn_command(a, data: Path, arm: str, seed: int, run: Path) -> list[str]:
    """One run's gpu_learn.py command: exactly --steps steps with --train-minutes as the deadline, or
    --train-minutes of training after a calibration run."""
    budget = (["--steps", str(a.steps), "--minutes", str(a.train_minutes)] if a.steps else
              ["--train-minutes", str(a.train_minutes), "--calib-steps", str(a.calib_steps)])
    return [sys.executable, str(ROOT / "benchmarks/gpu_learn.py"), "--train", train_spec(data, arm),
            "--heldout", str(data / "heldout/gltf"), "--out", str(run), "--run", f"/tmp/pt_run_{arm}_s{seed}",
            *budget, "--preset", a.preset, *[x for s in [*DEFAULT_SETS, f"seed={seed}", *a.sets] for x in ("--set", s)]]


def device(a) -> int:
    data, out = Path(a.data), Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = {}  # arm -> its seeds: ARM takes --seeds, ARM@S+S+... its own
    for item in a.arms.split(","):
        arm, _, own = item.partition("@")
        seeds[arm] = [int(s) for s in (own.split("+") if own else a.seeds.split(","))]
    arms = [x for x in seeds if all((data / "train" / part).is_dir() for part in x.split("+"))]
    missing = sorted(set(seeds) - set(arms))
    if missing:
        print(f"arms without rendered clips, left out: {missing}", flush=True)
    procs = []
    t0 = time.time()
    for arm in arms:
        for seed in seeds[arm]:
            run = out / f"{arm}-s{seed}"
            cmd = learn_command(a, data, arm, seed, run)
            run.mkdir(parents=True, exist_ok=True)
            log = open(run / "learn.log", "w")
            procs.append((arm, seed, run, subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)))
    print(f"{len(procs)} training processes started", flush=True)
    scorers = []
    for arm, seed, run, p in procs:  # each finished run is scored on the other held-out sets at once, in parallel
        rc = p.wait()
        print(f"[{time.time() - t0:.0f} s] {arm} seed {seed}: gpu_learn exit {rc}", flush=True)
        if rc == 0 and (run / "learn.json").exists():
            os.replace(run / "heldout_metrics.parquet", run / "gltf_metrics.parquet")
            cmd = [sys.executable, str(Path(__file__).resolve()), "score", str(data), str(run), f"/tmp/pt_run_{arm}_s{seed}"]
            scorers.append((arm, seed, subprocess.Popen(cmd, cwd=ROOT, stdout=open(run / "score.log", "w"), stderr=subprocess.STDOUT)))
    for arm, seed, p in scorers:
        rc = p.wait()
        print(f"[{time.time() - t0:.0f} s] {arm} seed {seed}: scored (exit {rc})", flush=True)
    text = table(out, a.ref)  # reads every run's metrics once
    print(text)
    (out / "table.md").write_text(text)
    return 0


def score(data: Path, run: Path, checkpoint: str) -> int:
    """Score `checkpoint` on heldout/gltf-val, proc-old and proc-new (gpu_learn did heldout/gltf)."""
    from training.evaluate import evaluate

    for name in SETS[1:]:
        shards = data / "heldout" / name
        if shards.is_dir():
            evaluate(checkpoint, str(shards), run / f"{name}_metrics.parquet", worst=1, grids_dir=run / f"grids_{name}",
                     progress=False)
    return 0


def _metrics_file(run: Path, name: str) -> Path | None:
    """A run's metrics of held-out set `name`. For gltf, a run cut by the call's budget after gpu_learn scored
    heldout/gltf but before `device` renamed its file (no learn.json) still has them as heldout_metrics.parquet:
    that file is used (the table says which runs were salvaged so)."""
    f = run / f"{name}_metrics.parquet"
    if f.exists():
        return f
    cut = run / "heldout_metrics.parquet"
    return cut if name == "gltf" and cut.exists() and not (run / "learn.json").exists() else None


def _load(out: Path):
    import pandas as pd

    frames = []
    for run in sorted(p for p in out.iterdir() if p.is_dir() and "-s" in p.name):
        arm, seed = run.name.rsplit("-s", 1)
        for name in SETS:
            f = _metrics_file(run, name)
            if f is not None:
                df = pd.read_parquet(f)
                frames.append(df.assign(arm=arm, seed=int(seed), set=name))
    return pd.concat(frames, ignore_index=True) if frames else None


def table(out: Path, ref: str = "") -> str:
    """ref: the arm the last column subtracts (default `old`, or the first arm when there is no `old`)."""
    df = _load(Path(out))
    if df is None:
        return "no metrics found\n"
    arms_seen = list(dict.fromkeys(df["arm"]))
    ref = ref or ("old" if "old" in arms_seen else arms_seen[0])
    if ref not in arms_seen:
        raise SystemExit(f"--ref {ref!r}: no such arm among {arms_seen}")
    lines = [f"| held-out set | arm | samples | model psnr_obj (seeds' spread) | nearest input | mean colour | over copy | arm minus {ref} |",
             "|---|---|---|---|---|---|---|---|"]
    per_seed = df.groupby(["set", "arm", "seed"]).agg(model=("psnr_obj", "mean"), near=("psnr_obj_nearest_input", "mean"),
                                                      mean_c=("psnr_obj_mean_colour", "mean"), n=("psnr_obj", "size")).reset_index()
    for name in SETS:
        sub = per_seed[per_seed["set"] == name]
        ref_mean = sub.loc[sub["arm"] == ref, "model"].mean()
        for arm, g in sub.groupby("arm", sort=False):
            spread = f"{g['model'].min():.2f}-{g['model'].max():.2f}"
            lines.append(f"| {name} | {arm} | {int(g['n'].iloc[0])} | {g['model'].mean():.2f} ({spread}) | {g['near'].mean():.2f} | "
                         f"{g['mean_c'].mean():.2f} | {g['model'].mean() - g['near'].mean():+.2f} | "
                         f"{'' if arm == ref else f'{g.model.mean() - ref_mean:+.2f}'} |")
    lines += ["", "| run | steps reached (planned) | samples/s | training wall s | device |", "|---|---|---|---|---|"]
    reached, cut = {}, []
    for run in sorted(p for p in Path(out).iterdir() if p.is_dir() and "-s" in p.name):
        if (run / "learn.json").exists():
            r = json.loads((run / "learn.json").read_text())
            reached[run.name] = r["steps"]
            lines.append(f"| {run.name} | {r['steps']} ({r['steps_planned']}) | {r['samples_per_s']} | {r['train_s']} | "
                         f"{r['device']} |")
        else:  # cut by the budget: the last step its metrics log reached, if any
            step = _last_logged_step(run)
            cut.append(run.name)
            lines.append(f"| {run.name} | {'?' if step is None else step} (cut before learn.json) | | | |")
    if cut:
        salvaged = [r for r in cut if _metrics_file(Path(out) / r, "gltf") is not None]
        lines += ["", f"CUT BY THE BUDGET: {', '.join(cut)} wrote no learn.json"
                  + (f"; their gltf rows are gpu_learn's own held-out pass ({', '.join(salvaged)})" if salvaged else "")
                  + "; the sets they were not scored on have no row for them"]
    lo, hi = min(reached.values(), default=0), max(reached.values(), default=0)
    if hi > 1.10 * lo:
        lines += ["", f"UNEQUAL COMPUTE: steps reached range {lo}-{hi} "
                  f"(fewest: {', '.join(k for k, v in reached.items() if v == lo)}); "
                  "compare arms with care, or rerun with --steps (STEPS= in procedural_transfer.sh)"]
    real = df[df["set"].isin(["gltf", "gltf-val"])]
    per_asset = real.groupby(["set", "uid", "arm"]).agg(model=("psnr_obj", "mean"), near=("psnr_obj_nearest_input", "mean")).reset_index()
    arms = list(dict.fromkeys(per_asset["arm"]))
    lines += ["", "| real asset | " + " | ".join(f"{a} over copy" for a in arms) + " | nearest input |",
              "|---|" + "---|" * (len(arms) + 1)]
    for (name, uid), g in per_asset.groupby(["set", "uid"]):
        by = dict(zip(g["arm"], g["model"] - g["near"]))
        lines.append(f"| {name}: {uid} | " + " | ".join(f"{by.get(a, float('nan')):+.2f}" for a in arms) + f" | {g['near'].mean():.2f} |")
    return "\n".join(lines + ["", *by_copy_tercile(real, arms)]) + "\n"


def _last_logged_step(run: Path) -> int | None:
    """The step of the last line of the run's learn_metrics.jsonl (or of the learn_metrics_last.jsonl kept in
    benchmarks/results/), None when neither exists."""
    for name in ("learn_metrics.jsonl", "learn_metrics_last.jsonl"):
        f = run / name
        if f.exists():
            last = [x for x in f.read_text().splitlines() if x.strip()]
            return int(json.loads(last[-1])["step"]) if last else None
    return None


def by_copy_tercile(real, arms: list[str]) -> list[str]:
    """The real sets' samples in three equal bins by how well copying the nearest input already does (its
    psnr_obj: low = the clip changes a lot between inputs and targets, high = near-still), and each arm's mean gain
    over copy per bin (per sample, mean over seeds): where the model gains and where it cannot match copying."""
    import pandas as pd

    lines = ["| real set | bin by copy psnr_obj | samples | copy | " + " | ".join(f"{a} over copy" for a in arms) + " |",
             "|---|---|---|---|" + "---|" * len(arms)]
    per = real.groupby(["set", "key", "arm"]).agg(model=("psnr_obj", "mean"), near=("psnr_obj_nearest_input", "mean")).reset_index()
    for name, g in per.groupby("set"):
        near = g.groupby("key")["near"].mean()
        if len(near) < 3:
            continue
        bins = pd.qcut(near.rank(method="first"), 3, labels=["low", "mid", "high"])
        g = g.assign(bin=g["key"].map(bins), gain=g["model"] - g["near"])
        for b in ("low", "mid", "high"):
            keys = bins.index[bins == b]
            by = g[g["bin"] == b].groupby("arm")["gain"].mean()
            lines.append(f"| {name} | {b} | {len(keys)} | {near[keys].mean():.2f} | "
                         + " | ".join(f"{by.get(a, float('nan')):+.2f}" for a in arms) + " |")
    return lines


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("device")
    d.add_argument("--data", default=str(ROOT / ".scratch/procedural_transfer/data"))
    d.add_argument("--out", required=True)
    d.add_argument("--arms", default="old,new,new-notex,new-noaug,new-noart",
                   help="ARM (seeds from --seeds) or ARM@S+S (its own seeds), comma-separated")
    d.add_argument("--seeds", default="0,1")
    d.add_argument("--train-minutes", type=float, default=4.0,
                   help="each run's training minutes (with --steps: only the deadline)")
    d.add_argument("--steps", type=int, default=0, help="every run trains exactly this many steps (0: from --train-minutes)")
    d.add_argument("--preset", default="small")
    d.add_argument("--calib-steps", type=int, default=30, help="gpu_learn's uncounted calibration run")
    d.add_argument("--set", dest="sets", action="append", default=[], help="more trainer overrides for every run")
    d.add_argument("--ref", default="", help="the arm the table's last column subtracts (default old, else the first)")
    t = sub.add_parser("table")
    t.add_argument("out")
    t.add_argument("--ref", default="")
    if argv[:1] == ["score"]:  # internal: one run's scoring process
        return score(Path(argv[1]), Path(argv[2]), argv[3])
    a = ap.parse_args(argv)
    if a.cmd == "device" and (a.steps < 0 or a.train_minutes <= 0):
        ap.error(f"--steps {a.steps} must be >= 0 and --train-minutes {a.train_minutes} > 0")
    if a.cmd == "table":
        text = table(Path(a.out), a.ref)
        print(text)
        return 0
    return device(a)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
