"""Mining's inputs, read and checked: metrics files (DESIGN.md §5) and a renders folder (§4).

`read_metrics` checks a metrics file (columns, uids, one protocol and one checkpoint per file, one row
per sample and shard) and averages a sample's rows over the shards it was scored in; `check_comparable`
refuses two files (reducible mining) whose protocol tag or settings (the tag's `[...]` part and the
`protocol` settings in the metadata; the message names each setting that differs), background or,
ranked by loss, loss formula (`loss_weights` in the metadata written by training/eval/protocol.py) differ. `read_renders` reads a dataset
folder or object-store URL: per committed shard, each row's status and reason, and the recorded
RenderSpec. The strategies that use them are in manifests/mining.py.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

METRICS_COLUMNS = ("uid", "clip", "key", "shard", "psnr", "ssim", "lpips", "loss", "step", "protocol")  # DESIGN.md §5


class MiningError(ValueError):
    """Inputs that cannot be mined; the message names the file (or flag) and the problem."""


@dataclass
class Metrics:
    """One metrics file: per (uid, clip) the loss and psnr averaged over the shards it was scored in, and
    per (uid, clip, shard) as scored."""

    path: Path
    protocol: str
    step: int | None
    table: pd.DataFrame          # uid, clip, loss, psnr, n_shards, max_shard
    multi_shard: int             # samples scored in more than one shard
    by_shard: pd.DataFrame       # uid, clip, shard, loss, psnr
    loss_weights: dict | None = None  # the loss column's formula (metadata); None when the file does not say
    background: str | None = None     # what the targets were composited on (metadata); None when unknown
    settings: dict | None = None      # the protocol's settings (metadata `protocol`); None when unknown

    def join(self, rows: pd.DataFrame) -> pd.DataFrame:
        """loss, psnr and `found` for each of `rows` (uid, clip, shard), in order: the metrics of the row's
        own shard when it was scored there, else the mean over the shards the sample was scored in."""
        keys = rows[["uid", "clip", "shard"]].astype({"clip": "int64", "shard": "int64"}).reset_index(drop=True)
        own = keys.merge(self.by_shard, on=["uid", "clip", "shard"], how="left")
        mean = keys.merge(self.table, on=["uid", "clip"], how="left", indicator=True)
        here = own["loss"].notna() | own["psnr"].notna()
        out = pd.DataFrame({c: own[c].where(here, mean[c]) for c in ("loss", "psnr")})
        out["found"] = (mean["_merge"] == "both").to_numpy()
        out["own_shard"] = here.to_numpy()
        out["n_shards"] = mean["n_shards"].fillna(0).astype("int64").to_numpy()
        return out


def read_metrics(path: str | os.PathLike) -> Metrics:
    """Read and check a metrics file (DESIGN.md §5); average a sample's rows over its shards."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from contracts.uids import is_valid_uid

    path = Path(path)
    if not path.is_file():
        raise MiningError(f"{path}: no such metrics file")
    try:
        df = pq.read_table(path).to_pandas()
    except (pa.ArrowInvalid, OSError) as exc:
        raise MiningError(f"{path}: not a readable Parquet file ({exc})") from None
    missing = [c for c in METRICS_COLUMNS if c not in df.columns]
    if missing:
        raise MiningError(f"{path}: missing metrics column(s) {', '.join(missing)}; a metrics file has "
                          f"{', '.join(METRICS_COLUMNS)} (DESIGN.md §5)")
    if not len(df):
        raise MiningError(f"{path}: no rows")
    bad = df.loc[~df["uid"].map(is_valid_uid), "uid"]
    if len(bad):
        raise MiningError(f"{path}: invalid uid {bad.iloc[0]!r} ({len(bad)} row(s))")
    protocols = sorted({str(p) for p in df["protocol"].dropna()})
    if df["protocol"].isna().any() or len(protocols) != 1:
        raise MiningError(f"{path}: one evaluation protocol per file expected, found {protocols}"
                          f"{' and nulls' if df['protocol'].isna().any() else ''}")
    steps = sorted({int(s) for s in df["step"].dropna()})
    if len(steps) > 1:
        raise MiningError(f"{path}: metrics of several checkpoints (steps {steps}); mine one evaluation at a time")
    for col in ("clip", "shard"):
        if not pd.api.types.is_integer_dtype(df[col]):
            raise MiningError(f"{path}: column {col!r} must be integer, got {df[col].dtype}")
    for col in ("loss", "psnr"):
        if not pd.api.types.is_numeric_dtype(df[col]):
            raise MiningError(f"{path}: column {col!r} must be numeric, got {df[col].dtype}")
    df = df.assign(clip=df["clip"].astype("int64"), shard=df["shard"].astype("int64"))
    dup = df.duplicated(["uid", "clip", "shard"], keep=False)
    if dup.any():
        first = df.loc[dup].iloc[0]
        same = (df["uid"] == first["uid"]) & (df["clip"] == first["clip"]) & (df["shard"] == first["shard"])
        raise MiningError(f"{path}: sample ({first['uid']!r}, {int(first['clip'])}) appears {int(same.sum())} times "
                          f"in shard {int(first['shard'])} ({int(dup.sum())} duplicated rows in all); "
                          f"one row per sample and shard expected")
    table = (df.groupby(["uid", "clip"], sort=True)
               .agg(loss=("loss", "mean"), psnr=("psnr", "mean"), n_shards=("shard", "size"), max_shard=("shard", "max"))
               .reset_index())
    info = _metrics_info(path)
    lw = info.get("loss_weights")
    return Metrics(path=path, protocol=protocols[0], step=steps[0] if steps else None,
                   table=table, multi_shard=int((table["n_shards"] > 1).sum()),
                   by_shard=df[["uid", "clip", "shard", "loss", "psnr"]].copy(),
                   loss_weights=dict(lw) if isinstance(lw, dict) else None,
                   background=str(info["background"]) if info.get("background") is not None else None,
                   settings=dict(info["protocol"]) if isinstance(info.get("protocol"), dict) else None)


