"""Curate an Objaverse-1.0-sized annotation cache: wall time and peak memory of `pipeline curate`.

Generates, in a temporary folder (deleted afterwards unless --keep), a cache in the exact layout the
`objaverse` package reads (hf-objaverse-v1/object-paths.json.gz and metadata/000-NNN.json.gz), with
--objects uids spread over --files metadata files and records with the fields and shapes of real
Objaverse annotations (thumbnails, user and avatar, tags, archives, description: about 3.5 KB of JSON
each), --animated of them animated. Then runs `pipeline curate --source objaverse` on it in a child
process and reports wall time, the child's peak RSS (ru_maxrss) and the counts.

    nice python benchmarks/bench_curate.py                     # 798,759 objects, 160 files, 5% animated
    nice python benchmarks/bench_curate.py --objects 20000 --files 4   # a quick look
"""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import random

LICENSES = ["by", "by-nc", "cc0", "by-sa", "by-nc-sa", "by-nd", "by-nc-nd"]
LICENSE_P = [0.60, 0.14, 0.08, 0.07, 0.05, 0.03, 0.03]
WORDS = ("low poly character walk cycle robot tree house car chair sword dragon cat dog fox knight rigged animated "
         "scan statue rock building room table lamp ship plane gun helmet flower game asset stylized pbr").split()


def _record(uid: str, rng: random.Random, animated: float) -> dict:
    def url_id() -> str:
        return f"{rng.getrandbits(128):032x}"

    def integers(lo: int, hi: int) -> int:
        return rng.randrange(lo, hi)

    def words(n: int) -> list[str]:
        return rng.sample(WORDS, n) if n <= len(WORDS) else rng.choices(WORDS, k=n)

    name = " ".join(words(integers(1, 5)))
    faces = int(rng.lognormvariate(9.5, 1.6))
    anim = 0
    if rng.random() < animated:  # geometric number of clips, mean about 2
        anim = 1
        while rng.random() < 0.55 and anim < 50:
            anim += 1
    thumb_dir = url_id()
    user = url_id()
    return {
        "uri": f"https://api.sketchfab.com/v3/models/{uid}", "uid": uid, "name": name,
        "staffpickedAt": "2020-05-01T10:00:00" if rng.random() < 0.01 else None,
        "viewCount": int(integers(0, 50000)), "likeCount": int(integers(0, 500)), "animationCount": anim,
        "viewerUrl": f"https://sketchfab.com/3d-models/{uid}", "embedUrl": f"https://sketchfab.com/models/{uid}/embed",
        "commentCount": int(integers(0, 20)), "isDownloadable": True, "publishedAt": "2021-03-18T09:36:25.430631",
        "tags": [{"name": t, "slug": t, "uri": f"https://api.sketchfab.com/v3/tags/{t}"}
                 for t in words(integers(0, 9))],
        "categories": [{"name": "Characters & Creatures", "slug": "characters-creatures",
                        "uri": "https://api.sketchfab.com/v3/categories/characters-creatures"}] if rng.random() < 0.4 else [],
        "thumbnails": {"images": [{"uid": url_id(), "size": int(integers(500, 90000)), "width": w, "height": w * 9 // 16,
                                   "url": f"https://media.sketchfab.com/models/{uid}/thumbnails/{thumb_dir}/{url_id()}.jpeg"}
                                  for w in (1920, 1024, 720, 256, 64)]},
        "user": {"uid": user, "username": f"user{integers(0, 10**6)}", "displayName": name.title(),
                 "profileUrl": f"https://sketchfab.com/user{user[:6]}", "account": "basic",
                 "avatar": {"uri": f"https://api.sketchfab.com/v3/avatars/{url_id()}",
                            "images": [{"size": int(integers(500, 5000)), "width": w, "height": w,
                                        "url": f"https://media.sketchfab.com/avatars/{user}/{url_id()}.jpeg"} for w in (32, 48, 90, 100)]},
                 "uri": f"https://api.sketchfab.com/v3/users/{user}"},
        "description": " ".join(rng.choices(WORDS, k=integers(0, 60))),
        "faceCount": faces, "createdAt": "2021-03-18T09:31:52.190927", "vertexCount": int(faces * rng.uniform(0.5, 1.6)),
        "isAgeRestricted": bool(rng.random() < 0.01),
        "archives": {k: {"textureCount": int(integers(0, 12)) if k in ("glb", "gltf") else None,
                         "size": int(integers(10_000, 50_000_000)), "type": k,
                         "textureMaxResolution": 2048 if k in ("glb", "gltf") else None,
                         "faceCount": faces if k in ("glb", "gltf") else None,
                         "vertexCount": int(faces * 0.9) if k in ("glb", "gltf") else None}
                     for k in ("glb", "gltf", "source", "usdz")},
        "license": rng.choices(LICENSES, weights=LICENSE_P)[0],
    }


