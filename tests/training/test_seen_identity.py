"""`seen_in_training` (DESIGN.md §5): a run started with init_from inherits what that checkpoint trained
on, and shards match by content identity (stats.json's tar_bytes and tar_sha256, §4), so a local path and
a URL to the same shard match; shards written before the identity fall back to their location."""

from __future__ import annotations

import json
import shutil

import pytest

from contracts import identity
from contracts.layout import stats_name, tar_name
from tests.httpserver import serve_directory
from training import checkpoint as ckpt
from training.data import synthetic
from training.config import apply_overrides, tiny
from training.eval.protocol import seen_in_training
from training.train import train


@pytest.fixture(scope="module")
def base_and_finetune(tmp_path_factory):
    """Analytic shards 0..2; run A trained on shard 0, run B started from A (init_from) on shard 1."""
    root = tmp_path_factory.mktemp("seen")
    data = root / "data"
    synthetic.write_dataset(data, 6, 2, seed=4, views=4, frames=3, size=16)
    base = ["steps=1", "data.image_size=16", "ckpt_every=1", "log_every=1"]
    train(apply_overrides(tiny(), base), str(data / tar_name(0)), root / "a", device="cpu")
    train(apply_overrides(tiny(), base + [f"init_from={root / 'a'}"]), str(data / tar_name(1)), root / "b",
          device="cpu")
    record_b = ckpt.load_latest(root / "b")[1]["trained_on"]
    return data, record_b


def test_a_finetuned_checkpoint_still_counts_the_shards_of_the_checkpoint_it_started_from(base_and_finetune):
    data, rec = base_and_finetune
    assert rec["shards"] == sorted(ckpt.shard_id(str(data / tar_name(n))) for n in (0, 1))
    assert seen_in_training(str(data / tar_name(0)), rec) is True  # trained on by the init_from checkpoint
    assert seen_in_training(str(data / tar_name(1)), rec) is True
    assert seen_in_training(str(data / tar_name(2)), rec) is False
    for n in (0, 1):  # each shard's identity, as its stats.json records it
        st = json.loads((data / stats_name(n)).read_text())
        assert rec["content"][ckpt.shard_id(str(data / tar_name(n)))] == {"tar_bytes": st["tar_bytes"],
                                                                         "tar_sha256": st["tar_sha256"]}


def test_a_url_to_the_same_shard_is_the_same_shard(base_and_finetune):
    data, rec = base_and_finetune
    with serve_directory(data) as base:
        assert seen_in_training(f"{base}/{tar_name(0)}", rec) is True
        assert seen_in_training(f"{base}/{tar_name(1)}", rec) is True
        assert seen_in_training(f"{base}/{tar_name(2)}", rec) is False


def test_old_shards_fall_back_to_their_location_and_a_rewritten_shard_is_not_the_one_trained_on(base_and_finetune,
                                                                                                tmp_path):
    data, rec = base_and_finetune
    old = tmp_path / "old"
    shutil.copytree(data, old)
    for n in (0, 1, 2):  # stats.json as written before the identity existed
        st = json.loads((old / stats_name(n)).read_text())
        (old / stats_name(n)).write_text(json.dumps({k: v for k, v in st.items() if k not in ("tar_bytes", "tar_sha256")}))
    identity._cache.clear()
    legacy = {"shards": [ckpt.shard_id(str(old / tar_name(0)))], "manifests": []}  # a record without identities
    assert seen_in_training(str(old / tar_name(0)), legacy) is True
    assert seen_in_training(str(old / tar_name(1)), legacy) is False
    with serve_directory(old) as base:
        assert seen_in_training(f"{base}/{tar_name(0)}", legacy) is False  # no identity: nothing to match by
    # shard 0 rendered again in place (other content): the record's identity no longer matches
    fresh = tmp_path / "fresh"
    synthetic.write_dataset(fresh, 2, 2, seed=9, views=4, frames=3, size=16)
    rec0 = ckpt.trained_on(None, [str(fresh / tar_name(0))], None, {str(fresh / tar_name(0)): identity.shard_identity(
        str(fresh / tar_name(0)))})
    synthetic.write_dataset(fresh, 2, 2, seed=10, views=4, frames=3, size=16)
    identity._cache.clear()
    assert seen_in_training(str(fresh / tar_name(0)), rec0) is False
