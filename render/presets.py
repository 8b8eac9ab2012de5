"""Render settings as one typed dataclass, and the presets (functions returning one). No bpy here.

`get_preset(name, **overrides)` is what the CLI and the worker use; a manifest row's optional
`render_settings` JSON (written by hard-example mining: denser cameras, more frames) is applied on top
with `with_row_settings`. Validation names the flag a user would change.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, Callable

ENGINES = ("cycles", "eevee")
DEVICES = ("cpu", "gpu")
IMAGE_FORMATS = ("png", "webp")
LIGHTINGS = ("neutral", "random")
FRAMINGS = ("union", "track")

# Field -> the command-line flag that sets it (for error messages); other fields come from presets
# or a row's render_settings.
FLAGS = {
    "resolution": "--resolution", "num_frames": "--frames", "fixed_views": "--views",
    "random_views": "--random-views", "samples": "--samples", "device": "--device", "engine": "--engine",
    "seed": "--seed", "image_format": "--format", "normals": "--normals", "lighting": "--lighting",
    "allow_static": "--allow-static", "framing": "--framing", "min_coverage": "--min-coverage",
}


@dataclass(frozen=True)
class RenderSpec:
    name: str = "custom"                  # preset it came from; recorded in every sample's JSON
    resolution: int = 256                 # square images: both 4D-LRM and L4GM train on square crops
    num_frames: int = 24                  # T times per clip; 4D-LRM reconstructs 24-frame sequences
    max_window_s: float = 4.0             # longest stretch of a clip rendered (from its start): a few seconds holds one motion
    fixed_views: int = 4                  # orbit views that stay put over time (multi-view video)
    fixed_azimuth_offset_deg: float = 0.0  # azimuth of fixed view 0; the others are 360/fixed_views apart
    fixed_elevations_deg: tuple[float, ...] = (0.0,)  # cycled over the fixed views (0, 20 -> alternating rings)
    fixed_radius: float = 2.1             # the unit box's bounding sphere (r 0.87) fits a 49.1 deg view from 2.1
    fov_deg: float = 49.1                 # horizontal field of view of every view; 49.1 deg = a 35 mm lens on 32 mm film
    random_views: int = 0                 # views drawn anew at every time ("any view at any time" training)
    random_elevation_deg: tuple[float, float] = (-5.0, 30.0)  # mostly from above, as objects are seen
    random_radius: tuple[float, float] = (2.1, 2.1)          # camera distance range for random views
    seed: int = 0                         # with the sample key, fixes random cameras and random lighting
    samples: int = 16                     # Cycles samples per pixel; 16 spp is clean enough under even lighting
    denoise: bool = False                 # OIDN smooths but costs CPU time and blurs texture detail
    engine: str = "cycles"                # cycles works everywhere; eevee needs an EGL context (~4 s/frame on CPU)
    device: str = "cpu"                   # cpu everywhere; gpu picks OptiX, else CUDA, else HIP/oneAPI/Metal
    image_format: str = "png"             # png is lossless and read by everything; webp is smaller
    webp_quality: int = 100               # 100 = lossless webp; lower is lossy
    normals: bool = False                 # world-space normals as an extra .normal.png member
    lighting: str = "neutral"             # neutral: uniform white environment; random: tinted env + a sun (recorded)
    framing: str = "track"                # DESIGN §2; track: cameras follow the per-time box, scale from the largest per-time box
                                          # (median coverage of travelling glTF models 4-9x union's, BENCHMARKS.md "Framing")
    min_coverage: float = 0.005           # best view's mean alpha coverage below this -> rejected 'too_small' (0 = off);
                                          # 0.5 % is ~20 px at 64 px, under every ok asset measured (BENCHMARKS.md)
    max_faces: int = 1_000_000            # evaluated faces above this are rejected: render time and memory blow up
    allow_static: bool = False            # render clips without motion as one frame (static: true) instead of rejecting
    motion_threshold: float = 0.005       # largest vertex displacement (normalised units) below which a clip "does not move"
    max_seconds: float = 1800.0           # soft limit per sample, checked between images -> reason 'timeout'

    def __post_init__(self) -> None:
        for name in ("fixed_elevations_deg", "random_elevation_deg", "random_radius"):
            v = getattr(self, name)
            if isinstance(v, (list, tuple)):
                object.__setattr__(self, name, tuple(float(x) for x in v))
            else:
                raise ValueError(f"{_where(name)} must be a list of numbers, got {v!r}")
        _check(self, "resolution", isinstance(self.resolution, int) and 8 <= self.resolution <= 4096, "an int in 8..4096")
        _check(self, "num_frames", isinstance(self.num_frames, int) and 1 <= self.num_frames <= 999, "an int in 1..999")
        _check(self, "max_window_s", self.max_window_s > 0, "> 0 seconds")
        _check(self, "fixed_views", isinstance(self.fixed_views, int) and self.fixed_views >= 0, "an int >= 0")
        _check(self, "random_views", isinstance(self.random_views, int) and self.random_views >= 0, "an int >= 0")
        _check(self, "fixed_views", 1 <= self.fixed_views + self.random_views <= 999,
               "such that fixed + random views is in 1..999")
        _check(self, "fixed_elevations_deg", len(self.fixed_elevations_deg) >= 1
               and all(-89 <= e <= 89 for e in self.fixed_elevations_deg), "one or more elevations in -89..89 deg")
        _check(self, "random_elevation_deg", len(self.random_elevation_deg) == 2
               and -89 <= self.random_elevation_deg[0] <= self.random_elevation_deg[1] <= 89, "[lo, hi] with -89 <= lo <= hi <= 89")
        _check(self, "random_radius", len(self.random_radius) == 2 and 0 < self.random_radius[0] <= self.random_radius[1],
               "[lo, hi] with 0 < lo <= hi")
        _check(self, "fixed_radius", self.fixed_radius > 0, "> 0")
        # Cameras inside the unit box's bounding sphere would cut through the object.
        _check(self, "fixed_radius", self.fixed_radius > math.sqrt(3) / 2, "> 0.87 (outside the normalised object)")
        _check(self, "random_radius", self.random_radius[0] > math.sqrt(3) / 2, "> 0.87 (outside the normalised object)")
        _check(self, "fov_deg", 1 <= self.fov_deg <= 150, "in 1..150 degrees")
        _check(self, "samples", isinstance(self.samples, int) and 1 <= self.samples <= 65536, "an int in 1..65536")
        _check(self, "engine", self.engine in ENGINES, f"one of {ENGINES}")
        _check(self, "device", self.device in DEVICES, f"one of {DEVICES}")
        _check(self, "image_format", self.image_format in IMAGE_FORMATS, f"one of {IMAGE_FORMATS}")
        _check(self, "webp_quality", isinstance(self.webp_quality, int) and 1 <= self.webp_quality <= 100, "an int in 1..100")
        _check(self, "lighting", self.lighting in LIGHTINGS, f"one of {LIGHTINGS}")
        _check(self, "framing", self.framing in FRAMINGS, f"one of {FRAMINGS}")
        _check(self, "min_coverage", isinstance(self.min_coverage, (int, float)) and 0 <= self.min_coverage < 1,
               "a fraction of the image in [0, 1)")
        _check(self, "max_faces", isinstance(self.max_faces, int) and self.max_faces >= 1, "an int >= 1")
        _check(self, "motion_threshold", self.motion_threshold >= 0, ">= 0")
        _check(self, "max_seconds", self.max_seconds > 0, "> 0")
        _check(self, "seed", isinstance(self.seed, int) and self.seed >= 0, "an int >= 0")

    @property
    def num_views(self) -> int:
        return self.fixed_views + self.random_views

    def replace(self, **overrides: Any) -> "RenderSpec":
        """A copy with `overrides`; unknown names raise ValueError listing the known fields."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown render setting(s) {unknown}; known: {sorted(known)}")
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RenderSpec":
        return cls().replace(**data)


