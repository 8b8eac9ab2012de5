"""What every category generator is handed: its random streams and the variant switches (no bpy)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from render.procedural.naming import CATEGORY_IDS


@dataclass
class Gen:
    """One asset's generation context.

    Three independent streams, so that an ablation variant changes only what it switches off: `rng` draws
    structure and motion, `looks` colours, textures and materials, `shape` the shape augmentations
    (concavities, thin parts, height fields, densities). `textures=False` gives flat colours (each part the
    mean colour its texture would have had), `shapes=False` no boolean cuts, no thin parts, no height fields
    and a fixed mesh density.
    """

    seed: int
    category: str
    index: int
    textures: bool = True
    shapes: bool = True
    rng: np.random.Generator = field(init=False)
    looks: np.random.Generator = field(init=False)
    shape: np.random.Generator = field(init=False)

    def __post_init__(self) -> None:
        base = [abs(self.seed), int(self.seed < 0), self.index, CATEGORY_IDS[self.category]]
        self.rng = np.random.default_rng([*base, 0])
        self.looks = np.random.default_rng([*base, 1])
        self.shape = np.random.default_rng([*base, 2])

    def segments(self, base: int) -> int:
        """Segments around a tube or primitive: the asset's density (drawn once per call) or `base`."""
        if not self.shapes:
            return base
        return int(max(6, round(base * self.shape.uniform(0.6, 2.0))))


def colour(rng: np.random.Generator, s: tuple[float, float] = (0.35, 0.95), v: tuple[float, float] = (0.35, 1.0)) -> np.ndarray:
    """A random colour, RGB in 0..1 (sRGB), from hue / saturation / value ranges."""
    h, sat, val = rng.random(), rng.uniform(*s), rng.uniform(*v)
    i, f = int(h * 6) % 6, h * 6 - int(h * 6)
    p, q, t = val * (1 - sat), val * (1 - sat * f), val * (1 - sat * (1 - f))
    return np.array([(val, t, p), (q, val, p), (p, val, t), (p, q, val), (t, p, val), (val, p, q)][i])
