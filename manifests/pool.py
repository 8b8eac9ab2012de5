"""Pool selection: choose which not-yet-rendered clips to render next, from what evaluation found hard.

A data engine with ~80K animated clips and a render budget for a fraction of them gains most by choosing
what to render. `pipeline mine --pool POOL.parquet --render-budget K` picks K rows of a curated pool
manifest using only what is known before rendering: the curation columns (clip duration, face and
vertex counts, clips per asset, static, source, licence, file type) and a cheap probe of the glTF file
itself where it is local (skinned, morphed; manifests.gltf_info, no Blender).

`similar` (default): every row becomes a point in a standardised feature space (log counts and
durations, flags, one-hot categories; mean 0 and std 1 over the rendered manifest and the pool
together). The hard examples (the rows mining up-weights) carry weights by how hard they are (their
score above the first row that did not make the cut). A pool row's gain is the hardness it covers,
sum_i r_i * exp(-d_ij^2 / 2h^2), with h the median distance from a pool row to its nearest hard example;
rows are taken greedily, and after each pick every hard example's remaining weight r_i shrinks by the
share the pick covered (facility-location style), so the budget spreads over the hard examples instead of
piling K near-copies around the hardest one. `random`: a seeded uniform draw of K rows (the control).

Every pick is explained in `pool_reason` (the hard example it covers most, its score, the distance and
the features side by side), deterministic (ties break by (uid, clip)), and the budget is never exceeded.
"""

from __future__ import annotations

import logging
import math
import os
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

POOL_STRATEGIES = ("similar", "random", "target")  # target: manifests/acquire.py
NUMERIC = ("duration_s", "face_count", "vertex_count", "clip_count")  # log1p, then standardised
FLAGS = ("static", "skinned", "morphed")                              # 0/1, then standardised
CATEGORIES = ("source", "license", "file_type")                        # one-hot, a mismatch weighs like 1 std
SHOW = ("duration_s", "face_count", "vertex_count", "skinned", "morphed", "source")


@dataclass
class Pick:
    uid: str
    clip: int
    gain: float
    reason: str


def probe_gltf(df: pd.DataFrame) -> pd.DataFrame:
    """Add `skinned` / `morphed` where missing, read from local glTF files (no Blender; a row whose file
    is not local or not readable keeps null). Each file is read once."""
    from manifests.gltf_info import GltfError, read_gltf_info

    out = df.copy()
    for col in ("skinned", "morphed"):
        if col not in out.columns:
            out[col] = pd.Series([None] * len(out), dtype="boolean", index=out.index)
    need = out["skinned"].isna() | out["morphed"].isna()
    cache: dict[str, tuple[bool, bool] | None] = {}
    for i in out.index[need]:
        uri = out.at[i, "uri"]
        if not isinstance(uri, str) or "://" in uri or ":" in uri.split(os.sep)[0] or not os.path.isfile(uri):
            continue
        if uri not in cache:
            try:
                info = read_gltf_info(uri)
                cache[uri] = (info.skinned, info.morphed)
            except GltfError as exc:
                log.info("pool probe: %s (%s)", uri, exc)
                cache[uri] = None
        if cache[uri] is not None:
            out.at[i, "skinned"], out.at[i, "morphed"] = cache[uri]
    return out


def feature_matrix(frames: list[pd.DataFrame]) -> tuple[list[np.ndarray], list[str]]:
    """One standardised feature matrix [rows, F] per frame, fitted over all of them together, and the
    names of the columns used (a column with no value, or one category only, tells nothing)."""
    allf = pd.concat(frames, ignore_index=True)
    cols: list[np.ndarray] = []
    used: list[str] = []
    for c in NUMERIC + FLAGS:
        if c not in allf.columns:
            continue
        v = allf[c].map(_as_float).astype("float64")
        if c in NUMERIC:
            v = np.log1p(v.clip(lower=0))
        v = v.to_numpy()
        if np.isnan(v).all():
            continue
        mu = np.nanmean(v)
        sd = np.nanstd(v)
        z = np.where(np.isnan(v), 0.0, (v - mu) / sd if sd > 0 else 0.0)
        cols.append(z)
        used.append(c)
    for c in CATEGORIES:
        if c not in allf.columns:
            continue
        v = allf[c].astype("object").where(allf[c].notna(), "<none>").astype(str)
        levels = sorted(set(v))
        if len(levels) < 2:
            continue
        for lv in levels:
            cols.append((v == lv).to_numpy(dtype="float64") / math.sqrt(2))
        used.append(c)
    X = np.stack(cols, axis=1) if cols else np.zeros((len(allf), 1))
    out, at = [], 0
    for f in frames:
        out.append(X[at: at + len(f)])
        at += len(f)
    return out, used