def _metrics_info(path: Path) -> dict[str, Any]:
    """The evaluation settings `pipeline eval` stores in the file's metadata ({} when absent)."""
    import pyarrow.parquet as pq

    raw = (pq.read_schema(path).metadata or {}).get(b"objaverse4d.metrics")
    try:
        info = json.loads(raw) if raw else {}
    except ValueError:
        info = {}
    return info if isinstance(info, dict) else {}


def check_comparable(cur: Metrics, ref: Metrics, by: str) -> None:
    """Refuse two metrics files whose numbers are not on one scale: protocol tag, background, and (by
    loss) the loss formula must agree; a file that does not record a setting cannot be compared on it."""
    diff = setting_differences(cur, ref)
    if ref.protocol != cur.protocol or diff:
        raise MiningError(f"protocol mismatch: {cur.path} was evaluated with {cur.protocol!r}, {ref.path} with "
                          f"{ref.protocol!r}{': ' + '; '.join(diff) if diff else ''}; they scored different pairs or "
                          f"scored them differently: evaluate both checkpoints with the same protocol settings")
    if cur.background != ref.background:
        raise MiningError(f"background mismatch: {cur.path} composited its targets on {cur.background!r}, {ref.path} on "
                          f"{ref.background!r}; their PSNRs and losses are not comparable")
    if by == "loss":
        for m in (cur, ref):
            if m.loss_weights is None:
                raise MiningError(f"{m.path}: records no loss formula (metadata loss_weights; files written by "
                                  f"`pipeline eval` have it); --strategy reducible --by loss cannot subtract its "
                                  f"losses (use --by psnr, or re-evaluate)")
        if cur.loss_weights != ref.loss_weights:
            raise MiningError(f"loss formula mismatch: {cur.path} has loss weights {cur.loss_weights}, {ref.path} has "
                              f"{ref.loss_weights}; losses of different formulas are never subtracted")


