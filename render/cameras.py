"""Cameras in the normalised object space (DESIGN.md §2), numpy only.

Conventions:
- World +Z is up. Azimuth 0 puts the camera on the -Y axis, looking at the side a glTF model faces
  (glTF +Z "front" becomes Blender -Y on import); azimuth grows counter-clockwise seen from above.
- `c2w` is OpenCV: columns 0, 1, 2 are the camera's right, down and forward axes in world space,
  column 3 its position. `K` maps camera coordinates to pixels with pixel centres at +0.5.
- Fixed views sit on orbits and stay put over time; random views are drawn anew at every time.
  Everything random is seeded by (spec.seed, sample key): the same seed gives the same cameras.
- Framing `track` (DESIGN.md §2): every camera at time t is translated by `offsets[t]`, the per-time
  box centre's offset from the normalisation centre, so the orbits (fixed and random) are centred on
  the object at every time; `union` has no offsets (all zero).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from render.presets import RenderSpec

# OpenCV camera axes (x right, y down, z forward) -> Blender camera axes (x right, y up, looks down -z).
CV_TO_BLENDER = np.diag([1.0, -1.0, -1.0, 1.0])


@dataclass(frozen=True)
class CameraSet:
    c2w: np.ndarray        # [T, V, 4, 4] OpenCV camera-to-world, normalised space
    K: np.ndarray          # [V, 3, 3] pixels, centres at +0.5
    azimuth_deg: np.ndarray    # [T, V]
    elevation_deg: np.ndarray  # [T, V]
    radius: np.ndarray         # [T, V]
    fixed: np.ndarray          # [V] bool: True for orbit views constant over time (up to `offsets`)
    offsets: np.ndarray        # [T, 3] orbit centre at each time (zeros for framing 'union')

    @property
    def num_frames(self) -> int:
        return int(self.c2w.shape[0])

    @property
    def num_views(self) -> int:
        return int(self.c2w.shape[1])


def orbit_position(azimuth_deg: float, elevation_deg: float, radius: float) -> np.ndarray:
    """Camera position [3] on a sphere around the origin (azimuth 0 on -Y, counter-clockwise)."""
    az, el = np.radians(azimuth_deg), np.radians(elevation_deg)
    return radius * np.array([np.cos(el) * np.sin(az), -np.cos(el) * np.cos(az), np.sin(el)])


def look_at_c2w(position: np.ndarray, target: np.ndarray | None = None, up: np.ndarray | None = None) -> np.ndarray:
    """OpenCV c2w [4, 4] of a camera at `position` looking at `target` (origin) with world `up` (+Z)."""
    position = np.asarray(position, dtype=np.float64)
    target = np.zeros(3) if target is None else np.asarray(target, dtype=np.float64)
    up = np.array([0.0, 0.0, 1.0]) if up is None else np.asarray(up, dtype=np.float64)
    forward = target - position
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    n = np.linalg.norm(right)
    if n < 1e-8:
        raise ValueError(f"camera at {position.tolist()} looks along the up axis; its roll is undefined")
    right /= n
    down = np.cross(forward, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, down, forward, position
    return c2w


def intrinsics(fov_deg: float, width: int, height: int) -> np.ndarray:
    """K [3, 3] for a horizontal field of view; square pixels; principal point at the image centre."""
    fx = (width / 2.0) / np.tan(np.radians(fov_deg) / 2.0)
    return np.array([[fx, 0.0, width / 2.0], [0.0, fx, height / 2.0], [0.0, 0.0, 1.0]])


def sample_rng(seed: int, key: str, stream: str) -> np.random.Generator:
    """A generator fixed by (seed, sample key, purpose): independent of Python's salted hash()."""
    digest = hashlib.sha256(f"{key}\0{stream}".encode()).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])