def _where(name: str) -> str:
    flag = FLAGS.get(name)
    return f"{name} ({flag})" if flag else f"render setting {name}"


def _check(spec: RenderSpec, name: str, ok: bool, want: str) -> None:
    if not ok:
        raise ValueError(f"{_where(name)} must be {want}; got {getattr(spec, name)!r}")


def debug() -> RenderSpec:
    """Tiny and fast, for tests: 64 px, 4 frames, 4 fixed views, 4 spp."""
    return RenderSpec(name="debug", resolution=64, num_frames=4, fixed_views=4, fixed_elevations_deg=(15.0,),
                      random_views=0, samples=4, max_window_s=10.0)


def lrm4d() -> RenderSpec:
    """4D-LRM style: 256 px, 24 frames; 8 fixed orbit views on two rings plus 4 random views per time."""
    return RenderSpec(name="lrm4d", resolution=256, num_frames=24, max_window_s=4.0,
                      fixed_views=8, fixed_elevations_deg=(0.0, 20.0), fixed_radius=2.1,
                      random_views=4, random_elevation_deg=(-10.0, 40.0), random_radius=(1.8, 2.4),
                      fov_deg=49.1, samples=16)


def l4gm() -> RenderSpec:
    """L4GM style: 512 px, 16 frames; 16 fixed views at elevation 0 plus 32 random views per time,
    elevation -5..30 deg, radius 1.5, fov 49.1 deg (as in the L4GM paper's Objaverse-4D renders)."""
    return RenderSpec(name="l4gm", resolution=512, num_frames=16, max_window_s=4.0,
                      fixed_views=16, fixed_elevations_deg=(0.0,), fixed_radius=1.5,
                      random_views=32, random_elevation_deg=(-5.0, 30.0), random_radius=(1.5, 1.5),
                      fov_deg=49.1, samples=32)


PRESETS: dict[str, Callable[[], RenderSpec]] = {"debug": debug, "lrm4d": lrm4d, "l4gm": l4gm}


def get_preset(name: str, **overrides: Any) -> RenderSpec:
    """The preset `name` with `overrides` applied; None values mean "not given" and are ignored."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r} (--preset); known: {', '.join(PRESETS)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    return PRESETS[name]().replace(**given)


def with_row_settings(spec: RenderSpec, render_settings: str | dict | None) -> RenderSpec:
    """Apply a manifest row's `render_settings` (JSON object of RenderSpec fields) on top of `spec`.

    Raises ValueError naming the problem; the worker turns that into a `bad_settings` row.
    """
    if render_settings is None or (isinstance(render_settings, float) and math.isnan(render_settings)):
        return spec
    if isinstance(render_settings, str):
        if not render_settings.strip():
            return spec
        try:
            data = json.loads(render_settings)
        except json.JSONDecodeError as exc:
            raise ValueError(f"render_settings is not valid JSON ({exc}): {render_settings[:200]!r}") from None
    else:
        data = render_settings
    if not isinstance(data, dict):
        raise ValueError(f"render_settings must be a JSON object of render settings, got {type(data).__name__}")
    if "name" in data:
        raise ValueError("render_settings may not rename the preset ('name')")
    return spec.replace(**data)
