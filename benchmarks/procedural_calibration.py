"""Calibration (CPU): the procedural sets (legacy and the new categories) next to the real glTF assets.

    python benchmarks/procedural_calibration.py [--count 45] [--seed 100] [--renders DATA] [--assets ASSETS] [--out calibration.md]

Per set: assets, clips per asset, clip duration, faces and vertices (manifests.gltf_info: the same counts the
Objaverse annotations carry as animationCount / faceCount / vertexCount), joints of skinned assets, the kind
mix (assets whose clips drive skinned joints / morph weights / rigid nodes), and, from real tiny renders
(the shard parquets that benchmarks/procedural_transfer.py render wrote under DATA: train/old, train/new,
heldout/gltf, heldout/gltf-val), image coverage (coverage_mean: object pixels per image) and motion magnitude
(motion_max / motion_mean: largest and mean vertex displacement over the clip in normalised scene units).
Real: ../shared/assets/gltf (animated ones) and gltf-val. Procedural: `--count` assets of `--seed` per
generator, generated here into a temporary folder (Blender), or with --assets the GLBs procedural_transfer.py
made (ASSETS/train-old, ASSETS/train-new: the assets whose clips were rendered).
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("OBJAVERSE4D_SHARED", ROOT.parent / "shared"))

from manifests.gltf_info import GltfError, read_gltf_info  # noqa: E402
from manifests.sources.local import list_gltf_files  # noqa: E402


def _doc(path: Path) -> dict:
    data = path.read_bytes()
    if data[:4] == b"glTF":
        (n,) = struct.unpack_from("<I", data, 12)
        return json.loads(data[20 : 20 + n])
    return json.loads(data)


def describe(path: Path) -> dict | None:
    """One asset's numbers, or None when it is not an animated glTF."""
    try:
        info = read_gltf_info(path)
    except GltfError:
        return None
    if not info.animations:
        return None
    doc = _doc(path)
    joints = {j for s in doc.get("skins", []) for j in s.get("joints", [])}
    kinds = set()
    for a in doc.get("animations", []):
        for ch in a.get("channels", []):
            node, p = ch["target"].get("node"), ch["target"]["path"]
            kinds.add("morph" if p == "weights" else "skin" if node in joints else "rigid")
    return {"faces": info.face_count, "vertices": info.vertex_count, "clips": len(info.animations),
            "durations": [c.duration_s for c in info.animations], "joints": len(joints), "kinds": kinds}


def _q(values, fmt: str = "{:.0f}") -> str:
    v = np.asarray(values, float)
    if not len(v):
        return "-"
    return f"{fmt.format(np.median(v))} ({fmt.format(np.percentile(v, 10))}-{fmt.format(np.percentile(v, 90))})"


def renders(folder: Path):
    import pandas as pd

    files = sorted(folder.glob("shard-*[0-9].parquet"))
    if not files:
        return None
    df = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    return df[df["status"] == "ok"]


def row(name: str, assets: list[dict], rendered) -> str:
    n = len(assets)
    skinned = [a["joints"] for a in assets if a["joints"]]
    mix = "/".join(f"{100 * sum(k in a['kinds'] for a in assets) / max(n, 1):.0f}" for k in ("skin", "morph", "rigid"))
    cov = mot = mmean = "-"
    if rendered is not None and len(rendered):
        cov = _q(rendered["coverage_mean"], "{:.3f}")
        mot = _q(rendered["motion_max"], "{:.2f}")
        mmean = _q(rendered["motion_mean"], "{:.3f}")
    clips = [a["clips"] for a in assets]
    return (f"| {name} | {n} | {np.mean(clips):.1f} ({min(clips)}-{max(clips)}) | {_q([d for a in assets for d in a['durations']], '{:.1f}')} | "
            f"{_q([a['faces'] for a in assets])} | {_q([a['vertices'] for a in assets])} | {_q(skinned)} | {mix} | {cov} | {mot} | {mmean} "
            f"| {0 if rendered is None else len(rendered)} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=45)
    ap.add_argument("--seed", type=int, default=100)
    ap.add_argument("--renders", default=str(ROOT / ".scratch/procedural_transfer/data"))
    ap.add_argument("--assets", default=None, help="read ASSETS/train-old and ASSETS/train-new instead of generating")
    ap.add_argument("--out", default=None, help="also write the table here")
    a = ap.parse_args()
    from render.procedural import generate_assets

    data = Path(a.renders)
    head = ("| set | animated assets | clips per asset (min-max) | clip seconds, median (p10-p90) | faces | vertices | "
            "joints (skinned assets) | kind mix skin/morph/rigid, % of assets | render coverage | motion_max | motion_mean | "
            "rendered clips |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    with tempfile.TemporaryDirectory() as tmp:
        sets = [("real gltf (../shared/assets/gltf)", list_gltf_files(SHARED / "assets/gltf"), data / "heldout/gltf"),
                ("real gltf-val", list_gltf_files(SHARED / "assets/gltf-val"), data / "heldout/gltf-val"),
                ("procedural old (legacy)", sorted(Path(a.assets, "train-old").glob("*.glb")) if a.assets else
                 generate_assets(Path(tmp) / "old", a.count, a.seed, categories="legacy"), data / "train/old"),
                ("procedural new (default mix)", sorted(Path(a.assets, "train-new").glob("*.glb")) if a.assets else
                 generate_assets(Path(tmp) / "new", a.count, a.seed), data / "train/new")]
        from render.procedural import CATEGORIES, category_of

        new_paths = sets[-1][1]
        for name, paths, rdir in sets:
            assets = [d for d in (describe(Path(p)) for p in paths) if d is not None]
            lines.append(row(name, assets, renders(rdir)))
        rendered_new = renders(data / "train/new")
        for cat in CATEGORIES:
            paths = [p for p in new_paths if category_of(Path(p).stem) == cat]
            sub = None if rendered_new is None else rendered_new[rendered_new["uid"].map(category_of) == cat]
            lines.append(row(f"new: {cat}", [d for d in (describe(Path(p)) for p in paths) if d is not None], sub))
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        Path(a.out).write_text(text)


if __name__ == "__main__":
    main()
