"""Manifest contract (DESIGN.md §3): schema, validation, reading and writing.

A manifest is a Parquet file with one row per (asset, clip). `write_manifest` validates before it
writes (to a temporary name, then renames) and stores the producing command and settings in the
Parquet key-value metadata; `read_manifest` validates what it reads and names the file and the
problem when something is off.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from contracts.uids import UID_RE, is_valid_uid

SOURCES = ("objaverse", "objaverse-xl", "local", "procedural")

# Required columns and their Arrow types; `nullable` says whether nulls are allowed.
REQUIRED: dict[str, tuple[pa.DataType, bool]] = {
    "uid": (pa.string(), False),
    "clip": (pa.int32(), False),
    "clip_name": (pa.string(), True),
    "source": (pa.string(), False),
    "uri": (pa.string(), False),
    "sha256": (pa.string(), True),
    "license": (pa.string(), True),
    "shard": (pa.int32(), False),
    "weight": (pa.float32(), False),
    "round": (pa.int32(), False),
}

# Optional columns this project writes; typed when present, ignored by readers that don't know them.
OPTIONAL: dict[str, tuple[pa.DataType, bool]] = {
    "uid_origin": (pa.string(), True),        # how the uid was made (local files: the relative path it was hashed from)
    "clip_count": (pa.int32(), True),          # animations in the asset (0 for a static asset)
    "duration_s": (pa.float32(), True),        # clip span in seconds, when read from the file
    "static": (pa.bool_(), True),              # true for an asset without animation, rendered as one frame
    "face_count": (pa.int64(), True),
    "vertex_count": (pa.int64(), True),
    "file_identifier": (pa.string(), True),    # Objaverse-XL's own id (usually a URL)
    "file_type": (pa.string(), True),          # glb, gltf, fbx, obj, ...
    "name": (pa.string(), True),               # human-readable asset name where the source has one
    "render_settings": (pa.string(), True),    # JSON overrides for re-render requests (mining), else null
    "parent_shard": (pa.int32(), True),        # for re-render requests: the shard the sample came from
    "mine_reason": (pa.string(), True),        # why mining touched the row (up-weighted, re-render, ...)
    "category": (pa.string(), True),           # what kind of thing moves (biped, quadruped, vehicle, ...); procedural rows
}

SCHEMA_KEY = b"objaverse4d.manifest"


class ManifestError(ValueError):
    """A manifest that breaks the contract; the message names the file and the problem."""


@dataclass(frozen=True)
class ManifestInfo:
    """What a manifest file says about itself in its Parquet metadata."""

    command: str | None
    settings: dict[str, Any]


def _arrow_schema(columns: list[str]) -> pa.Schema:
    fields = []
    for name in columns:
        if name in REQUIRED:
            typ, nullable = REQUIRED[name]
        elif name in OPTIONAL:
            typ, nullable = OPTIONAL[name]
        else:
            continue
        fields.append(pa.field(name, typ, nullable=nullable))
    return pa.schema(fields)


def validate_manifest(df: pd.DataFrame, where: str = "manifest") -> pd.DataFrame:
    """Check the contract; return a copy with canonical dtypes. Raises ManifestError."""
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ManifestError(f"{where}: missing required column(s) {', '.join(missing)}; required: {', '.join(REQUIRED)}")
    out = df.copy()
    for name, (typ, nullable) in {**REQUIRED, **OPTIONAL}.items():
        if name not in out.columns:
            continue
        col = out[name]
        if not nullable and col.isna().any():
            bad = int(col.isna().sum())
            raise ManifestError(f"{where}: column {name!r} has {bad} null value(s); it may not be null")
        try:
            out[name] = _coerce(col, typ)
        except (TypeError, ValueError) as exc:
            raise ManifestError(f"{where}: column {name!r} has the wrong type ({col.dtype}); expected {typ}: {exc}") from None
    bad_uids = out.loc[~out["uid"].map(is_valid_uid), "uid"]
    if len(bad_uids):
        raise ManifestError(f"{where}: invalid uid {bad_uids.iloc[0]!r} ({len(bad_uids)} row(s)); uids must match {UID_RE.pattern}")
    if (out["clip"] < 0).any():
        raise ManifestError(f"{where}: column 'clip' has negative values")
    if (out["shard"] < 0).any():
        raise ManifestError(f"{where}: column 'shard' has negative values")
    bad_src = sorted(set(out["source"]) - set(SOURCES))
    if bad_src:
        raise ManifestError(f"{where}: unknown source(s) {bad_src}; expected one of {list(SOURCES)}")
    w = out["weight"].to_numpy()
    if not np.all(np.isfinite(w)) or (w < 0).any():
        raise ManifestError(f"{where}: column 'weight' must be finite and >= 0")
    dup = out.duplicated(subset=["uid", "clip"], keep=False)
    if dup.any():
        first = out.loc[dup, ["uid", "clip"]].iloc[0]
        raise ManifestError(f"{where}: duplicate (uid, clip) ({first['uid']!r}, {int(first['clip'])}); {int(dup.sum())} rows involved")
    return out.reset_index(drop=True)


def _coerce(col: pd.Series, typ: pa.DataType) -> pd.Series:
    if pa.types.is_string(typ):
        nonnull = col.dropna()
        if len(nonnull) and not nonnull.map(lambda v: isinstance(v, str)).all():
            raise TypeError("non-string values")
        return col.astype(object).where(col.notna(), None)
    if pa.types.is_boolean(typ):
        if not pd.api.types.is_bool_dtype(col):
            nonnull = col.dropna()
            if pd.api.types.is_numeric_dtype(col) or not nonnull.map(lambda v: isinstance(v, (bool, np.bool_))).all():
                raise TypeError("not boolean")
        return col.astype("boolean")
    if pa.types.is_integer(typ):
        if col.dtype == object or pd.api.types.is_float_dtype(col) or pd.api.types.is_bool_dtype(col):
            nonnull = col.dropna()
            if pd.api.types.is_bool_dtype(col) or not nonnull.map(lambda v: float(v).is_integer() and not isinstance(v, (str, bool))).all():
                raise TypeError("non-integer values")
        np_t = {8: "Int8", 16: "Int16", 32: "Int32", 64: "Int64"}[typ.bit_width]
        return col.astype(np_t)
    if pa.types.is_floating(typ):
        if not (pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)):
            raise TypeError("non-numeric values")
        return col.astype("float32" if typ.bit_width == 32 else "float64")
    return col


def _to_table(df: pd.DataFrame) -> pa.Table:
    known = [c for c in df.columns if c in REQUIRED or c in OPTIONAL]
    extra = [c for c in df.columns if c not in REQUIRED and c not in OPTIONAL]
    schema = _arrow_schema(known)
    table = pa.Table.from_pandas(df[known], schema=schema, preserve_index=False)
    for c in extra:  # unknown extra columns are kept with their inferred type; NaN/None/NA are nulls (a text
        # column with gaps is text with nulls under pandas 2 and 3 alike, never "double")
        table = table.append_column(c, pa.Array.from_pandas(df[c].reset_index(drop=True)))
    return table


def write_manifest(df: pd.DataFrame, path: str | os.PathLike, command: str | None = None,
                   settings: Mapping[str, Any] | None = None) -> Path:
    """Validate and write `df` to `path` atomically; record `command` and `settings` in metadata."""
    path = Path(path)
    df = validate_manifest(df, where=str(path))
    table = _to_table(df)
    meta = dict(table.schema.metadata or {})
    meta[SCHEMA_KEY] = json.dumps({
        "command": command if command is not None else " ".join(sys.argv),
        "settings": dict(settings or {}),
        "rows": len(df),
    }, default=str, sort_keys=True).encode()
    table = table.replace_schema_metadata(meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def read_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """Read and validate a manifest. Raises ManifestError naming the file and the problem."""
    path = Path(path)
    if not path.exists():
        raise ManifestError(f"{path}: no such manifest file")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ManifestError(f"{path}: not a readable Parquet file ({exc})") from None
    for name, (typ, _) in REQUIRED.items():
        if name in table.schema.names:
            actual = table.schema.field(name).type
            if not _compatible(actual, typ):
                raise ManifestError(f"{path}: column {name!r} has the wrong type {actual}; expected {typ}")
    df = table.to_pandas()
    return validate_manifest(df, where=str(path))


def _compatible(actual: pa.DataType, want: pa.DataType) -> bool:
    if pa.types.is_string(want):
        return pa.types.is_string(actual) or pa.types.is_large_string(actual) or pa.types.is_null(actual)
    if pa.types.is_integer(want):
        return pa.types.is_integer(actual)
    if pa.types.is_floating(want):
        return pa.types.is_floating(actual) or pa.types.is_integer(actual)
    if pa.types.is_boolean(want):
        return pa.types.is_boolean(actual)
    return True


def manifest_info(path: str | os.PathLike) -> ManifestInfo:
    """The command and settings stored in a manifest's metadata."""
    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(SCHEMA_KEY)
    if raw is None:
        return ManifestInfo(command=None, settings={})
    data = json.loads(raw)
    return ManifestInfo(command=data.get("command"), settings=data.get("settings", {}))


def empty_manifest() -> pd.DataFrame:
    """A manifest with the required columns and no rows."""
    return pd.DataFrame({name: pd.Series([], dtype=object) for name in REQUIRED})
