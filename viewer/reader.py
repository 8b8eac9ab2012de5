"""One sample of a shard, read member by member: its JSON (read and checked by viewer.dataset), and each
image and depth map when a time is shown, one ranged read each (seek, HTTP Range, S3 ranged GET), 8 at a
time over a network. `ShardProblem` is what every reader here raises for data that cannot be shown.
"""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np

from contracts import layout, reads, storage


class ShardProblem(Exception):
    """A shard (or sample) that cannot be shown; the message says which file and why."""


def read_member(tar: str, where: tuple[int, int]) -> bytes:
    """`size` bytes at `offset` of the tar (where = (offset, size)); ShardProblem when that fails."""
    try:
        return reads.read_range(tar, where[0], where[1])
    except Exception as exn:  # noqa: BLE001 (file, HTTP and S3 errors: the member is unreadable)
        raise ShardProblem(f"{tar}: ranged read of {where[1]} bytes at {where[0]} failed ({exn})"[:400]) from None


_pools: dict[int, Any] = {}


def _pool() -> Any:
    """This process's threads for concurrent ranged reads (as many as a trainer's loader worker uses)."""
    from concurrent.futures import ThreadPoolExecutor

    from training.data.shardstream import FETCH_THREADS

    pool = _pools.get(os.getpid())
    if pool is None:
        pool = _pools[os.getpid()] = ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix="viewer-fetch")
    return pool


class SampleReader:
    """One sample's JSON, and its images and depth maps read (one ranged read each) when asked for."""

    def __init__(self, key: str, meta: dict, tar: str, members: dict[str, tuple[int, int]],
                 held: dict[str, bytes] | None = None):
        self.key, self.meta, self.tar, self.members = key, meta, tar, members
        self.held = held or {}  # members already in memory (streamed from a server without Range support)
        self._fetched: dict[str, bytes] = {}  # the members of the time being built, read concurrently
        self.T, self.V = int(meta["num_frames"]), int(meta["num_views"])
        self.c2w = np.asarray(meta["c2w"], dtype=np.float64)   # [T, V, 4, 4]
        self.K = np.asarray(meta["K"], dtype=np.float64)       # [V, 3, 3]
        self.width, self.height = int(meta.get("width") or 0), int(meta.get("height") or 0)
        self.reads = 0  # ranged reads of images and depth maps so far (what the tests count)

    def anchors(self) -> np.ndarray:
        """[T, 3] per-time camera anchors (cameras.offsets; zeros under union framing)."""
        from training.data.decode import camera_anchors

        return camera_anchors(self.key, self.meta)

    @property
    def framing(self) -> str:
        return str((self.meta.get("render") or {}).get("framing") or "union")

    def image_name(self, t: int, v: int) -> str | None:
        for ext in ("png", "webp"):
            name = layout.image_member(self.key, t, v, ext)
            if name in self.members:
                return name
        return None

    def member_bytes(self, name: str) -> bytes:
        """One member's bytes (one ranged read, unless `fetch` read it already)."""
        if name in self.held:
            return self.held[name]
        if name in self._fetched:
            return self._fetched.pop(name)
        self.reads += 1
        return read_member(self.tar, self.members[name])

    def fetch(self, names: list[str]) -> None:
        """Read these members now, FETCH_THREADS at a time, when the shard is behind a network (http(s),
        s3): one round trip of latency for a time's images and depth maps instead of one per member.
        Local files are left to `member_bytes` (a seek each). Failures are left to it too."""
        todo = [n for n in names if n in self.members and n not in self.held]
        if not storage.is_url(self.tar) or len(todo) < 2:
            return
        def one(name: str) -> tuple[str, bytes | None]:
            try:
                return name, read_member(self.tar, self.members[name])
            except ShardProblem:
                return name, None

        got = dict(_pool().map(one, todo))
        self.reads += len(todo)
        self._fetched = {n: b for n, b in got.items() if b is not None}

    def rgba(self, t: int, v: int) -> np.ndarray:
        """[H, W, 4] uint8 straight RGBA of view v at time t."""
        from PIL import Image

        name = self.image_name(t, v)
        if name is None:
            raise ShardProblem(f"{self.tar}: {self.key} has no image for t={t} v={v}")
        try:
            with Image.open(io.BytesIO(self.member_bytes(name))) as im:
                return np.asarray(im.convert("RGBA"))
        except ShardProblem:
            raise
        except Exception as exn:  # noqa: BLE001 (PIL raises many kinds)
            raise ShardProblem(f"{self.tar}#{name}: cannot decode ({exn})"[:400]) from None

    def has_depth(self, t: int, v: int) -> bool:
        return layout.depth_member(self.key, t, v) in self.members

    def depth(self, t: int, v: int) -> np.ndarray:
        """[H, W] float32 camera z in normalised units (0 = no surface)."""
        from training.data.decode import SampleError, decode_depth

        name = layout.depth_member(self.key, t, v)
        if name not in self.members:
            raise ShardProblem(f"{self.tar}: {self.key} has no depth map for t={t} v={v}")
        try:
            return decode_depth(self.member_bytes(name), float(self.meta.get("depth_scale", 0.0)), name)
        except SampleError as exn:
            raise ShardProblem(f"{self.tar}#{name}: {exn}"[:400]) from None
