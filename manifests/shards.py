"""Deterministic shard assignment.

Rows are ordered by `order_key(uid)` (the sha256 of the uid: a fixed pseudo-random order, so a shard
mixes assets from every folder and source order does not matter), then by clip, and cut into runs of
`shard_size` rows. The same rows always give the same shards, byte for byte.

A later round (`round` > 0, rows curated after a first manifest was rendered) numbers its shards
after the last shard of the previous manifest instead of starting at 0, so both rounds can be
rendered into one dataset folder without collisions.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd


def order_key(uid: str) -> str:
    """The sort key of an asset: hex sha256 of its uid."""
    return hashlib.sha256(uid.encode("utf-8")).hexdigest()


def assign_shards(rows: pd.DataFrame, shard_size: int, first_shard: int = 0) -> pd.DataFrame:
    """Sort `rows` (columns uid, clip) deterministically and set `shard` from `first_shard` on."""
    if shard_size < 1:
        raise ValueError(f"--shard-size must be >= 1, got {shard_size}")
    if first_shard < 0:
        raise ValueError(f"first shard must be >= 0, got {first_shard}")
    out = rows.copy()
    key = out["uid"].map(order_key)
    out = out.assign(_key=key).sort_values(["_key", "clip"], kind="stable").drop(columns="_key").reset_index(drop=True)
    out["shard"] = (first_shard + np.arange(len(out)) // shard_size).astype("int32")
    return out


@dataclass(frozen=True)
class Previous:
    """What a later round needs from the manifest before it."""

    next_shard: int                   # largest shard + 1: the new round's first shard
    last_round: int                   # largest `round` in it
    keys: frozenset[tuple[str, int]]  # (uid, clip) already curated: not curated again


def read_previous(path: str | os.PathLike) -> Previous:
    """Read the previous manifest (validated by manifests.schema.read_manifest)."""
    from manifests.schema import read_manifest

    prev = read_manifest(path)
    if not len(prev):
        return Previous(next_shard=0, last_round=-1, keys=frozenset())
    keys = frozenset(zip(prev["uid"].tolist(), prev["clip"].astype(int).tolist()))
    return Previous(next_shard=int(prev["shard"].max()) + 1, last_round=int(prev["round"].max()), keys=keys)
