"""Several GPUs of one host (issue 14): the trainer and `pipeline eval` under torchrun, each check one command
with its verdict as the last line (benchmarks/device.py stage ddp runs them; the datasets come from
benchmarks/ddp_data.py).

    python3 benchmarks/ddp_checks.py scale --data D --run R --preset base --world 2 [--variant nosplit+bucket100]
    python3 benchmarks/ddp_checks.py uneven --data D --run R        # 2 ranks, shards of 24/3/1, --follow + a new shard
    python3 benchmarks/ddp_checks.py resume --data D --run R        # SIGKILL after a checkpoint, resume on 2, then 1
    python3 benchmarks/ddp_checks.py eval --data D --run R --tmp T  # pipeline eval on 1 vs 2 ranks: same rows

scale: `python -m training` on 1 GPU or torchrun on N, the preset at its defaults with LPIPS on (a random-weight
VGG of the real shape: the cost of real weights), 256 px; the summary averages the log lines after the first
(compile, warm-up): samples/s, step time, per-rank data-wait spread. uneven: both ranks end on the same step,
nobody waits forever (the trainer's own timeout: rc 124 = a rank waited), the added shard is picked up.
resume: the metric steps after kill -> 2 ranks -> 1 rank have no gaps and no duplicates. eval: a checkpoint
scored on 1 and on 2 ranks gives the same keys, order, nulls and pairs, and float columns within a tolerance.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from common import ddp_variant_sets, descendants, kill_tree, metrics_line

PY = sys.executable


def torchrun(n: int) -> list[str]:
    return [PY, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(n)]


def train_cmd(world: int, args: list[str]) -> list[str]:
    return [PY, "-m", "training", *args] if world == 1 else [*torchrun(world), "-m", "training", *args]


def _run(cmd: list[str], timeout: float, log: Path | None = None) -> int:
    """A command in its own process group, killed whole at the timeout (rc 124, as timeout(1))."""
    print("$", " ".join(cmd), flush=True)
    fh = open(log, "ab") if log else None
    p = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT if fh else None, process_group=0)
    try:
        return p.wait(timeout)
    except subprocess.TimeoutExpired:
        kill_tree(p.pid)  # torchrun's ranks too: they run in sessions of their own
        p.wait()
        return 124
    finally:
        if fh:
            fh.close()


def _fresh(run: str) -> Path:
    """A run folder emptied first: the trainer would resume from an earlier call's checkpoints."""
    shutil.rmtree(run, ignore_errors=True)
    return Path(run)


def scale(a) -> None:
    _fresh(a.run)
    sets = ddp_variant_sets(a.variant)
    args = ["--shards", a.data, "--out", a.run, "--preset", a.preset, "--steps", str(a.steps), "--log-every", "5",
            "--grid-every", "0", "--ckpt-every", "1000", "--set", f"data.image_size={a.size}"]
    if a.lpips:
        args += ["--lpips-weights", a.lpips]
    for s in sets:
        args += ["--set", s]
    rc = _run(train_cmd(a.world, args), a.timeout)
    label = f"{a.preset} on {a.world} GPU, {a.variant}{' (' + ' '.join(sets) + ')' if sets else ''}, " \
            f"LPIPS {'on' if a.lpips else 'off'}"
    print(f"rc {rc}; " + metrics_line(a.run, label))


def uneven(a) -> None:
    run = _fresh(a.run)
    data = str(run) + "_data"  # a copy: the shard added here must not reach the next call's resume/eval
    shutil.rmtree(data, ignore_errors=True)
    shutil.copytree(a.data, data)

    def add_shard():
        time.sleep(a.add_after)
        here = Path(__file__).resolve().parent
        subprocess.run([PY, str(here / "ddp_data.py"), "add", data, "--shard", "3", "--count", "6",
                        "--size", str(a.size)], check=False)

    threading.Thread(target=add_shard, daemon=True).start()
    run.parent.mkdir(parents=True, exist_ok=True)
    log = run.parent / (run.name + ".train.log")
    args = ["--shards", data, "--out", a.run, "--preset", a.preset, "--steps", str(a.steps), "--log-every", "10",
            "--grid-every", "0", "--ckpt-every", "1000", "--follow", "--follow-interval", "5",
            "--set", f"data.image_size={a.size}", "--set", "data.batches_per_epoch=10"]
    rc = _run(train_cmd(2, args), a.timeout, log)
    text = log.read_text(errors="replace") if log.exists() else ""
    print(text[-3000:])
    try:
        last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["step"]
    except (OSError, ValueError, IndexError, KeyError):
        last = None
    added = [x for x in text.splitlines() if "--follow: +" in x][:2]
    print(f"uneven+follow: rc {rc} (124 = a rank waited), last step {last}, "
          f"{sum('shard' in x for x in text.splitlines())} shard log lines; added: {' '.join(added) or 'none'}")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _steps_ok(run: Path) -> str:
    s = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    ok = s == sorted(set(s)) and s == list(range(s[0], s[-1] + 1, 5))
    return f"metric steps {s} {'ok' if ok else 'GAPS/DUPLICATES'}"


