"""Analytic 4D scenes ray-cast with numpy, written as shards in the exact DESIGN.md §4 layout.

Coloured spheres and boxes that move over clip time, seen by OpenCV cameras on a sphere around the
origin, with straight-alpha RGBA (supersampled edges) and planar camera-space depth. They give the
trainer's tests and benchmarks real tar shards with known geometry without Blender. They do not
replace the Blender renders of procedural assets, which the end-to-end tests use where available.
"""

from __future__ import annotations

import io
import json
import math
import os
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from contracts import layout
from contracts.identity import tar_identity

DEPTH_SCALE = 1.0 / 8192.0  # 16-bit depth: 0.12 mm steps in normalised units, up to 8.0 units away


@dataclass
class Primitive:
    kind: str             # "sphere" or "box" (axis-aligned)
    center: np.ndarray    # [3] position at clip time 0.5
    velocity: np.ndarray  # [3] displacement per unit of clip time
    wobble: np.ndarray    # [3] amplitude of a sinusoidal motion over the clip
    size: float           # sphere radius, or box half-side
    color: np.ndarray     # [3] albedo in [0, 1]

    def center_at(self, t: float) -> np.ndarray:
        return self.center + self.velocity * (t - 0.5) + self.wobble * math.sin(2 * math.pi * t)


def random_scene(rng: np.random.Generator, n_objects: int = 3, static: bool = False) -> list[Primitive]:
    prims = []
    for i in range(n_objects):
        moving = 0.0 if static else 1.0
        prims.append(Primitive(
            kind="sphere" if i % 2 == 0 else "box",
            center=rng.uniform(-0.25, 0.25, 3),
            velocity=moving * rng.uniform(-0.35, 0.35, 3),
            wobble=moving * rng.uniform(-0.1, 0.1, 3),
            size=float(rng.uniform(0.1, 0.22)),
            color=rng.uniform(0.1, 0.95, 3),
        ))
    return prims


def sphere_cameras(n_views: int, radius: float, rng: np.random.Generator) -> np.ndarray:
    """OpenCV c2w for `n_views` cameras spread over a sphere (Fibonacci lattice, random spin). [V, 4, 4]."""
    k = np.arange(n_views) + 0.5
    el = np.arcsin(np.clip(1 - 2 * k / n_views, -0.8, 0.8))  # keep away from the poles
    az = k * math.pi * (3 - math.sqrt(5)) + rng.uniform(0, 2 * math.pi)
    eyes = radius * np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], -1)
    out = np.zeros((n_views, 4, 4))
    for i, eye in enumerate(eyes):
        z = -eye / np.linalg.norm(eye)
        x = np.cross(z, [0.0, 0.0, 1.0])
        x /= np.linalg.norm(x)
        y = np.cross(z, x)
        out[i, :3, 0], out[i, :3, 1], out[i, :3, 2], out[i, :3, 3], out[i, 3, 3] = x, y, z, eye, 1.0
    return out


def intrinsics(size: int, fov_deg: float) -> np.ndarray:
    f = 0.5 * size / math.tan(math.radians(fov_deg) / 2)
    return np.array([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1.0]])


