"""What one sample and one set of Gaussians put in a viser scene, time by time.

`sample_frame(reader, t, ...)` gathers one time of a sample without viser (frustums, images, depth
back-projected to coloured points, the anchor): the tests check it against the sample's cameras and
the rendered surface. `SampleLayer` and `SplatLayer` keep the viser handles and swap what they show
when the time changes: one frustum per view (its pose and image updated in place), one point cloud,
one splat node (`set_gaussians`), so moving the time slider sends only what changed.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from contracts import layout
from viewer import geometry
from viewer.dataset import SampleReader, ShardProblem
from viewer.gaussians import Splats

MAX_POINTS = 150_000     # per time over all depth views: plenty to judge the surface, quick to send
VIEW_COLOURS = ((230, 80, 40), (40, 120, 230))  # fixed views, random views


@dataclass
class SampleFrame:
    """One time of a sample: per view its frustum and image, the back-projected points, the anchor."""

    t: int
    frustums: list[geometry.Frustum]
    images: list[np.ndarray | None]  # [H, W, 4] uint8, None where the member is missing or unreadable
    points: np.ndarray               # [N, 3] float32, normalised space
    colors: np.ndarray               # [N, 3] uint8
    anchor: np.ndarray               # [3]
    problems: list[str]


def depth_views_of(choice: str, V: int) -> list[int]:
    """'all' -> every view, 'none' -> [], 'view 3' -> [3]."""
    if choice == "all":
        return list(range(V))
    if choice.startswith("view "):
        v = int(choice.split()[1])
        return [v] if 0 <= v < V else []
    return []


def sample_frame(reader: SampleReader, t: int, depth_views: list[int], stride: int = 1,
                 max_points: int = MAX_POINTS, images: bool = True) -> SampleFrame:
    """Read and build time t of a sample: V images and the depth maps of `depth_views` (ranged reads)."""
    T, V = reader.T, reader.V
    t = min(max(0, t), T - 1)
    W = reader.width or 1
    H = reader.height or 1
    frustums = [geometry.frustum(reader.c2w[t, v], reader.K[v], W, H) for v in range(V)]
    imgs: list[np.ndarray | None] = [None] * V
    problems = []
    wanted = [reader.image_name(t, v) for v in range(V) if images or v in depth_views]
    reader.fetch([n for n in wanted if n] + [layout.depth_member(reader.key, t, v) for v in depth_views])
    pts, cols = [], []
    for v in range(V):
        if images or v in depth_views:
            try:
                imgs[v] = reader.rgba(t, v)
            except ShardProblem as exn:
                problems.append(str(exn))
        if v in depth_views and imgs[v] is not None and reader.has_depth(t, v):
            try:
                p, c = geometry.backproject(reader.depth(t, v), imgs[v], reader.c2w[t, v], reader.K[v], stride)
            except (ShardProblem, ValueError) as exn:
                problems.append(str(exn))
                continue
            pts.append(p)
            cols.append(c)
    points = np.concatenate(pts) if pts else np.zeros((0, 3), np.float32)
    colors = np.concatenate(cols) if cols else np.zeros((0, 3), np.uint8)
    points, colors = geometry.subsample(points, colors, max_points, seed=t)
    anchors = reader.anchors()
    return SampleFrame(t, frustums, imgs if images else [None] * V, points, colors,
                       anchors[min(t, len(anchors) - 1)], problems)


class FrameCache:
    """Built frames by key, least recently used dropped; `prefetch` builds one in a background thread."""

    def __init__(self, build: Callable[[Any], Any], size: int = 8):
        self.build, self.size = build, size
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._pending: set[Any] = set()

    def get(self, key: Any) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = self.build(key)
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value

    def prefetch(self, key: Any) -> None:
        with self._lock:
            if key in self._items or key in self._pending:
                return
            self._pending.add(key)

        def run() -> None:
            try:
                self.get(key)
            except Exception:  # noqa: BLE001 (a failed prefetch is retried, and reported, by get())
                pass
            finally:
                with self._lock:
                    self._pending.discard(key)

        threading.Thread(target=run, daemon=True).start()


def on_white(rgba: np.ndarray | None) -> np.ndarray | None:
    """Straight RGBA [H, W, 4] uint8 composited onto white -> RGB [H, W, 3] uint8 (sent as JPEG, and
    the picture plane of a frustum shows as a picture)."""
    if rgba is None:
        return None
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    return (rgba[..., :3].astype(np.float32) * a + 255.0 * (1.0 - a) + 0.5).astype(np.uint8)


class SampleLayer:
    """A sample's frustums (with images), point cloud and anchor path under scene node `root`."""

    def __init__(self, scene: Any, reader: SampleReader, root: str = "/sample", views: list[int] | None = None,
                 point_size: float = 0.006):
        self.scene, self.reader, self.root = scene, reader, root
        self.views = list(range(reader.V)) if views is None else views
        self.point_size = point_size
        anchors = reader.anchors()
        self.scale = geometry.frustum_scale(reader.c2w, anchors)
        fixed = (reader.meta.get("cameras") or {}).get("fixed")
        self.fixed = fixed if isinstance(fixed, list) and len(fixed) == reader.V else [True] * reader.V
        self.frustums: dict[int, Any] = {}
        self.cloud = None
        self.anchor = self.path = None
        if reader.framing == "track" and len(anchors) > 1:  # the object's per-time box centre, joined up
            seg = np.stack([anchors[:-1], anchors[1:]], 1).astype(np.float32)  # [T-1, 2, 3]
            self.path = scene.add_line_segments(f"{root}/anchor_path", seg, colors=(20, 160, 60),
                                                thickness=0.05 * self.scale)
        if reader.framing == "track":
            self.anchor = scene.add_icosphere(f"{root}/anchor", radius=0.1 * self.scale, color=(20, 160, 60))

    def show(self, frame: SampleFrame) -> None:
        for v in self.views:
            f = frame.frustums[v]
            img = on_white(frame.images[v])
            h = self.frustums.get(v)
            if h is None:
                self.frustums[v] = self.scene.add_camera_frustum(
                    f"{self.root}/view_{v:03d}", fov=f.fov, aspect=f.aspect, scale=self.scale, image=img,
                    wxyz=f.wxyz, position=f.position, color=VIEW_COLOURS[0 if self.fixed[v] else 1],
                    thickness=0.03 * self.scale, cast_shadow=False, receive_shadow=False)
            else:
                h.wxyz, h.position = f.wxyz, f.position
                h.image = img
        if self.cloud is None:
            self.cloud = self.scene.add_point_cloud(f"{self.root}/depth_points", frame.points, frame.colors,
                                                    point_size=self.point_size, point_shape="rounded")
        else:
            self.cloud.points, self.cloud.colors = frame.points, frame.colors
        if self.anchor is not None:
            self.anchor.position = frame.anchor.astype(np.float64)

    def remove(self) -> None:
        for h in [*self.frustums.values(), self.cloud, self.anchor, self.path]:
            if h is not None:
                h.remove()
        self.frustums, self.cloud, self.anchor, self.path = {}, None, None, None


