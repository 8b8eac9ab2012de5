"""UV-mapped procedural image textures (numpy) and per-part materials.

Patterns (LRM-Zero's lesson: low-level richness): fractal value noise, stripes, spots, patches (Voronoi
cells), cracks (Voronoi edges) and checkers, over a base colour with fine noise shading; eye decals for heads.
Images are periodic in u (they wrap around tubes). With `gen.textures` off a material gets the flat mean
colour of the image it would have had (the looks stream is drawn the same either way).
"""

from __future__ import annotations

import bpy
import numpy as np

from render.procedural.common import Gen, colour

TEXTURE_SIZE = 128  # pixels per side: visible patterns at 256 px renders, a GLB stays in the 100 kB range
PATTERNS = ("noise", "stripes", "spots", "patches", "cracks", "checker")
# material families: (roughness range, metallic range)
FINISHES = {"skin": ((0.5, 0.95), (0.0, 0.0)), "shell": ((0.2, 0.6), (0.0, 0.25)), "paint": ((0.2, 0.5), (0.3, 0.8)),
            "rubber": ((0.8, 1.0), (0.0, 0.0)), "chrome": ((0.05, 0.25), (0.85, 1.0)), "glass": ((0.03, 0.15), (0.0, 0.1)),
            "leaf": ((0.4, 0.8), (0.0, 0.0)), "cloth": ((0.7, 1.0), (0.0, 0.0))}


def value_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Bilinear value noise [size, size] in 0..1 on a `cells` grid, periodic in both directions."""
    g = rng.random((cells, cells))
    t = np.arange(size) * cells / size
    i0 = np.floor(t).astype(int)
    f = t - i0
    f = f * f * (3 - 2 * f)  # smoothstep
    i1 = (i0 + 1) % cells
    rows = g[i0][:, i0] * (1 - f)[None] + g[i0][:, i1] * f[None]  # [size, size] along u for rows i0
    rows1 = g[i1][:, i0] * (1 - f)[None] + g[i1][:, i1] * f[None]
    return rows * (1 - f)[:, None] + rows1 * f[:, None]


def fractal(rng: np.random.Generator, size: int, base: int = 4, octaves: int = 4) -> np.ndarray:
    out = sum(value_noise(rng, size, base * 2 ** o) * 0.5 ** o for o in range(octaves))
    return (out - out.min()) / max(float(np.ptp(out)), 1e-9)


def _voronoi(rng: np.random.Generator, size: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-cell label [size, size] and edge distance (F2 - F1) of `n` random sites, periodic in u and v."""
    sites = rng.random((n, 2))
    y, x = (np.mgrid[0:size, 0:size] + 0.5) / size
    d = []
    for sx, sy in sites:
        dx = np.abs(x - sx)
        dy = np.abs(y - sy)
        d.append(np.hypot(np.minimum(dx, 1 - dx), np.minimum(dy, 1 - dy)))
    d = np.stack(d)  # [n, H, W]
    order = np.sort(d, axis=0)
    return np.argmin(d, axis=0), order[1] - order[0]


def pattern(rng: np.random.Generator, kind: str, size: int) -> np.ndarray:
    """A mask [size, size] in 0..1 of pattern `kind`."""
    y, x = (np.mgrid[0:size, 0:size] + 0.5) / size
    if kind == "noise":
        return np.clip((fractal(rng, size) - 0.5) * rng.uniform(1.5, 3.0) + 0.5, 0, 1)
    if kind == "stripes":
        n_u, n_v = int(rng.integers(0, 6)), int(rng.integers(2, 10))
        warp = 0.08 * fractal(rng, size, 3, 2)
        return (np.sin(2 * np.pi * (n_u * x + n_v * y + warp * n_v)) > rng.uniform(-0.3, 0.5)).astype(float)
    if kind == "spots":
        label, edge = _voronoi(rng, size, int(rng.integers(8, 40)))
        radius = rng.uniform(0.25, 0.6) / np.sqrt(label.max() + 1)
        sites_d = 0.5 * edge  # distance to the boundary, a proxy for distance to the site's rim
        return (sites_d > radius * 0.6).astype(float) * (rng.random(label.max() + 1)[label] < 0.8)
    if kind == "patches":
        label, edge = _voronoi(rng, size, int(rng.integers(6, 24)))
        return rng.random(label.max() + 1)[label] * (edge > rng.uniform(0.005, 0.03))
    if kind == "cracks":
        _, edge = _voronoi(rng, size, int(rng.integers(10, 40)))
        return (edge < rng.uniform(0.006, 0.015)).astype(float)
    if kind == "checker":
        n = int(rng.integers(2, 9))
        return ((np.floor(x * n) + np.floor(y * n)) % 2).astype(float)
    raise ValueError(f"unknown pattern {kind!r}")


