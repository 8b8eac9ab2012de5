"""Signals that separate reducible from irreducible difficulty, per sample and per group.

A clip can score badly because the model has not learned what it shows (more data of its kind helps) or
because it is hard whatever the data (tiny in frame, fine texture, self-occlusion: more data does not
help). Ranking by the raw score chases both. Each signal here is a per-sample **deficit** in dB of a
PSNR column (`psnr_obj` by default, docs/metrics.md; higher = more left to gain):

- `raw`: minus the model's PSNR (today's top-k; no separation at all, the baseline of the signals);
- `baseline`: the nearest-input copy baseline's PSNR minus the model's (`psnr_obj_nearest_input -
  psnr_obj`, columns every `pipeline eval` file has): a clip whose targets are hard to predict for any
  method lowers both, so what is left is how far the model stays below copying the closest input. Cheap:
  one evaluation, no second model;
- `reference`: a reference model's PSNR minus the model's on the same clips (RHO-LOSS, Mindermann et
  al. 2022, in PSNR): what a model trained on held-out data of the target's kind gets right and this
  one does not. Needs a second metrics file with the same protocol tag and background.

Per **group** (any manifest column, e.g. `kind`, `category`, `source`; or a derived one: `deform` =
skin / morph / rigid from the `skinned` / `morphed` flags, probed from local glTF files where the columns
are missing; `motion_bin` and `size_bin` from the render's own statistics, `motion_mean` and
`coverage_mean` of the shard parquet, in fixed bins), the group's mean deficit over the clips of a
validation split (`group_deficits`). manifests/acquire.py turns those into render budgets and sampling
weights.
"""

from __future__ import annotations

from contracts.parquet_bytes import read_table_bytes

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from manifests.mining_inputs import MiningError, check_comparable, read_metrics

SIGNALS = ("raw", "baseline", "reference")
METRIC_COLUMNS = ("psnr_obj", "psnr")              # the PSNR columns a deficit can be measured in
BASELINE_OF = {"psnr_obj": "psnr_obj_nearest_input", "psnr": "psnr_nearest_input"}
DERIVED = ("deform", "motion_bin", "size_bin")     # group columns computed, not read from the manifest
NONE = "<none>"                                   # the group of a row whose column is null
MIN_SCALE_DB = 0.5  # a deficit spread below this counts as this: differences of hundredths of a dB (seed noise in
                    # BENCHMARKS.md's experiments is 0.03-0.2 dB) must not decide a budget when no group lags
# Fixed bin edges (so that two splits bin alike): motion_mean in normalised units (the object fits a unit
# box, docs/conventions.md), coverage_mean as the share of the image the object covers.
MOTION_EDGES = ((0.02, "still"), (0.1, "moderate"), (math.inf, "large"))
SIZE_EDGES = ((0.05, "small"), (0.2, "medium"), (math.inf, "large"))
ROBUST_SD = 1.4826  # median absolute deviation -> standard deviation of a normal distribution


@dataclass
class Scored:
    """One metrics file's PSNR-like columns per (uid, clip): the mean over the shards it was scored in."""

    path: Path
    protocol: str
    step: int | None
    table: pd.DataFrame  # uid, clip, and the columns asked for


def read_scored(path: str | os.PathLike, columns: tuple[str, ...]) -> Scored:
    """Read a metrics file (checked by manifests.mining_inputs.read_metrics) and the `columns` it must have."""
    import pyarrow.parquet as pq

    m = read_metrics(path)
    have = pq.read_schema(m.path).names
    missing = [c for c in columns if c not in have]
    if missing:
        raise MiningError(f"{m.path}: missing column(s) {', '.join(missing)} (files written by `pipeline eval` "
                          f"have them, docs/metrics.md); cannot measure this signal")
    df = pq.read_table(m.path, columns=["uid", "clip", *columns]).to_pandas()
    for c in columns:
        if not pd.api.types.is_numeric_dtype(df[c]):
            raise MiningError(f"{m.path}: column {c!r} must be numeric, got {df[c].dtype}")
    table = df.astype({"clip": "int64"}).groupby(["uid", "clip"], sort=True)[list(columns)].mean().reset_index()
    return Scored(path=m.path, protocol=m.protocol, step=m.step, table=table)


