"""Hard-example mining: per-sample metrics (DESIGN.md §5) -> the next round's manifest (§3).

Strategies rank the evaluated samples from hardest down:
- `topk`: by the current model's loss (highest first) or PSNR (lowest first);
- `reducible` (RHO-LOSS, Mindermann et al. 2022): by the current loss minus a reference model's loss on
  the same sample (or reference PSNR minus current PSNR). A sample that both models get wrong (broken
  geometry, flicker, a clip that cannot be learnt from the views) scores near zero and is not chased;
  only samples with a positive score qualify;
- `baseline` (`--by psnr`): by the nearest-input copy baseline's PSNR minus the model's (manifests/signals.py):
  one evaluation, and a clip that is hard for any method counts less than one the model alone gets wrong.
The top `fraction` of the scored samples have their `weight` multiplied by `boost` (weights compound
over rounds, up to `max_weight`: a few stubborn samples cannot take over the draws); the top
`rerender_fraction` of them also become re-render requests.

Joins. Metrics rows are keyed by (uid, clip, shard). A sample evaluated in several shards (its first
render and a later re-render carry the same key) is scored by its row in the manifest's shard for it
when there is one: that is the copy the trainer draws (training.data.stream.WeightedRepeat leaves out copies
in other shards once that shard is read). Otherwise (the re-render not evaluated yet) it gets the MEAN
over the shards it was scored in. Two metrics files (reducible) must share one `protocol` tag
(NAME-vN/FAMILY@SIZE: same pairs, same family, same resolution) and the background their targets were
composited on; ranked by loss, also the loss formula (`loss_weights` in the file's metadata, written by
training/eval/protocol.py). Files that differ are refused, never subtracted. RHO-LOSS's reference model is
meant to be trained on held-out data (other clips than the ones mined), so that a low reference loss
means "learnable", not "memorised".

Renders (`renders` = the dataset folder). A row whose own shard is committed and lists it as `failed` or
`rejected` is left out of the output and counted by reason; a failed re-render whose parent shard holds
an `ok` render goes back to its parent row (shard = parent_shard, no render_settings). Rows whose shard
is not committed yet are kept as they are.

Re-render rows. (uid, clip) stays unique, so a re-render request REPLACES its row: same uid/clip/uri,
`round` = the manifest's last round + 1, a new shard number after every shard the manifest, the metrics
or the renders folder know of, `parent_shard` = the row's old shard, `render_settings` = the row's old
overrides plus denser ones (frames, orbit and random views doubled within caps, seed + 1 for fresh
random cameras). The old render stays in its old shard under the same key: the trainer draws it, with the
row's (boosted) weight, only while the new shard is not among the shards it reads; once the re-render is
committed and read, only the re-render is drawn. A row whose re-render is still pending (its shard is not
committed under `renders`) is not requested again, only up-weighted.

Pool selection (`pool` + `render_budget`, manifests/pool.py): up to `render_budget` rows of a curated,
not yet rendered pool manifest are appended as new rows to render (new shards after every other, `round`
+1, `mine_reason` `pool:similar` or `pool:random`, `pool_reason` the explanation), chosen from
pre-render features to resemble the hard examples (or at random, the control).

Target-aware acquisition (`target`; `pool:target` picks, `group_reason` weights): manifests/acquire.py.

Reading and checking the inputs (metrics files, the renders folder) is manifests/mining_inputs.py.

Deterministic: rows keep the input manifest's order, ties in the ranking break by (uid, clip), new
shards follow manifests.shards.assign_shards; the same inputs and settings give the same file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from manifests.acquire import TargetConfig
from manifests.mining_inputs import MiningError, Renders, check_comparable, read_metrics, read_renders
from manifests.rerender import Densify, rerender_settings
from manifests.schema import read_manifest, write_manifest
from manifests.shards import assign_shards

log = logging.getLogger(__name__)

STRATEGIES = ("topk", "reducible", "baseline", "random")
BY = ("loss", "psnr")


@dataclass(frozen=True)
class MineConfig:
    metrics: str                            # metrics.parquet of the current model (pipeline eval)
    manifest: str                           # the manifest those samples were rendered from
    out: str                                # next round's manifest
    reference_metrics: str | None = None    # reducible only: metrics of a reference model trained on held-out
                                            # data (RHO-LOSS), same protocol, background and loss formula
    strategy: str = "topk"                  # topk needs one model; reducible needs a reference model too;
                                            # random: the same counts drawn at random (seed: pool_seed), a control
    by: str = "loss"                        # loss is what training minimises; psnr ignores the LPIPS/SSIM terms
    fraction: float = 0.1                   # a tenth: enough to shift the draws, few enough to stay "hard"
    boost: float = 4.0                      # hard samples drawn 4x as often: visible in a short run, not dominant
    max_weight: float = 16.0                # cap on a boosted weight: two rounds of x4, then no further
    rerender_fraction: float = 0.02         # each re-render costs ~4x+ a normal sample (2x frames, 2x views)
    renders: str | None = None              # dataset folder: failed/rejected rows are left out, shard numbers seen
    preset: str | None = None               # render preset the re-renders are validated on (default: the recorded one)
    shard_size: int = 64                    # rows per new re-render shard, as `pipeline curate`'s default
    densify: Densify = field(default_factory=Densify)  # how much denser a re-render is
    pool: str | None = None                 # curated, not yet rendered manifest to choose new rows from
    render_budget: int = 0                  # pool rows to add (the next round's new renders); needs --pool
    pool_strategy: str = "similar"          # similar: like the hard examples (pre-render features); random: control
    pool_seed: int = 0                      # seed of the random controls' draws (--strategy / --pool-strategy random)
    pool_probe: bool = True                 # read skinned/morphed from local glTF files of the pool (no Blender)
    target: TargetConfig | None = None      # target-aware acquisition / group weights (manifests/acquire.py)

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"--strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.by not in BY:
            raise ValueError(f"--by must be one of {BY}, got {self.by!r}")
        if self.strategy == "reducible" and not self.reference_metrics:
            raise ValueError("--strategy reducible needs --reference-metrics (the reference model's metrics file)")
        if self.strategy != "reducible" and self.reference_metrics:
            raise ValueError("--reference-metrics is used only by --strategy reducible")
        if self.strategy == "baseline" and self.by != "psnr":
            raise ValueError("--strategy baseline needs --by psnr (the copy baseline has a PSNR, not a loss)")
        if not (0.0 < self.fraction <= 1.0):
            raise ValueError(f"--fraction must be in (0, 1], got {self.fraction}")
        if not (math.isfinite(self.boost) and self.boost >= 1.0):
            raise ValueError(f"--boost must be a finite number >= 1 (hard samples are drawn more, not less), got {self.boost}")
        if not (0.0 <= self.rerender_fraction <= self.fraction):
            raise ValueError(f"--rerender-fraction must be in [0, --fraction={self.fraction}] (re-renders are taken from "
                             f"the hard samples), got {self.rerender_fraction}")
        if not (math.isfinite(self.max_weight) and self.max_weight > 0):
            raise ValueError(f"--max-weight must be a finite number > 0, got {self.max_weight}")
        if self.shard_size < 1:
            raise ValueError(f"--shard-size must be >= 1, got {self.shard_size}")
        from manifests.pool import POOL_STRATEGIES

        if self.pool_strategy not in POOL_STRATEGIES:
            raise ValueError(f"--pool-strategy must be one of {POOL_STRATEGIES}, got {self.pool_strategy!r}")
        if self.pool_strategy == "target" and (self.target is None or not self.pool):
            raise ValueError("--pool-strategy target needs --target-metrics, --group-by, --pool and --render-budget")
        if self.target is not None and self.pool_strategy != "target" and not self.target.weights:
            raise ValueError("--target-metrics is used by --pool-strategy target or --group-weights")
        if self.pool and self.render_budget < 1:
            raise ValueError("--pool needs --render-budget K >= 1 (how many pool rows to render next)")
        if self.render_budget and not self.pool:
            raise ValueError("--render-budget is used only with --pool (the manifest to choose from)")
        if self.preset is not None:
            from render.presets import PRESETS

            if self.preset not in PRESETS:
                raise ValueError(f"unknown preset {self.preset!r} (--preset); known: {', '.join(PRESETS)}")

    @property
    def reason(self) -> str:
        return f"random-seed{self.pool_seed}" if self.strategy == "random" else f"{self.strategy}-{self.by}"


@dataclass
class MineResult:
    out: Path
    rows_in: int
    rows_out: int
    protocol: str
    step: int | None
    reference_step: int | None
    scored: int                                        # kept rows with a finite score
    hard: int                                          # rows up-weighted (re-render rows included)
    changes: Counter = field(default_factory=Counter)  # mine_reason -> rows changed by this run
    dropped: Counter = field(default_factory=Counter)  # "failed:render_failed" -> rows left out
    reverted: int = 0                                  # failed re-renders sent back to their parent shard
    rerenders: list[dict[str, Any]] = field(default_factory=list)  # uid, clip, parent_shard, shard, render_settings
    not_touched: Counter = field(default_factory=Counter)  # why kept rows were not scored
    metrics_unmatched: int = 0                         # metrics rows with no row in the output manifest
    multi_shard: int = 0                               # scored by the mean over shards (own shard not scored)
    capped: int = 0                                    # hard rows whose boost stopped at max_weight
    weights_before: dict[str, float] = field(default_factory=dict)
    weights_after: dict[str, float] = field(default_factory=dict)
    hard_share_before: float = 0.0                     # share of all weight on the hard rows, before / after
    hard_share_after: float = 0.0
    pool_rows: int = 0                                 # pool rows considered (not already in the manifest)
    pool_in_manifest: int = 0                          # pool rows left out: already in the manifest
    pool_picks: list[dict[str, Any]] = field(default_factory=list)  # uid, clip, shard, gain, reason
    pool_features: list[str] = field(default_factory=list)
    target: dict[str, Any] = field(default_factory=dict)  # group deficits, budget and weights (acquire.Target.report)

    @property
    def new_shards(self) -> list[int]:
        return sorted({r["shard"] for r in self.rerenders})


# -- the mining run --------------------------------------------------------------------------------


def mine(cfg: MineConfig, command: str | None = None) -> MineResult:
    """Read the inputs, apply the render outcomes, rank, boost, request re-renders, write `cfg.out`."""
    manifest = read_manifest(cfg.manifest)
    cur = read_metrics(cfg.metrics)
    ref = read_metrics(cfg.reference_metrics) if cfg.reference_metrics else None
    if ref is not None:
        check_comparable(cur, ref, cfg.by)
    renders = read_renders(cfg.renders) if cfg.renders else None
    tgt = None
    if cfg.target is not None:
        from manifests.acquire import read_target

        tgt = read_target(cfg.target, cur, manifest, cfg.renders, cfg.pool_probe)
    res = MineResult(out=Path(cfg.out), rows_in=len(manifest), rows_out=0, protocol=cur.protocol, step=cur.step,
                     reference_step=ref.step if ref else None, scored=0, hard=0)
    df = manifest.copy()
    for col, dtype in (("render_settings", object), ("parent_shard", "Int32"), ("mine_reason", object)):
        if col not in df.columns:
            df[col] = pd.Series([None] * len(df), dtype=dtype)
    if renders is not None:
        df = _apply_renders(df, renders, res)

    # Score every kept row that has metrics; higher score = harder.
    scored = cur.join(df)
    has = scored["found"].to_numpy()
    res.multi_shard = int((has & ~scored["own_shard"].to_numpy() & scored["n_shards"].gt(1).to_numpy()).sum())
    if cfg.strategy == "baseline":
        from manifests.signals import sample_deficits

        d = sample_deficits(cfg.metrics, "baseline", metric="psnr")  # the mean over the shards a clip was scored in
        score = df[["uid", "clip"]].astype({"clip": "int64"}).merge(d, on=["uid", "clip"], how="left")["deficit"]
    elif cfg.strategy == "random":  # a seeded draw among the rows topk could rank: the control to beat
        rankable = (scored["loss"] if cfg.by == "loss" else scored["psnr"]).notna().to_numpy()
        score = pd.Series(_random_keys(df, cfg.pool_seed), index=df.index).where(rankable)
    elif ref is None:
        score = scored["loss"] if cfg.by == "loss" else -scored["psnr"]
    else:
        r = ref.join(df)
        score = scored["loss"] - r["loss"] if cfg.by == "loss" else r["psnr"] - scored["psnr"]
        no_ref = has & ~r["found"].to_numpy()
        res.not_touched["no reference metrics"] = int(no_ref.sum())
        has = has & ~no_ref
    score = score.to_numpy(dtype="float64")
    finite = has & ~np.isnan(score)
    no_metrics = ~scored["found"].to_numpy()
    if renders is not None:  # exclusive counts: why a kept row has no metrics
        pending = ~df["shard"].astype("int64").isin(renders.committed).to_numpy()
        res.not_touched["shard not rendered yet"] = int((no_metrics & pending).sum())
        res.not_touched["rendered, no metrics"] = int((no_metrics & ~pending).sum())
    else:
        res.not_touched["no metrics"] = int(no_metrics.sum())
    res.not_touched[f"{cfg.by} is NaN"] = int((has & np.isnan(score)).sum())
    res.metrics_unmatched = len(cur.table) - int(scored["found"].sum())
    res.scored = int(finite.sum())

    order = pd.DataFrame({"i": np.arange(len(df)), "score": score, "uid": df["uid"], "clip": df["clip"]})[finite]
    order = order.sort_values(["score", "uid", "clip"], ascending=[False, True, True], kind="stable")
    k = math.ceil(cfg.fraction * res.scored)
    if ref is not None:
        positive = order[order["score"] > 0]
        res.not_touched["not reducible (score <= 0)"] = len(order) - len(positive)
        order = positive
    hard = order["i"].to_numpy()[:k]
    k_r = min(math.ceil(cfg.rerender_fraction * res.scored), len(hard))
    res.hard = len(hard)

    w_before = df["weight"].to_numpy(dtype="float64")
    df["weight"] = df["weight"].astype("float64")
    boosted = np.maximum(np.minimum(w_before[hard] * cfg.boost, cfg.max_weight), w_before[hard])  # a cap never lowers
    res.capped = int((boosted < w_before[hard] * cfg.boost).sum())
    df.loc[df.index[hard], "weight"] = boosted
    df.loc[df.index[hard], "mine_reason"] = f"upweight:{cfg.reason}"
    known = [int(manifest["shard"].max()) if len(manifest) else -1, int(cur.table["max_shard"].max())]
    known += [int(ref.table["max_shard"].max())] if ref is not None else []
    known += [max(renders.existing)] if renders is not None and renders.existing else []
    _rerender(df, hard[:k_r], cfg, renders, max(known) + 1, int(manifest["round"].max()) + 1, res)
    res.changes.update(df.loc[df.index[hard], "mine_reason"].tolist())

    mask = np.zeros(len(df), bool)
    mask[hard] = True
    res.weights_before, res.weights_after = _summary(w_before), _summary(df["weight"].to_numpy())
    res.hard_share_before = float(w_before[mask].sum() / w_before.sum()) if w_before.sum() > 0 else 0.0
    w_after = df["weight"].to_numpy(dtype="float64")
    res.hard_share_after = float(w_after[mask].sum() / w_after.sum()) if w_after.sum() > 0 else 0.0
    if cfg.pool:
        cut = order["score"].to_numpy()
        threshold = float(cut[len(hard)]) if len(cut) > len(hard) else None
        first = max([max(known)] + res.new_shards) + 1
        df = _add_pool(df, hard, score[hard], threshold, cfg, first, int(manifest["round"].max()) + 1, res, tgt)
    if tgt is not None:
        if cfg.target.weights:
            from manifests.acquire import reweight

            df = reweight(tgt, df, cfg.pool_probe)
            res.weights_after = _summary(df["weight"].to_numpy())
        res.target = tgt.report
    res.rows_out = len(df)
    settings = {**asdict(cfg), "protocol": cur.protocol, "step": cur.step,
                "reference_step": res.reference_step, "scored": res.scored, "hard": res.hard,
                "dropped": dict(sorted(res.dropped.items())), "new_shards": res.new_shards,
                "pool_picks": len(res.pool_picks), "target_report": res.target or None}
    write_manifest(df, cfg.out, command=command, settings=settings)
    return res


def _random_keys(df: pd.DataFrame, seed: int) -> np.ndarray:
    """A uniform key in [0, 1) per row from sha256(seed, uid, clip): the same draw whatever the row order."""
    return np.array([int.from_bytes(hashlib.sha256(f"{seed}:{u}:{int(c)}".encode()).digest()[:8], "big") / 2.0**64
                     for u, c in zip(df["uid"], df["clip"])], dtype="float64")


def _add_pool(df: pd.DataFrame, hard: np.ndarray, scores: np.ndarray, threshold: float | None, cfg: MineConfig,
              first_shard: int, next_round: int, res: MineResult, tgt=None) -> pd.DataFrame:
    """Append the pool rows chosen under the render budget (manifests/pool.py) as new rows to render."""
    from manifests import pool as pool_mod

    pool = read_manifest(cfg.pool)
    cand, res.pool_in_manifest = pool_mod.prepare_pool(pool, df, cfg.pool_probe)
    res.pool_rows = len(cand)
    hard_rows = df.iloc[hard]
    if cfg.pool_probe and cfg.pool_strategy == "similar":
        hard_rows = pool_mod.probe_gltf(hard_rows)
    res.pool_features = pool_mod.describe_features([hard_rows, cand, df])
    if cfg.pool_strategy == "random":
        picks = pool_mod.select_random(cand, cfg.render_budget, cfg.pool_seed)
    elif cfg.pool_strategy == "target":
        from manifests.acquire import select

        picks = select(tgt, cand, df, cfg.render_budget, cfg.pool_probe)
    else:
        if not len(hard_rows):
            raise MiningError(f"--pool-strategy similar: no hard example to resemble ({res.scored} row(s) scored); "
                              f"use --pool-strategy random")
        picks = pool_mod.select_similar(hard_rows, pool_mod.hardness_weights(scores, threshold), cand,
                                        cfg.render_budget, cfg.reason, scores, df)
    if not picks:
        return df
    by_key = {(p.uid, p.clip): p for p in picks}
    chosen = cand[[(u, int(c)) in by_key for u, c in zip(cand["uid"], cand["clip"])]]
    chosen = assign_shards(chosen, cfg.shard_size, first_shard=first_shard)
    chosen["round"] = next_round
    chosen["mine_reason"] = f"pool:{cfg.pool_strategy}"
    chosen["pool_reason"] = [by_key[(u, int(c))].reason for u, c in zip(chosen["uid"], chosen["clip"])]
    chosen["render_settings"] = None
    chosen["parent_shard"] = pd.Series([pd.NA] * len(chosen), dtype="Int32", index=chosen.index)
    order = {(p.uid, p.clip): k for k, p in enumerate(picks)}
    res.pool_picks = sorted(({"uid": str(u), "clip": int(c), "shard": int(n), "gain": by_key[(u, int(c))].gain,
                              "reason": by_key[(u, int(c))].reason}
                             for u, c, n in zip(chosen["uid"], chosen["clip"], chosen["shard"])),
                            key=lambda r: order[(r["uid"], r["clip"])])
    res.changes[f"pool:{cfg.pool_strategy}"] += len(chosen)
    if "pool_reason" not in df.columns:
        df = df.assign(pool_reason=pd.Series([None] * len(df), dtype=object))
    for c in chosen.columns:  # the manifest's column types win (e.g. nullable ints stay nullable ints)
        if c in df.columns and chosen[c].dtype != df[c].dtype:
            try:
                chosen[c] = chosen[c].astype(df[c].dtype)
            except (TypeError, ValueError):
                pass
    out = pd.concat([df, chosen], ignore_index=True)
    for c in out.columns:  # a column only one side has: missing values as None, which Arrow understands
        if c not in df.columns or out[c].dtype == object:
            out[c] = out[c].astype(object).map(lambda v: None if v is pd.NA or (isinstance(v, float) and math.isnan(v))
                                               else v)
    return out


def _apply_renders(df: pd.DataFrame, renders: Renders, res: MineResult) -> pd.DataFrame:
    """Leave out rows whose own shard rendered them failed/rejected; send failed re-renders back to their parent."""
    st = renders.status
    key = df[["uid", "clip"]].astype({"clip": "int64"})
    own = key.assign(shard=df["shard"].astype("int64")).merge(st, on=["uid", "clip", "shard"], how="left")
    committed = df["shard"].astype("int64").isin(renders.committed).to_numpy()
    status = own["status"].to_numpy(dtype=object)
    bad = committed & np.isin(status, ["failed", "rejected"])
    missing = committed & pd.isna(own["status"]).to_numpy()
    if missing.any():
        log.warning("%d manifest row(s) are missing from their committed shard's parquet (e.g. %s clip %d)",
                    int(missing.sum()), df["uid"][missing].iloc[0], int(df["clip"][missing].iloc[0]))
    parent = df["parent_shard"].astype("Int64")
    back = key.assign(shard=parent.fillna(-1).astype("int64")).merge(st, on=["uid", "clip", "shard"], how="left")
    revert = bad & parent.notna().to_numpy() & (back["status"].to_numpy(dtype=object) == "ok")
    if revert.any():
        idx = df.index[revert]
        df.loc[idx, "shard"] = parent[revert].astype("int64").to_numpy()
        df.loc[idx, "parent_shard"] = pd.NA
        df.loc[idx, "render_settings"] = None
        df.loc[idx, "mine_reason"] = "rerender_failed:back_to_parent"
        res.reverted = int(revert.sum())
        res.changes["rerender_failed:back_to_parent"] = res.reverted
    drop = bad & ~revert
    res.dropped.update(f"{s}:{r}" for s, r in zip(status[drop], own["reason"].to_numpy(dtype=object)[drop]))
    return df.loc[~drop].reset_index(drop=True)


def _rerender(df: pd.DataFrame, rows: np.ndarray, cfg: MineConfig, renders: Renders | None, first_shard: int,
              next_round: int, res: MineResult) -> None:
    """Turn the rows at positions `rows` into re-render requests in place (shards from `first_shard`)."""
    shard = df["shard"].to_numpy(dtype="int64")
    old = df["render_settings"].to_numpy(dtype=object)
    spec_key = {n: json.dumps(s, sort_keys=True) for n, s in (renders.specs.items() if renders else ())}
    cache: dict[tuple, str | None] = {}  # (recorded spec, row overrides) -> settings: rows share a few of them
    settings: dict[int, str] = {}
    for i in (int(i) for i in rows):
        if renders is not None and shard[i] not in renders.committed:
            res.not_touched["re-render already pending (up-weighted only)"] += 1  # its metrics come from an older render
            continue
        key = (spec_key.get(shard[i]), old[i] if isinstance(old[i], str) else None)
        if key not in cache:
            row = {"uid": df.at[i, "uid"], "clip": int(df.at[i, "clip"]), "shard": int(shard[i]), "render_settings": key[1]}
            cache[key] = rerender_settings(row, renders, cfg.preset, cfg.densify)
        if cache[key] is None:
            res.not_touched["re-render at its caps (up-weighted only)"] += 1
        else:
            settings[i] = cache[key]
    if not settings:
        return
    idx = np.array(sorted(settings))
    req = assign_shards(df.loc[idx, ["uid", "clip"]].assign(_i=idx), cfg.shard_size, first_shard=first_shard)
    at = req["_i"].to_numpy()
    df.loc[at, "parent_shard"] = shard[at]
    df.loc[at, "shard"] = req["shard"].to_numpy()
    df.loc[at, "round"] = next_round
    df.loc[at, "render_settings"] = [settings[i] for i in at]
    df.loc[at, "mine_reason"] = f"rerender:{cfg.reason}"
    res.rerenders = [{"uid": str(u), "clip": int(c), "parent_shard": int(shard[i]), "shard": int(n), "render_settings": settings[i]}
                     for u, c, i, n in zip(req["uid"], req["clip"], at, req["shard"])]


def _summary(w: np.ndarray) -> dict[str, float]:
    w = np.asarray(w, dtype="float64")
    if not len(w):
        return {"min": 0.0, "mean": 0.0, "max": 0.0, "sum": 0.0}
    return {"min": float(w.min()), "mean": float(w.mean()), "max": float(w.max()), "sum": float(w.sum())}
