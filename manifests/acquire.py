"""Target-aware acquisition: what the target still lacks, per group -> the next round's render budget per
group, diverse picks within each group, and the sampling weights of the next round's training.

The target is a validation split that stands for what the user cares about (clips of real assets, of one
category, ...), scored by the current model (`--target-metrics`). Its clips are grouped by a column
(`--group-by`, manifests/signals.py: any manifest column or `deform` / `motion_bin` / `size_bin`), and
each group's mean deficit d_g (dB, a signal of manifests/signals.py) measures how far the model still is
from what it could do there.

Budget (DoReMi, Xie et al. 2023, applied once per round): a group's weight is its share of the target
clips p_g times exp(eta * (d_g - d) / sigma), d the target's mean deficit and sigma the per-clip spread of
the deficit over the target, at least 0.5 dB (so eta is per standard deviation, whatever the signal's
scale: the copy baseline's deficits span tens of dB between static-looking and fast clips, a reference's a
few; and hundredths of a dB never decide a budget),
normalised (`--deficit-clip K`: each clip's deficit first clipped to the target's median +- K robust
standard deviations, for the means and sigma alike, so a few extreme clips cannot decide the budget;
signals.py); then mixed with the uniform share, s_g = (1 - floor) * w_g + floor / G over the G groups the
pool has, so no group starves. The render budget B becomes whole counts: every group first gets min(its
pool rows, floor(floor * B / G)), the rest goes one row at a time to the group furthest below its quota
s_g * B that still has pool rows (ties by group name). Counts add up to B exactly (to the pool's size
when it is smaller), and every group gets at least its floor count (or all its rows).

Within a group (`within`): `diverse` (default) is farthest-first (k-center greedy) on the standardised
pre-render features of manifests/pool.py: each pick is the pool row furthest from every row of its group
already rendered (the manifest) or picked; a group with nothing rendered starts at the pool row nearest
to its target clips (or the pool rows' medoid). So the budget spreads over the group instead of piling
near-copies. `random` is a seeded draw within the group.

Training weights (`group_weights`): the next round's manifest rows get weights so that group g carries
share s_g of the draws (the same formula over the groups the manifest has), the total weight unchanged
and each row's weight within its group kept in proportion.

Every pick's `pool_reason` and every re-weighted row's `group_reason` says which group, its target share,
deficit, weight and budget; deterministic (ties by (uid, clip) and group name).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from manifests.mining_inputs import MiningError
from manifests.signals import SIGNALS

WITHIN = ("diverse", "random")


@dataclass(frozen=True)
class TargetConfig:
    metrics: str                         # the current model's metrics on the target clips (pipeline eval)
    group_by: str                        # manifest column or derived group (manifests/signals.py)
    manifest: str | None = None          # rows of the target clips (group labels); default: the mined manifest
    signal: str = "baseline"             # raw | baseline (nearest-input copy) | reference (RHO, needs reference)
    reference: str | None = None         # signal reference: a reference model's metrics on the target clips
    metric: str = "psnr_obj"             # the PSNR column deficits are measured in
    eta: float = 1.0                     # per std of the per-clip deficit: a group 1 std further behind gets e x
    floor: float = 0.2                   # share mixed in uniformly over the groups: no group starves
    clip_sd: float = 0.0                 # > 0: per-clip deficits clipped to median +- clip_sd robust sd (signals)
    within: str = "diverse"              # diverse (k-center) | random, within each group's budget
    weights: bool = False                # also set the next round's sampling weights per group
    seed: int = 0                        # within random's seed

    def __post_init__(self) -> None:
        from manifests.signals import METRIC_COLUMNS

        if self.signal not in SIGNALS:
            raise ValueError(f"--signal must be one of {SIGNALS}, got {self.signal!r}")
        if self.signal == "reference" and not self.reference:
            raise ValueError("--signal reference needs --target-reference-metrics (a reference model's metrics on the "
                             "target clips, same protocol)")
        if self.reference and self.signal != "reference":
            raise ValueError("--target-reference-metrics is used only by --signal reference")
        if self.metric not in METRIC_COLUMNS:
            raise ValueError(f"--group-metric must be one of {METRIC_COLUMNS}, got {self.metric!r}")
        if not (math.isfinite(self.eta) and self.eta >= 0):
            raise ValueError(f"--group-eta must be a finite number >= 0, got {self.eta}")
        if not (0.0 <= self.floor <= 1.0):
            raise ValueError(f"--group-floor must be in [0, 1], got {self.floor}")
        if not (math.isfinite(self.clip_sd) and self.clip_sd >= 0):
            raise ValueError(f"--deficit-clip must be a finite number >= 0 (0: off), got {self.clip_sd}")
        if self.within not in WITHIN:
            raise ValueError(f"--within must be one of {WITHIN}, got {self.within!r}")
        if not self.group_by:
            raise ValueError("--target-metrics needs --group-by COLUMN (the groups deficits are measured over)")


@dataclass
class GroupPlan:
    group: str
    target_clips: int
    target_share: float
    deficit: float | None       # mean deficit on the target (dB); None when the target has no clip of it
    weight: float               # multiplicative weight, normalised (before the floor)
    share: float                # after the floor
    available: int = 0          # pool rows of the group
    floor: int = 0              # the group's guaranteed count
    budget: int = 0             # rows to render
    clipped: int = 0            # target clips whose deficit was clipped (--deficit-clip)

    def describe(self, column: str, signal: str) -> str:
        d = "not in the target" if self.deficit is None else f"deficit {self.deficit:+.2f} dB ({signal})"
        if self.clipped:
            d += f" with {self.clipped} clip(s) clipped to the robust range"
        return (f"group {column}={self.group}: {100 * self.target_share:.0f}% of the target clips, {d}, weight "
                f"{self.weight:.3f}, share {100 * self.share:.1f}% after the floor")


def group_shares(groups: list[str], target: pd.DataFrame, eta: float, floor: float) -> list[GroupPlan]:
    """DoReMi weights over `groups` from the target's per-group table (signals.group_deficits)."""
    t = target.set_index("group")
    inside = [g for g in groups if g in t.index]
    if not inside:
        raise MiningError(f"no target group among {groups[:8]}: the target's groups are {list(t.index)[:8]}; "
                          f"nothing to aim at (check --group-by)")
    p = t.loc[inside, "share"].to_numpy(dtype="float64")
    p = p / p.sum()
    d = t.loc[inside, "deficit"].to_numpy(dtype="float64")
    scale = float(t["scale"].iloc[0]) if "scale" in t.columns else 1.0
    mean = float((p * d).sum())
    raw = p * np.exp(np.clip(eta * (d - mean) / scale, -50, 50))
    w = dict(zip(inside, raw / raw.sum()))
    G = len(groups)
    out = []
    for g in groups:
        wg = float(w.get(g, 0.0))
        out.append(GroupPlan(group=g, target_clips=int(t.at[g, "clips"]) if g in t.index else 0,
                             target_share=float(t.at[g, "share"]) if g in t.index else 0.0,
                             deficit=float(t.at[g, "deficit"]) if g in t.index else None,
                             weight=wg, share=(1 - floor) * wg + floor / G,
                             clipped=int(t.at[g, "clipped"]) if g in t.index and "clipped" in t.columns else 0))
    return out


