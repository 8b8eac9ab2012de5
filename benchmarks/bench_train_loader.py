"""Loader throughput: decoded training samples per second per worker, selective decode vs decode-all.

    python benchmarks/bench_train_loader.py --shards DIR [--image-size 256] [--n-in 4] [--n-target 8]
        [--workers 1,2] [--batches 40]

"selective" is the trainer's pipeline: pick the (view, time) pairs first, decode only those images.
"decode-all" adds a stage before the pick that decodes every image and 16-bit depth member of the
sample, as a generic `.decode(...)` stage would; the rest is identical. Each worker is one
DataLoader process; samples/s is measured after one warm-up epoch, on the resampled stream.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.data import stream as data  # noqa: E402

from training.data import shardspec  # noqa: E402
from training.config import DataConfig  # noqa: E402


class DecodeEverything:
    """Decode every image and depth member (the cost a decode-all pipeline pays)."""

    def __call__(self, src):
        for sample in src:
            for k, v in sample.items():
                if isinstance(v, bytes) and k.endswith((".png", ".webp")):
                    with Image.open(io.BytesIO(v)) as im:
                        im.load()
                        np.asarray(im if k.endswith(".depth.png") else im.convert("RGBA"))
            yield sample


def run(urls, cfg: DataConfig, workers: int, batches: int, decode_all: bool, batch_size: int) -> float:
    cfg.num_workers = workers
    ds = data.make_dataset(urls, cfg, batch_size=batch_size, seed=0, batches_per_worker=batches // max(1, workers))
    if decode_all:  # insert before PickViews
        idx = next(i for i, st in enumerate(ds.pipeline) if isinstance(st, data.PickViews))
        ds.pipeline.insert(idx, DecodeEverything())
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers, persistent_workers=workers > 0)
    for _ in loader:  # warm-up epoch: workers started, files cached
        pass
    t = time.perf_counter()
    n = sum(len(b["key"]) for b in loader)
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shards", required=True)
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--n-in", type=int, default=4)
    ap.add_argument("--n-target", type=int, default=8)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    torch.set_num_threads(1)
    urls = shardspec.resolve_shards(a.shards)
    res = {"shards": a.shards, "image_size": a.image_size, "n_in": a.n_in, "n_target": a.n_target,
           "cpus": os.cpu_count(), "loadavg_start": os.getloadavg(), "runs": []}
    for w in [int(x) for x in a.workers.split(",")]:
        for decode_all in (False, True):
            cfg = DataConfig(image_size=a.image_size, n_in=a.n_in, n_target=a.n_target, shuffle_buffer=8)
            sps = run(urls, cfg, w, a.batches, decode_all, a.batch_size)
            row = {"workers": w, "mode": "decode-all" if decode_all else "selective", "samples_per_s": round(sps, 2),
                   "samples_per_s_per_worker": round(sps / w, 2)}
            res["runs"].append(row)
            print(json.dumps(row), flush=True)
    res["loadavg_end"] = os.getloadavg()
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
