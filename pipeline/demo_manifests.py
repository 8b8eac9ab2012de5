"""The demo's manifests: several curated ones merged into one, with held-out procedural assets in shards of
their own (deterministic)."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def heldout_uids(uids: list[str], n: int) -> set[str]:
    """The `n` assets kept out of training: the first by sha256 of the uid (deterministic, no order bias)."""
    import hashlib

    return set(sorted(set(uids), key=lambda u: hashlib.sha256(u.encode()).hexdigest())[:n])


def merge_manifests(parts: list[Path], out: Path, shard_size: int, heldout: int = 0, train_out: Path | None = None,
                    heldout_out: Path | None = None) -> Path:
    """One manifest over several curated ones (deterministic). With `heldout`, that many procedural
    assets are held out: the training rows get shards 0.., the held-out rows the shards after them (so
    no shard mixes the two); `train_out` and `heldout_out` get the two parts, `out` the union."""
    import pandas as pd

    from manifests import read_manifest, write_manifest
    from manifests.shards import assign_shards

    frames = [read_manifest(p) for p in parts]
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    dup = df.duplicated(subset=["uid", "clip"], keep="first")
    if dup.any():
        log.warning("%d clip(s) of --assets share a uid with another source; keeping the first", int(dup.sum()))
        df = df[~dup]
    command = "pipeline demo (merged " + ", ".join(p.name for p in parts) + ")"
    held = heldout_uids(df.loc[df["source"] == "procedural", "uid"].tolist(), heldout)
    is_held = df["uid"].isin(held)
    train = assign_shards(df[~is_held], shard_size)
    parts_out = [train]
    settings = {"parts": [str(p) for p in parts], "shard_size": shard_size, "heldout_uids": sorted(held)}
    if held:
        first = int(train["shard"].max()) + 1 if len(train) else 0
        test = assign_shards(df[is_held], shard_size, first_shard=first)
        parts_out.append(test)
        if heldout_out is not None:
            write_manifest(test, heldout_out, command=command, settings=settings)
    if train_out is not None:
        write_manifest(train, train_out, command=command, settings=settings)
    return write_manifest(pd.concat(parts_out, ignore_index=True), out, command=command, settings=settings)
