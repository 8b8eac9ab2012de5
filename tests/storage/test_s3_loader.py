"""Training, evaluation and mining read a dataset in a bucket (real moto server, real Blender renders):
the commands end to end, ranged GETs against whole-shard streaming, corrupted objects skipped and counted."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
import torch

from contracts import layout, reads, storage
from training.data import stream as data
from training.data import shardspec
from training.data import shardstream
from training.config import DataConfig

from .conftest import run_cli


@pytest.fixture(scope="module")
def trained(s3_server, s3_dataset, tmp_path_factory):
    """A tiny run trained for 2 steps on the bucket (prefix with a trailing slash)."""
    run = tmp_path_factory.mktemp("s3run") / "run"
    run_cli("train", "--shards", s3_dataset + "/", "--out", str(run), "--preset", "tiny", "--steps", "2",
            "--batch-size", "1", "--num-workers", "0", "--device", "cpu", "--log-every", "1", "--grid-every", "0",
            "--set", "data.image_size=16", env=s3_server.env())
    return run


def test_train_eval_and_mine_on_a_bucket(s3_env, s3_dataset, s3_manifest, trained, tmp_path):
    env = s3_env.env()
    lines = [json.loads(x) for x in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2] and all(x["skipped"] == 0 for x in lines)
    assert env["AWS_SECRET_ACCESS_KEY"] not in (trained / "config.json").read_text()
    metrics = tmp_path / "metrics.parquet"
    run_cli("eval", "--checkpoint", str(trained), "--shards", s3_dataset, "--out", str(metrics), "--device", "cpu",
            "--n-in", "2", "--per-kind", "1", "--worst", "0", "--no-progress", env=env)
    df = pd.read_parquet(metrics)
    ok = sum(layout.read_stats(s3_dataset, n)["ok"] for n in layout.committed_shards(s3_dataset))
    assert len(df) == ok and df["psnr"].notna().all()
    assert set(df["shard"]) == set(layout.committed_shards(s3_dataset))
    nxt = tmp_path / "next.parquet"
    r = run_cli("mine", "--metrics", str(metrics), "--manifest", str(s3_manifest), "--renders", s3_dataset,
                "--out", str(nxt), "--fraction", "0.5", "--rerender-fraction", "0", env=env)
    mined = pd.read_parquet(nxt)
    assert "missingasset" not in set(mined["uid"])  # its failed render was read from the bucket's parquet
    assert len(mined) == len(pd.read_parquet(s3_manifest)) - 1, r.stdout


def _loader_batches(urls, **kw):
    cfg = DataConfig(image_size=16, n_in=2, n_target=2, num_workers=0, batches_per_epoch=2, shuffle_buffer=2, **kw)
    handler = data.SkipAndCount()
    return list(data.make_dataset(urls, cfg, batch_size=1, resampled=False, handler=handler)), handler


def test_ranged_gets_read_a_fraction_of_the_bucket_and_give_the_same_batches(s3_env, s3_dataset):
    urls = shardspec.resolve_shards(s3_dataset)
    assert urls == shardspec.resolve_shards(s3_dataset + "/") and all(u.startswith(s3_dataset + "/") for u in urls)
    shardstream._index_cache.clear()
    c0 = reads.io_counts.copy()
    ranged, h1 = _loader_batches(urls)
    c1 = reads.io_counts.copy()
    streamed, h2 = _loader_batches(urls, ranged_reads=False)
    c2 = reads.io_counts.copy()
    assert not h1.counts and not h2.counts and len(ranged) >= 3
    assert [b["key"] for b in ranged] == [b["key"] for b in streamed]
    for a, b in zip(ranged, streamed):
        torch.testing.assert_close(a["tg_rgb"], b["tg_rgb"], rtol=0, atol=0)
    assert c1["stream"] == c0["stream"]
    ranged_bytes = c1["range"] - c0["range"] + c1["whole"] - c0["whole"]
    assert ranged_bytes < c2["stream"] - c1["stream"]


def test_corrupted_objects_in_the_bucket_are_counted_and_skipped(s3_env, s3_dataset):
    """Copy the dataset, then break it: one tar overwritten with garbage behind its index, one tar cut
    short with its index removed (streamed). The good shard still trains; the rest is counted."""
    src_bucket, _, src_prefix = s3_dataset[len("s3://"):].partition("/")
    c = s3_env.client()
    bucket = s3_env.new_bucket()
    for key in s3_env.keys(src_bucket, src_prefix + "/"):
        c.copy_object(Bucket=bucket, Key="ds/" + key.rsplit("/", 1)[-1], CopySource={"Bucket": src_bucket, "Key": key})
    url = f"s3://{bucket}/ds"
    shards = layout.committed_shards(url)
    assert len(shards) >= 3
    a, b = shards[0], shards[1]
    size = len(c.get_object(Bucket=bucket, Key=f"ds/{layout.tar_name(a)}")["Body"].read())
    c.put_object(Bucket=bucket, Key=f"ds/{layout.tar_name(a)}", Body=b"\x00garbage" * (size // 8))
    whole = c.get_object(Bucket=bucket, Key=f"ds/{layout.tar_name(b)}")["Body"].read()
    c.put_object(Bucket=bucket, Key=f"ds/{layout.tar_name(b)}", Body=whole[: len(whole) // 3])
    c.delete_object(Bucket=bucket, Key=f"ds/{layout.members_name(b)}")
    shardstream._index_cache.clear()
    batches, h = _loader_batches(shardspec.resolve_shards(url))
    assert sum(h.counts.values()) >= 2, h.counts
    assert set(h.counts) <= {"bad_json", "tar_read", "io", "member_read"}, h.counts
    keys = {k for x in batches for k in x["key"]}
    rows = pd.read_parquet(io.BytesIO(c.get_object(Bucket=bucket, Key=f"ds/{layout.parquet_name(shards[2])}")["Body"].read()))
    assert set(rows.loc[rows["status"] == "ok", "key"]) <= keys  # the intact shard is read in full


def test_forked_dataloader_workers_read_the_bucket(s3_env, s3_dataset):
    """Workers are forked after the parent has used s3fs (listing): each makes its own client and reads
    its share of the shards; every sample comes out once."""
    urls = shardspec.resolve_shards(s3_dataset)
    cfg = DataConfig(image_size=16, n_in=2, n_target=2, num_workers=2, batches_per_epoch=2, shuffle_buffer=2)
    ds = data.make_dataset(urls, cfg, batch_size=1, resampled=False)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context="fork")
    keys = [k for b in loader for k in b["key"]]
    ok = sum(layout.read_stats(s3_dataset, n)["ok"] for n in layout.committed_shards(s3_dataset))
    assert len(keys) == len(set(keys)) == ok
