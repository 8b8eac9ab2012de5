"""Re-render requests of hard-example mining: how much denser a re-render is than the render it replaces
(`Densify`), and the validated JSON `render_settings` of a request (manifests/mining.py writes the rows)."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import Any, Mapping

from manifests.mining_inputs import MiningError, Renders

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Densify:
    """How a re-render request is denser than the render it replaces."""

    frames_factor: int = 2      # twice the times per clip: hard motion is usually under-sampled in time
    max_frames: int = 48        # 2x 4D-LRM's 24 frames; beyond that one sample's tar gets very large
    views_factor: int = 2       # twice the orbit views: the new azimuths fall between the old ones
    max_fixed_views: int = 32   # 2x L4GM's 16 fixed views
    min_random_views: int = 2   # a clip rendered without random views gets some ("any view at any time")
    max_random_views: int = 64  # 2x L4GM's 32 random views per time


def densify(spec: Any, d: Densify) -> dict[str, int]:
    """Overrides that make `spec` (a RenderSpec) denser in time and views; {} when all are at their caps."""
    out: dict[str, int] = {}
    frames = min(spec.num_frames * d.frames_factor, d.max_frames)
    if frames > spec.num_frames:
        out["num_frames"] = frames
    fixed = min(spec.fixed_views * d.views_factor, d.max_fixed_views)
    if fixed > spec.fixed_views:
        out["fixed_views"] = fixed
    rand = min(max(spec.random_views * d.views_factor, d.min_random_views), d.max_random_views)
    if rand > spec.random_views:
        out["random_views"] = rand
    if out:
        out["seed"] = spec.seed + 1  # fresh random cameras and lighting, not a repeat of the old ones
    return out


def rerender_settings(row: Mapping[str, Any], renders: Renders | None, preset: str | None, d: Densify) -> str | None:
    """The JSON `render_settings` of a re-render request for `row`; None when nothing can get denser.

    Starts from what rendered the row (its shard's recorded spec, else `preset`) plus the row's own
    overrides, and is validated on `preset` (default: the recorded spec's preset) with RenderSpec.replace.
    """
    from render.presets import PRESETS, RenderSpec, get_preset, with_row_settings

    old = _json_settings(row)
    recorded = renders.specs.get(int(row["shard"])) if renders else None
    base = None
    if recorded is not None:
        try:
            base = RenderSpec.from_dict(recorded)
        except (TypeError, ValueError) as exc:
            log.warning("shard %d: recorded render spec not usable (%s); using --preset", int(row["shard"]), exc)
    name = preset or (base.name if base is not None else None)
    if name is None or name not in PRESETS:
        raise MiningError(f"--preset: needed to write re-render settings for ({row['uid']!r}, {int(row['clip'])}): "
                          f"its shard {int(row['shard'])} records no known preset ({name!r})")
    if base is None:
        base = get_preset(name)
    elif base.name != name:
        log.warning("shard %d was rendered with preset %r; re-render settings are validated on --preset %r",
                    int(row["shard"]), base.name, name)
    try:
        current = with_row_settings(base, old or None)
    except ValueError as exc:
        raise MiningError(f"{row['uid']!r} clip {int(row['clip'])}: its render_settings are invalid ({exc})") from None
    new = densify(current, d)
    if not new:
        return None
    merged = {**old, **new}
    try:
        with_row_settings(get_preset(name), merged)  # RenderSpec.replace validates names and values
    except ValueError as exc:
        raise MiningError(f"re-render settings {merged} are not valid on preset {name!r} (--preset): {exc}") from None
    return json.dumps(merged, sort_keys=True, separators=(",", ":"))


def _json_settings(row: Mapping[str, Any]) -> dict[str, Any]:
    value = row.get("render_settings")
    if value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip():
        return {}
    try:
        data = json.loads(value)
    except ValueError as exc:
        data = exc
    if not isinstance(data, dict):
        raise MiningError(f"({row['uid']!r}, {int(row['clip'])}): render_settings is not a JSON object: {str(value)[:200]!r}")
    return data
