"""`pipeline render --out s3://...` and every command that reads a dataset, on a real S3-compatible
server on loopback (moto), with real Blender renders."""

from __future__ import annotations

import io
import json
import re
import tarfile

import pyarrow.parquet as pq
import pytest

from contracts import layout

from .conftest import TINY_FLAGS, run_cli


def _split(url: str) -> tuple[str, str]:
    bucket, _, prefix = url[len("s3://"):].partition("/")
    return bucket, prefix


def _get(server, url: str, name: str) -> bytes:
    bucket, prefix = _split(url)
    return server.client().get_object(Bucket=bucket, Key=f"{prefix}/{name}")["Body"].read()


def _shards(manifest) -> list[int]:
    import pandas as pd

    return sorted(set(int(x) for x in pd.read_parquet(manifest)["shard"]))


def test_render_commits_every_shard_with_its_member_index_into_the_bucket(s3_server, s3_dataset, s3_manifest):
    shards = _shards(s3_manifest)
    assert len(shards) >= 2
    bucket, prefix = _split(s3_dataset)
    keys = s3_server.keys(bucket, prefix + "/")
    names = {k.rsplit("/", 1)[-1] for k in keys}
    assert all(k.startswith(prefix + "/") for k in keys)  # nothing outside the prefix
    for n in shards:
        for name in (layout.tar_name(n), layout.parquet_name(n), layout.members_name(n), layout.stats_name(n)):
            assert name in names, name
    assert not [n for n in names if ".tmp" in n]  # files are uploaded whole under their final names
    index = json.loads(_get(s3_server, s3_dataset, layout.INDEX_NAME))
    assert [s["shard"] for s in index["shards"]] == shards
    assert [s["tar"] for s in index["shards"]] == [layout.tar_name(n) for n in shards]


def test_member_index_matches_an_independent_tar_reader(s3_server, s3_dataset):
    """Python's tarfile parses the uploaded tar; every row of members.parquet must give its member exactly."""
    tar = _get(s3_server, s3_dataset, layout.tar_name(0))
    rows = pq.read_table(io.BytesIO(_get(s3_server, s3_dataset, layout.members_name(0)))).to_pylist()
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        members = [m for m in tf.getmembers() if m.isfile()]
        truth = {m.name: tf.extractfile(m).read() for m in members}
    assert [r["name"] for r in rows] == [m.name for m in members]  # every member, in tar order
    assert [(r["offset"], r["size"]) for r in rows] == [(m.offset_data, m.size) for m in members]
    for r in rows:
        assert tar[r["offset"]: r["offset"] + r["size"]] == truth[r["name"]]
    assert any(r["name"].endswith(".depth.png") for r in rows) and any(r["name"].endswith(".json") for r in rows)


def test_status_and_preview_read_the_bucket(s3_server, s3_dataset, s3_manifest, tmp_path):
    env = s3_server.env()
    r = run_cli("status", s3_dataset + "/", "--json", "--manifest", str(s3_manifest), env=env)
    rep = json.loads(r.stdout)
    assert rep["committed"] == _shards(s3_manifest) and rep["partial"] == [] and rep["missing"] == []
    assert rep["no_member_index"] == []  # every shard rendered now has its member index
    assert rep["samples"]["failed"] == 1 and rep["samples"]["ok"] >= 3
    assert rep["reasons"]["failed"] == {"missing_file": 1}
    out = tmp_path / "prev"
    r = run_cli("preview", s3_dataset, "--shard", "0", "--out", str(out), "--limit", "1", env=env)
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 1 and pngs[0].stat().st_size > 0 and sorted(out.glob("*.gif"))


def test_render_again_skips_committed_shards_and_force_redoes_one(s3_server, s3_manifest, tmp_path):
    env = s3_server.env()
    url = f"s3://{s3_server.new_bucket()}/ds"
    run_cli("render", "--manifest", str(s3_manifest), "--shard", "1", "--out", url, *TINY_FLAGS, env=env)
    first = _get(s3_server, url, layout.tar_name(1))
    r = run_cli("render", "--manifest", str(s3_manifest), "--shard", "1", "--out", url, *TINY_FLAGS, env=env)
    assert "already committed 1" in r.stdout
    stats0 = json.loads(_get(s3_server, url, layout.stats_name(1)))
    r = run_cli("render", "--manifest", str(s3_manifest), "--shard", "1", "--out", url, "--force", *TINY_FLAGS, env=env)
    assert "rendered 1" in r.stdout
    assert _get(s3_server, url, layout.tar_name(1)) == first  # deterministic tar, re-uploaded whole
    assert json.loads(_get(s3_server, url, layout.stats_name(1)))["committed_at"] >= stats0["committed_at"]


def test_retry_failed_rebuilds_a_committed_shard_in_the_bucket(s3_server, s3_dataset, s3_manifest):
    env = s3_server.env()
    url = f"s3://{s3_server.new_bucket()}/retry"
    run_cli("render", "--manifest", str(s3_manifest), "--shard", "0", "--out", url, *TINY_FLAGS, env=env)
    before = pq.read_table(io.BytesIO(_get(s3_server, url, layout.parquet_name(0)))).to_pylist()
    r = run_cli("render", "--manifest", str(s3_manifest), "--shard", "0", "--out", url, "--retry-failed", *TINY_FLAGS,
                env=env)
    assert "retried 1" in r.stdout
    after = pq.read_table(io.BytesIO(_get(s3_server, url, layout.parquet_name(0)))).to_pylist()
    assert sorted(x["key"] for x in after) == sorted(x["key"] for x in before)  # once each, no gaps
    stats = json.loads(_get(s3_server, url, layout.stats_name(0)))
    assert stats["retried"] == ["missingasset_000"]
    with tarfile.open(fileobj=io.BytesIO(_get(s3_server, url, layout.tar_name(0)))) as tf:
        names = tf.getnames()
    ok = {x["key"] for x in before if x["status"] == "ok"}
    assert {n.split(".", 1)[0] for n in names} == ok  # the good samples were copied over
    rows = pq.read_table(io.BytesIO(_get(s3_server, url, layout.members_name(0)))).column("name").to_pylist()
    assert rows == names  # the rebuilt shard has a fresh member index


@pytest.mark.ray
def test_render_on_ray_uploads_from_the_driver(s3_server, s3_manifest):
    """The default scheduler (a local Ray instance, one actor) commits into the bucket the same way."""
    url = f"s3://{s3_server.new_bucket()}/ray"
    i = TINY_FLAGS.index("--threads")
    flags = [f for f in TINY_FLAGS[:i] + TINY_FLAGS[i + 2:] if f != "--no-ray"]
    r = run_cli("render", "--manifest", str(s3_manifest), "--shard", "0", "--out", url, "--workers", "1", *flags,
                env={**s3_server.env(), "RAY_USAGE_STATS_ENABLED": "0"})
    assert "rendered 1" in r.stdout
    bucket, prefix = _split(url)
    keys = s3_server.keys(bucket, prefix + "/")
    names = {k.rsplit("/", 1)[-1] for k in keys if "/index-log/" not in k}
    assert {layout.tar_name(0), layout.parquet_name(0), layout.members_name(0), layout.stats_name(0),
            layout.INDEX_NAME} == names
    logged = [k.rsplit("/", 1)[-1] for k in keys if "/index-log/" in k]  # the commit's entry in the commit log
    assert len(logged) == 1 and re.match(r"^\d{8}T\d{6}\.\d{6}Z-000000-c-\d+-[0-9a-f]{8}\.json$", logged[0])
