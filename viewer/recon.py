"""Reconstructions for the viewer: the output folder of `pipeline reconstruct` (per-frame .ply files and
reconstruct.json), the input views it was made from, and reconstructing a dataset sample on the spot.

Only names the folder itself lists are opened: `frame-NNN.ply` files directly in it (or the names its
reconstruct.json gives, checked to be plain `.ply` names there), and the input views named by its
record (a dataset sample, read through viewer.dataset, or a cameras.json folder's plain file names).
"""

from __future__ import annotations

import json
import os
import re
import tarfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from contracts import layout
from viewer.gaussians import PlyError, Splats, read_splats

PLY_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\.ply$")


class ReconstructionError(ValueError):
    """A folder that is not a usable reconstruction; the message names it."""


@dataclass
class InputView:
    label: str
    time: float
    c2w: np.ndarray      # [4, 4]
    K: np.ndarray        # [3, 3]
    rgba: np.ndarray     # [H, W, 4] uint8


@dataclass
class Reconstruction:
    folder: Path
    plys: list[Path]
    times: list[float]
    record: dict = field(default_factory=dict)
    _cache: dict[int, Splats] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __len__(self) -> int:
        return len(self.plys)

    def splats(self, k: int) -> Splats:
        """Frame k's Gaussians (read once, kept: a reconstruction is a few frames of a few MB)."""
        with self._lock:
            hit = self._cache.get(k)
        if hit is None:
            hit = read_splats(self.plys[k])
            with self._lock:
                self._cache[k] = hit
        return hit

    def frame_at(self, time: float) -> int:
        """The frame whose time is nearest `time` (normalised clip time)."""
        return int(np.argmin(np.abs(np.asarray(self.times) - time)))


def open_reconstruction(folder: str | os.PathLike) -> Reconstruction:
    """A `pipeline reconstruct` output folder: frames and times from reconstruct.json, else every
    frame-NNN.ply in name order (times spread evenly over [0, 1])."""
    d = Path(folder)
    if not d.is_dir():
        raise ReconstructionError(f"--reconstruction {folder}: no such folder")
    rec_path = d / "reconstruct.json"
    record: dict = {}
    if rec_path.is_file():
        try:
            record = json.loads(rec_path.read_text())
            outputs = record["outputs"]
            names = [o["ply"] for o in outputs]
            times = [float(o["time"]) for o in outputs]
        except (ValueError, KeyError, TypeError) as exn:
            raise ReconstructionError(f"--reconstruction {folder}: {rec_path.name} is not a reconstruct record "
                                      f"({type(exn).__name__}: {exn})") from None
        bad = [n for n in names if not isinstance(n, str) or not PLY_RE.match(n)]
        if bad:
            raise ReconstructionError(f"--reconstruction {folder}: refused output name {bad[0]!r} in {rec_path.name} "
                                      f"(must be a plain .ply name in the folder)")
    else:
        names = sorted(p.name for p in d.glob("frame-*.ply") if PLY_RE.match(p.name))
        times = [k / max(1, len(names) - 1) for k in range(len(names))]
    if not names:
        raise ReconstructionError(f"--reconstruction {folder}: no .ply frames (expected frame-NNN.ply from "
                                  f"`pipeline reconstruct`)")
    plys = [d / n for n in names]
    missing = [p.name for p in plys if not p.is_file()]
    if missing:
        raise ReconstructionError(f"--reconstruction {folder}: {len(missing)} frame file(s) missing, e.g. {missing[0]}")
    order = sorted(range(len(plys)), key=lambda k: (times[k], k))
    return Reconstruction(d, [plys[k] for k in order], [times[k] for k in order], record)


def _used(record: dict) -> list[dict]:
    inputs = record.get("inputs")
    if isinstance(inputs, dict):  # l4gm: the video and the t0 views
        return [*(inputs.get("video") or []), *(inputs.get("t0") or [])]
    return list(inputs or [])


