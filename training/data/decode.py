"""One sample's members (DESIGN.md §4): contract checks of `{key}.json`, image and depth decoding.

Nothing is ever unpickled: `.json` goes through json.loads, images through PIL. A member's value is
its bytes, or a `MemberRef` (where in which tar, from the shard's member index) that the decoders
fetch with a ranged read right before decoding: after picking and shuffling, so only the members a
sample uses are ever read.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from contracts import layout, reads, storage

IMAGE_RE = re.compile(r"^t(\d{3})\.v(\d{3})\.(png|webp)$")  # member suffix after the key
DEPTH_FMT = "t{t:03d}.v{v:03d}.depth.png"


class SampleError(Exception):
    """A sample (or shard) that cannot be used; `reason` is a word from a small fixed vocabulary."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def parse_sample(sample: dict) -> tuple[str, dict, int, int, dict[tuple[int, int], str]]:
    """A grouped tar sample -> (key, meta, T, V, {(frame, view): image member suffix}).

    Checks the JSON against the shard contract; raises SampleError when a sample cannot be used."""
    key = sample["__key__"]
    if "json" not in sample:
        raise SampleError("missing_member", f"{key}: no {key}.json in {sample.get('__url__')}")
    try:
        meta = json.loads(sample["json"])
    except (ValueError, UnicodeDecodeError) as exn:
        raise SampleError("bad_json", f"{key}.json: not JSON ({exn})") from None
    T, V = _check_meta(key, meta)
    members = {}
    for suffix in sample:
        m = IMAGE_RE.match(suffix)
        if m and int(m.group(1)) < T and int(m.group(2)) < V:
            members[(int(m.group(1)), int(m.group(2)))] = suffix
    if not members:
        raise SampleError("missing_member", f"{key}: no image members")
    return key, meta, T, V, members


def _check_meta(key: str, meta: Any) -> tuple[int, int]:
    if not isinstance(meta, dict):
        raise SampleError("bad_json", f"{key}.json: not an object")
    if meta.get("schema_version") != layout.SCHEMA_VERSION:
        raise SampleError("schema", f"{key}.json: schema_version {meta.get('schema_version')!r}, "
                                    f"expected {layout.SCHEMA_VERSION}")
    try:
        T, V = int(meta["num_frames"]), int(meta["num_views"])
        c2w = np.asarray(meta["c2w"], dtype=np.float64)
        K = np.asarray(meta["K"], dtype=np.float64)
        times = meta["times"]
    except (KeyError, TypeError, ValueError) as exn:
        raise SampleError("bad_json", f"{key}.json: missing or malformed field ({exn})") from None
    if T < 1 or V < 1 or c2w.shape != (T, V, 4, 4) or K.shape != (V, 3, 3) or len(times) != T:
        raise SampleError("bad_json", f"{key}.json: shapes disagree (num_frames={T}, num_views={V}, "
                                      f"c2w {c2w.shape}, K {K.shape}, times {len(times)})")
    if not (np.isfinite(c2w).all() and np.isfinite(K).all()):
        raise SampleError("bad_json", f"{key}.json: non-finite camera values")
    return T, V


def camera_anchors(key: str, meta: dict) -> np.ndarray:
    """The point each time's cameras are framed on, [T, 3] float32: `cameras.offsets` (framing 'track',
    DESIGN.md §2: the object's per-time box centre in normalised space), zeros when the JSON has none
    (framing 'union', shards from before framing existed). A static sample's one entry serves every time."""
    T = len(meta["c2w"])  # num_frames (parse_sample checks that they agree)
    cams = meta.get("cameras")
    offsets = cams.get("offsets") if isinstance(cams, dict) else None
    if offsets is None:
        return np.zeros((T, 3), np.float32)
    try:
        a = np.asarray(offsets, dtype=np.float64)
    except (TypeError, ValueError) as exn:
        raise SampleError("bad_json", f"{key}.json: cameras.offsets is malformed ({exn})") from None
    if a.shape != (T, 3) or not np.isfinite(a).all():
        raise SampleError("bad_json", f"{key}.json: cameras.offsets must be finite [num_frames={T}][3], "
                                      f"got shape {a.shape}")
    return a.astype(np.float32)


@dataclass(frozen=True)
class MemberRef:
    """A tar member not read yet: `size` bytes at `offset` of the tar at `url` (DESIGN.md §4 member index)."""

    url: str
    name: str
    offset: int
    size: int

    def read(self) -> bytes:
        try:
            return reads.read_range(self.url, self.offset, self.size)
        except storage.RangeNotSupported:
            raise  # not this member's fault: the shard reader streams the shard instead
        except Exception as exn:  # noqa: BLE001 (network, storage and file errors all skip the sample)
            raise SampleError("member_read", f"{self.url}#{self.name}: ranged read failed ({exn})"[:500]) from None


def member_bytes(data: bytes | MemberRef) -> bytes:
    """A member's bytes: as given, or fetched now (one ranged read) for a MemberRef."""
    return data.read() if isinstance(data, MemberRef) else data


def decode_rgba(data: bytes | MemberRef, where: str) -> np.ndarray:
    """PNG/WebP bytes (or a MemberRef, fetched here) -> straight RGBA float32 [H, W, 4] in [0, 1]."""
    data = member_bytes(data)
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
    except Exception as exn:  # noqa: BLE001 (PIL raises many types)
        raise SampleError("bad_image", f"{where}: cannot decode image ({exn})") from None
    return rgba


def decode_depth(data: bytes | MemberRef, depth_scale: float, where: str) -> np.ndarray:
    """16-bit greyscale PNG (or a MemberRef, fetched here) -> depth float32 [H, W] = value * depth_scale
    (0 = no surface). Decoded here because WebDataset's generic image decoders reduce 16-bit PNGs to 8 bits."""
    data = member_bytes(data)
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            if im.mode not in ("I;16", "I;16B", "I;16L", "I"):
                raise ValueError(f"mode {im.mode}, expected 16-bit greyscale")
            v = np.asarray(im).astype(np.float32)
    except Exception as exn:  # noqa: BLE001
        raise SampleError("bad_depth", f"{where}: cannot decode 16-bit depth ({exn})") from None
    return v * np.float32(depth_scale)
