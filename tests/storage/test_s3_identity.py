"""The content identity in stats.json (DESIGN.md §4) of a shard committed into a bucket (moto on
loopback): the same bytes as the uploaded tar, read back through the storage library."""

from __future__ import annotations

import hashlib
import json

from contracts import storage
from contracts.identity import shard_identity
from pipeline.shards import ShardWriter
from tests.pipeline.test_shards import fake_result


def test_a_shard_uploaded_to_a_bucket_records_the_tar_identity(bucket):
    url = f"s3://{bucket}/renders"
    w = ShardWriter(url, 1)
    w.add(fake_result("a"))
    w.add(fake_result("c"))
    w.commit()
    store = storage.open_store(url)
    tar = store.read_bytes("shard-000001.tar")
    st = json.loads(store.read_bytes("shard-000001.stats.json"))
    assert st["tar_bytes"] == len(tar) and st["tar_sha256"] == hashlib.sha256(tar).hexdigest()
    assert shard_identity(f"{url}/shard-000001.tar") == {"tar_bytes": len(tar), "tar_sha256": st["tar_sha256"]}
