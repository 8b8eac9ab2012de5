"""Cameras of a sample by kind, shared by the training sample pickers and every evaluation protocol:
which views are fixed cameras (random views are redrawn at every time, so a random view index is not a
camera) and what is novel about a target pair given the input pairs."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

# What is novel about a target (by camera, see target_kind); "seen" (an input pair) and "pad" (a repeat
# that fills a fixed-size batch when a sample has too few held-out pairs) never count in any number.
# `known_view` (a camera some input uses at another time) is told apart from `novel_view` (a camera no
# input uses) by the L4GM protocol; sparse4 draws its targets per kind from the first three, so it keeps
# them (splitting would change its pairs: a new version).
KINDS = ("novel_view_time", "novel_time", "novel_view", "known_view")
SPARSE_KINDS = KINDS[:3]
NOT_SCORED = ("seen", "pad")
ALL_KINDS = KINDS + NOT_SCORED


def fixed_views(meta: Mapping[str, Any], num_frames: int, num_views: int) -> list[bool]:
    """Per view index: True for a fixed camera (the same orbit position at every time), False for a
    random view (redrawn at every time, so view v at time t and at time t' are different cameras).

    From the sample JSON: `cameras.fixed` (the render worker writes it), else the render settings
    (`render.spec.fixed_views`: views 0..n-1 are fixed, the rest random), else from the cameras
    themselves (a view whose c2w is the same at every time is fixed).
    """
    cams = meta.get("cameras")
    if isinstance(cams, dict) and isinstance(cams.get("fixed"), list) and len(cams["fixed"]) == num_views:
        return [bool(x) for x in cams["fixed"]]
    spec = (meta.get("render") or {}).get("spec") if isinstance(meta.get("render"), dict) else None
    if isinstance(spec, dict) and isinstance(spec.get("fixed_views"), int):
        n = spec["fixed_views"]
        return [v < n for v in range(num_views)]
    c2w = np.asarray(meta["c2w"], dtype=np.float64)  # [T, V, 4, 4]
    if num_frames <= 1:
        return [True] * num_views
    return [bool(np.allclose(c2w[:, v], c2w[:1, v], atol=1e-6)) for v in range(num_views)]


def target_kind(pair: tuple[int, int], inputs: Sequence[tuple[int, int]], fixed: Sequence[bool],
                split_views: bool = False) -> str:
    """What is novel about target `pair` (frame, view) given the input pairs, by camera:

    - `seen`: an input pair;
    - `novel_time`: a time no input shows, from a fixed camera some input uses;
    - `novel_view_time`: a time no input shows, from a camera no input uses (every random view is
      such a camera: it exists at its own time only);
    - `novel_view`: a time some input shows, from another camera; with `split_views`, only from a
      camera no input uses (never seen), and
    - `known_view` (only with `split_views`): a time some input shows, from a fixed camera that an input
      uses at another time (L4GM: a t0 view's camera at a later time of the window).
    """
    if tuple(pair) in {tuple(p) for p in inputs}:
        return "seen"
    t, v = pair
    seen_t = {p[0] for p in inputs}
    seen_cams = {p[1] for p in inputs if fixed[p[1]]}
    if t not in seen_t:
        return "novel_time" if fixed[v] and v in seen_cams else "novel_view_time"
    return "known_view" if split_views and fixed[v] and v in seen_cams else "novel_view"
