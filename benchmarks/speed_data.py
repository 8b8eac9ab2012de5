"""bench_speed.py's data side: replayed batches, `lrm4d`-shaped shards, the trainer's loader alone.

Imported by benchmarks/bench_speed.py (which puts the checkout to measure first on sys.path); the
`training` imports stay inside the functions for that reason.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

SMOKE = os.environ.get("BENCH_SMOKE") == "1"  # see bench_speed.py


def _sample(args):
    from training.data import synthetic

    i, size = args
    return synthetic.make_sample(f"bench{i}", 1000 + i, views=8, frames=4, size=size, depth=False)


def prep(data: Path, n_batches: int = 2, only: str | None = None) -> None:
    """only: "PRESET:BATCH" (e.g. base:8) to write just that preset's batches of that size."""
    import torch

    from training.data import stream as data_mod
    from training.data import shardspec
    from training.data import synthetic
    from training.config import preset

    data.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max(1, min(16, os.cpu_count() or 1))) as ex:
        sizes = (32,) if SMOKE else (128, 256)
        if only:
            from training.config import preset as _preset

            sizes = (_preset(only.split(":")[0]).data.image_size,)
        for size in sizes:
            samples = list(ex.map(_sample, [(i, size) for i in range(8)]))
            synthetic.commit_shard(data / f"ds{size}", 0, samples)
    for name in ("tiny",) if SMOKE else ("small", "base"):
        if only and name != only.split(":")[0]:
            continue
        cfg = preset(name)
        S = cfg.data.image_size
        urls = shardspec.resolve_shards(str(data / f"ds{S}"))
        sizes_bs = {4, 8, 12, 16, cfg.batch_size} if name != "small" else {8, 16, 32, 64, 128, cfg.batch_size}
        for bs in [int(only.split(":")[1])] if only else sorted(sizes_bs):
            it = iter(data_mod.make_dataset(urls, cfg.data, batch_size=bs, seed=0))
            out = []
            for _ in range(n_batches):
                b = next(it)
                out.append({k: v for k, v in b.items() if isinstance(v, torch.Tensor)})
            torch.save(out, data / f"batches-{name}-{bs}.pt")
    print(f"prep: batches in {data}", flush=True)


def _lrm4d_sample(args):
    """One sample in the lrm4d render preset's shape (24 times x 12 views, 256 px, PNG + 16-bit depth):
    analytic scenes (training/data/synthetic.py) ray-cast at 2 times, shown at the 24 times with a +-2/255
    dither inside the object so the PNGs are as large as Blender renders'."""
    import io

    import numpy as np
    from PIL import Image

    from contracts import layout
    from training.data import synthetic

    i, seed = args
    small = synthetic.make_sample(f"lrm4d{i}", seed, views=12, frames=2, size=256, depth=True)
    key = f"lrm4d{i}_000"
    meta = json.loads(small[layout.json_member(key)])
    T = 24
    meta.update(num_frames=T, times=[t / (T - 1) for t in range(T)], times_s=[2.0 * t / (T - 1) for t in range(T)],
                c2w=[meta["c2w"][0]] * T, duration_s=2.0)
    out = {layout.json_member(key): json.dumps(meta).encode()}
    rng = np.random.default_rng(seed)
    for t in range(T):
        for v in range(12):
            with Image.open(io.BytesIO(small[layout.image_member(key, t % 2, v, "png")])) as im:
                a = np.asarray(im.convert("RGBA")).astype(np.int16)
            inside = a[..., 3:4] > 0
            a[..., :3] += rng.integers(-2, 3, a[..., :3].shape, dtype=np.int16) * inside
            buf = io.BytesIO()
            Image.fromarray(a.clip(0, 255).astype(np.uint8), "RGBA").save(buf, format="PNG")
            out[layout.image_member(key, t, v, "png")] = buf.getvalue()
            out[layout.depth_member(key, t, v)] = small[layout.depth_member(key, t % 2, v)]
    return out


