"""Faults on a real S3-compatible server (moto on loopback): the server stopping in the middle of a
shard upload, an unreachable endpoint, wrong credentials, refused URLs, corrupted objects."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from contracts import layout, storage

from .conftest import TINY_FLAGS, free_port, run_cli


def _names(server, bucket: str, prefix: str) -> set[str]:
    return {k.rsplit("/", 1)[-1] for k in server.keys(bucket, prefix + "/")}


def test_server_stopped_in_the_middle_of_a_shard_upload(s3_server, s3_manifest, tmp_path):
    """The tar is uploaded, then the store goes away: the render fails naming the URL, the shard is
    not committed (readers and status do not count it), and a rerun completes it with no duplicates."""
    bucket = s3_server.new_bucket()
    url = f"s3://{bucket}/ds"
    pause = tmp_path / "pause"
    pause.mkdir()
    env = {**os.environ, **s3_server.env(), "PIPELINE_TEST_UPLOAD_PAUSE": str(pause), "PIPELINE_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "render", "--manifest", str(s3_manifest), "--shard", "1",
                             "--out", url, *TINY_FLAGS], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 300
        while not (pause / "reached-shard-1").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the render never reached the upload"
            time.sleep(0.1)
        s3_server.stop()
        (pause / "release").touch()
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
        s3_server.start()
    assert proc.returncode != 0
    assert f"{url}/shard-000001" in err and "cannot reach the object store" in err, err[-2000:]
    names = _names(s3_server, bucket, "ds")
    assert layout.tar_name(1) in names and layout.stats_name(1) not in names  # half a shard, never committed
    env = s3_server.env()
    os.environ.update(env)
    assert layout.committed_shards(url) == []
    r = run_cli("status", url, "--json", env=env)
    assert '"partial": [\n  1\n ]' in r.stdout or '"partial": [1]' in r.stdout.replace("\n", "").replace(" ", "")
    r = run_cli("train", "--shards", url, "--out", str(tmp_path / "run"), "--preset", "tiny", "--steps", "1",
                "--device", "cpu", check=False, env=env)
    assert r.returncode != 0 and "no committed shards" in r.stderr

    run_cli("render", "--manifest", str(s3_manifest), "--shard", "1", "--out", url, *TINY_FLAGS, env=env)
    assert layout.committed_shards(url) == [1]
    import io
    import tarfile

    tar = s3_server.client().get_object(Bucket=bucket, Key="ds/" + layout.tar_name(1))["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        names = tf.getnames()
    assert len(names) == len(set(names))  # redone from scratch: every member once


def test_unreachable_endpoint_fails_fast_naming_the_url_and_writes_nothing(s3_server, s3_manifest, tmp_path):
    bucket = s3_server.new_bucket()
    url = f"s3://{bucket}/ds"
    dead = s3_server.env(AWS_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}")
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "pipeline", "render", "--manifest", str(s3_manifest), "--shard", "0",
                        "--out", url, *TINY_FLAGS], capture_output=True, text=True, env={**os.environ, **dead},
                       cwd=tmp_path, timeout=300)
    assert r.returncode != 0
    assert url in r.stderr and "cannot reach the object store" in r.stderr, r.stderr[-2000:]
    assert time.monotonic() - t0 < 120
    assert os.listdir(tmp_path) == [] and s3_server.keys(bucket) == []  # nothing written anywhere
    for args in (["status", url], ["train", "--shards", url + "/", "--out", str(tmp_path / "run"), "--preset", "tiny",
                                   "--device", "cpu"]):
        r = run_cli(*args, check=False, env=dead)
        assert r.returncode != 0 and url in r.stderr and "cannot reach the object store" in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").rglob("*.pt"))


def test_wrong_credentials_fail_naming_the_url_without_printing_them(s3_server, s3_manifest, tmp_path):
    bucket = s3_server.new_bucket()
    url = f"s3://{bucket}/ds"
    secret = "WRONGsecretDoNotPrint1234"
    bad = s3_server.env(AWS_SECRET_ACCESS_KEY=secret)
    r = subprocess.run([sys.executable, "-m", "pipeline", "render", "--manifest", str(s3_manifest), "--shard", "0",
                        "--out", url, *TINY_FLAGS], capture_output=True, text=True, env={**os.environ, **bad},
                       cwd=tmp_path, timeout=300)
    assert r.returncode != 0
    assert url in r.stderr and "access denied" in r.stderr, r.stderr[-2000:]
    assert secret not in r.stdout + r.stderr and s3_server.secret not in r.stdout + r.stderr
    assert os.listdir(tmp_path) == [] and s3_server.keys(bucket) == []
    r = run_cli("status", url, check=False, env=bad)
    assert r.returncode != 0 and url in r.stderr and "access denied" in r.stderr


@pytest.mark.parametrize("bad", ["s3://bkt/a/../b", "s3://bkt/a//b", "s3://bkt/./a", "s3://../x", "s3://Bad_Bucket/x",
                                 "s3://bkt/a\\b"])
def test_urls_with_dot_dot_or_empty_parts_are_refused(bad):
    with pytest.raises(storage.StorageError, match="refused|not a valid S3 bucket"):
        storage.open_store(bad)


def test_commands_refuse_a_dot_dot_url_before_touching_anything(tmp_path, s3_server, s3_manifest):
    bad = "s3://bkt/data/../other"
    for args in (["status", bad], ["train", "--shards", bad + "/", "--out", str(tmp_path / "run"), "--preset", "tiny"],
                 ["render", "--manifest", str(s3_manifest), "--shard", "0", "--out", bad, *TINY_FLAGS]):
        r = run_cli(*args, check=False, env=s3_server.env())
        assert r.returncode != 0 and bad in r.stderr and "refused" in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "run").exists()


def test_a_url_with_credentials_in_it_is_refused_without_echoing_them(tmp_path):
    with pytest.raises(storage.StorageError, match="credentials in it") as err:
        storage.open_store("s3://AKIDEXAMPLE:s3cr3tValue@bkt/p")
    assert "s3cr3tValue" not in str(err.value)
    r = run_cli("status", "s3://AKIDEXAMPLE:s3cr3tValue@bkt/p", check=False)
    assert r.returncode != 0 and "credentials in it" in r.stderr and "s3cr3tValue" not in r.stderr


@pytest.mark.parametrize("secret", ["wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "aB+3kQ/cD9Lm", "xQ9w/y:z7Kp"])
def test_a_url_with_a_secret_holding_a_slash_is_refused_without_echoing_it(secret):
    # AWS secret keys often hold '/': the credentials are then not all in the URL's first component
    url = f"s3://AKIDEXAMPLE:{secret}@bkt/p"
    with pytest.raises(storage.StorageError, match="credentials in it") as err:
        storage.open_store(url)
    assert secret.split("/")[0] not in str(err.value) and secret.split("/")[-1] not in str(err.value)
    r = run_cli("status", url, check=False)
    assert r.returncode != 0 and "credentials in it" in r.stderr
    assert not any(part in r.stderr for part in secret.split("/")), r.stderr[-2000:]


def test_names_outside_the_prefix_are_refused(s3_env):
    store = storage.open_store(f"s3://{s3_env.new_bucket()}/p")
    for name in ("../escape.tar", "a/b.tar", "..", "", ".hidden", "x/../../y"):
        with pytest.raises(storage.StorageError, match="refused file name"):
            store.write_bytes(name, b"x")
    assert s3_env.keys(store.key.split("/")[0]) == []


def test_an_index_pointing_outside_the_dataset_is_refused(s3_env):
    import json

    from training.data import shardspec

    bucket = s3_env.new_bucket()
    s3_env.client().put_object(Bucket=bucket, Key="p/index.json",
                               Body=json.dumps({"schema_version": 1, "shards": [{"shard": 0, "tar": "../q/shard-000000.tar"}]}))
    with pytest.raises(FileNotFoundError, match="refused entry '../q/shard-000000.tar'"):
        shardspec.resolve_shards(f"s3://{bucket}/p/")
