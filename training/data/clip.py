"""The input clip of `pipeline reconstruct` (training/export/reconstruct.py) and `Views`, posed timed
images ready for a model; each family chooses its inputs from a clip (training/models/*/recon.py).

`--input` is a rendered sample `DIR_OR_TAR#KEY` (a dataset folder or one shard tar, local), or a folder
of the user's own images with a `cameras.json` ({"frames": [{"file", "c2w", "K", "time", "view",
"anchor"}]}, OpenCV cameras in the normalised space, time in [0, 1]; RGBA, or RGB on a white
background). A sample's camera anchors are its `cameras.offsets` (framing 'track'); a folder's are each
frame's optional `anchor` (the object's position at that time for tracked cameras, DESIGN.md §6), the
origin where absent.
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from PIL import Image

from training.data import shardspec
from training.data.decode import IMAGE_RE, SampleError, camera_anchors, decode_rgba, parse_sample
from training.geometry import plucker_image, scale_intrinsics


@dataclass
class Views:
    """Posed, timed images of one clip: rgb [n, 3, S, S] (composited on the background), c2w [n, 4, 4],
    K [n, 3, 3] (at S), time [n], anchor [n, 3] (what each camera is framed on, DESIGN.md §2 offsets;
    None = the origin)."""

    rgb: Tensor
    c2w: Tensor
    K: Tensor
    time: Tensor
    anchor: Tensor | None = None

    def take(self, idx: slice | list[int]) -> "Views":
        return Views(self.rgb[idx], self.c2w[idx], self.K[idx], self.time[idx],
                     None if self.anchor is None else self.anchor[idx])

    def anchors(self) -> Tensor:
        """[n, 3], zeros when no anchor was given."""
        return self.anchor if self.anchor is not None else torch.zeros(self.c2w.shape[0], 3)

    def cond(self) -> Tensor:
        """Plücker rays + the time plane: [n, 7, S, S]."""
        S = self.rgb.shape[-1]
        return torch.cat([plucker_image(self.c2w, self.K, S, S), self.time[:, None, None, None].expand(-1, 1, S, S)], 1)


class InputError(ValueError):
    """A bad --input, --times or --checkpoint; the message names it."""


# -- input clips -----------------------------------------------------------------------------------


@dataclass
class Frame:
    frame: int          # rendered frame index (a folder: rank of its time)
    view: int           # view index (a folder: the `view` field)
    time: float         # normalised clip time
    rgba: np.ndarray    # [H, W, 4] straight alpha in [0, 1]
    c2w: np.ndarray     # [4, 4]
    K: np.ndarray       # [3, 3] at the image's own size
    fixed: bool = True  # a fixed camera (a video can be made of it); random views are redrawn per time
    source: str = ""    # member or file name
    anchor: tuple[float, float, float] = (0.0, 0.0, 0.0)  # what the camera is framed on (cameras.offsets)


@dataclass
class Clip:
    frames: list[Frame]
    name: str
    kind: str                                   # "sample" or "folder"
    times: list[float] = field(default_factory=list)  # the clip's rendered / given times, sorted


def load_input(spec: str) -> Clip:
    """`DIR_OR_TAR#KEY` or a folder holding cameras.json."""
    if "#" in spec:
        where, key = spec.rsplit("#", 1)
        return _load_sample(where, key, spec)
    p = Path(spec)
    if (p / "cameras.json").is_file():
        return _load_folder(p)
    raise InputError(f"--input {spec}: neither DIR_OR_TAR#KEY (a rendered sample) nor a folder with cameras.json")


def _load_sample(where: str, key: str, spec: str) -> Clip:
    p = Path(where)
    if "://" in where:
        raise InputError(f"--input {spec}: reconstruct reads local shards only; copy the shard first")
    if p.is_dir():
        tars = shardspec.resolve_shards(str(p))
    elif p.is_file():
        tars = [str(p)]
    else:
        raise InputError(f"--input {spec}: {where} is not a dataset folder or shard tar")
    for tar in tars:
        sample = _read_key(tar, key)
        if sample is not None:
            break
    else:
        raise InputError(f"--input {spec}: no sample with key {key!r} in {len(tars)} shard(s) of {where}")
    try:
        key, meta, T, V, members = parse_sample(sample)
        anchors = camera_anchors(key, meta)  # [T, 3]
    except SampleError as exn:
        raise InputError(f"--input {spec}: {exn}") from None
    fixed = (meta.get("cameras") or {}).get("fixed")
    fixed = fixed if isinstance(fixed, list) and len(fixed) == V else [True] * V
    c2w, K = np.asarray(meta["c2w"], np.float64), np.asarray(meta["K"], np.float64)
    frames = []
    for (t, v), suffix in sorted(members.items()):
        rgba = decode_rgba(sample[suffix], f"{key}.{suffix}")
        frames.append(Frame(t, v, float(meta["times"][t]), rgba, c2w[t, v], K[v], bool(fixed[v]), f"{key}.{suffix}",
                            tuple(float(a) for a in anchors[t])))
    times = [float(x) for x in meta["times"]] if not meta.get("static") else [0.0]
    return Clip(frames, key, "sample", times)


def _read_key(tar: str, key: str) -> dict | None:
    """The members of sample `key` in one shard tar ({'__key__', 'json', suffix: bytes}), or None."""
    out: dict[str, Any] = {}
    with tarfile.open(tar) as tf:
        for m in tf:
            if m.isfile() and m.name.startswith(key + "."):
                suffix = m.name[len(key) + 1:]
                if suffix == "json" or IMAGE_RE.match(suffix):
                    out[suffix] = tf.extractfile(m).read()
    if not out:
        return None
    out["__key__"] = key
    return out


def _load_folder(p: Path) -> Clip:
    where = p / "cameras.json"
    try:
        doc = json.loads(where.read_text())
        entries = doc["frames"]
        assert isinstance(entries, list) and entries
    except Exception as exn:  # noqa: BLE001
        raise InputError(f"--input {where}: expected {{\"frames\": [{{file, c2w, K, time, view}}, ...]}} ({exn})") from None
    frames = []
    for i, e in enumerate(entries):
        at = f"--input {where}: frames[{i}]"
        try:
            c2w = np.asarray(e["c2w"], np.float64)
            K = np.asarray(e["K"], np.float64)
            t = float(e["time"])
            v = int(e.get("view", 0))
            name = str(e["file"])
            anchor = np.asarray(e.get("anchor", (0.0, 0.0, 0.0)), np.float64)
        except (KeyError, TypeError, ValueError) as exn:
            raise InputError(f"{at}: missing or malformed field ({exn})") from None
        if anchor.shape != (3,) or not np.isfinite(anchor).all():
            raise InputError(f"{at}: anchor must be 3 finite numbers (the object's position at that time), "
                             f"got {e.get('anchor')!r}")
        if c2w.shape != (4, 4) or K.shape != (3, 3) or not (np.isfinite(c2w).all() and np.isfinite(K).all()):
            raise InputError(f"{at}: c2w must be 4x4 and K 3x3, finite")
        if not 0.0 <= t <= 1.0:
            raise InputError(f"{at}: time {t} outside [0, 1]")
        if v < 0:
            raise InputError(f"{at}: view {v} must be >= 0")
        f = (p / name).resolve()
        if p.resolve() not in f.parents or not f.is_file():
            raise InputError(f"{at}: file {name!r} is not an image inside {p}")
        try:
            with Image.open(f) as im:
                im.load()
                rgba = np.asarray(im.convert("RGBA"), np.float32) / 255.0  # RGB images: opaque (white backgrounds stay)
        except Exception as exn:  # noqa: BLE001
            raise InputError(f"{at}: cannot read image {name} ({exn})") from None
        frames.append(Frame(-1, v, t, rgba, c2w, K, True, name, tuple(float(a) for a in anchor)))
    times = sorted({fr.time for fr in frames})
    for fr in frames:
        fr.frame = times.index(fr.time)
    return Clip(frames, p.name, "folder", times)


def to_views(frames: list[Frame], size: int, background: torch.Tensor) -> Views:
    """Composite on the background, resize to size x size, scale K to match. No frames: empty views
    (an L4GM checkpoint trained without t0 views)."""
    if not frames:
        return Views(torch.zeros(0, 3, size, size), torch.zeros(0, 4, 4), torch.zeros(0, 3, 3), torch.zeros(0),
                     torch.zeros(0, 3))
    rgbs, c2ws, Ks = [], [], []
    for fr in frames:
        x = torch.from_numpy(fr.rgba).permute(2, 0, 1).float()  # [4, h, w]
        h, w = x.shape[-2:]
        rgb = x[:3] * x[3:] + background[:, None, None] * (1 - x[3:])
        if (h, w) != (size, size):
            rgb = F.interpolate(rgb[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
        rgbs.append(rgb.clamp(0, 1))
        c2ws.append(torch.from_numpy(fr.c2w).float())
        Ks.append(scale_intrinsics(torch.from_numpy(fr.K).float(), size / w, size / h))
    return Views(torch.stack(rgbs), torch.stack(c2ws), torch.stack(Ks),
                 torch.tensor([fr.time for fr in frames], dtype=torch.float32),
                 torch.tensor([fr.anchor for fr in frames], dtype=torch.float32))


def spread(items: list, n: int, skip_first: bool = False) -> list:
    """n items evenly spread over `items` (cyclically), e.g. fixed views around the object."""
    m = len(items)
    offset = 1 if skip_first else 0
    return [items[(round((i + offset) * m / (n + offset))) % m] for i in range(n)]


def anchor_at(clip: Clip, t: float) -> np.ndarray:
    """The clip's camera anchor [3] (float32) at normalised time t: linear between its frames' times."""
    known = sorted({(fr.time, fr.anchor) for fr in clip.frames})
    times, anchors = [k[0] for k in known], np.array([k[1] for k in known])  # [n], [n, 3]
    return np.array([np.interp(t, times, anchors[:, i]) for i in range(3)], np.float32)
