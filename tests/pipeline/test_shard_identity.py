"""A committed shard's content identity (DESIGN.md §4): stats.json records `tar_bytes` and `tar_sha256`
of the tar as committed, from ShardWriter and from the retry writer (no Blender: hand-made samples)."""

from __future__ import annotations

import hashlib

from contracts.identity import shard_identity, stats_url
from contracts.layout import read_stats, tar_name
from pipeline.retry import RetryShardWriter
from pipeline.shards import ShardWriter
from tests.pipeline.test_shards import fake_result


def _sha(path) -> tuple[int, str]:
    data = open(path, "rb").read()
    return len(data), hashlib.sha256(data).hexdigest()


def test_stats_json_records_the_committed_tar_identity(tmp_path):
    w = ShardWriter(tmp_path, 2)
    w.add(fake_result("a"))
    w.add(fake_result("b", status="failed"))
    w.commit()
    st = read_stats(tmp_path, 2)
    assert (st["tar_bytes"], st["tar_sha256"]) == _sha(tmp_path / tar_name(2))
    assert shard_identity(str(tmp_path / tar_name(2))) == {"tar_bytes": st["tar_bytes"], "tar_sha256": st["tar_sha256"]}
    assert stats_url(str(tmp_path / tar_name(2))) == str(tmp_path / "shard-000002.stats.json")
    assert stats_url("/x/other.tar") is None


def test_a_retried_shard_records_its_new_identity(tmp_path):
    w = ShardWriter(tmp_path, 0)
    w.add(fake_result("a"))
    w.add(fake_result("b", status="failed"))
    w.commit()
    before = read_stats(tmp_path, 0)["tar_sha256"]
    r = RetryShardWriter(tmp_path, 0, {"b_000"})
    r.add(fake_result("b"))
    r.commit()
    st = read_stats(tmp_path, 0)
    assert (st["tar_bytes"], st["tar_sha256"]) == _sha(tmp_path / tar_name(0)) and st["tar_sha256"] != before