def input_views(rec: Reconstruction) -> tuple[list[InputView], str | None]:
    """The views the reconstruction was made from, with their images: (views, None), or ([], why not)."""
    spec = rec.record.get("input")
    if not isinstance(spec, str):
        return [], "no reconstruct.json input record"
    used = _used(rec.record)
    try:
        if rec.record.get("input_kind") == "folder":
            return _folder_views(Path(spec), used), None
        if "#" not in spec:
            return [], f"input {spec!r} is neither a sample nor a folder"
        where, key = spec.rsplit("#", 1)
        return _sample_views(where, key, used), None
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exn:
        return [], f"input {spec}: {exn}"[:300]


def _sample_views(where: str, key: str, used: list[dict]) -> list[InputView]:
    from viewer.dataset import Dataset, ShardProblem

    m = layout.SHARD_RE.match(Path(where).name)
    if m and m.group(2) == "tar":
        ds, shards = Dataset(str(Path(where).parent)), [int(m.group(1))]
    else:
        ds = Dataset(where)
        shards = [s.number for s in ds.listing().committed]
    for n in shards:
        try:
            if any(r["key"] == key for r in ds.rows(n)):
                reader = ds.sample(n, key)
                break
        except ShardProblem:
            continue
    else:
        raise ValueError(f"sample {key} not found in {where}")
    return [InputView(f"input t{int(u['frame']):03d} v{int(u['view']):03d}", float(u["time"]),
                      reader.c2w[int(u["frame"]), int(u["view"])], reader.K[int(u["view"])],
                      reader.rgba(int(u["frame"]), int(u["view"]))) for u in used]


def _folder_views(folder: Path, used: list[dict]) -> list[InputView]:
    from PIL import Image

    frames = json.loads((folder / "cameras.json").read_text())["frames"]
    by_file = {f["file"]: f for f in frames if isinstance(f, dict) and isinstance(f.get("file"), str)}
    out = []
    for u in used:
        name = u.get("source")
        f = by_file.get(name)
        if f is None or "/" in name or "\\" in name or name.startswith("."):
            continue  # only plain names that cameras.json lists
        with Image.open(folder / name) as im:
            rgba = np.asarray(im.convert("RGBA"))
        out.append(InputView(f"input {name}", float(f["time"]), np.asarray(f["c2w"], float), np.asarray(f["K"], float),
                             rgba))
    return out


def write_sample_tar(reader: Any, path: Path) -> Path:
    """One sample's JSON and images (read by ranged reads) as a one-sample tar that `pipeline
    reconstruct --input TAR#KEY` reads; depth maps are left out (the models do not read them)."""
    import io

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tarfile.open(tmp, "w") as tf:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))

        add(layout.json_member(reader.key), json.dumps(reader.meta).encode())
        for t in range(reader.T):
            for v in range(reader.V):
                name = reader.image_name(t, v)
                if name is not None:
                    add(name, reader.member_bytes(name))
    os.replace(tmp, path)
    return path


def reconstruct_sample(checkpoint: str, reader: Any, workdir: Path, device: str | None = None) -> Reconstruction:
    """Run `pipeline reconstruct` (training/export/reconstruct.py, in this process) on one dataset sample:
    CPU for tiny/small at low resolution, the GPU when there is one. Raises ReconstructionError."""
    from training.data.clip import InputError
    from training.export.reconstruct import reconstruct

    workdir.mkdir(parents=True, exist_ok=True)
    tar = write_sample_tar(reader, workdir / "sample.tar")
    out = workdir / "reconstruction"
    try:
        reconstruct(checkpoint, f"{tar}#{reader.key}", out, device=device, anim_frames=2, anim_size=32)
    except (InputError, FileNotFoundError, ValueError, RuntimeError) as exn:
        raise ReconstructionError(f"--checkpoint {checkpoint}: reconstructing {reader.key} failed ({exn})"[:500]) from None
    return open_reconstruction(out)


def heldout_views(rec: Reconstruction, V: int) -> list[int]:
    """The sample's views that no input of the reconstruction came from."""
    seen = {int(u["view"]) for u in _used(rec.record) if "view" in u}
    return [v for v in range(V) if v not in seen]


__all__ = ["InputView", "PlyError", "Reconstruction", "ReconstructionError", "heldout_views", "input_views",
           "open_reconstruction", "reconstruct_sample", "write_sample_tar"]
