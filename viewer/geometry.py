"""What a sample's cameras and depth maps become in the 3D scene (numpy only; DESIGN.md §2 conventions).

Cameras are OpenCV (x right, y down, z forward), as viser's frustums are, so a frustum's rotation is
the camera-to-world rotation itself. Pixel (i, j) covers [j, j+1) x [i, i+1), so its centre is at
(j + 0.5, i + 0.5); depth is camera-space z (planar), 0 where there is no surface.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Frustum:
    """One camera as a viser frustum: rotation wxyz (camera to world), position, vertical fov (radians),
    aspect (width / height)."""

    wxyz: np.ndarray
    position: np.ndarray
    fov: float
    aspect: float


def matrix_to_wxyz(R: np.ndarray) -> np.ndarray:
    """A rotation matrix [3, 3] -> unit quaternion (w, x, y, z) with w >= 0 (Shepperd's method: computed
    from the largest of the four candidates, so it never divides by a small number)."""
    m = np.asarray(R, dtype=np.float64)
    tr = np.trace(m)
    cands = [tr, m[0, 0], m[1, 1], m[2, 2]]
    k = int(np.argmax(cands))
    if k == 0:
        s = 2.0 * math.sqrt(max(1.0 + tr, 1e-12))
        q = [s / 4, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif k == 1:
        s = 2.0 * math.sqrt(max(1.0 + m[0, 0] - m[1, 1] - m[2, 2], 1e-12))
        q = [(m[2, 1] - m[1, 2]) / s, s / 4, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif k == 2:
        s = 2.0 * math.sqrt(max(1.0 - m[0, 0] + m[1, 1] - m[2, 2], 1e-12))
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, s / 4, (m[1, 2] + m[2, 1]) / s]
    else:
        s = 2.0 * math.sqrt(max(1.0 - m[0, 0] - m[1, 1] + m[2, 2], 1e-12))
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, s / 4]
    q = np.asarray(q)
    q = q if q[0] >= 0 else -q
    return q / np.linalg.norm(q)


def wxyz_to_matrix(q: np.ndarray) -> np.ndarray:
    """(w, x, y, z) -> [3, 3] rotation."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def frustum(c2w: np.ndarray, K: np.ndarray, width: int, height: int) -> Frustum:
    """The frustum of an OpenCV camera c2w [4, 4] with intrinsics K [3, 3] at width x height pixels."""
    c2w = np.asarray(c2w, dtype=np.float64)
    fy = float(K[1][1])
    return Frustum(wxyz=matrix_to_wxyz(c2w[:3, :3]), position=c2w[:3, 3].copy(),
                   fov=2.0 * math.atan2(height / 2.0, fy), aspect=width / height)


def backproject(depth: np.ndarray, rgba: np.ndarray, c2w: np.ndarray, K: np.ndarray,
                stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """World points [N, 3] float32 and their colours [N, 3] uint8 from a depth map [H, W] (camera z,
    0 = no surface) and the same view's RGBA [H, W, 4] uint8; every `stride`-th pixel in each direction.
    Pixels with depth but alpha 0 (none in a correct render) are dropped too."""
    H, W = depth.shape
    if rgba.shape[:2] != (H, W):
        raise ValueError(f"depth {depth.shape} and image {rgba.shape[:2]} sizes differ")
    i, j = np.mgrid[0:H:stride, 0:W:stride]
    z = depth[i, j].astype(np.float64)
    keep = (z > 0) & (rgba[i, j, 3] > 0)
    i, j, z = i[keep], j[keep], z[keep]
    K = np.asarray(K, dtype=np.float64)
    x = (j + 0.5 - K[0, 2]) / K[0, 0] * z
    y = (i + 0.5 - K[1, 2]) / K[1, 1] * z
    cam = np.stack([x, y, z], -1)                      # [N, 3] camera frame
    c2w = np.asarray(c2w, dtype=np.float64)
    world = cam @ c2w[:3, :3].T + c2w[:3, 3]
    return world.astype(np.float32), rgba[i, j, :3].copy()


def subsample(points: np.ndarray, colors: np.ndarray, max_points: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """At most `max_points` of the points (a seeded draw, the same every time)."""
    if len(points) <= max_points:
        return points, colors
    pick = np.sort(np.random.default_rng(seed).choice(len(points), max_points, replace=False))
    return points[pick], colors[pick]


def frustum_scale(c2w: np.ndarray, anchors: np.ndarray) -> float:
    """A frustum size that suits the rig: 15% of the median camera distance to its anchor."""
    c2w = np.asarray(c2w, dtype=np.float64).reshape(-1, 4, 4)
    d = np.linalg.norm(c2w[:, :3, 3] - np.asarray(anchors, dtype=np.float64).reshape(-1, 3).mean(0), axis=-1)
    return float(max(0.02, 0.15 * np.median(d)))


def overview_eye(target: np.ndarray, camera: np.ndarray | None, default_distance: float = 2.0) -> np.ndarray:
    """Where the browser's camera starts: above and behind `camera` (a rig camera's position), looking at
    `target`, so that the rig and what it looks at are in sight; a fixed oblique view without one."""
    target = np.asarray(target, dtype=np.float64)
    if camera is None:
        return target + default_distance * np.array([0.8, -0.8, 0.45])
    d = np.asarray(camera, dtype=np.float64) - target
    return target + 1.3 * d + np.array([0.0, 0.0, 1.1 * np.linalg.norm(d)])
