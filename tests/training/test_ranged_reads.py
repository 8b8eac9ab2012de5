"""Member index + ranged reads (DESIGN.md §4): the loader fetches only the members it uses, from local
files (seek) and over HTTP (Range requests against a real loopback server), with the same samples and
batches as whole-shard streaming; bad indexes and corrupt objects are counted and skipped."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from contracts import layout, reads, storage
from training.data import stream as data
from training.data import shardspec
from training.data import shardstream
from training.data import synthetic
from training.config import DataConfig
from training.data.decode import MemberRef, member_bytes

from tests.httpserver import serve_directory


def add_member_index(d: Path) -> None:
    """Write shard-N.members.parquet for every tar in `d`, from its headers (shards made before the index)."""
    for tar in sorted(d.glob("shard-*.tar")):
        n = shardspec.shard_number(str(tar))
        layout.write_member_index(layout.tar_member_offsets(tar), d / layout.members_name(n))


@pytest.fixture(scope="module")
def indexed(tmp_path_factory) -> Path:
    """Two committed shards of three samples (6 views x 4 times, 32 px, with depth), with member indexes."""
    d = tmp_path_factory.mktemp("indexed")
    synthetic.write_dataset(d, 6, 3, seed=4, static_every=4, views=6, frames=4, size=32)
    add_member_index(d)
    return d


def _cfg(**kw) -> DataConfig:
    base = dict(image_size=32, n_in=2, n_target=3, num_workers=0, batches_per_epoch=2, shuffle_buffer=2, load_depth=True)
    return DataConfig(**{**base, **kw})


def _all_batches(urls, cfg, **kw) -> tuple[list[dict], data.SkipAndCount]:
    handler = data.SkipAndCount()
    ds = data.make_dataset(urls, cfg, batch_size=2, resampled=False, handler=handler, **kw)
    return list(ds), handler


def _assert_same(a: list[dict], b: list[dict]) -> None:
    assert [x["key"] for x in a] == [x["key"] for x in b]
    for x, y in zip(a, b):
        for k in ("in_rgb", "tg_rgb", "tg_alpha", "tg_depth", "in_cond", "tg_c2w"):
            torch.testing.assert_close(x[k], y[k], rtol=0, atol=0)


def test_indexed_samples_equal_streamed_samples(indexed):
    h = data.SkipAndCount()
    for url in shardspec.resolve_shards(str(indexed)):
        index = shardstream.load_member_index(url)
        assert index is not None
        a = list(shardstream.indexed_samples(url, index, h))
        b = list(shardstream.streamed_samples(url, h))
        assert [s["__key__"] for s in a] == [s["__key__"] for s in b] and len(a) == 3
        for x, y in zip(a, b):
            assert set(x) == set(y)
            assert isinstance(x["json"], bytes) and isinstance(x["t000.v000.png"], MemberRef)
            for k in y:
                if not k.startswith("__"):
                    assert member_bytes(x[k]) == y[k], (x["__key__"], k)
    assert not h.counts


def test_the_loader_reads_only_the_members_it_uses_and_builds_the_same_batches(indexed):
    urls = shardspec.resolve_shards(str(indexed))
    before = reads.io_counts.copy()
    ranged, h1 = _all_batches(urls, _cfg())
    mid = reads.io_counts.copy()
    streamed, h2 = _all_batches(urls, _cfg(ranged_reads=False))
    after = reads.io_counts.copy()
    assert not h1.counts and not h2.counts
    _assert_same(ranged, streamed)
    ranged_bytes = (mid["range"] - before["range"]) + (mid["whole"] - before["whole"])
    streamed_bytes = after["stream"] - mid["stream"]
    assert mid["stream"] == before["stream"]  # the indexed shards were never streamed
    assert streamed_bytes == sum(p.stat().st_size for p in indexed.glob("shard-*.tar"))
    # 6 samples x (json + 5 images + 3 depths) out of 6 x 49 members: a fraction of the bytes, index included
    assert ranged_bytes * 3 < streamed_bytes, (ranged_bytes, streamed_bytes)
    assert mid["range_requests"] - before["range_requests"] == 6 * (1 + 2 + 3 + 3)


def test_workers_split_indexed_shards_and_see_every_sample_once(indexed):
    urls = shardspec.resolve_shards(str(indexed))
    cfg = _cfg(num_workers=2)
    ds = data.make_dataset(urls, cfg, batch_size=1, resampled=False)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    keys = [k for b in loader for k in b["key"]]
    assert sorted(keys) == sorted(set(keys)) and len(keys) == 6


def test_ranged_reads_over_http_use_range_requests(indexed):
    servers: list = []
    with serve_directory(indexed, ranges=True, server_out=servers) as base:
        urls = shardspec.resolve_shards(f"{base}/shard-{{000000..000001}}.tar")
        over_http, h = _all_batches(urls, _cfg())
    assert not h.counts
    assert servers[0].range_requests == 6 * (1 + 2 + 3 + 3)
    local, _ = _all_batches(shardspec.resolve_shards(str(indexed)), _cfg())
    _assert_same(over_http, local)


def test_a_server_that_ignores_range_requests_gets_the_shard_streamed(indexed, caplog):
    shardstream._index_cache.clear()
    with serve_directory(indexed, ranges=False) as base:
        batches, h = _all_batches([f"{base}/shard-000000.tar"], _cfg())
        local, _ = _all_batches([str(indexed / "shard-000000.tar")], _cfg())
    assert not h.counts and "ignored the Range request" in caplog.text
    _assert_same(batches, local)


def test_an_unreadable_member_index_is_counted_and_the_shard_streamed(indexed, tmp_path):
    for p in indexed.iterdir():
        shutil.copy(p, tmp_path / p.name)
    (tmp_path / layout.members_name(0)).write_bytes(b"not parquet")
    shardstream._index_cache.clear()
    batches, h = _all_batches(shardspec.resolve_shards(str(tmp_path)), _cfg())
    assert h.counts == {"member_index": 1}
    assert sum(len(b["key"]) for b in batches) == 6  # shard 0 streamed instead, nothing lost


def test_a_corrupted_tar_behind_a_good_index_skips_only_the_broken_samples(indexed, tmp_path):
    for p in indexed.iterdir():
        shutil.copy(p, tmp_path / p.name)
    index = layout.tar_member_offsets(tmp_path / layout.tar_name(1))
    name, off, size = next(r for r in index if r[0].endswith(".json"))  # the first sample's JSON
    with open(tmp_path / layout.tar_name(1), "r+b") as f:
        f.seek(off)
        f.write(b"\xff" * size)
    shardstream._index_cache.clear()
    batches, h = _all_batches(shardspec.resolve_shards(str(tmp_path)), _cfg())
    assert h.counts == {"bad_json": 1}
    keys = [k for b in batches for k in b["key"]]
    assert len(keys) == 5 and name.split(".")[0] not in keys


def test_an_index_that_does_not_match_its_tar_is_not_trusted(indexed, tmp_path):
    for p in indexed.iterdir():
        shutil.copy(p, tmp_path / p.name)
    with open(tmp_path / layout.tar_name(1), "ab") as f:  # the tar no longer ends where its index says
        f.write(bytes(20480))
    shardstream._index_cache.clear()
    batches, h = _all_batches(shardspec.resolve_shards(str(tmp_path)), _cfg())
    assert h.counts == {"member_index": 1}
    assert sum(len(b["key"]) for b in batches) == 6  # shard 1 streamed instead (its tar is still readable)
    for tar in sorted(indexed.glob("shard-*.tar")):  # real tars fit their indexes
        assert shardstream.index_fits(layout.tar_member_offsets(tar), tar.stat().st_size)