def make_cameras(spec: RenderSpec, key: str, num_frames: int, offsets: np.ndarray | None = None) -> CameraSet:
    """Fixed orbit views followed by random per-time views, for `num_frames` times.

    `offsets` [T, 3] (normalised units) moves every camera of time t by offsets[t] (framing 'track');
    None keeps every orbit around the origin. Random draws do not depend on the offsets.
    """
    T, Vf, Vr = num_frames, spec.fixed_views, spec.random_views
    offsets = np.zeros((T, 3)) if offsets is None else np.asarray(offsets, dtype=np.float64)
    if offsets.shape != (T, 3) or not np.isfinite(offsets).all():
        raise ValueError(f"camera offsets must be finite [T={T}, 3], got shape {offsets.shape}")
    V = Vf + Vr
    az = np.zeros((T, V))
    el = np.zeros((T, V))
    rad = np.zeros((T, V))
    for v in range(Vf):
        az[:, v] = (spec.fixed_azimuth_offset_deg + 360.0 * v / Vf) % 360.0
        el[:, v] = spec.fixed_elevations_deg[v % len(spec.fixed_elevations_deg)]
        rad[:, v] = spec.fixed_radius
    if Vr:
        rng = sample_rng(spec.seed, key, "cameras")
        az[:, Vf:] = rng.uniform(0.0, 360.0, size=(T, Vr))
        el[:, Vf:] = rng.uniform(*spec.random_elevation_deg, size=(T, Vr))
        rad[:, Vf:] = rng.uniform(*spec.random_radius, size=(T, Vr))
    c2w = np.zeros((T, V, 4, 4))
    for t in range(T):
        for v in range(V):
            c2w[t, v] = look_at_c2w(orbit_position(az[t, v], el[t, v], rad[t, v]))
            c2w[t, v, :3, 3] += offsets[t]  # a pure translation: the view direction is the orbit's
    K = np.repeat(intrinsics(spec.fov_deg, spec.resolution, spec.resolution)[None], V, axis=0)  # [V, 3, 3]
    fixed = np.array([True] * Vf + [False] * Vr)
    return CameraSet(c2w=c2w, K=K, azimuth_deg=az, elevation_deg=el, radius=rad, fixed=fixed, offsets=offsets)


def to_blender(c2w: np.ndarray) -> np.ndarray:
    """Blender camera object matrix_world [4, 4] for an OpenCV c2w [4, 4]."""
    return np.asarray(c2w) @ CV_TO_BLENDER


def from_blender(matrix_world: np.ndarray) -> np.ndarray:
    """OpenCV c2w [4, 4] for a Blender camera object's matrix_world [4, 4]."""
    return np.asarray(matrix_world) @ CV_TO_BLENDER


def project(points: np.ndarray, c2w: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World points [N, 3] -> pixel coordinates uv [N, 2] (continuous, centres at +0.5) and camera z [N]."""
    w2c = np.linalg.inv(c2w)
    cam = points @ w2c[:3, :3].T + w2c[:3, 3]  # [N, 3]
    z = cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = (cam[:, :2] / z[:, None]) * np.array([K[0, 0], K[1, 1]]) + np.array([K[0, 2], K[1, 2]])
    return uv, z


def unproject(depth: np.ndarray, c2w: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Planar depth [H, W] (camera z) -> world points [H, W, 3] at the pixel centres."""
    H, W = depth.shape
    j, i = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)  # [H, W] each
    x = (j - K[0, 2]) / K[0, 0] * depth
    y = (i - K[1, 2]) / K[1, 1] * depth
    cam = np.stack([x, y, depth], axis=-1)  # [H, W, 3]
    return cam @ c2w[:3, :3].T + c2w[:3, 3]


def normalisation(boxes: list[tuple[np.ndarray, np.ndarray] | None], framing: str) -> tuple[np.ndarray, float, np.ndarray]:
    """(center [3], scale, camera offsets [T, 3]) from world boxes (lo [3], hi [3]) at each time (DESIGN.md §2).

    `center` is the union box's centre in both framings. 'union': scale = 1 / the union box's largest
    side, no offsets. 'track': scale = 1 / the largest side of any per-time box, and offsets[t] =
    scale * (per-time box centre - center), zero at a time without geometry. Raises ValueError when
    there is no box or the geometry has zero size.
    """
    have = [b for b in boxes if b is not None]
    if not have:
        raise ValueError("no geometry at any time")
    lo = np.min([b[0] for b in have], axis=0)
    hi = np.max([b[1] for b in have], axis=0)
    center = (lo + hi) / 2.0
    if framing == "union":
        extent = float(np.max(hi - lo))
    elif framing == "track":
        extent = max(float(np.max(b[1] - b[0])) for b in have)
    else:
        raise ValueError(f"unknown framing {framing!r}")
    if not extent > 1e-9:
        raise ValueError("geometry has zero size")
    scale = 1.0 / extent
    offsets = np.zeros((len(boxes), 3))
    if framing == "track":
        for t, b in enumerate(boxes):
            if b is not None:
                offsets[t] = scale * ((b[0] + b[1]) / 2.0 - center)
    return center, scale, offsets
