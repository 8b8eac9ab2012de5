"""Shard assignment is deterministic and continues after a previous manifest."""

from __future__ import annotations

import pandas as pd
import pytest

from manifests import write_manifest
from manifests.shards import assign_shards, order_key, read_previous


def _rows(uids_clips):
    return pd.DataFrame({"uid": [u for u, _ in uids_clips], "clip": [c for _, c in uids_clips]})


def test_independent_of_input_order():
    pairs = [(f"asset{i}", c) for i in range(20) for c in range(i % 3 + 1)]
    a = assign_shards(_rows(pairs), shard_size=7)
    b = assign_shards(_rows(list(reversed(pairs))), shard_size=7)
    pd.testing.assert_frame_equal(a, b)
    assert a.shard.value_counts().sort_index().tolist() == [7] * (len(pairs) // 7) + ([len(pairs) % 7] if len(pairs) % 7 else [])
    assert str(a.shard.dtype) == "int32"


def test_order_is_hash_then_clip():
    a = assign_shards(_rows([("b", 1), ("a", 2), ("b", 0), ("a", 0)]), shard_size=64, first_shard=5)
    keys = list(zip(a.uid.map(order_key), a["clip"]))
    assert keys == sorted(keys) and set(a.shard) == {5}


def test_bad_sizes():
    with pytest.raises(ValueError, match="--shard-size"):
        assign_shards(_rows([("a", 0)]), shard_size=0)


def test_read_previous(tmp_path):
    df = pd.DataFrame({"uid": ["a", "a", "b"], "clip": [0, 1, 0], "clip_name": ["", "", ""], "source": ["local"] * 3,
                       "uri": ["/x"] * 3, "sha256": [None] * 3, "license": [None] * 3, "shard": [0, 4, 2],
                       "weight": [1.0] * 3, "round": [0, 0, 1]})
    write_manifest(df, tmp_path / "p.parquet")
    prev = read_previous(tmp_path / "p.parquet")
    assert prev.next_shard == 5 and prev.last_round == 1 and prev.keys == {("a", 0), ("a", 1), ("b", 0)}
