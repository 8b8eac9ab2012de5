"""The viewer's sample list: shard rows (status, reason), optionally joined with a `pipeline eval`
metrics file (DESIGN.md §5), filtered by status and reason and sorted worst first.

Sorting by a metric puts the worst sample first: lowest psnr_obj or psnr, or the smallest margin over a
baseline (psnr_obj minus the nearest-input or the mean-colour baseline's psnr_obj: a sample where the
model does no better than copying its nearest input frame is a sample it has not learned).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from contracts import layout

ALL = "all"
SHARD_ORDER = "shard order"
# label -> (metric column, baseline column subtracted or None)
SORTS: dict[str, tuple[str, str | None]] = {
    "psnr_obj (worst first)": ("psnr_obj", None),
    "psnr (worst first)": ("psnr", None),
    "psnr_obj - nearest input (worst first)": ("psnr_obj", "psnr_obj_nearest_input"),
    "psnr_obj - mean colour (worst first)": ("psnr_obj", "psnr_obj_mean_colour"),
}
METRIC_COLUMNS = ("psnr", "psnr_obj", "ssim", "lpips", "loss", "psnr_nearest_input", "psnr_obj_nearest_input",
                  "psnr_mean_colour", "psnr_obj_mean_colour")


class MetricsError(ValueError):
    """A --metrics file that cannot be used; the message names it."""


@dataclass
class Entry:
    shard: int
    key: str
    status: str | None = None
    reason: str | None = None
    detail: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    def value(self, sort: str) -> float:
        """The sort value (nan when this sample has no such metric)."""
        col, base = SORTS[sort]
        v = self.metrics.get(col, math.nan)
        return v - self.metrics.get(base, math.nan) if base else v

    def label(self, sort: str = SHARD_ORDER) -> str:
        parts = [self.key, f"shard {self.shard:06d}", self.status or "?"]
        if self.reason:
            parts.append(self.reason)
        if sort in SORTS:
            v = self.value(sort)
            parts.append(f"{SORTS[sort][0]}{' margin' if SORTS[sort][1] else ''} {v:+.2f}" if SORTS[sort][1]
                         else f"{SORTS[sort][0]} {v:.2f}")
        return " · ".join(parts)


def entries_from_rows(rows: list[dict]) -> list[Entry]:
    """Shard parquet rows -> entries; rows whose key breaks the key rule are left out (never used)."""
    return [Entry(int(r["shard"]), r["key"], r.get("status"), r.get("reason"), r.get("detail"))
            for r in rows if isinstance(r.get("key"), str) and layout.KEY_RE.match(r["key"])]


def load_metrics(path: str | os.PathLike) -> dict[tuple[int, str], dict[str, float]]:
    """(shard, key) -> {metric: value} from a `pipeline eval` metrics.parquet."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        raise MetricsError(f"--metrics {path}: no such file") from None
    except Exception as exn:  # noqa: BLE001 (pyarrow raises several kinds for a bad file)
        raise MetricsError(f"--metrics {path}: not a Parquet file ({type(exn).__name__}: {exn})"[:400]) from None
    need = ("key", "shard", "psnr_obj")
    missing = [c for c in need if c not in table.column_names]
    if missing:
        raise MetricsError(f"--metrics {path}: missing column(s) {', '.join(missing)} (a `pipeline eval` "
                           f"metrics file has key, shard, psnr, psnr_obj, ...)")
    cols = {c: table.column(c).to_pylist() for c in ("key", "shard", *METRIC_COLUMNS) if c in table.column_names}
    out: dict[tuple[int, str], dict[str, float]] = {}
    for i in range(table.num_rows):
        key, shard = cols["key"][i], cols["shard"][i]
        if not isinstance(key, str) or not layout.KEY_RE.match(key) or shard is None:
            continue
        out[(int(shard), key)] = {c: float(cols[c][i]) for c in METRIC_COLUMNS
                                  if c in cols and isinstance(cols[c][i], (int, float))}
    if not out:
        raise MetricsError(f"--metrics {path}: no usable rows")
    return out


def entries_from_metrics(metrics: dict[tuple[int, str], dict[str, float]]) -> list[Entry]:
    """One entry per scored sample (scored samples were rendered: status ok)."""
    return [Entry(shard, key, layout.STATUS_OK, None, None, dict(m)) for (shard, key), m in metrics.items()]


def join(entries: list[Entry], metrics: dict[tuple[int, str], dict[str, float]] | None) -> list[Entry]:
    if metrics:
        for e in entries:
            e.metrics = dict(metrics.get((e.shard, e.key), e.metrics))
    return entries


def reasons(entries: list[Entry], status: str = ALL) -> list[str]:
    return sorted({e.reason for e in entries if e.reason and (status == ALL or e.status == status)})


def select(entries: list[Entry], status: str = ALL, reason: str = ALL, sort: str = SHARD_ORDER) -> list[Entry]:
    """Entries with that status and reason, in shard order or worst first by `sort` (unscored last)."""
    out = [e for e in entries if (status == ALL or e.status == status) and (reason == ALL or e.reason == reason)]
    if sort in SORTS:
        def key(e: Entry) -> tuple[bool, float]:
            v = e.value(sort)
            return (math.isnan(v), v if not math.isnan(v) else 0.0)

        return sorted(out, key=key)
    return sorted(out, key=lambda e: (e.shard, e.key))


def summary(entries: list[Entry]) -> dict[str, Any]:
    """Counts per status and per (status, reason), for the dataset panel."""
    by_status: dict[str, int] = {}
    by_reason: dict[str, int] = {}
    for e in entries:
        by_status[e.status or "?"] = by_status.get(e.status or "?", 0) + 1
        if e.reason:
            k = f"{e.status}: {e.reason}"
            by_reason[k] = by_reason.get(k, 0) + 1
    return {"status": by_status, "reasons": by_reason}
