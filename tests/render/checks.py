"""Geometric checks on a rendered sample, shared by the tests on real and on procedural assets."""

from __future__ import annotations

import json

import numpy as np

from render import passes
from render.cameras import project, unproject


class Sample:
    """A SampleResult's members decoded: meta, rgba [T][V] (H, W, 4), depth [T][V] (H, W)."""

    def __init__(self, result):
        self.result = result
        self.key = result.key
        self.meta = json.loads(result.members[f"{self.key}.json"])
        self.c2w = np.array(self.meta["c2w"])  # [T, V, 4, 4]
        self.K = np.array(self.meta["K"])      # [V, 3, 3]
        self.T, self.V = self.meta["num_frames"], self.meta["num_views"]
        ext = self.meta["render"]["image_format"]
        self.rgba = [[passes.decode_rgba(result.members[f"{self.key}.t{t:03d}.v{v:03d}.{ext}"]) for v in range(self.V)]
                     for t in range(self.T)]
        self.depth = [[passes.decode_depth(result.members[f"{self.key}.t{t:03d}.v{v:03d}.depth.png"],
                                           self.meta["depth_scale"]) for v in range(self.V)] for t in range(self.T)]

    def points(self, t: int, v: int, solid_only: bool = True) -> np.ndarray:
        """Surface points [N, 3] (normalised space) unprojected from view v's depth at time t."""
        d = self.depth[t][v]
        a = self.rgba[t][v][..., 3]
        mask = (d > 0) & ((a == 255) if solid_only else (a > 0))
        return unproject(d, self.c2w[t, v], self.K[v])[mask]


def _erode(mask: np.ndarray) -> np.ndarray:
    """A pixel survives if its 3 x 3 neighbourhood is all True (drops silhouette pixels)."""
    p = np.pad(mask, 1, constant_values=False)
    H, W = mask.shape
    return np.all([p[1 + di:1 + di + H, 1 + dj:1 + dj + W] for di in (-1, 0, 1) for dj in (-1, 0, 1)], axis=0)


def pixel_footprint(s: Sample, v: int) -> float:
    """Width of one pixel (normalised units) at the orbit centre's distance from view v at time 0
    (the origin under framing 'union', the object's per-time box centre under 'track')."""
    centre = np.array(s.meta["cameras"].get("offsets", [[0.0, 0.0, 0.0]])[0])
    return float(np.linalg.norm(s.c2w[0, v, :3, 3] - centre) / s.K[v][0, 0])


def reprojection(s: Sample, t: int, va: int, vb: int, c2w_b: np.ndarray | None = None, tol: float | None = None,
                 tb: int | None = None, shift: np.ndarray | None = None) -> dict:
    """Unproject view va's depth, project into view vb; how well vb's depth and alpha agree.

    Across times: `tb` compares with view vb at time tb (camera c2w[tb, vb] unless `c2w_b` is given),
    after moving the points by `shift` [3] (normalised units), the object's known motion from t to tb.

    Uses va's pixels away from its silhouette, and compares each point with vb's depths in the 3 x 3
    pixels around where it lands (a point on a slope seen at a grazing angle may land next to the
    pixel centre whose depth it matches). Over the points that land inside vb's image:
    covered: vb's alpha > 0 there; in_front (over points landing away from vb's silhouette): nearer
    than every surface around by more than tol, impossible when cameras and depth are right;
    agree: some depth around within tol (the others are occluded in vb); median: median |z - depth_b|.
    tol defaults to 2 pixel footprints.
    """
    tol = 2.0 * pixel_footprint(s, vb) if tol is None else tol
    d_a, a_a = s.depth[t][va], s.rgba[t][va][..., 3]
    keep = _erode((a_a == 255) & (d_a > 0))
    pts = unproject(d_a, s.c2w[t, va], s.K[va])[keep]
    tb = t if tb is None else tb
    if shift is not None:
        pts = pts + np.asarray(shift, dtype=np.float64)
    c2w_b = s.c2w[tb, vb] if c2w_b is None else c2w_b
    uv, z = project(pts, c2w_b, s.K[vb])
    d_b = s.depth[tb][vb]
    H, W = d_b.shape
    ij = np.floor(uv).astype(int)
    inside = (z > 0) & (ij[:, 0] >= 0) & (ij[:, 0] < W) & (ij[:, 1] >= 0) & (ij[:, 1] < H)
    ij, z = ij[inside], z[inside]
    i, j = ij[:, 1], ij[:, 0]
    ab = s.rgba[tb][vb][i, j, 3]
    interior_b = _erode((s.rgba[tb][vb][..., 3] == 255) & (d_b > 0))[i, j]
    padded = np.pad(np.where(d_b > 0, d_b, np.nan), 1, constant_values=np.nan)
    window = np.stack([padded[i + 1 + di, j + 1 + dj] for di in (-1, 0, 1) for dj in (-1, 0, 1)], 1)  # [N, 9]
    with np.errstate(invalid="ignore"):
        nearest = np.nanmin(np.where(np.isnan(window), np.inf, window), axis=1)
        closest_gap = np.nanmin(np.where(np.isnan(window), np.inf, np.abs(window - z[:, None])), axis=1)
    has = np.isfinite(closest_gap)
    return {
        "n": int(len(z)),
        "n_interior": int(interior_b.sum()),
        "covered": float((ab > 0).mean()) if len(z) else 0.0,
        "in_front": float((z[interior_b] < nearest[interior_b] - tol).mean()) if interior_b.any() else 1.0,
        "agree": float((closest_gap[has] < tol).mean()) if has.any() else 0.0,
        "median": float(np.median(np.abs(z - d_b[i, j])[d_b[i, j] > 0])) if (d_b[i, j] > 0).any() else np.inf,
    }


def consistent(r: dict) -> bool:
    """What a pair of views 45 degrees apart meets when cameras and depth are right (measured on the
    sample models at 96 px: covered >= 0.935, in_front 0, agree >= 0.10); a flipped or turned camera
    fails it on every pair."""
    return r["n_interior"] >= 20 and r["covered"] > 0.93 and r["in_front"] < 0.02 and r["agree"] > 0.1


def image_change(s: Sample, ta: int, tb: int) -> float:
    """Mean absolute RGBA difference (0..255) between times ta and tb, over the fixed views."""
    fixed = [v for v, f in enumerate(s.meta["cameras"]["fixed"]) if f]
    return float(np.mean([np.abs(s.rgba[ta][v].astype(int) - s.rgba[tb][v].astype(int)).mean() for v in fixed]))
