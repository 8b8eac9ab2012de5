"""The engine at Objaverse-4D size (CPU): 10,000 committed shards, locally and in a loopback S3 server.

    python benchmarks/bench_scale.py build --shards 10000 --data /tmp/scale-data
    python benchmarks/bench_scale.py measure --data /tmp/scale-data --code . --label new --json new.json
    git archive 778c1d9 | tar -x -C /tmp/scale-old
    python benchmarks/bench_scale.py measure --data /tmp/scale-data --code /tmp/scale-old --label old --json old.json
    python benchmarks/bench_scale.py table old.json new.json

`build` writes N shards with the real `pipeline.shards.ShardWriter` (one tiny analytic sample each:
2 views x 2 times at 8 px, `training.data.synthetic`), each commit adding its commit-log entry as in a
render run, and compacts index.json once at the end (as `pipeline render` does). The log entries are
stamped as if one commit had come every `--spacing-s` seconds (3 s: 10,000 shards over 8.3 hours, a
farm of ~900 lrm4d workers) up to now; with 0 every entry falls inside the readers' 10-minute margin
(the worst case: a dataset whose every shard was committed in the last 10 minutes). `measure` copies
that dataset into the layout the code under test expects (`old`: the shard files and the index.json
its own `write_index` makes; `new`: the files, the commit log and index.json), into a local folder
and into a moto S3 server in its own process that counts the requests it answers
(benchmarks/moto_counting.py), and then times, each in a fresh process running the code under test
(PYTHONPATH=CODE), with its peak RSS:

- three more commits in one process (clear_shard + ShardWriter + what the runner does after a commit:
  old `write_index(refresh={n})`, new nothing) with the requests of each, then what a render run does
  at its end (old `write_index`, new `shard_index.compact`);
- `pipeline status DIR --json`, twice (`--status-runs`), and `--from-index` (new code);
- training start: shard resolution + the WebDataset pipeline up to the first batch read;
- one `--follow` poll that finds nothing new (ShardFollower.poll after initial());
- `pipeline preview DIR --shard 7`.

`sizes` renders two procedural clips per preset (its resolution and spp, 1 and 2 times of 2 views) and
extrapolates the bytes of a whole sample (PNG and depth bytes per image, the JSON's size per camera).

`ray` times the Ray scheduler on a manifest of Objaverse size (benchmarks/bench_scale_ray.py says how).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable
sys.path.insert(1, str(HERE))  # the sibling modules below, never the code under test (that is PYTHONPATH)
from moto_counting import Server  # noqa: E402


# -- building the dataset (new code) ----------------------------------------------------------------

def tiny_samples(k: int = 16) -> list[dict[str, bytes]]:
    from training.data import synthetic

    return [synthetic.make_sample(f"scale{i}", i, views=2, frames=2, size=8) for i in range(k)]


def tiny_result(n: int, members: dict[str, bytes]):
    from render.result import SampleResult

    old_key = next(iter(members)).split(".", 1)[0]
    key = f"s{n:06d}_000"
    meta = json.loads(members[f"{old_key}.json"])
    meta["uid"] = f"s{n:06d}"
    renamed = {name.replace(old_key, key, 1): data for name, data in members.items()}
    renamed[f"{key}.json"] = json.dumps(meta).encode()
    return SampleResult(uid=f"s{n:06d}", clip=0, key=key, status="ok", reason=None, detail=None, seconds=0.01,
                        members=renamed, stats={"images": 4})


def build(n_shards: int, out: Path, spacing_s: float) -> None:
    from contracts import shard_index
    from pipeline.shards import ShardWriter

    out.mkdir(parents=True, exist_ok=True)
    os.fsync = lambda fd: None  # building only (10,000 commits): the measured steps keep their fsyncs
    samples = tiny_samples()
    t0 = time.perf_counter()
    now = time.time()
    record = shard_index.record_commit
    for n in range(n_shards):
        if spacing_s > 0:  # stamp the log entry as if commits had come every spacing_s seconds until now
            shard_index.record_commit = lambda d, e, t=None, _n=n: record(d, e, now - (n_shards - _n) * spacing_s)
        w = ShardWriter(out, n)
        w.add(tiny_result(n, samples[n % len(samples)]))
        w.commit({"writer": "bench_scale"})
        if n % 1000 == 999:
            print(f"  {n + 1} shards, {time.perf_counter() - t0:.0f} s", flush=True)
    shard_index.record_commit = record
    shard_index.compact(out)
    print(f"built {n_shards} shards in {out} in {time.perf_counter() - t0:.0f} s")


# -- the loopback S3 server (benchmarks/moto_counting.py) --------------------------------------------

def counter_url() -> str | None:
    return os.environ.get("BENCH_COUNTER")


def server_total() -> int | None:
    url = counter_url()
    return json.loads(urllib.request.urlopen(f"{url}/_counts", timeout=30).read())["total"] if url else None


def server_kinds() -> dict | None:
    url = counter_url()
    return json.loads(urllib.request.urlopen(f"{url}/_counts", timeout=30).read())["by_kind"] if url else None


def server_reset() -> None:
    url = counter_url()
    if url:
        urllib.request.urlopen(urllib.request.Request(f"{url}/_counts/reset", method="POST"), timeout=30).read()


# -- steps: run in a fresh process with PYTHONPATH = the code under test ------------------------------

def step_commit(target: str, first: int, count: int, end: bool = True) -> dict:
    import importlib.util

    from contracts import layout
    from pipeline.shards import ShardWriter, clear_shard

    new = importlib.util.find_spec("contracts.shard_index") is not None
    samples = tiny_samples(1)
    out = []
    for n in range(first, first + count):
        server_reset()
        t0 = time.perf_counter()
        clear_shard(target, n)
        w = ShardWriter(target, n)
        w.add(tiny_result(n, samples[0]))
        w.commit({"writer": "bench_scale"})
        if not new:
            layout.write_index(target, refresh={n})  # what the old runner did after every commit
        out.append({"shard": n, "seconds": time.perf_counter() - t0, "requests": server_total(),
                    "by_kind": server_kinds()})
    if not end:
        return {"commits": out}
    server_reset()
    t0 = time.perf_counter()
    if new:
        from contracts import shard_index

        shard_index.compact(target)
    else:
        layout.write_index(target)  # the old runner's end of run
    end = {"seconds": time.perf_counter() - t0, "requests": server_total(), "by_kind": server_kinds()}
    return {"commits": out, "end_of_run_index": end}


def step_train_start(spec: str) -> dict:
    from training.data import stream as data
    from training.data import shardspec
    from training.config import DataConfig

    t0 = time.perf_counter()
    urls = shardspec.resolve_shards(spec)
    t_resolve = time.perf_counter() - t0
    cfg = DataConfig(image_size=8, n_in=2, n_target=2, load_depth=False, shuffle_buffer=4, num_workers=0)
    batch = next(iter(data.make_dataset(urls, cfg, batch_size=1, resampled=True)))
    return {"shards": len(urls), "resolve_s": t_resolve, "first_batch_s": time.perf_counter() - t0,
            "batch_keys": list(batch["key"])}


def step_follow(spec: str) -> dict:
    import torch

    from training import ddp
    from training.data.follow import ShardFollower

    world = ddp.DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    f = ShardFollower(spec, 0.001, world)
    t0 = time.perf_counter()
    urls = f.initial()
    t_initial = time.perf_counter() - t0
    time.sleep(0.01)
    server_reset()
    t0 = time.perf_counter()
    new = f.poll(urls)
    return {"shards": len(urls), "initial_s": t_initial, "poll_s": time.perf_counter() - t0, "poll_new": new is not None,
            "poll_requests": server_total(), "poll_by_kind": server_kinds()}


def run_step(code: Path, args: list[str], env: dict | None = None, server: Server | None = None) -> dict:
    """`args` in a fresh process on `code` (PYTHONPATH): wall time, its own peak RSS, requests answered."""
    e = {**os.environ, "PYTHONPATH": str(code), "PIPELINE_LOG_LEVEL": "WARNING", **(env or {})}
    if server is not None:
        e["BENCH_COUNTER"] = server.url
        server.reset()
    with tempfile.NamedTemporaryFile(suffix=".rss") as rss_file:
        launcher = [PY, str(Path(__file__).resolve()), "_rss", rss_file.name, "--", *args]
        t0 = time.perf_counter()
        proc = subprocess.run(launcher, capture_output=True, text=True, env=e, cwd=tempfile.gettempdir())
        wall = time.perf_counter() - t0
        rss_kib = int(Path(rss_file.name).read_text() or 0)
    res = {"wall_s": round(wall, 2), "rc": proc.returncode, "max_rss_mib": round(rss_kib / 1024, 1)}
    if server is not None:
        c = server.counts()
        res.update(requests=c["total"], by_kind=c["by_kind"])
    if proc.returncode != 0:
        res["stderr"] = proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    if last.startswith("{"):
        res["result"] = json.loads(last)
    return res


def rss_launcher(rss_path: str, args: list[str]) -> int:
    """Run `args` as a child, write its peak RSS (KiB) to `rss_path`, return its exit status."""
    p = subprocess.Popen(args)
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    Path(rss_path).write_text(str(ru.ru_maxrss))
    return p.returncode


def measure(data: Path, code: Path, label: str, n: int, s3: bool, local: bool, status_runs: int = 2,
            save: Path | None = None, full: bool = True) -> dict:
    """Every measurement on `code` (module docstring), locally and in S3; results written to `save`
    after every step (a long run killed half-way keeps what it measured)."""
    work = Path(tempfile.mkdtemp(prefix=f"scale-{label}-"))
    results: dict = {"label": label, "code": str(code), "shards": n}
    try:
        new = (code / "contracts" / "shard_index.py").exists()
        me = [PY, str(Path(__file__).resolve())]
        for where in (["local"] if local else []) + (["s3"] if s3 else []):
            ds = work / f"ds-{where}"  # a fresh copy each: the local steps add shards
            shutil.copytree(data, ds, copy_function=os.link)  # hard links: writers replace files by rename
            if not new:  # the old layout: no commit log; index.json as the old code writes it
                shutil.rmtree(ds / "index-log", ignore_errors=True)
                (ds / "index.json").unlink(missing_ok=True)
                r = run_step(code, [PY, "-c", f"from contracts import layout; layout.write_index({str(ds)!r})"])
                assert r["rc"] == 0, r
            server = Server() if where == "s3" else None
            try:
                target = str(ds)
                env = {}
                if server is not None:
                    server.upload(ds, "bench", "ds")
                    target, env = "s3://bench/ds", server.env
                res = results[where] = {"load_before": os.getloadavg()}

                def step(name: str, args: list[str]) -> None:
                    res[name] = run_step(code, args, env, server)
                    res[name]["load_after"] = os.getloadavg()
                    if save is not None:
                        save.write_text(json.dumps(results, indent=1, default=str))

                step("commit", me + ["_step", "commit", target, str(n), "3"] + ([] if full else ["noend"]))
                if not full:  # --commit-only: the commits alone
                    continue
                for i in range(1, status_runs + 1):
                    step(f"status_{i}", [PY, "-m", "pipeline", "status", target, "--json"])
                    res[f"status_{i}"].pop("result", None)
                if new:  # `pipeline status --from-index` exists in the new code only
                    step("status_from_index", [PY, "-m", "pipeline", "status", target, "--json", "--from-index"])
                    res["status_from_index"].pop("result", None)
                step("train_start", me + ["_step", "train-start", target])
                step("follow", me + ["_step", "follow", target])
                step("preview", [PY, "-m", "pipeline", "preview", target, "--shard", "7", "--out", str(work / f"pv-{where}")])
                print(json.dumps({where: _brief(res)}, indent=1), flush=True)
            finally:
                if server is not None:
                    server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


def _brief(res: dict) -> dict:
    out = {}
    for k, v in res.items():
        if not isinstance(v, dict):  # load averages
            continue
        out[k] = {kk: v.get(kk) for kk in ("wall_s", "requests", "rc", "max_rss_mib")}
        if "result" in v:
            out[k]["result"] = {kk: vv for kk, vv in v["result"].items() if kk not in ("batch_keys",)}
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_rss":
        sys.exit(rss_launcher(sys.argv[2], sys.argv[4:]))
    if len(sys.argv) > 1 and sys.argv[1] == "_step":  # inside a fresh process on the code under test
        kind, target = sys.argv[2], sys.argv[3]
        if kind == "commit":
            res = step_commit(target, int(sys.argv[4]), int(sys.argv[5]), "noend" not in sys.argv[6:])
        elif kind == "train-start":
            res = step_train_start(target)
        else:
            res = step_follow(target)
        print(json.dumps(res, default=str))
        return
    sys.path.insert(0, str(ROOT))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--shards", type=int, default=10_000)
    b.add_argument("--data", type=Path, required=True)
    b.add_argument("--spacing-s", type=float, default=3.0,
                   help="stamp the commit-log entries as if one commit had come every this many seconds (0: as built)")
    m = sub.add_parser("measure")
    m.add_argument("--data", type=Path, required=True)
    m.add_argument("--code", type=Path, default=ROOT)
    m.add_argument("--label", default="new")
    m.add_argument("--no-s3", action="store_true")
    m.add_argument("--no-local", action="store_true")
    m.add_argument("--json", type=Path, required=True)
    m.add_argument("--status-runs", type=int, default=2)
    m.add_argument("--commit-only", action="store_true", help="only the three commits (no end-of-run index, status, ...)")
    r = sub.add_parser("ray")
    r.add_argument("--rows", type=int, default=100_000)
    r.add_argument("--subset", type=int, default=64)
    r.add_argument("--standin-rows", default="2000,10000", help="rows the stand-in pool runs, comma list")
    r.add_argument("--work", type=Path, required=True)
    r.add_argument("--json", type=Path, required=True)
    z = sub.add_parser("sizes")
    z.add_argument("--work", type=Path, required=True)
    z.add_argument("--json", type=Path, required=True)
    t = sub.add_parser("table")
    t.add_argument("files", nargs="+")
    a = ap.parse_args()
    if a.cmd == "build":
        build(a.shards, a.data, a.spacing_s)
    elif a.cmd == "measure":
        n = sum(1 for p in a.data.iterdir() if p.name.endswith(".stats.json"))
        res = measure(a.data, a.code.resolve(), a.label, n, not a.no_s3, not a.no_local, a.status_runs, a.json,
                      not a.commit_only)
        a.json.write_text(json.dumps(res, indent=1, default=str))
    elif a.cmd == "ray":
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        from bench_scale_ray import ray_bench

        res = ray_bench(a.rows, a.subset, [int(x) for x in a.standin_rows.split(",")], a.work)
        a.json.write_text(json.dumps(res, indent=1, default=str))
        print(json.dumps(res, indent=1))
    elif a.cmd == "sizes":
        from scale_report import preset_sizes

        res = preset_sizes(a.work)
        a.json.write_text(json.dumps(res, indent=1))
    else:
        from scale_report import table

        print(table(a.files))


if __name__ == "__main__":
    main()