class SplatLayer:
    """One splat node whose Gaussians are swapped per frame (`set_gaussians`)."""

    def __init__(self, scene: Any, name: str = "/splats"):
        self.scene, self.name, self.handle = scene, name, None

    def show(self, splats: Splats) -> None:
        if self.handle is None:
            self.handle = self.scene.add_gaussian_splats(self.name, centers=splats.centers,
                                                         covariances=splats.covariances, rgbs=splats.rgb,
                                                         opacities=splats.opacity)
        else:
            self.handle.set_gaussians(splats.centers, splats.covariances, splats.rgb, splats.opacity)

    def remove(self) -> None:
        if self.handle is not None:
            self.handle.remove()
            self.handle = None


def add_input_views(scene: Any, views: list, centre: np.ndarray, root: str = "/inputs") -> list[Any]:
    """A reconstruction's input views (viewer.recon.InputView) as frustums with their images, sized to
    their distance from `centre` (the Gaussians' centre)."""
    handles = []
    scale = geometry.frustum_scale(np.stack([v.c2w for v in views]), centre) if views else 0.25
    for i, v in enumerate(views):
        f = geometry.frustum(v.c2w, v.K, v.rgba.shape[1], v.rgba.shape[0])
        handles.append(scene.add_camera_frustum(
            f"{root}/view_{i:03d}", fov=f.fov, aspect=f.aspect, scale=scale, image=on_white(v.rgba), wxyz=f.wxyz,
            position=f.position, color=VIEW_COLOURS[0], thickness=0.03 * scale, cast_shadow=False,
            receive_shadow=False))
    return handles