TAG_PARTS = re.compile(r"^(?P<base>[^\[/]+)(?:\[(?P<settings>[^\]]*)\])?/(?P<rest>.+)$")
# metadata settings that are not a difference of protocol: None = "the checkpoint's own" size, which the
# tag resolves (a size difference shows in the tags)
IGNORED_SETTINGS = ("image_size",)


def _tag_settings(tag: str) -> tuple[str, dict[str, str]]:
    """('NAME-vN/FAMILY@SIZE', {setting: text}) of a protocol tag (DESIGN.md §5); the tag itself and {}
    when it has another form."""
    m = TAG_PARTS.match(tag)
    if not m:
        return tag, {}
    pairs = [kv.split("=", 1) for kv in (m["settings"] or "").split(",") if "=" in kv]
    return f"{m['base']}/{m['rest']}", {k: v for k, v in pairs}


def setting_differences(cur: Metrics, ref: Metrics) -> list[str]:
    """Each protocol setting on which two metrics files differ, named ('setting n_in: 8 in A, 4 in B'):
    from the tags' settings (a setting absent from a tag has its default), then from the settings stored
    in the files' metadata when both have them (files written before tags carried settings)."""
    out = []
    base_c, tag_c = _tag_settings(cur.protocol)
    base_r, tag_r = _tag_settings(ref.protocol)
    if base_c != base_r:
        out.append(f"protocol {base_c} in {cur.path.name}, {base_r} in {ref.path.name}")
    for k in sorted(set(tag_c) | set(tag_r)):
        if tag_c.get(k) != tag_r.get(k):
            out.append(f"setting {k}: {tag_c.get(k, 'default')} in {cur.path.name}, {tag_r.get(k, 'default')} in "
                       f"{ref.path.name}")
    if cur.settings is not None and ref.settings is not None:
        named = set(tag_c) | set(tag_r)
        for k in sorted((set(cur.settings) | set(ref.settings)) - named - set(IGNORED_SETTINGS)):
            if cur.settings.get(k) != ref.settings.get(k):
                out.append(f"setting {k}: {cur.settings.get(k)!r} in {cur.path.name}, {ref.settings.get(k)!r} in "
                           f"{ref.path.name}")
    return out


@dataclass
class Renders:
    """What a dataset folder says about the rows rendered into it."""

    status: pd.DataFrame                     # uid, clip, shard, status, reason (committed shards only)
    committed: set[int]
    existing: set[int]                       # every shard number with any file (leftovers included)
    specs: dict[int, dict[str, Any]]         # shard -> the RenderSpec recorded in its stats.json


def read_renders(directory: str | os.PathLike) -> Renders:
    from contracts import layout, storage
    from contracts.parquet_bytes import read_table_bytes

    try:  # a folder or an object-store URL (DESIGN.md §6)
        store = storage.open_store(directory)
        if not store.is_dir():
            raise MiningError(f"--renders {directory}: no such dataset folder")
        names = store.listdir()
    except storage.StorageError as exn:
        raise MiningError(f"--renders {exn}") from None
    d = store.url if store.remote else Path(directory)
    existing = layout.shards_with_files(names)
    committed = layout.committed_in(names)
    frames, specs = [], {}
    for n in committed:
        pq_path = store.child(layout.parquet_name(n))
        if layout.parquet_name(n) not in names:
            raise MiningError(f"{pq_path}: committed shard {n} has no parquet (DESIGN.md §4)")
        t = read_table_bytes(store.read_bytes(layout.parquet_name(n)), ["uid", "clip", "status", "reason"]).to_pandas()
        frames.append(t.assign(shard=n))
        try:
            spec = layout.read_stats(d, n).get("spec")
        except (OSError, ValueError):
            spec = None
        if isinstance(spec, dict):
            specs[n] = spec
    cols = ["uid", "clip", "status", "reason", "shard"]
    status = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({c: [] for c in cols})
    status = status.astype({"clip": "int64", "shard": "int64"})
    return Renders(status=status, committed=set(committed), existing=existing, specs=specs)