def sample_deficits(metrics: str | os.PathLike, signal: str, reference: str | os.PathLike | None = None,
                    metric: str = "psnr_obj") -> pd.DataFrame:
    """Per (uid, clip) of `metrics`: `value` (the model's `metric`), `base` (what it is measured against:
    0, the copy baseline, or the reference model; NaN where the reference did not score the clip) and
    `deficit` = base - value for baseline/reference, -value for raw (dB; higher = more to gain)."""
    if signal not in SIGNALS:
        raise ValueError(f"signal must be one of {SIGNALS}, got {signal!r}")
    if metric not in METRIC_COLUMNS:
        raise ValueError(f"metric must be one of {METRIC_COLUMNS}, got {metric!r}")
    if (signal == "reference") != (reference is not None):
        raise ValueError("the reference signal needs a reference metrics file, and only it uses one")
    cols = (metric, BASELINE_OF[metric]) if signal == "baseline" else (metric,)
    cur = read_scored(metrics, cols)
    out = cur.table.rename(columns={metric: "value"})
    if signal == "raw":
        out["base"] = 0.0
    elif signal == "baseline":
        out = out.rename(columns={BASELINE_OF[metric]: "base"})
    else:
        check_comparable(read_metrics(metrics), read_metrics(reference), "psnr")
        ref = read_scored(reference, (metric,)).table.rename(columns={metric: "base"})
        out = out.merge(ref, on=["uid", "clip"], how="left")
    out["deficit"] = out["base"] - out["value"]
    return out[["uid", "clip", "value", "base", "deficit"]]


# -- groups --------------------------------------------------------------------------------------------


def group_labels(rows: pd.DataFrame, column: str, renders=None, probe: bool = True, where: str = "manifest") -> pd.Series:
    """The group of each row under `column` (strings; null -> "<none>"), index aligned with `rows`.
    `renders` (`render_stats` of the folder the rows were rendered into) is needed for the
    render-statistics bins only."""
    if column in rows.columns:
        return rows[column].astype("object").where(rows[column].notna(), NONE).astype(str)
    if column == "deform":
        r = rows
        if probe and not {"skinned", "morphed"} <= set(rows.columns):
            from manifests.pool import probe_gltf

            r = probe_gltf(rows)
        skin = _flag(r, "skinned")
        morph = _flag(r, "morphed")
        known = skin.notna() | morph.notna()
        lab = np.where(skin.fillna(False), "skin", np.where(morph.fillna(False), "morph", "rigid"))
        return pd.Series(np.where(known, lab, NONE), index=rows.index, dtype=object)
    if column in ("motion_bin", "size_bin"):
        if renders is None:
            raise MiningError(f"group column {column!r} comes from the render statistics: give the renders folder "
                              f"(--renders) the {where} rows were rendered into; unrendered rows (a pool) have no {column}")
        stat, edges = ("motion_mean", MOTION_EDGES) if column == "motion_bin" else ("coverage_mean", SIZE_EDGES)
        v = rows[["uid", "clip", "shard"]].astype({"clip": "int64", "shard": "int64"}).merge(
            renders, on=["uid", "clip", "shard"], how="left")[stat].to_numpy(dtype="float64")
        return pd.Series([_bin(x, edges) for x in v], index=rows.index, dtype=object)
    raise MiningError(f"group column {column!r}: not a column of the {where} ({', '.join(map(str, rows.columns))}) "
                      f"and not a derived group ({', '.join(DERIVED)})")


def _flag(df: pd.DataFrame, col: str) -> pd.Series:
    if col not in df.columns:
        return pd.Series([pd.NA] * len(df), index=df.index, dtype="boolean")
    return df[col].astype("boolean")