def prep_lrm4d(data: Path, n_samples: int = 32, per_shard: int = 8) -> None:
    n_samples = int(os.environ.get("LRM4D_SAMPLES", n_samples))
    from training.data import synthetic

    with ProcessPoolExecutor(max(1, min(16, os.cpu_count() or 1))) as ex:
        samples = list(ex.map(_lrm4d_sample, [(i, 5000 + i) for i in range(n_samples)]))
    from contracts import layout

    for k in range(0, n_samples, per_shard):
        tar = synthetic.commit_shard(data, k // per_shard, samples[k:k + per_shard])
        # the member index `pipeline render` writes with every shard: the loader then reads only picked members
        layout.write_member_index(layout.tar_member_offsets(tar), data / layout.members_name(k // per_shard))
    n_bytes = sum(len(b) for smp in samples for b in smp.values())
    png = [len(b) for smp in samples for k2, b in smp.items() if k2.endswith(".png") and ".depth." not in k2]
    print(json.dumps({"lrm4d_samples": n_samples, "MB_per_sample": round(n_bytes / n_samples / 1e6, 2),
                      "rgba_png_KB_mean": round(sum(png) / len(png) / 1e3, 1)}), flush=True)


def bench_loader(shards: str, workers: list[int], batches: int, preset_name: str, pin: bool) -> list[dict]:
    """The trainer's own DataLoader (make_loader) alone: samples/s after the first batch, per worker count."""
    import torch

    from training.data import stream as data_mod
    from training.data import shardspec
    from training.config import preset

    torch.set_num_threads(1)
    urls = shardspec.resolve_shards(shards)
    rows = []
    for w in workers:
        cfg = preset(preset_name)
        cfg.data.num_workers = w
        cfg.data.batches_per_epoch = batches
        loader = data_mod.make_loader(urls, cfg.data, batch_size=cfg.batch_size, seed=0, pin_memory=pin)
        it = iter(loader)
        next(it)  # workers started, shuffle buffers filled
        t, n = time.perf_counter(), 0
        for b in it:
            n += len(b["key"])
        dt = time.perf_counter() - t
        row = {"workers": w, "batch_size": cfg.batch_size, "samples_per_s": round(n / dt, 1),
               "samples_per_s_per_worker": round(n / dt / max(1, w), 2), "pin_memory": pin, "samples": n}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def load_batches(data: Path, name: str, bs: int, device) -> list[dict]:
    import torch

    path = data / f"batches-{name}-{bs}.pt"
    return [{k: t.to(device) for k, t in b.items()} for b in torch.load(path, weights_only=True)]


def inference_case(n_views: int, frames: int, S: int, dev):
    """The inputs both inference benchmarks use (speed_kernels.bench_infer, bench_train_gpu.bench_inference):
    random images from n_views orbit cameras at times spread over [0, 1], their Plücker + time conditioning,
    and a path of `frames` target cameras at times [0, 1] with a white background. Draws from torch's global
    generator (one torch.rand), so call it where the images were drawn before."""
    import torch

    from training.geometry import intrinsics, orbit_cameras, plucker_image

    c2w = orbit_cameras(n_views, 2.1, elevation_deg=15.0)[None].to(dev)  # [1, V, 4, 4]
    K = intrinsics(49.1, S, S).expand(1, n_views, 3, 3).contiguous().to(dev)
    t_in = torch.linspace(0, 1, n_views, device=dev)[None]  # [1, V]
    rgb = torch.rand(1, n_views, 3, S, S, device=dev)
    cond = torch.cat([plucker_image(c2w, K, S, S), t_in[..., None, None, None].expand(1, n_views, 1, S, S)], 2)
    tg_c2w = orbit_cameras(frames, 2.1, elevation_deg=25.0, phase=0.3)[None].to(dev)  # a camera path
    tg_K = intrinsics(49.1, S, S).expand(1, frames, 3, 3).contiguous().to(dev)
    tg_t = torch.linspace(0, 1, frames, device=dev)[None]
    bg = torch.ones(1, 3, device=dev)
    return rgb, cond, c2w, K, t_in, tg_c2w, tg_K, tg_t, bg