def image(rng: np.random.Generator, base: np.ndarray, size: int = TEXTURE_SIZE, kinds=PATTERNS) -> np.ndarray:
    """An RGB image [size, size, 3] in 0..1: base colour, one or two pattern layers, fine shading noise."""
    rgb = np.broadcast_to(base, (size, size, 3)).copy()
    for _ in range(int(rng.integers(1, 3))):
        kind = str(rng.choice(list(kinds)))
        m = pattern(rng, kind, size)[..., None]
        other = colour(rng) if rng.random() < 0.6 else base * rng.uniform(0.2, 0.6)
        rgb = rgb * (1 - m) + other * m
    shade = 1 + rng.uniform(0.05, 0.25) * (fractal(rng, size, 8, 3) - 0.5)
    return np.clip(rgb * shade[..., None], 0, 1)


def eye_decals(rgb: np.ndarray, rng: np.random.Generator, v: float = 0.6, spread: float = 0.06) -> np.ndarray:
    """Two eyes painted on an ellipsoid's texture around its front (u = 0.75): sclera, iris, pupil."""
    size = rgb.shape[0]
    y, x = (np.mgrid[0:size, 0:size] + 0.5) / size
    r = rng.uniform(0.025, 0.05)
    iris = colour(rng, v=(0.2, 0.8))
    out = rgb.copy()
    for u in (0.75 - spread, 0.75 + spread):
        d = np.hypot(x - u, (y - v) * 0.5)  # v spans pole to pole: half the angular size of u
        out[d < r] = (0.95, 0.95, 0.92)
        out[d < 0.6 * r] = iris
        out[d < 0.3 * r] = (0.02, 0.02, 0.02)
    return out


def material(name: str, gen: Gen, finish: str, rgb: np.ndarray | None = None, base: np.ndarray | None = None):
    """A Principled BSDF material of `finish` (FINISHES) with the image `rgb` (or a fresh one on `base`, or a
    random colour); flat mean colour when gen.textures is off."""
    rng = gen.looks
    (r_lo, r_hi), (m_lo, m_hi) = FINISHES[finish]
    rough, metal = float(rng.uniform(r_lo, r_hi)), float(rng.uniform(m_lo, m_hi))
    if rgb is None:
        rgb = image(rng, colour(rng) if base is None else base)
    mat = bpy.data.materials.new(name)
    if mat.node_tree is None:
        mat.use_nodes = True
    nodes = mat.node_tree.nodes
    bsdf = nodes.get("Principled BSDF") or nodes.new("ShaderNodeBsdfPrincipled")
    bsdf.inputs["Roughness"].default_value = rough
    bsdf.inputs["Metallic"].default_value = metal
    if not gen.textures:
        bsdf.inputs["Base Color"].default_value = (*(rgb.reshape(-1, 3).mean(0) ** 2.2), 1.0)  # the socket is linear
        return mat
    size = rgb.shape[0]
    img = bpy.data.images.new(f"{name}_tex", size, size, alpha=False)
    img.pixels.foreach_set(np.concatenate([rgb, np.ones((size, size, 1))], -1).astype(np.float32).ravel())
    img.pack()
    tex = nodes.new("ShaderNodeTexImage")
    tex.image = img
    mat.node_tree.links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    return mat