def _bin(x: float, edges: tuple) -> str:
    if math.isnan(x):
        return NONE
    return next(name for top, name in edges if x < top)


def render_stats(folder: str | os.PathLike) -> pd.DataFrame:
    """uid, clip, shard, motion_mean, coverage_mean of every ok sample in the committed shards of a
    dataset folder or URL (the shard parquets, docs/shards.md)."""
    from contracts import layout, storage

    try:
        store = storage.open_store(folder)
        names = store.listdir()
    except storage.StorageError as exn:
        raise MiningError(f"--renders {exn}") from None
    frames = []
    for n in layout.committed_in(names):
        t = read_table_bytes(store.read_bytes(layout.parquet_name(n))).to_pandas()
        for c in ("motion_mean", "coverage_mean"):
            if c not in t.columns:
                t[c] = np.nan
        frames.append(t.loc[t["status"] == "ok", ["uid", "clip", "motion_mean", "coverage_mean"]].assign(shard=n))
    cols = ["uid", "clip", "motion_mean", "coverage_mean", "shard"]
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({c: [] for c in cols})
    return out.astype({"clip": "int64", "shard": "int64", "motion_mean": "float64", "coverage_mean": "float64"})


def group_deficits(deficits: pd.DataFrame, rows: pd.DataFrame, column: str, renders=None, probe: bool = True,
                   where: str = "target manifest", clip_sd: float = 0.0) -> pd.DataFrame:
    """Per group of `column`: clips (the scored clips of `rows`, a validation split), share of them, mean
    model value, mean base and mean deficit (dB), and `scale`, the per-clip standard deviation of the
    deficit over all those clips (at least MIN_SCALE_DB), sorted by group name. Clips of `deficits` with no row in
    `rows`, and clips with a NaN deficit, are left out; none left is an error.

    clip_sd > 0 makes both robust to a few extreme clips: each clip's deficit is clipped to the target's
    median +- clip_sd robust standard deviations (1.4826 x the median absolute deviation) before the group
    means and `scale` (the standard deviation of the clipped deficits), and `clipped` counts each group's
    clipped clips. Why: with the copy baseline, a near-still clip scores 25-28 dB below it (the copy is almost
    exact there), and three such clips of 36 gave 46 % of a render budget to a group holding 6 % of the
    target (BENCHMARKS.md, the category scenario; clipped at 3, 28-33 %)."""
    keys = rows[["uid", "clip"]].astype({"clip": "int64"}).assign(group=group_labels(rows, column, renders, probe, where).to_numpy())
    keys = keys.drop_duplicates(["uid", "clip"])
    j = deficits.merge(keys, on=["uid", "clip"], how="inner")
    j = j[np.isfinite(j["deficit"].to_numpy(dtype="float64"))]
    if not len(j):
        raise MiningError(f"no scored clip of the target metrics has a row in the {where} with a finite deficit "
                          f"({len(deficits)} metrics row(s), {len(rows)} manifest row(s)): empty target")
    j = j.assign(clipped=False)
    if clip_sd > 0:
        med = float(j["deficit"].median())
        rsd = ROBUST_SD * float((j["deficit"] - med).abs().median())
        lo, hi = med - clip_sd * rsd, med + clip_sd * rsd
        j = j.assign(clipped=(j["deficit"] < lo) | (j["deficit"] > hi), deficit=j["deficit"].clip(lo, hi))
    sd = float(j["deficit"].std(ddof=0)) if len(j) > 1 else 0.0
    g = (j.groupby("group", sort=True)
          .agg(clips=("deficit", "size"), value=("value", "mean"), base=("base", "mean"), deficit=("deficit", "mean"),
               clipped=("clipped", "sum"))
          .reset_index())
    g["share"] = g["clips"] / g["clips"].sum()
    g["scale"] = max(sd, MIN_SCALE_DB)  # the per-clip spread of the deficit over the whole target (dB)
    g["clipped"] = g["clipped"].astype("int64")
    return g[["group", "clips", "share", "value", "base", "deficit", "scale", "clipped"]]