def _as_float(x: Any) -> float:
    """A number, a flag (True = 1) or a missing value (NaN) as a float."""
    if x is None or x is pd.NA:
        return math.nan
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def _show(row: pd.Series, col: str) -> str:
    if col not in row.index:
        return "?"
    v = row[col]
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return "?"
    if col in ("skinned", "morphed", "static"):
        return "yes" if bool(v) else "no"
    if col == "duration_s":
        return f"{float(v):.1f}s"
    if col in ("face_count", "vertex_count"):
        n = float(v)
        return f"{n / 1000:.1f}k" if n >= 1000 else f"{int(n)}"
    return str(v)


def select_similar(hard: pd.DataFrame, hardness: np.ndarray, pool: pd.DataFrame, budget: int, by: str,
                   scores: np.ndarray, context: pd.DataFrame) -> list[Pick]:
    """Greedy hardness coverage (module docstring). `hard`: the hard rows (uid, clip, features) with
    `hardness` [H] >= 0 and their ranking `scores` [H]; `context`: the whole rendered manifest (for
    the feature scale). Returns up to `budget` picks in order."""
    if budget <= 0 or not len(pool) or not len(hard):
        return []
    (Xh, Xp, _), _names = feature_matrix([hard, pool, context])
    d = np.sqrt(((Xh[:, None, :] - Xp[None, :, :]) ** 2).sum(-1))  # [H, P]
    nearest = d.min(axis=0)
    h = float(np.median(nearest))
    if not h > 0:
        pos = d[d > 0]
        h = float(pos.mean()) if pos.size else 1.0
    K = np.exp(-(d ** 2) / (2 * h * h))  # [H, P]
    w = np.asarray(hardness, dtype="float64")
    r = w / w.sum() if w.sum() > 0 else np.full(len(w), 1.0 / len(w))
    taken = np.zeros(len(pool), bool)
    picks: list[Pick] = []
    for _ in range(min(budget, len(pool))):
        contrib = r[:, None] * K  # [H, P]
        gain = np.where(taken, -1.0, contrib.sum(0))
        j = int(np.argmax(gain))  # the first maximum: pool rows are sorted by (uid, clip)
        i = int(np.argmax(contrib[:, j]))
        hr, pr = hard.iloc[i], pool.iloc[j]
        side = ", ".join(f"{c} {_show(pr, c)}~{_show(hr, c)}" for c in SHOW
                         if c in pool.columns or c in hard.columns)
        reason = (f"like hard {hr['uid']}:{int(hr['clip'])} (#{i + 1}, {by} score {scores[i]:.4g}; distance "
                  f"{d[i, j]:.2f}, bandwidth {h:.2f}); covers {100 * float(contrib[:, j].sum()):.1f}% of the "
                  f"remaining hardness; {side}")
        picks.append(Pick(str(pr["uid"]), int(pr["clip"]), float(gain[j]), reason))
        taken[j] = True
        r = r * (1.0 - K[:, j])
    return picks


def select_random(pool: pd.DataFrame, budget: int, seed: int) -> list[Pick]:
    """A seeded uniform draw of `budget` rows (pool sorted by (uid, clip) first): the control."""
    n = min(budget, len(pool))
    idx = sorted(random.Random(seed).sample(range(len(pool)), n))
    return [Pick(str(pool.iloc[j]["uid"]), int(pool.iloc[j]["clip"]), 0.0,
                 f"random control: seed {seed}, one of {n} drawn uniformly from {len(pool)} pool row(s)") for j in idx]


def prepare_pool(pool: pd.DataFrame, manifest: pd.DataFrame, probe: bool) -> tuple[pd.DataFrame, int]:
    """Pool rows not already in the manifest, sorted by (uid, clip), probed; and how many were dropped."""
    have = set(zip(manifest["uid"], manifest["clip"].astype("int64")))
    keep = [(u, int(c)) not in have for u, c in zip(pool["uid"], pool["clip"])]
    p = pool.loc[keep].sort_values(["uid", "clip"], kind="stable").reset_index(drop=True)
    if probe:
        p = probe_gltf(p)
    return p, len(pool) - len(p)


def describe_features(frames: list[pd.DataFrame]) -> list[str]:
    """The feature columns the selection uses on these rows."""
    return feature_matrix(frames)[1]


def hardness_weights(scores: np.ndarray, threshold: float | None) -> np.ndarray:
    """How hard each hard example is: its score above `threshold` (the best score that did not make the
    cut; the lowest hard score when every scored row is hard), plus a floor so none weighs zero."""
    s = np.asarray(scores, dtype="float64")
    if not len(s):
        return s
    base = threshold if threshold is not None else float(s.min())
    excess = np.clip(s - base, 0, None)
    floor = 0.1 * excess.max() if excess.max() > 0 else 1.0
    return excess + floor


def summary_line(picks: list[Pick]) -> dict[str, Any]:
    return {"picked": len(picks), "gain_sum": float(sum(p.gain for p in picks))}
