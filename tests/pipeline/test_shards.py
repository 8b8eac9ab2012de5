"""Shard writing and committing (DESIGN.md §4), and render_shard / `pipeline render` on real Blender."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from contracts.layout import MEMBER_RE, committed_shards, is_committed, parquet_name, read_stats, stats_name, tar_name
from pipeline.assembly import render_shard
from pipeline.shards import ShardWriter
from render.result import SampleResult


def fake_result(uid: str, clip: int = 0, status: str = "ok") -> SampleResult:
    key = f"{uid}_{clip:03d}"
    if status != "ok":
        return SampleResult.problem(uid, clip, key, "import_failed", "truncated", 0.5, {"import_s": 0.1})
    members = {f"{key}.json": b'{"uid": "%s"}' % uid.encode(), f"{key}.t000.v000.png": b"png-bytes",
               f"{key}.t000.v000.depth.png": b"depth-bytes"}
    return SampleResult(uid, clip, key, "ok", None, None, 1.25, members, {"motion_max": 0.3, "static": False, "faces": 12})


# -- ShardWriter (no Blender) ------------------------------------------------------------------------


def test_writer_commits_tar_parquet_then_stats(tmp_path):
    w = ShardWriter(tmp_path, 3)
    w.add(fake_result("b"))
    w.add(fake_result("a", status="failed"))
    assert not any((tmp_path / n).exists() for n in (tar_name(3), parquet_name(3), stats_name(3)))
    stats = w.commit({"note": "x"})
    assert is_committed(tmp_path, 3) and committed_shards(tmp_path) == [3]
    assert (stats.ok, stats.failed, stats.rejected, stats.images) == (1, 1, 0, 1)
    assert stats.reasons == {"import_failed": 1}
    assert sorted(os.listdir(tmp_path)) == sorted([parquet_name(3), stats_name(3), tar_name(3), "index-log",
                                                   "shard-000003.members.parquet"])  # no temporary files left
    logged = os.listdir(tmp_path / "index-log")  # the commit's one entry in the commit log, after stats.json
    assert len(logged) == 1 and "-000003-c-1-" in logged[0]
    assert os.stat(tmp_path / "index-log" / logged[0]).st_mtime_ns >= os.stat(tmp_path / stats_name(3)).st_mtime_ns
    on_disk = read_stats(tmp_path, 3)
    assert on_disk["ok"] == 1 and on_disk["note"] == "x" and on_disk["schema_version"] == 1


def test_parquet_has_the_contract_columns_and_statistics(tmp_path):
    w = ShardWriter(tmp_path, 0)
    w.add(fake_result("a"))
    w.add(fake_result("b", status="failed"))
    w.commit()
    table = pq.read_table(tmp_path / parquet_name(0))
    assert table.column_names[:6] == ["uid", "clip", "key", "status", "reason", "detail"][:6]
    for col in ("uid", "clip", "key", "status", "reason", "seconds", "motion_max", "static", "faces", "coverage_mean"):
        assert col in table.column_names, col
    assert str(table.schema.field("clip").type) == "int32"
    df = table.to_pandas()
    assert df["status"].tolist() == ["ok", "failed"]
    assert df["reason"].tolist() == [None, "import_failed"]
    assert df["motion_max"].iloc[0] == 0.3 and pd.isna(df["motion_max"].iloc[1])


def test_tar_members_are_deterministic(tmp_path):
    for d in ("a", "b"):
        w = ShardWriter(tmp_path / d, 0)
        w.add(fake_result("x"))
        w.add(fake_result("y"))
        w.commit()
    data = (tmp_path / "a" / tar_name(0)).read_bytes()
    assert data == (tmp_path / "b" / tar_name(0)).read_bytes()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        infos = tar.getmembers()
    assert [i.name for i in infos[:3]] == sorted(i.name for i in infos[:3])
    assert {(i.mtime, i.uid, i.gid, i.mode) for i in infos} == {(0, 0, 0, 0o644)}


def test_abort_leaves_nothing(tmp_path):
    w = ShardWriter(tmp_path, 1)
    w.add(fake_result("a"))
    w.abort()
    assert os.listdir(tmp_path) == []


def test_a_sample_cannot_be_added_twice(tmp_path):
    w = ShardWriter(tmp_path, 1)
    w.add(fake_result("a"))
    with pytest.raises(ValueError, match="added twice"):
        w.add(fake_result("a"))
    w.abort()


# -- render_shard and `pipeline render` with real Blender ----------------------------------------------

bpy_needed = pytest.mark.skipif(__import__("importlib").util.find_spec("bpy") is None,
                                reason="render extra (bpy 5.0.1) not installed")
TINY = dict(resolution=32, num_frames=4, fixed_views=2, samples=2)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    """A 1-shard manifest: a 2-clip procedural asset and every kind of bad row."""
    pytest.importorskip("bpy", reason="render extra (bpy 5.0.1) not installed")
    from render.clips import gltf_animation_names
    from render.procedural import generate_assets
    from tests.render import glb

    d = tmp_path_factory.mktemp("manifest")
    paths = generate_assets(d / "assets", 3, 5, categories="legacy")
    proc = next(p for p in paths if len(gltf_animation_names(p)) >= 2)
    b = glb.GlbBuilder()
    b.add_node({"name": "nothing"})
    empty = b.write(d / "empty.glb")
    b = glb.GlbBuilder()
    b.add_mesh(*glb.grid(30))
    grid = b.write(d / "grid.glb")
    data = proc.read_bytes()
    (d / "truncated.glb").write_bytes(data[: len(data) // 3])
    (d / "text.glb").write_text("not a model")
    rows = [
        ("proc", 0, proc, None), ("proc", 1, proc, None),
        ("truncated", 0, d / "truncated.glb", None), ("text", 0, d / "text.glb", None),
        ("empty", 0, empty, None), ("grid", 0, grid, json.dumps({"allow_static": True, "max_faces": 500})),
        ("gone", 0, d / "gone.glb", None), ("remote", 0, "ftp://example.org/x.glb", None),
    ]
    df = pd.DataFrame({
        "uid": [r[0] for r in rows], "clip": [r[1] for r in rows], "clip_name": [""] * len(rows),
        "source": ["local"] * len(rows), "uri": [str(r[2]) for r in rows], "sha256": [None] * len(rows),
        "license": ["cc0"] * len(rows), "shard": [0] * len(rows), "weight": [1.0] * len(rows), "round": [0] * len(rows),
        "render_settings": [r[3] for r in rows],
    })
    from manifests.schema import write_manifest

    return write_manifest(df, d / "manifest.parquet", command="test")


EXPECTED = {("proc", 0): ("ok", None), ("proc", 1): ("ok", None), ("truncated", 0): ("failed", "import_failed"),
            ("text", 0): ("failed", "import_failed"), ("empty", 0): ("rejected", "no_motion"),
            ("grid", 0): ("rejected", "too_many_faces"), ("gone", 0): ("failed", "missing_file"),
            ("remote", 0): ("failed", "bad_uri")}


def _rows(manifest):
    from pipeline.commands.render import shard_rows

    return shard_rows(str(manifest), 0)


def _read_tar(path: Path) -> dict[str, dict[str, bytes]]:
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path) as tar:
        for info in tar:
            key = info.name.split(".", 1)[0]
            samples.setdefault(key, {})[info.name] = tar.extractfile(info).read()
    return samples


@bpy_needed
def test_render_shard_commits_with_a_row_per_manifest_row(manifest, tmp_path):
    from render.presets import get_preset

    stats = render_shard(_rows(manifest), get_preset("debug", **TINY), tmp_path, 0)
    assert is_committed(tmp_path, 0)
    df = pd.read_parquet(tmp_path / parquet_name(0))
    got = {(u, c): (s, r) for u, c, s, r in zip(df["uid"], df["clip"], df["status"], df["reason"])}
    assert got == EXPECTED
    assert (stats.ok, stats.failed, stats.rejected) == (2, 4, 2)
    assert df.loc[df.status != "ok", "detail"].map(bool).all()
    samples = _read_tar(tmp_path / tar_name(0))
    assert sorted(samples) == ["proc_000", "proc_001"]
    for key, members in samples.items():
        meta = json.loads(members[f"{key}.json"])
        assert meta["uid"] == "proc" and f"{key}.t003.v001.png" in members and f"{key}.t003.v001.depth.png" in members
        assert all(MEMBER_RE.match(n) for n in members if not n.endswith(".json"))
        assert len(members) == 1 + 2 * meta["num_frames"] * meta["num_views"]
    assert read_stats(tmp_path, 0)["spec"]["resolution"] == 32


@bpy_needed
def test_committed_shard_is_skipped_force_redoes_it_and_the_tar_is_reproducible(manifest, tmp_path):
    from render.presets import get_preset
    from render.worker import RenderWorker

    spec = get_preset("debug", **TINY)
    rows = [r for r in _rows(manifest) if r["uid"] in ("proc", "truncated")]
    with RenderWorker(spec) as worker:
        first = render_shard(rows, spec, tmp_path, 0, worker=worker)
        tar1 = (tmp_path / tar_name(0)).read_bytes()
        again = render_shard(rows, spec, tmp_path, 0, worker=worker)
        assert again.skipped and again.ok == first.ok == 2
        (tmp_path / tar_name(0)).unlink()  # a committed shard is trusted as it is; force redoes it
        redone = render_shard(rows, spec, tmp_path, 0, force=True, worker=worker)
    assert not redone.skipped and redone.ok == 2
    assert (tmp_path / tar_name(0)).read_bytes() == tar1


@bpy_needed
def test_leftovers_of_a_crashed_run_are_discarded(manifest, tmp_path):
    from render.presets import get_preset

    (tmp_path / tar_name(0)).write_bytes(b"half a tar")
    (tmp_path / f".{tar_name(0)}.tmp-12345").write_bytes(b"junk")
    (tmp_path / f".{tar_name(1)}.tmp-12345").write_bytes(b"another shard's")
    rows = [r for r in _rows(manifest) if r["uid"] == "gone"]
    render_shard(rows, get_preset("debug", **TINY), tmp_path, 0)
    assert sorted(os.listdir(tmp_path)) == sorted([f".{tar_name(1)}.tmp-12345", parquet_name(0), stats_name(0), tar_name(0),
                                                   "shard-000000.members.parquet", "index-log"])
    assert _read_tar(tmp_path / tar_name(0)) == {}


@bpy_needed
def test_rows_of_another_shard_are_refused(tmp_path):
    from render.presets import get_preset

    with pytest.raises(ValueError, match="belongs to shard 4"):
        render_shard([{"uid": "a", "clip": 0, "shard": 4, "uri": "x"}], get_preset("debug"), tmp_path, 0)
    assert not is_committed(tmp_path, 0)


@bpy_needed
def test_pipeline_render_command(manifest, tmp_path):
    from click.testing import CliRunner

    from pipeline.cli import cli

    args = ["render", "--manifest", str(manifest), "--shard", "0", "--out", str(tmp_path), "--preset", "debug",
            "--resolution", "32", "--frames", "4", "--views", "1", "--samples", "1", "--no-ray"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert "samples: 2 ok, 4 failed, 2 rejected" in r.output
    assert read_stats(tmp_path, 0)["spec"]["fixed_views"] == 1
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0 and "rendered 0, retried 0, already committed 1" in r.output


def test_pipeline_render_errors_name_the_problem(tmp_path):
    from click.testing import CliRunner

    from pipeline.cli import cli

    r = CliRunner().invoke(cli, ["render", "--manifest", str(tmp_path / "none.parquet"), "--shard", "0", "--out", str(tmp_path),
                                 "--resolution", "3"])
    assert r.exit_code == 2 and "--resolution" in r.output
    r = CliRunner().invoke(cli, ["render", "--manifest", str(tmp_path / "none.parquet"), "--shard", "0", "--out", str(tmp_path)])
    assert r.exit_code == 1 and "no such manifest" in r.output


@bpy_needed
def test_pipeline_render_refuses_a_shard_without_rows(manifest, tmp_path):
    from click.testing import CliRunner

    from pipeline.cli import cli

    r = CliRunner().invoke(cli, ["render", "--manifest", str(manifest), "--shard", "7", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "no shard(s) 7 (it has 0-0)" in r.output
    from manifests import read_manifest, write_manifest

    empty = tmp_path / "empty.parquet"  # a valid manifest whose filter left nothing (2026-12-07: an IndexError)
    write_manifest(read_manifest(manifest).iloc[:0], empty, command="test")
    r = CliRunner().invoke(cli, ["render", "--manifest", str(empty), "--shards", "all", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and f"{empty} has no rows: nothing to render" in r.output, r.output
    assert not (tmp_path / "o").exists()


@bpy_needed
def test_pipeline_render_device_gpu_renders_or_names_the_flag(manifest, tmp_path):
    from click.testing import CliRunner

    from pipeline.cli import cli

    r = CliRunner().invoke(cli, ["render", "--manifest", str(manifest), "--shard", "0", "--out", str(tmp_path),
                                 "--preset", "debug", "--resolution", "16", "--views", "1", "--device", "gpu", "--no-ray"])
    if r.exit_code == 2:  # no GPU on this machine: refused before anything is written
        assert "--device gpu" in r.output and not is_committed(tmp_path, 0)
    else:
        assert r.exit_code == 0, r.output