def render_view(scene: list[Primitive], t: float, c2w: np.ndarray, K: np.ndarray, size: int,
                supersample: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast one view at clip time t. Returns straight RGBA [H, W, 4] in [0, 1] and depth [H, W]
    (camera-space z, 0 where nothing is hit)."""
    s = supersample
    n = size * s
    Ks = np.diag([s, s, 1.0]) @ K
    j, i = np.meshgrid(np.arange(n) + 0.5, np.arange(n) + 0.5)
    d_cam = np.stack([(j - Ks[0, 2]) / Ks[0, 0], (i - Ks[1, 2]) / Ks[1, 1], np.ones_like(j)], -1)  # [n, n, 3]
    R, o = c2w[:3, :3], c2w[:3, 3]
    d = d_cam @ R.T
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    best = np.full((n, n), np.inf)
    normal = np.zeros((n, n, 3))
    albedo = np.zeros((n, n, 3))
    for p in scene:
        c = p.center_at(t)
        if p.kind == "sphere":
            oc = o - c
            b = d @ oc
            disc = b * b - (oc @ oc - p.size ** 2)
            hit_t = np.where(disc > 0, -b - np.sqrt(np.maximum(disc, 0)), np.inf)
            hit_t = np.where(hit_t > 1e-6, hit_t, np.inf)
            nrm = o + hit_t[..., None] * d - c
        else:
            lo, hi = c - p.size, c + p.size
            with np.errstate(divide="ignore", invalid="ignore"):
                t1, t2 = (lo - o) / d, (hi - o) / d
            tmin = np.minimum(t1, t2).max(-1)
            tmax = np.maximum(t1, t2).min(-1)
            hit_t = np.where((tmax >= tmin) & (tmin > 1e-6), tmin, np.inf)
            axis = np.argmax(np.minimum(t1, t2), -1)
            nrm = np.zeros((n, n, 3))
            np.put_along_axis(nrm, axis[..., None], -np.sign(np.take_along_axis(d, axis[..., None], -1)), -1)
        closer = hit_t < best
        best = np.where(closer, hit_t, best)
        normal = np.where(closer[..., None], nrm, normal)
        albedo = np.where(closer[..., None], p.color, albedo)
    hit = np.isfinite(best)
    normal /= np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-9)
    light = np.array([0.4, -0.3, 0.85]) / np.linalg.norm([0.4, -0.3, 0.85])
    shade = 0.35 + 0.65 * np.clip(normal @ light, 0, 1)
    rgb = albedo * shade[..., None] * hit[..., None]
    z = np.where(hit, best * (d @ R[:, 2]), 0.0)  # planar depth: distance along the camera's forward axis
    # box-filter the supersamples: premultiplied colour and coverage average, straight colour = ratio
    blk = lambda a: a.reshape(size, s, size, s, *a.shape[2:]).mean(axis=(1, 3))  # noqa: E731
    cov = blk(hit.astype(np.float64))
    prem = blk(rgb)
    straight = np.where(cov[..., None] > 0, prem / np.maximum(cov[..., None], 1e-9), 0.0)
    zsum, zcnt = blk(z), blk(hit.astype(np.float64))
    depth = np.where(zcnt > 0, zsum / np.maximum(zcnt, 1e-9), 0.0)
    return np.concatenate([straight, cov[..., None]], -1), depth


def encode_rgba(rgba: np.ndarray, fmt: str = "png") -> bytes:
    img = Image.fromarray(np.clip(np.round(rgba * 255), 0, 255).astype(np.uint8), "RGBA")
    buf = io.BytesIO()
    if fmt == "webp":
        img.save(buf, format="WEBP", lossless=True)
    else:
        img.save(buf, format="PNG")
    return buf.getvalue()


def encode_depth(depth: np.ndarray, depth_scale: float = DEPTH_SCALE) -> bytes:
    v = np.clip(np.round(depth / depth_scale), 0, 65535).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(v).save(buf, format="PNG")  # 16-bit greyscale
    return buf.getvalue()


def make_sample(uid: str, seed: int, *, views: int = 6, frames: int = 4, size: int = 32, static: bool = False,
                fov_deg: float = 35.0, radius: float = 2.0, fmt: str = "png", depth: bool = True,
                n_objects: int = 3) -> dict[str, bytes]:
    """One sample's tar members {member name: bytes} for key `{uid}_000` (clip 0)."""
    rng = np.random.default_rng(seed)
    key = f"{uid}_000"
    scene = random_scene(rng, n_objects=n_objects, static=static)
    T = 1 if static else frames
    cams = sphere_cameras(views, radius, rng)
    K = intrinsics(size, fov_deg)
    duration = 0.0 if static else 2.0
    times = [0.0] if T == 1 else [t / (T - 1) for t in range(T)]
    meta = {
        "schema_version": layout.SCHEMA_VERSION, "uid": uid, "clip": 0, "clip_name": "" if static else "move",
        "source": "procedural", "license": "cc0", "sha256": None, "static": static, "fps": 24.0,
        "duration_s": duration, "num_frames": T, "num_views": views, "width": size, "height": size,
        "times_s": [t * duration for t in times], "times": times,
        "c2w": [[cams[v].tolist() for v in range(views)] for _ in range(T)],
        "K": [K.tolist() for _ in range(views)], "depth_scale": DEPTH_SCALE,
        "normalization": {"center": [0.0, 0.0, 0.0], "scale": 1.0},
        "render": {"engine": "numpy-raycast", "samples": 4, "blender_version": None, "seed": seed,
                   "preset": "analytic"},
    }
    members = {layout.json_member(key): json.dumps(meta).encode()}
    for t in range(T):
        for v in range(views):
            rgba, z = render_view(scene, times[t], cams[v], K, size)
            members[layout.image_member(key, t, v, fmt)] = encode_rgba(rgba, fmt)
            if depth:
                members[layout.depth_member(key, t, v)] = encode_depth(z)
    return members


def write_tar(path: str | os.PathLike, samples: list[dict[str, bytes]]) -> None:
    """Write samples (member dicts, each sample's members contiguous) to a tar, atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tarfile.open(tmp, "w") as tf:
        for members in samples:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mtime = 1_700_000_000
                info.mode = 0o644
                tf.addfile(info, io.BytesIO(data))
    os.replace(tmp, path)


def commit_shard(out_dir: str | os.PathLike, shard: int, samples: list[dict[str, bytes]]) -> Path:
    """Write tar, parquet and (last) stats.json of one shard, like the render worker commits it."""
    import pandas as pd

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    write_tar(out_dir / layout.tar_name(shard), samples)
    rows = []
    for members in samples:
        key = next(iter(members)).split(".", 1)[0]
        uid, clip = key.rsplit("_", 1)
        rows.append({"uid": uid, "clip": int(clip), "key": key, "status": layout.STATUS_OK, "reason": None,
                     "seconds": 0.0})
    df = pd.DataFrame(rows)
    tmp = out_dir / f".{layout.parquet_name(shard)}.tmp"
    df.to_parquet(tmp, index=False)
    os.replace(tmp, out_dir / layout.parquet_name(shard))
    stats = {"shard": shard, "ok": len(rows), "failed": 0, "rejected": 0, "seconds": time.time() - t0,
             "schema_version": layout.SCHEMA_VERSION, "writer": "training.data.synthetic",
             **tar_identity(out_dir / layout.tar_name(shard))}
    tmp = out_dir / f".{layout.stats_name(shard)}.tmp"
    tmp.write_text(json.dumps(stats))
    os.replace(tmp, out_dir / layout.stats_name(shard))
    return out_dir / layout.tar_name(shard)


def write_dataset(out_dir: str | os.PathLike, n_samples: int, per_shard: int, seed: int = 0,
                  static_every: int = 0, uid_prefix: str = "analytic", **kw) -> list[str]:
    """Commit ceil(n_samples / per_shard) shards of analytic samples; every `static_every`-th sample is
    static (0 = none). Returns the keys written, in order."""
    keys = []
    for shard in range(math.ceil(n_samples / per_shard)):
        samples = []
        for i in range(shard * per_shard, min(n_samples, (shard + 1) * per_shard)):
            uid = f"{uid_prefix}{seed}x{i}"
            static = static_every > 0 and i % static_every == static_every - 1
            samples.append(make_sample(uid, seed * 100_003 + i, static=static, **kw))
            keys.append(f"{uid}_000")
        commit_shard(out_dir, shard, samples)
    return keys
