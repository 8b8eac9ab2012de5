"""Manifest sampling weights (DESIGN.md §3 `weight`) and the loader stage that applies them."""

from __future__ import annotations

import logging
import os
from typing import Iterable, Iterator, Mapping

from training.rng import stream_rng
from training.data.shardspec import shard_number

log = logging.getLogger(__name__)


class Weights(dict):
    """Sample key -> draw weight, from a manifest's `weight` column (DESIGN.md §3), plus each key's
    shard in that manifest (`home`). A clip re-rendered by `pipeline mine` has its row moved to the new
    shard while its old render stays in the old one under the same key: the copy in `home` is the
    clip's render, and a copy in any other shard only stands in while `home` is not among the shards
    read (WeightedRepeat)."""

    def __init__(self, weights: Mapping[str, float], home: Mapping[str, int] | None = None):
        super().__init__(weights)
        self.home: dict[str, int] = dict(home or {})


def load_weights(path: str | os.PathLike) -> Weights:
    """The sampling weights of a manifest with the `weight` column (DESIGN.md §3)."""
    from manifests.schema import read_manifest
    from contracts.uids import sample_key

    df = read_manifest(path)
    keys = [sample_key(u, int(c)) for u, c in zip(df["uid"], df["clip"])]
    return Weights(dict(zip(keys, df["weight"].astype(float))), dict(zip(keys, df["shard"].astype(int))))


class WeightedRepeat:
    """Emit each sample a random number of times with mean weight/mean_weight, so that (with shards
    drawn uniformly and samples spread evenly) a sample's draw frequency is proportional to its weight.
    Keys absent from the weights get `default`.

    Superseded renders: when the weights know a key's home shard (Weights.home) and that shard is among
    `shards` (the shard numbers this run reads), a copy of the key from any other shard (the render a
    re-render replaced) is not emitted, so a re-rendered clip is drawn as often as its weight says,
    not twice. While the home shard is not read (a re-render not committed yet), the old copy stands in."""

    def __init__(self, weights: Mapping[str, float], *, seed: int, rank: int, epoch: int, default: float = 1.0,
                 shards: Iterable[int] = ()):
        vals = [w for w in weights.values()]
        self.weights, self.default = weights, default
        self.mean = (sum(vals) / len(vals)) if vals else 1.0
        if self.mean <= 0:
            raise ValueError("--weights: all weights are zero")
        self.seed, self.rank, self.epoch = seed, rank, epoch
        read = set(shards)
        self.home = {k: n for k, n in getattr(weights, "home", {}).items() if n in read}
        self.unweighted = 0
        self.superseded = 0

    def __call__(self, src: Iterable[dict]) -> Iterator[dict]:
        rng = stream_rng(self.seed, self.rank, self.epoch, 2)
        for sample in src:
            key = sample["__key__"]
            home = self.home.get(key)
            if home is not None and shard_number(sample.get("__url__", "")) not in (home, None):
                self.superseded += 1
                if self.superseded == 1:
                    log.info("--weights: %s from %s is superseded by its render in shard %d; "
                             "copies outside a clip's manifest shard are not drawn", key, sample.get("__url__"), home)
                continue
            w = self.weights.get(key)
            if w is None:
                w = self.default
                self.unweighted += 1
                if self.unweighted == 1:
                    log.warning("--weights: key %s not in the weights manifest; using weight %s",
                                key, self.default)
            r = w / self.mean
            n = int(r) + (1 if rng.random() < r - int(r) else 0)
            for _ in range(n):
                yield sample