def allocate(plans: list[GroupPlan], available: dict[str, int], budget: int, floor: float) -> list[GroupPlan]:
    """Whole render counts per group (module docstring): floors first, then the largest shortfall."""
    G = len(plans)
    per = math.floor(floor * budget / G + 1e-9) if G else 0  # 0.3 * 10 / 3 is 0.999...: still 1 row
    for p in plans:
        p.available = int(available.get(p.group, 0))
        p.floor = min(p.available, per)
        p.budget = p.floor
    left = min(budget, sum(p.available for p in plans)) - sum(p.budget for p in plans)
    by_name = sorted(plans, key=lambda p: p.group)
    for _ in range(max(0, left)):
        open_ = [p for p in by_name if p.budget < p.available]
        best = max(open_, key=lambda p: p.share * budget - p.budget)  # the first maximum: ties by group name
        best.budget += 1
    return plans


# -- picks within a group -------------------------------------------------------------------------------


def pick_groups(pool: pd.DataFrame, pool_groups: pd.Series, plans: list[GroupPlan], rendered: pd.DataFrame,
                rendered_groups: pd.Series, target_rows: pd.DataFrame, target_groups: pd.Series, cfg: TargetConfig,
                column: str) -> list:
    """Each group's budget of pool rows (pool sorted by (uid, clip)), diverse or random, explained."""
    from manifests.pool import SHOW, Pick, _show, feature_matrix

    (Xp, Xr, Xt), names = feature_matrix([pool, rendered, target_rows])
    out: list[Pick] = []
    pg, rg, tg = pool_groups.to_numpy(), rendered_groups.to_numpy(), target_groups.to_numpy()
    for plan in plans:
        if plan.budget <= 0:
            continue
        idx = np.flatnonzero(pg == plan.group)
        head = (f"{plan.describe(column, cfg.signal)}; budget {plan.budget} of {plan.available} pool row(s) "
                f"(floor {plan.floor})")
        if cfg.within == "random":
            rng = random.Random(f"{cfg.seed}:{plan.group}")
            for k, j in enumerate(sorted(rng.sample(list(idx), plan.budget))):
                out.append(Pick(str(pool.iloc[j]["uid"]), int(pool.iloc[j]["clip"]), plan.share,
                                  f"{head}; random pick {k + 1}/{plan.budget} in the group (seed {cfg.seed})"))
            continue
        have = Xr[rg == plan.group]
        have_rows = rendered.loc[rg == plan.group]
        X = Xp[idx]
        if len(have):
            dist = np.sqrt(((X[:, None, :] - have[None, :, :]) ** 2).sum(-1))
            near = dist.argmin(1)
            mind = dist[np.arange(len(idx)), near]
            ref = [f"{have_rows.iloc[n]['uid']}:{int(have_rows.iloc[n]['clip'])}" for n in near]
            first = None
        else:
            mind = np.full(len(idx), np.inf)
            ref = [""] * len(idx)
            anchor = Xt[tg == plan.group]
            centre = anchor.mean(0) if len(anchor) else X.mean(0)
            first = int(np.argmin(np.sqrt(((X - centre) ** 2).sum(-1))))
        taken = np.zeros(len(idx), bool)
        for k in range(plan.budget):
            if first is not None and k == 0:
                j = first
                why = (f"nothing of the group rendered yet: the pool row nearest to its "
                       f"{'target clips' if (tg == plan.group).any() else 'pool rows'} (distance "
                       f"{float(np.sqrt(((X[j] - centre) ** 2).sum())):.2f} std)")
            else:
                j = int(np.argmax(np.where(taken, -1.0, mind)))
                why = f"farthest first: {mind[j]:.2f} std from the nearest rendered or picked row {ref[j]}"
            gain = float(mind[j]) if np.isfinite(mind[j]) else 0.0  # the distance this pick adds to the cover
            taken[j] = True
            row = pool.iloc[idx[j]]
            d_new = np.sqrt(((X - X[j]) ** 2).sum(-1))
            closer = d_new < mind
            mind = np.where(closer, d_new, mind)
            ref = [f"{row['uid']}:{int(row['clip'])}" if c else r for c, r in zip(closer, ref)]
            side = ", ".join(f"{c} {_show(row, c)}" for c in SHOW if c in pool.columns)
            out.append(Pick(str(row["uid"]), int(row["clip"]), gain,
                              f"{head}; diverse pick {k + 1}/{plan.budget}: {why}; features {', '.join(names)}; {side}"))
    return out