def resume(a) -> None:
    run = _fresh(a.run)
    args = ["--shards", a.data, "--out", a.run, "--preset", a.preset, "--log-every", "5", "--grid-every", "0",
            "--ckpt-every", "10", "--set", f"data.image_size={a.size}"]
    cmd = train_cmd(2, [*args, "--steps", "200"])
    print("$", " ".join(cmd), flush=True)
    p = subprocess.Popen(cmd, process_group=0)
    ckpt = run / "checkpoints" / "step-00000020.pt"
    for _ in range(int(a.wait_s)):
        if ckpt.exists() or p.poll() is not None:
            break
        time.sleep(1)
    ranks = descendants(p.pid)
    kill_tree(p.pid)  # SIGKILL to torchrun and its ranks (in sessions of their own: not in torchrun's group)
    p.wait()
    for _ in range(30):  # the ranks are gone before the resume writes into the same folder
        if not any(os.path.exists(f"/proc/{r}") and _alive(r) for r in ranks):
            break
        time.sleep(0.5)
    print("killed at checkpoints:", " ".join(sorted(x.name for x in (run / "checkpoints").glob("*"))), flush=True)
    print("resumed on 2 GPUs to 40: rc", _run(train_cmd(2, [*args, "--steps", "40"]), a.timeout), flush=True)
    print("resumed on 1 GPU to 50: rc", _run(train_cmd(1, [*args, "--steps", "50"]), a.timeout), flush=True)
    print(_steps_ok(run))


def evaluate(a) -> None:
    import pandas as pd

    tmp = Path(a.tmp)
    one, two = tmp / "eval1.parquet", tmp / "eval2.parquet"
    ev = ["-m", "pipeline.cli", "eval", "--checkpoint", a.run, "--shards", a.data, "--no-progress"]
    print("1 rank: rc", _run([PY, *ev, "--out", str(one)], a.timeout), flush=True)
    print("2 ranks: rc", _run([*torchrun(2), *ev, "--out", str(two)], a.timeout), flush=True)
    x, y = pd.read_parquet(one), pd.read_parquet(two)
    num = [c for c in x.columns if x[c].dtype.kind == "f"]
    same = list(x["key"]) == list(y["key"]) and all((x[c].isna() == y[c].isna()).all() for c in num)
    diff = max((float((x[c] - y[c]).abs().max()) for c in num if x[c].notna().any()), default=0.0)
    print(f"eval 1 GPU vs 2 GPUs: rows {len(x)} vs {len(y)}, same keys/order/nulls {same}, "
          f"pairs equal {bool((x['pairs'] == y['pairs']).all())}, max |diff| over float columns {diff:.3g}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("check", choices=("scale", "uneven", "resume", "eval"))
    ap.add_argument("--data", required=True)
    ap.add_argument("--run", required=True, help="the trainer's run folder")
    ap.add_argument("--preset", default="base", help="the trainer's preset (the stage: base/small for scale, small "
                    "for the others)")
    ap.add_argument("--world", type=int, default=2, help="scale: ranks (1 = no torchrun)")
    ap.add_argument("--variant", default="default", help="scale: DDP settings by name (benchmarks/common.py)")
    ap.add_argument("--steps", type=int, default=20, help="scale: steps; uneven: steps (the stage gives 60)")
    ap.add_argument("--size", type=int, default=256, help="image size (the stage: 256 for scale, 64 for the others)")
    ap.add_argument("--lpips", default="", help="LPIPS weights file (scale; empty: no LPIPS term)")
    ap.add_argument("--timeout", type=float, default=200, help="seconds per trainer or eval command")
    ap.add_argument("--add-after", type=float, default=25, help="uneven: seconds before the new shard appears")
    ap.add_argument("--wait-s", type=float, default=120, help="resume: seconds to wait for the step-20 checkpoint")
    ap.add_argument("--tmp", default="/tmp", help="eval: where the two metrics files go")
    a = ap.parse_args(argv)
    {"scale": scale, "uneven": uneven, "resume": resume, "eval": evaluate}[a.check](a)


if __name__ == "__main__":
    main()