def _write_folder(args: tuple[Path, str, list[str], int, float]) -> int:
    meta_dir, folder, uids, seed, animated = args
    rng = random.Random(seed)
    data = {uid: _record(uid, rng, animated) for uid in uids}
    raw = json.dumps(data).encode()
    with gzip.open(meta_dir / f"{folder}.json.gz", "wb", compresslevel=6) as f:
        f.write(raw)
    return len(raw)


def generate(root: Path, objects: int, files: int, animated: float, seed: int, processes: int) -> dict:
    base = root / "hf-objaverse-v1"
    (base / "metadata").mkdir(parents=True)
    rng = random.Random(seed)
    uids = [f"{rng.getrandbits(128):032x}" for _ in range(objects)]
    folders = [f"{i // 1000:03d}-{i % 1000:03d}" for i in range(files)]
    per = -(-objects // files)
    groups = [uids[i * per:(i + 1) * per] for i in range(files)]
    paths = {uid: f"glbs/{folder}/{uid}.glb" for folder, group in zip(folders, groups) for uid in group}
    with gzip.open(base / "object-paths.json.gz", "wt", encoding="utf-8") as f:
        json.dump(paths, f)
    jobs = [(base / "metadata", folder, group, seed + 1 + i, animated) for i, (folder, group) in enumerate(zip(folders, groups))]
    with mp.Pool(processes) as pool:
        raw_bytes = sum(pool.imap_unordered(_write_folder, jobs))
    gz_bytes = sum(p.stat().st_size for p in (base / "metadata").iterdir())
    return {"objects": objects, "files": files, "json_bytes": raw_bytes, "gz_bytes": gz_bytes,
            "object_paths_gz_bytes": (base / "object-paths.json.gz").stat().st_size}


def run_curate(root: Path, out: Path) -> dict:
    cmd = [sys.executable, "-m", "pipeline", "curate", "--source", "objaverse", "--cache-dir", str(root),
           "--out", str(out / "manifest.parquet"), "--dropped-out", str(out / "dropped.parquet")]
    load = os.getloadavg()
    log = out / "curate.log"
    with open(log, "w") as f:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage: peak RSS and CPU of curate alone
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text()
    if proc.returncode != 0:
        raise SystemExit(f"curate failed ({proc.returncode}):\n{text}")
    return {"command": " ".join(["pipeline", *cmd[3:]]), "wall_s": round(wall, 1),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 1), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
            "load_before": [round(x, 2) for x in load], "load_after": [round(x, 2) for x in os.getloadavg()],
            "stdout": text}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--objects", type=int, default=798_759, help="uids in object-paths (Objaverse 1.0 has 798,759)")
    ap.add_argument("--files", type=int, default=160, help="metadata files (Objaverse 1.0 has 160)")
    ap.add_argument("--animated", type=float, default=0.05, help="fraction of objects with animationCount > 0")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--processes", type=int, default=2, help="processes generating the cache (not part of the measurement)")
    ap.add_argument("--workdir", default=None, help="where to put the cache (default: a new temp folder)")
    ap.add_argument("--keep", action="store_true", help="keep the generated cache and outputs")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_curate_"))
    try:
        t0 = time.perf_counter()
        gen = generate(work / "cache", args.objects, args.files, args.animated, args.seed, args.processes)
        gen["generate_s"] = round(time.perf_counter() - t0, 1)
        print(json.dumps(gen), flush=True)
        (work / "out").mkdir(exist_ok=True)
        res = run_curate(work / "cache", work / "out")
        print(res.pop("stdout"))
        import pyarrow.parquet as pq

        res["manifest_rows"] = pq.read_metadata(work / "out" / "manifest.parquet").num_rows
        res["dropped_rows"] = pq.read_metadata(work / "out" / "dropped.parquet").num_rows
        res["bytes_per_record"] = round(gen["json_bytes"] / gen["objects"])
        print(json.dumps(res, indent=1))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")


if __name__ == "__main__":
    main()