# -- training-time weights ------------------------------------------------------------------------------


@dataclass
class Reweighted:
    weights: np.ndarray
    reasons: list[str | None]
    plans: list[GroupPlan] = field(default_factory=list)


def group_weights(weights: np.ndarray, groups: pd.Series, target: pd.DataFrame, cfg: TargetConfig,
                  column: str) -> Reweighted:
    """Weights that give group g share s_g of the draws (total weight and within-group proportions kept)."""
    w = np.asarray(weights, dtype="float64")
    g = groups.to_numpy()
    names = sorted(set(g))
    plans = group_shares(names, target, cfg.eta, cfg.floor)
    total = w.sum()
    new = w.copy()
    reasons: list[str | None] = [None] * len(w)
    for p in plans:
        m = g == p.group
        Wg = w[m].sum()
        if Wg <= 0:
            continue
        f = p.share * total / Wg
        new[m] = w[m] * f
        why = (f"{p.describe(column, cfg.signal)}: {100 * p.share:.1f}% of the draws over {int(m.sum())} row(s) "
               f"(was {100 * Wg / total:.1f}%), weight x{f:.3g}")
        for i in np.flatnonzero(m):
            reasons[i] = why
    return Reweighted(weights=new, reasons=reasons, plans=plans)


def plan_table(plans: list[GroupPlan]) -> list[dict[str, Any]]:
    return [{"group": p.group, "target_clips": p.target_clips, "target_share": round(p.target_share, 4),
             "deficit": None if p.deficit is None else round(p.deficit, 4), "weight": round(p.weight, 4),
             "share": round(p.share, 4), "available": p.available, "floor": p.floor, "budget": p.budget} for p in plans]


