"""Does the new procedural generator transfer to real clips better than the old one? (issue 22, item 5)

CPU stage (this box, Blender): render the training clips of every arm at EQUAL clip counts and the held-out
clips, with the issue's recipe (`--preset debug --resolution 64 --frames 8 --views 8 --samples 8 --format webp`), cut
to fit the ~55 MiB a device call can carry (a 64-image clip is ~0.19 MiB of webp + 16-bit depth): 36 legacy assets
instead of 96 (~70 clips per arm instead of 181) and 4 views for the training clips (8 for the held-out ones):

    nice python benchmarks/procedural_transfer.py render [--data .scratch/procedural_transfer/data] [--assets 36]
        [--train-views 4] [--views 8] [--sets train/old,heldout/gltf,...]

  train/old        the legacy generator, `--assets` assets of seed 100 (its clips set the clip count N)
  train/new        the default category mix, seed 100, N clips drawn from its rows (sha256 order)
  train/new-notex  the same assets without image textures (flat mean colours), N clips
  train/new-noaug  the same assets without shape augmentations (no bumps, cuts, wires; fixed density), N clips
  train/new-noart  only the non-articulated categories (soft, blob) with textures and shapes, N clips
  train/mix        half the assets of the default mix, half legacy primitives (interleaved), N clips
  train/new-wide   the default mix's first 2 x `--assets` assets, one clip each, cut to N clips: as many clips as
                   train/new from about twice as many assets
  train/new-x      the default mix's assets after train/new's (indices `--assets`..2 x `--assets` - 1), N clips: the
                   device arm `new+new-x` trains on both folders, twice train/new's assets and clips
  train/new-x23    the next 2 x `--assets` assets (indices 2 x `--assets`..4 x `--assets` - 1), 2 N clips: the arm
                   `new+new-x+new-x23` has four times train/new's assets and clips
  heldout/proc-old, heldout/proc-new   seed 200 (never trained on), equal clip counts
  heldout/gltf, heldout/gltf-val       ../shared/assets/gltf animated assets and gltf-val, at most 4 clips each
                                       ($OBJAVERSE4D_SHARED/assets when ../shared is elsewhere)

Assets go to .scratch/procedural_transfer/assets (not needed on the device); `size` prints the data folder's
MiB; `pack` writes DATA.tar.xz, the file a device call carries, and checks it, `.whl` and the working tree against
the 64 MiB a call sends. Arms already
rendered are skipped (committed shards).

Device stage (one GPU, one command, no bpy): every (arm, seed) trains `small` at 64 px for exactly
--train-minutes through benchmarks/gpu_learn.py, all processes at once on the one GPU (equal GPU minutes: each
gets the same wall time on a shared card), then each checkpoint is scored on the four held-out sets with
`pipeline eval`'s protocol (psnr_obj of the model, nearest input and mean colour, per sample):

    python benchmarks/procedural_transfer.py device --data DATA --out OUT [--arms old,new,...] [--seeds 0,1] [--train-minutes 6]
    python benchmarks/procedural_transfer.py table OUT        # per arm x held-out set, and per real asset
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("OBJAVERSE4D_SHARED", ROOT.parent / "shared"))

RENDER = ["--preset", "debug", "--frames", "8", "--samples", "8", "--format", "webp"]  # + --resolution (64)
ARMS = {  # arm -> (categories, textures, shapes)
    "old": ("legacy", True, True),
    "new": (None, True, True),
    "new-notex": (None, False, True),
    "new-noaug": (None, True, False),
    "new-noart": ("soft,blob", True, True),
    "mix": ("default+legacy", True, True),
}
# arm -> (asset multiple of --assets, clips kept per asset, leading multiples of --assets left out, clip multiple of
# N): the default mix's first multiple x --assets assets of seed 100 (one folder, train-newMx; byte-identical per
# index, so the smaller folders are its prefixes), the first skip x --assets of them left out, cut to clips x N clips
SCALE_ARMS = {
    "new-wide": (2, 1, 0, 1),
    "new-x": (2, 16, 1, 1),
    "new-x23": (4, 16, 2, 2),
}
HELDOUT = ("proc-old", "proc-new", "gltf", "gltf-val")
SHARD_SIZE = 16


def sh(args: list[str], log: Path) -> None:
    print("$ " + shlex.join(args), flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        r = subprocess.run(args, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                           env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})
    if r.returncode:
        raise SystemExit(f"failed ({r.returncode}): {shlex.join(args)}; log: {log}")


def _generate(folder: Path, count: int, seed: int, categories, textures: bool, shapes: bool, log: Path,
              donors: tuple[Path, ...] = ()) -> None:
    """`count` assets of (seed, mix) into `folder`, unless it holds them. A donor folder made with the same settings
    and holding more assets gives them instead, hard-linked: the generator's plan of `count` assets is the start of
    its plan of any larger count, byte-identical per index (the scale arms' folders are prefixes of each other)."""
    have = len(list(folder.glob("*.glb"))) if folder.is_dir() else 0
    if have == count:
        return
    if have:
        raise SystemExit(f"{folder} holds {have} assets, not {count}: remove it (or pass the count it was made with)")
    for donor in donors:
        if donor.is_dir() and len(list(donor.glob("*.glb"))) > count:
            uids = _first_assets(count, seed, categories)
            if all((donor / f"{u}.glb").exists() for u in uids):
                folder.mkdir(parents=True, exist_ok=True)
                for u in sorted(uids):
                    os.link(donor / f"{u}.glb", folder / f"{u}.glb")
                print(f"{folder.name}: the first {count} assets linked from {donor.name}", flush=True)
                return
    args = [sys.executable, "-m", "render.procedural", "--out", str(folder), "--count", str(count), "--seed", str(seed)]
    args += ["--categories", _mix(categories)]
    args += [] if textures else ["--no-textures"]
    args += [] if shapes else ["--no-shapes"]
    sh(args, log)


def _first_assets(count: int, seed: int = 100, categories: str | None = None) -> set[str]:
    """The uids of the first `count` assets the generator makes for (seed, mix): its plan of `count` assets, which
    is the start of its plan of any larger count (the index in a uid counts per category, not per batch)."""
    from render.procedural.naming import parse_categories, plan

    return {item.uid for item in plan(count, seed, parse_categories(_mix(categories)))}


def _mix(categories: str | None) -> str:
    """An arm's `--categories`: None is the default mix; `default+legacy` interleaves it with the legacy generator
    (biped,legacy,quadruped,legacy,...: half the assets legacy primitives)."""
    from render.procedural import DEFAULT_MIX

    if categories is None:
        return ",".join(DEFAULT_MIX)
    if categories == "default+legacy":
        return ",".join(x for c in DEFAULT_MIX for x in (c, "legacy"))
    return categories


def _curate(folder: Path, out: Path, log: Path, clips: int | None = None, max_clips: int = 16,
            exclude: set[str] | frozenset[str] = frozenset()) -> int:
    """`pipeline curate --source local` of `folder` (at most `max_clips` clips per asset, the first ones), the
    assets whose uid is in `exclude` left out, cut to `clips` rows (sha256 order of uid/clip) and re-sharded;
    returns the row count. Procedural rows get their category."""
    from manifests import read_manifest, write_manifest
    from manifests.shards import assign_shards
    from render.procedural import category_of

    raw = out.with_name(out.stem + "_all.parquet")
    if not raw.exists():
        sh([sys.executable, "-m", "pipeline", "-q", "curate", "--source", "local", "--dir", str(folder), "--out", str(raw),
            "--max-clips-per-asset", str(max_clips), "--shard-size", str(SHARD_SIZE)], log)
    df = read_manifest(raw)
    df = df[~df["uid"].isin(exclude)]
    if clips is not None and len(df) > clips:
        key = (df["uid"] + "/" + df["clip"].astype(str)).map(lambda s: hashlib.sha256(s.encode()).hexdigest())
        df = df.loc[key.sort_values().index[:clips]]
    df["category"] = df["uid"].map(lambda u: category_of(u) or "real")
    df = assign_shards(df.drop(columns=["shard"]), SHARD_SIZE)
    write_manifest(df, out, command="benchmarks/procedural_transfer.py render", settings={"clips": clips})
    return len(df)


def _render(manifest: Path, dest: Path, views: int, log: Path, resolution: int = 64) -> None:
    """`pipeline render` of every shard (it skips the committed ones: a rerun resumes)."""
    sh([sys.executable, "-m", "pipeline", "-q", "render", "--manifest", str(manifest), "--shards", "all", "--out", str(dest),
        *RENDER, "--resolution", str(resolution), "--views", str(views), "--no-ray", "--threads", "2"], log)


def render(a) -> None:
    data, scratch = Path(a.data), Path(a.data).parent
    assets, man = scratch / "assets", scratch / "manifests"
    log = scratch / "render.log"
    man.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    _generate(assets / "train-old", a.assets, 100, "legacy", True, True, log)
    n = _curate(assets / "train-old", man / "train-old.parquet", log)
    print(f"old arm: {n} clips of {a.assets} assets: every arm gets {n}", flush=True)
    _generate(assets / "heldout-proc-old", a.heldout_assets, 200, "legacy", True, True, log)
    n_held = _curate(assets / "heldout-proc-old", man / "heldout-proc-old.parquet", log)
    _generate(assets / "heldout-proc-new", a.heldout_assets, 200, None, True, True, log)
    _curate(assets / "heldout-proc-new", man / "heldout-proc-new.parquet", log, n_held)
    for real in ("gltf", "gltf-val"):
        _curate(SHARED / "assets" / real, man / f"heldout-{real}.parquet", log, max_clips=4)
    order = [("train", "old")] + [("heldout", h) for h in HELDOUT] + [("train", arm) for arm in a.arms.split(",") if arm != "old"]
    if a.sets:
        order = [tuple(x.split("/", 1)) for x in a.sets.split(",")]
    # the default mix's folders (train/new and the scale arms') are prefixes of the largest one asked for: made once
    mults = sorted({SCALE_ARMS[n][0] for g, n in order if g == "train" and n in SCALE_ARMS}, reverse=True)
    donors = tuple(assets / f"train-new{m}x" for m in mults)
    if mults:
        _generate(donors[0], mults[0] * a.assets, 100, None, True, True, log)
    for group, name in order:
        if group == "train" and name in SCALE_ARMS:
            mult, per_asset, skip_mult, clip_mult = SCALE_ARMS[name]
            folder = assets / f"train-new{mult}x"
            _generate(folder, mult * a.assets, 100, None, True, True, log, donors)
            skip = _first_assets(skip_mult * a.assets)
            _curate(folder, man / f"train-{name}.parquet", log, clip_mult * n, max_clips=per_asset, exclude=skip)
        elif group == "train" and name != "old":
            cats, tex, shp = ARMS[name]
            _generate(assets / f"train-{name}", a.assets, 100, cats, tex, shp, log,
                      donors if (cats, tex, shp) == (None, True, True) else ())
            _curate(assets / f"train-{name}", man / f"train-{name}.parquet", log, n)
        t = time.time()
        _render(man / f"{group}-{name}.parquet", data / group / name, a.train_views if group == "train" else a.views, log,
                a.resolution)
        print(f"{group}/{name}: rendered in {time.time() - t:.0f} s; data so far {_mib(data):.1f} MiB; "
              f"{time.time() - t0:.0f} s since start", flush=True)


def _mib(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20 if folder.is_dir() else 0.0


def pack(a) -> None:
    """DATA -> DATA.tar.xz (what a device call carries: the tar members' 512-byte headers and padding, a third
    of the folder's bytes at 64 px, and the json members compress away; xz packs the 181-clip sets of three arms into
    43.6 MiB where gzip took 52.8); procedural_transfer.sh unpacks it there."""
    import tarfile

    data = Path(a.data)
    out = data.with_name(data.name + ".tar.xz")
    tmp = out.with_name(out.name + ".partial")
    with tarfile.open(tmp, "w:xz", preset=6) as tar:
        tar.add(data, arcname=data.name)
    os.replace(tmp, out)
    print(f"{out}: {out.stat().st_size / 2**20:.1f} MiB (folder {_mib(data):.1f} MiB)")
    print(carry_check(out, ROOT / ".whl", _tree_bytes()))


CARRY_MIB = 64  # what one device call sends in all: the working tree (tracked and untracked-not-ignored) + `carry`


def _tree_bytes() -> int:
    """Bytes of the working tree a device call sends besides its carried paths (git's tracked and untracked,
    not ignored files)."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.split(b"\0")
    paths = [ROOT / n.decode() for n in names if n]
    return sum(p.stat().st_size for p in paths if p.is_file())


def carry_check(archive: Path, wheels: Path, tree_bytes: int = 0) -> str:
    """One line: the working tree, the wheels and the archive against the device call's limit."""
    whl = sum(f.stat().st_size for f in wheels.glob("*.whl"))
    total = (archive.stat().st_size + whl + tree_bytes) / 2**20
    line = (f"a call carrying [.whl, {archive.name}]: {total:.1f} MiB of {CARRY_MIB} (tree {tree_bytes / 2**20:.1f}, "
            f"wheels {whl / 2**20:.1f}, archive {archive.stat().st_size / 2**20:.1f})")
    if total > CARRY_MIB:
        line += " -- TOO LARGE: render fewer clips or arms, or carry only the wheels the call needs"
    return line


def size(a) -> None:
    data = Path(a.data)
    for sub in sorted(p for p in data.glob("*/*") if p.is_dir()):
        rows = _rows(sub)
        ok = int((rows["status"] == "ok").sum()) if len(rows) else 0
        print(f"{sub.relative_to(data)}: {_mib(sub):.1f} MiB, {ok} ok clips of {len(rows)}")
    print(f"total {_mib(data):.1f} MiB")


def _rows(folder: Path):
    import pandas as pd

    files = sorted(folder.glob("shard-*[0-9].parquet"))
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True) if files else pd.DataFrame({"status": []})


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("device", "table"):  # the device stage: no bpy there
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from procedural_transfer_gpu import main as gpu_main

        raise SystemExit(gpu_main(sys.argv[1:]))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("render", help="CPU: render every arm's training clips and the held-out clips")
    r.add_argument("--data", default=str(ROOT / ".scratch/procedural_transfer/data"))
    r.add_argument("--assets", type=int, default=36, help="legacy assets of seed 100 (sets the clip count)")
    r.add_argument("--heldout-assets", type=int, default=8, help="legacy assets of seed 200 (sets the held-out clip count)")
    r.add_argument("--views", type=int, default=8, help="fixed views of the held-out clips")
    r.add_argument("--train-views", type=int, default=4, help="fixed views of the training clips")
    r.add_argument("--arms", default=",".join(ARMS), help=f"of {', '.join([*ARMS, *SCALE_ARMS])}")
    r.add_argument("--sets", default="", help="render only these, e.g. train/new,heldout/gltf (another process may do the rest)")
    r.add_argument("--resolution", type=int, default=64,
                   help="image size of every clip (the issue's recipe: 64; 128 for `small`'s own resolution, e.g. a "
                        "128 px .trainpack for equal-step quality runs; about 3x the bytes)")
    s = sub.add_parser("size", help="MiB and ok clips per rendered folder")
    s.add_argument("--data", default=str(ROOT / ".scratch/procedural_transfer/data"))
    p = sub.add_parser("pack", help="DATA -> DATA.tar.xz, the file a device call carries")
    p.add_argument("--data", default=str(ROOT / ".scratch/procedural_transfer/data"))
    a = ap.parse_args()
    {"render": render, "size": size, "pack": pack}[a.cmd](a)


if __name__ == "__main__":
    main()
