"""Whole-sample streaming vs member-index ranged reads: bytes read and samples/s per loader worker,
from a local folder, over HTTP and from an S3-compatible server, both servers on loopback.

The data has the lrm4d layout (24 times x 12 views, RGBA PNG + 16-bit depth per (time, view), the
JSON with 288 cameras): one analytic sample (training/data/synthetic.py) rendered once at --size and
replicated under --samples keys into shards of --per-shard samples (the bytes of every sample are
the same; the loader does not care), each shard with its member index. The loader runs the trainer's
pipeline (lrm4d picker: 4 inputs + 8 targets, no depth; decode, resize, Plücker rays) in this process
(one worker). Servers run in their own processes: a Range-capable HTTP server and moto's S3 server.

    python benchmarks/bench_storage.py [--size 256] [--samples 8] [--per-shard 4] [--passes 2] [--repeats 3]

Bytes are counted by contracts.storage (the member index fetches included), requests likewise.
samples/s is the median of --repeats measurements per mode, the modes alternating; io_samples_per_s
times the reading alone (shards -> picker -> the picked members' bytes, no decoding).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from contracts import layout, reads, storage
from tests.httpserver import RangeHandler  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_http(directory: str, port: int) -> None:
    handler = functools.partial(RangeHandler, directory=directory)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.range_requests = 0
    server.serve_forever()


def make_dataset(work: Path, size: int, samples: int, per_shard: int) -> Path:
    from training.data import synthetic

    d = work / f"lrm4d-{size}-{samples}x{per_shard}"
    if (d / layout.INDEX_NAME).exists():
        return d
    base = work / f"sample-{size}.tar"
    if not base.exists():
        t0 = time.perf_counter()
        members = synthetic.make_sample("bench", 7, views=12, frames=24, size=size)
        synthetic.write_tar(base, [members])
        print(f"rendered one analytic sample at {size}px in {time.perf_counter() - t0:.0f} s", flush=True)
    with tarfile.open(base) as tf:
        proto = {m.name.split(".", 1)[1]: tf.extractfile(m).read() for m in tf.getmembers()}
    for shard in range(-(-samples // per_shard)):
        group = []
        for i in range(shard * per_shard, min(samples, (shard + 1) * per_shard)):
            group.append({f"b{i:04d}_000.{suffix}": data for suffix, data in proto.items()})
        synthetic.commit_shard(d, shard, group)
        tar = d / layout.tar_name(shard)
        layout.write_member_index(layout.tar_member_offsets(tar), d / layout.members_name(shard))
    layout.write_index(d)
    return d


def upload_s3(d: Path, endpoint: str) -> str:
    import boto3

    c = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
                     aws_secret_access_key="bench")
    c.create_bucket(Bucket="bench")
    for p in sorted(d.iterdir()):
        c.upload_file(str(p), "bench", f"lrm4d/{p.name}")
    return "s3://bench/lrm4d"


def measure(spec: str, ranged: bool, passes: int, size: int) -> dict:
    from training.data import stream as data
    from training.data import shardspec
    from training.data import shardstream
    from training.config import DataConfig

    urls = shardspec.resolve_shards(spec)
    cfg = DataConfig(image_size=size, n_in=4, n_target=8, load_depth=False, shuffle_buffer=4, num_workers=0,
                     ranged_reads=ranged)
    shardstream._index_cache.clear()
    before = reads.io_counts.copy()
    n, t0 = 0, time.perf_counter()
    handler = data.SkipAndCount()
    for _ in range(passes):
        for batch in data.make_dataset(urls, cfg, batch_size=1, resampled=False, handler=handler):
            n += len(batch["key"])
    wall = time.perf_counter() - t0
    c = reads.io_counts - before
    read = c["stream"] + c["range"] + c["whole"]
    return {"samples": n, "skipped": dict(handler.counts), "seconds": round(wall, 2),
            "samples_per_s": round(n / wall, 2), "MB_per_sample": round(read / n / 2**20, 3),
            "requests_per_sample": round((c["range_requests"] + c["stream_opens"]) / n, 1),
            "index_kB_per_sample": round(c["whole"] / n / 1024, 1)}


def measure_io(spec: str, ranged: bool, passes: int, size: int) -> dict:
    """The reading alone: shards -> samples -> the lrm4d picker -> the picked members' bytes in memory
    (no decoding): what the storage costs per sample, apart from building it."""
    from training.data import stream as data
    from training.data import shardspec
    from training.data import shardstream
    from training.config import DataConfig
    from training.data.decode import member_bytes

    urls = shardspec.resolve_shards(spec)
    cfg = DataConfig(image_size=size, n_in=4, n_target=8, load_depth=False, num_workers=0, ranged_reads=ranged)
    shardstream._index_cache.clear()
    handler = data.SkipAndCount()
    n, t0 = 0, time.perf_counter()
    for _ in range(passes):
        src = data.ShardSource(urls, resampled=False, seed=0, rank=0, world_size=1, epoch=0)
        items = data.PickViews(cfg, handler, seed=0, rank=0, epoch=0)(shardstream.shard_samples(src, handler, ranged))
        for item in shardstream.fetch_members(items, handler):
            for entry in item["inputs"] + item["targets"]:
                member_bytes(entry[3])
            n += 1
    wall = time.perf_counter() - t0
    return {"io_samples_per_s": round(n / wall, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256, help="image side (lrm4d renders 256)")
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--per-shard", type=int, default=4)
    ap.add_argument("--passes", type=int, default=2, help="passes over the dataset per measurement")
    ap.add_argument("--repeats", type=int, default=3, help="measurements per mode (alternating); the median is reported")
    ap.add_argument("--where", default="local,http,s3", help="comma list of local, http, s3")
    ap.add_argument("--work", default="/tmp/bench_storage")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    d = make_dataset(work, args.size, args.samples, args.per_shard)
    tar_mb = sum(p.stat().st_size for p in d.glob("*.tar")) / args.samples / 2**20
    print(f"dataset {d}: {args.samples} samples, {tar_mb:.2f} MB of tar per sample", flush=True)

    http_port, s3_port = free_port(), free_port()
    web = mp.get_context("fork").Process(target=serve_http, args=(str(d), http_port), daemon=True)
    web.start()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
    moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        endpoint = f"http://127.0.0.1:{s3_port}"
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", s3_port), timeout=1).close()
                socket.create_connection(("127.0.0.1", http_port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")}, AWS_ENDPOINT_URL=endpoint)
        s3_url = upload_s3(d, endpoint)
        n_tars = len(list(d.glob("*.tar")))
        specs = {"local": str(d), "http": f"http://127.0.0.1:{http_port}/shard-{{000000..{n_tars - 1:06d}}}.tar",
                 "s3": s3_url}
        results = {}
        for where, spec in specs.items():
            if where not in args.where.split(","):
                continue
            runs: dict[str, list[dict]] = {"stream": [], "ranged": []}
            for _ in range(args.repeats):  # alternate the modes: a busy machine slows both alike
                for mode in runs:
                    r = measure(spec, mode == "ranged", args.passes, args.size)
                    r.update(measure_io(spec, mode == "ranged", args.passes, args.size))
                    runs[mode].append(r)
            for mode, rs in runs.items():
                rates = sorted(r["samples_per_s"] for r in rs)
                io_rates = sorted(r["io_samples_per_s"] for r in rs)
                r = {**rs[-1], "samples_per_s": rates[len(rates) // 2], "samples_per_s_all": rates,
                     "io_samples_per_s": io_rates[len(io_rates) // 2], "io_samples_per_s_all": io_rates}
                results[f"{where}/{mode}"] = r
                print(f"{where:>5} {mode:>6}: {json.dumps(r)}", flush=True)
            s, g = results[f"{where}/stream"], results[f"{where}/ranged"]
            print(f"{where:>5}: {s['MB_per_sample'] / g['MB_per_sample']:.1f}x fewer bytes, "
                  f"{g['samples_per_s'] / s['samples_per_s']:.2f}x samples/s, "
                  f"{g['io_samples_per_s'] / s['io_samples_per_s']:.2f}x reading-only samples/s with ranged reads",
                  flush=True)
        if args.out:
            Path(args.out).write_text(json.dumps({"args": vars(args), "tar_MB_per_sample": tar_mb, "results": results},
                                                 indent=1))
    finally:
        moto.terminate()
        web.terminate()


if __name__ == "__main__":
    main()
