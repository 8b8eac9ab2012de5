"""Housekeeping at scale: `pipeline index DIR` (member indexes for shards written before them, the
index reconciled), and stale temp folders of dead processes removed (contracts.scratch)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from contracts import layout, scratch, shard_index, storage

from .conftest import run_cli


def _check_index_against_tarfile(tar_bytes: bytes, rows: list[tuple[str, int, int]]) -> None:
    import io

    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tf:
        want = [(m.name, m.offset_data, m.size) for m in tf.getmembers() if m.isfile()]
    assert rows == want and rows
    for name, off, size in rows:  # the bytes at (offset, size) are the member's
        with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tf:
            assert tar_bytes[off:off + size] == tf.extractfile(name).read()


def test_pipeline_index_adds_member_indexes_to_older_shards_locally(tmp_path):
    from training.data import synthetic

    synthetic.write_dataset(tmp_path, 6, 2, views=2, frames=2, size=8)  # written like older renders: no member index
    assert not any(p.name.endswith(".members.parquet") for p in tmp_path.iterdir())
    r = run_cli("index", str(tmp_path), "--json")
    rep = json.loads(r.stdout)
    assert rep["committed"] == 3 and rep["members_added"] == [0, 1, 2] and rep["problems"] == []
    for n in range(3):
        rows = layout.read_member_index((tmp_path / layout.members_name(n)).read_bytes(), "x")
        _check_index_against_tarfile((tmp_path / layout.tar_name(n)).read_bytes(), rows)
    index = json.loads((tmp_path / layout.INDEX_NAME).read_text())
    assert [e["shard"] for e in index["shards"]] == [0, 1, 2] and all(e["ok"] == 2 for e in index["shards"])
    r = run_cli("index", str(tmp_path), "--json")  # nothing left to do
    assert json.loads(r.stdout)["members_added"] == [] and json.loads(r.stdout)["summaries_read"] == 0
    r = run_cli("status", str(tmp_path))
    assert "without a member index" not in r.stdout


def test_pipeline_index_in_a_bucket_and_a_tar_that_does_not_match_its_stats(s3_server, tmp_path):
    from training.data import synthetic

    synthetic.write_dataset(tmp_path, 2, 1, views=2, frames=1, size=8)
    st = json.loads((tmp_path / layout.stats_name(1)).read_text())
    st["tar_bytes"] = 12345  # what the writer recorded differs from the tar now there
    (tmp_path / layout.stats_name(1)).write_text(json.dumps(st))
    bucket = s3_server.new_bucket()
    c = s3_server.client()
    for p in tmp_path.iterdir():
        c.put_object(Bucket=bucket, Key=f"ds/{p.name}", Body=p.read_bytes())
    url = f"s3://{bucket}/ds"
    r = run_cli("index", url, env=s3_server.env(), check=False)
    assert r.returncode == 1
    assert "member indexes added: 1 (shards 0)" in r.stdout
    assert "shard 1: the tar has" in r.stdout and "recorded 12345" in r.stdout
    rows = layout.read_member_index(c.get_object(Bucket=bucket, Key=f"ds/{layout.members_name(0)}")["Body"].read(), "x")
    _check_index_against_tarfile(c.get_object(Bucket=bucket, Key=f"ds/{layout.tar_name(0)}")["Body"].read(), rows)
    assert layout.members_name(1) not in {k.rsplit("/", 1)[-1] for k in s3_server.keys(bucket)}


def test_pipeline_index_rebuild_rereads_every_shard(tmp_path):
    from training.data import synthetic

    synthetic.write_dataset(tmp_path, 2, 1, views=2, frames=1, size=8)
    run_cli("index", str(tmp_path))
    idx = json.loads((tmp_path / layout.INDEX_NAME).read_text())
    idx["shards"][0]["ok"] = 99  # a cached summary gone wrong
    (tmp_path / layout.INDEX_NAME).write_text(json.dumps(idx))
    assert json.loads(run_cli("status", str(tmp_path), "--json", "--no-index").stdout)["samples"] == {"ok": 100}
    rep = json.loads(run_cli("index", str(tmp_path), "--rebuild", "--json").stdout)
    assert rep["summaries_read"] == 2
    assert json.loads(run_cli("status", str(tmp_path), "--json").stdout)["samples"] == {"ok": 2}


def test_pipeline_index_names_a_missing_dataset(tmp_path):
    r = run_cli("index", str(tmp_path / "nope"), check=False)
    assert r.returncode != 0 and "nope" in r.stderr and "no such dataset" in r.stderr


# -- stale temp folders ---------------------------------------------------------------------------------

def _child_scratch(tmp: Path) -> Path:
    """A scratch folder made by another process that has exited since (a killed upload)."""
    code = ("import sys, tempfile; tempfile.tempdir = sys.argv[1]; from contracts import scratch; "
            "print(scratch.make_scratch())")
    out = subprocess.run([sys.executable, "-c", code, str(tmp)], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="stale-process detection reads /proc (Linux)")
def test_stale_upload_folders_go_and_live_ones_stay(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = _child_scratch(tmp_path)
    (dead / ".shard-000001.tar.tmp-1").write_bytes(b"x" * 1000)
    mine = scratch.make_scratch()
    legacy_old = tmp_path / "shard-upload-abc123"  # from before owner files: idle for 3 h
    legacy_old.mkdir()
    (legacy_old / "t.tar").write_bytes(b"x")
    os.utime(legacy_old / "t.tar", (time.time() - 3 * 3600,) * 2)
    os.utime(legacy_old, (time.time() - 3 * 3600,) * 2)
    legacy_new = tmp_path / "shard-upload-def456"  # written to a minute ago: maybe a live old process
    legacy_new.mkdir()
    (legacy_new / "t.tar").write_bytes(b"x")
    other = tmp_path / "someone-elses"
    other.mkdir()
    gone = scratch.clean_stale(tmp_path)
    assert sorted(gone) == sorted([dead, legacy_old])
    assert mine.is_dir() and legacy_new.is_dir() and other.is_dir() and not dead.exists()
    owner = json.loads((mine / scratch.OWNER).read_text())
    assert owner["pid"] == os.getpid()


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="stale-process detection reads /proc (Linux)")
def test_blender_folders_of_dead_processes_go_and_a_live_blenders_stays(tmp_path):
    import importlib.util

    if importlib.util.find_spec("bpy") is None:
        pytest.skip("render extra (bpy) not installed: no live Blender process to protect")
    old = tmp_path / "blender_dead01"
    old.mkdir()
    (old / "x.exr").write_bytes(b"x")
    before_boot = scratch._boot_time() - 60  # older than every process on this machine
    os.utime(old, (before_boot, before_boot))
    proc = subprocess.Popen([sys.executable, "-c", "import bpy, sys, time; print('up', flush=True); time.sleep(120)"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "up"
        live = tmp_path / "blender_live01"  # made after that Blender started: it may be its folder
        live.mkdir()
        assert scratch.stale_folders(tmp_path, min_age_s=0) == [old]
        gone = scratch.clean_stale(tmp_path, min_age_s=0)
        assert gone == [old] and live.is_dir()
    finally:
        proc.kill()
        proc.wait()


def test_a_render_run_removes_a_killed_uploads_scratch_folder(s3_server, s3_env, s3_manifest, tmp_path):
    from .conftest import TINY_FLAGS

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    dead = _child_scratch(tmp)
    url = f"s3://{s3_server.new_bucket()}/ds"
    run_cli("render", "--manifest", str(s3_manifest), "--shard", "0", "--out", url, *TINY_FLAGS,
            env={**s3_server.env(), "TMPDIR": str(tmp)})
    assert not dead.exists() and not [p for p in tmp.iterdir() if p.name.startswith("shard-upload-")]
    assert storage.open_store(url).exists(layout.stats_name(0)) and shard_index.IndexView(url).load().committed() == [0]
