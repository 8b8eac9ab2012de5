"""Analytic datasets for the several-GPU checks (benchmarks/device.py ddp, benchmarks/ddp_checks.py): no Blender needed.

    python benchmarks/ddp_data.py even DIR --shards 8 --per-shard 16 --size 256
    python benchmarks/ddp_data.py uneven DIR --sizes 24,3,1 --size 64
    python benchmarks/ddp_data.py add DIR --shard 3 --count 4 --size 64     # one more committed shard (--follow)
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ProcessPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _sample(args):
    from training.data import synthetic

    uid, seed, size = args
    return synthetic.make_sample(uid, seed, views=8, frames=4, size=size, depth=False)


def write_shards(out: str, sizes: list[int], size: int, first: int = 0) -> None:
    from training.data import synthetic

    os.makedirs(out, exist_ok=True)
    jobs = [(f"ddp{first + s:03d}x{i:03d}", 1000 * (first + s) + i, size) for s, n in enumerate(sizes) for i in range(n)]
    with ProcessPoolExecutor(max(1, min(16, os.cpu_count() or 1))) as ex:
        samples = list(ex.map(_sample, jobs, chunksize=2))
    k = 0
    for s, n in enumerate(sizes):
        synthetic.commit_shard(out, first + s, samples[k:k + n])
        k += n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=("even", "uneven", "add"))
    ap.add_argument("out")
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--per-shard", type=int, default=16)
    ap.add_argument("--sizes", default="24,3,1")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--shard", type=int, default=0)
    ap.add_argument("--count", type=int, default=4)
    a = ap.parse_args()
    if a.mode == "even":
        write_shards(a.out, [a.per_shard] * a.shards, a.size)
    elif a.mode == "uneven":
        write_shards(a.out, [int(x) for x in a.sizes.split(",")], a.size)
    else:
        write_shards(a.out, [a.count], a.size, first=a.shard)


if __name__ == "__main__":
    main()