# -- the run: read the target, choose, re-weight (called by manifests/mining.py) --------------------------


@dataclass
class Target:
    cfg: TargetConfig
    rows: pd.DataFrame            # the target clips' manifest rows
    table: pd.DataFrame           # per group: clips, share, value, base, deficit (signals.group_deficits)
    stats: pd.DataFrame | None    # render statistics (motion_bin / size_bin only)
    report: dict[str, Any] = field(default_factory=dict)


def read_target(cfg: TargetConfig, cur, manifest: pd.DataFrame, renders: str | None, probe: bool) -> Target:
    """The target's per-group deficits; its metrics must score the current checkpoint (`cur`, a
    mining_inputs.Metrics) under the same protocol tag and background."""
    from manifests import signals
    from manifests.mining_inputs import check_comparable, read_metrics
    from manifests.schema import read_manifest

    tm = read_metrics(cfg.metrics)
    check_comparable(cur, tm, "psnr")
    if tm.step != cur.step:
        raise MiningError(f"--target-metrics {tm.path} scores step {tm.step}, --metrics {cur.path} step {cur.step}: "
                          f"score the target with the checkpoint that is mined")
    rows = read_manifest(cfg.manifest) if cfg.manifest else manifest
    where = f"target manifest {cfg.manifest or '(the --manifest)'}"
    stats = None
    if cfg.group_by in ("motion_bin", "size_bin") and cfg.group_by not in rows.columns and renders:
        stats = signals.render_stats(renders)
    deficits = signals.sample_deficits(cfg.metrics, cfg.signal, cfg.reference, cfg.metric)
    table = signals.group_deficits(deficits, rows, cfg.group_by, stats, probe, where, cfg.clip_sd)
    report = {"group_by": cfg.group_by, "signal": cfg.signal, "metric": cfg.metric, "deficit_clip": cfg.clip_sd,
              "protocol": tm.protocol,
              "clips": int(table["clips"].sum()), "metrics_rows": len(deficits),
              "groups": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
                         for r in table.to_dict("records")]}
    return Target(cfg=cfg, rows=rows, table=table, stats=stats, report=report)


def select(t: Target, cand: pd.DataFrame, rendered: pd.DataFrame, budget: int, probe: bool) -> list:
    """The render budget over the pool's groups, then picks within each (explained); fills t.report."""
    from manifests import signals

    col = t.cfg.group_by
    pool_groups = signals.group_labels(cand, col, None, probe, "pool")
    rendered_groups = signals.group_labels(rendered, col, t.stats, probe, "manifest")
    target_groups = signals.group_labels(t.rows, col, t.stats, probe, "target manifest")
    counts = pool_groups.value_counts().to_dict()
    plans = group_shares(sorted(counts), t.table, t.cfg.eta, t.cfg.floor)
    allocate(plans, counts, budget, t.cfg.floor)
    t.report["budget"] = plan_table(plans)
    t.report["unaddressable"] = sorted(set(t.table["group"]) - set(counts))
    return pick_groups(cand, pool_groups, plans, rendered, rendered_groups, t.rows, target_groups, t.cfg, col)


def reweight(t: Target, df: pd.DataFrame, probe: bool) -> pd.DataFrame:
    """The next round's manifest with group weights (column `group_reason` explains each row)."""
    from manifests import signals

    groups = signals.group_labels(df, t.cfg.group_by, t.stats, probe, "output manifest")
    r = group_weights(df["weight"].to_numpy(dtype="float64"), groups, t.table, t.cfg, t.cfg.group_by)
    out = df.copy()
    out["weight"] = r.weights
    out["group_reason"] = pd.Series(r.reasons, dtype=object, index=out.index)
    reason = out["mine_reason"].astype(object)
    out["mine_reason"] = reason.where(reason.notna(), f"groupweight:{t.cfg.group_by}")
    t.report["weights"] = plan_table(r.plans)
    return out
