"""Curation as a whole: flags, determinism, --limit, --max-clips-per-asset, rounds, the CLI table."""

from __future__ import annotations

import shutil

import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from manifests import manifest_info, read_manifest
from manifests.curate import CurateConfig, curate
from manifests.shards import order_key
from pipeline.cli import cli


def _cfg(tmp_path, folder, name="m.parquet", **kw):
    return CurateConfig(source="local", dir=str(folder), out=str(tmp_path / name), **kw)


def test_same_inputs_same_manifest_byte_for_byte(gltf_dir, tmp_path):
    a = curate(_cfg(tmp_path, gltf_dir, shard_size=4), command="pipeline curate (test)", progress=False).manifest
    first = a.read_bytes()
    curate(_cfg(tmp_path, gltf_dir, shard_size=4), command="pipeline curate (test)", progress=False)
    assert a.read_bytes() == first  # same path, same command: the whole file is identical
    # a copy of the folder elsewhere, listed in another order on disk: same table content (uri aside)
    other = tmp_path / "copy"
    for p in sorted(gltf_dir.glob("*.glb"), reverse=True):
        other.mkdir(exist_ok=True)
        shutil.copy(p, other / p.name)
    b = curate(_cfg(tmp_path, other, "b.parquet", shard_size=4), progress=False).manifest
    ta, tb = pq.read_table(a).drop(["uri"]), pq.read_table(b).drop(["uri"])
    assert ta.equals(tb)


def test_shards_follow_the_uid_hash_order(gltf_dir, tmp_path):
    m = read_manifest(curate(_cfg(tmp_path, gltf_dir, shard_size=5), progress=False).manifest)
    keys = [(order_key(u), c) for u, c in zip(m.uid, m["clip"])]
    assert keys == sorted(keys)
    assert m.shard.tolist() == [i // 5 for i in range(len(m))]


def test_limit_keeps_the_first_assets_in_shard_order(gltf_dir, tmp_path):
    res = curate(_cfg(tmp_path, gltf_dir, limit=2, dropped_out=str(tmp_path / "d.parquet")), progress=False)
    m, dropped = read_manifest(res.manifest), pd.read_parquet(res.dropped_out)
    animated = ["AnimatedMorphCube", "BoxAnimated", "CesiumMan", "Fox", "InterpolationTest", "RiggedSimple"]
    first_two = sorted(animated, key=order_key)[:2]
    assert sorted(m.uid.unique()) == sorted(first_two)
    assert sorted(dropped[dropped.reason == "limit"].uid) == sorted(set(animated) - set(first_two))
    assert res.dropped["limit"] == (4, 0)


def test_max_clips_per_asset(gltf_dir, tmp_path):
    res = curate(_cfg(tmp_path, gltf_dir, max_clips_per_asset=2), progress=False)
    m = read_manifest(res.manifest)
    assert sorted(m[m.uid == "InterpolationTest"]["clip"]) == [0, 1] and sorted(m[m.uid == "Fox"]["clip"]) == [0, 1]
    assert res.dropped["max_clips"] == (0, 7 + 1)  # 7 of InterpolationTest, 1 of Fox
    res = curate(_cfg(tmp_path, gltf_dir, "all.parquet", max_clips_per_asset=0), progress=False)
    assert "max_clips" not in res.dropped and res.kept_rows == 16


def test_face_and_vertex_bounds_on_file_counts(gltf_dir, tmp_path):
    res = curate(_cfg(tmp_path, gltf_dir, max_faces=200, min_faces=20, max_vertices=3000,
                      dropped_out=str(tmp_path / "d.parquet")), progress=False)
    reasons = dict(zip(*pd.read_parquet(res.dropped_out)[["uid", "reason"]].T.values))
    assert reasons["AnimatedMorphCube"] == "too_few_faces"      # 12 faces
    assert reasons["Fox"] == "too_many_faces"                   # 576 faces
    assert reasons["CesiumMan"] == "too_many_faces"             # 4672 faces (checked before vertices)
    assert sorted(read_manifest(res.manifest).uid.unique()) == ["InterpolationTest", "RiggedSimple"]
    res = curate(_cfg(tmp_path, gltf_dir, "v.parquet", max_vertices=1000, dropped_out=str(tmp_path / "v.parquet.d")), progress=False)
    reasons = dict(zip(*pd.read_parquet(res.dropped_out)[["uid", "reason"]].T.values))
    assert reasons["CesiumMan"] == "too_many_vertices" and reasons["Fox"] == "too_many_vertices"


def test_later_round_numbers_shards_after_the_previous(gltf_dir, tmp_path):
    first = tmp_path / "r0"
    first.mkdir()
    for n in ("Fox.glb", "BoxAnimated.glb", "CesiumMan.glb"):
        shutil.copy(gltf_dir / n, first / n)
    r0 = curate(_cfg(tmp_path, first, "r0.parquet", shard_size=2), progress=False)
    assert r0.shards == (0, 2)  # 5 rows in shards of 2
    r1 = curate(_cfg(tmp_path, gltf_dir, "r1.parquet", shard_size=2, round=1, previous=str(r0.manifest),
                     dropped_out=str(tmp_path / "r1-dropped.parquet")), progress=False)
    m1 = read_manifest(r1.manifest)
    assert m1.shard.min() == 3 and (m1["round"] == 1).all()
    assert not set(m1.uid) & {"Fox", "BoxAnimated", "CesiumMan"}
    d = pd.read_parquet(r1.dropped_out)
    assert sorted(d[d.reason == "duplicate"].uid.unique()) == ["BoxAnimated", "CesiumMan", "Fox"]
    assert r1.dropped["duplicate"] == (0, 5)
    with pytest.raises(ValueError, match="--round 1 must be greater than the rounds already in --previous"):
        curate(_cfg(tmp_path, gltf_dir, "r1b.parquet", round=1, previous=str(r1.manifest)), progress=False)


def test_metadata_holds_command_and_settings(gltf_dir, tmp_path):
    res = curate(_cfg(tmp_path, gltf_dir, limit=3), command="pipeline curate --source local", progress=False)
    info = manifest_info(res.manifest)
    assert info.command == "pipeline curate --source local"
    assert info.settings["limit"] == 3 and info.settings["source"] == "local" and info.settings["licenses"] == ["by", "by-sa", "cc0"]


def test_licence_allow_list(tmp_path, gltf_dir):
    pytest.importorskip("bpy", reason="procedural assets are built with Blender")
    res = curate(CurateConfig(source="procedural", count=2, seed=3, out=str(tmp_path / "p.parquet"), licenses=("by",)),
                 progress=False)
    assert res.kept_rows == 0 and res.dropped == {"license": (2, 0)}
    assert len(read_manifest(res.manifest)) == 0  # an empty manifest is still a valid one


@pytest.mark.parametrize("kw, flag", [
    (dict(source="local"), "--dir is required"),
    (dict(source="objaverse", dir="x"), "--dir is only used"),
    (dict(source="local", dir="x", cache_dir="c"), "--cache-dir is only used"),
    (dict(source="procedural"), "--count"),
    (dict(source="local", dir="x", count=3), "--count, --assets-out and --categories"),
    (dict(source="local", dir="x", limit=0), "--limit"),
    (dict(source="local", dir="x", shard_size=0), "--shard-size"),
    (dict(source="local", dir="x", max_clips_per_asset=-1), "--max-clips-per-asset"),
    (dict(source="local", dir="x", licenses=()), "--licenses"),
    (dict(source="local", dir="x", min_faces=10, max_faces=5), "--max-faces"),
    (dict(source="local", dir="x", round=1), "--previous"),
    (dict(source="local", dir="x", previous="p.parquet"), "--previous is only used"),
    (dict(source="local", dir="x", uids_file="/nonexistent/u.txt"), "--uids-file"),
    (dict(source="objaverse-xl", xl_sources=("github", "gitlab")), "--xl-sources"),
    (dict(source="web"), "--source"),
])
def test_bad_settings_name_the_flag(tmp_path, kw, flag):
    with pytest.raises(ValueError, match=flag):
        CurateConfig(out=str(tmp_path / "m.parquet"), **kw)


def test_cli_prints_the_reason_table(gltf_dir, tmp_path):
    out = tmp_path / "m.parquet"
    r = CliRunner().invoke(cli, ["curate", "--source", "local", "--dir", str(gltf_dir), "--out", str(out),
                                 "--max-clips-per-asset", "2", "--dropped-out", str(tmp_path / "d.parquet")])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert any(line.split()[:3] == ["kept", "6", "8"] for line in lines), r.output
    assert any(line.split()[:3] == ["static", "2", "0"] for line in lines), r.output
    assert any(line.split()[:3] == ["max_clips", "0", "8"] for line in lines), r.output
    assert manifest_info(out).command.startswith("pipeline curate --source local --out")


@pytest.mark.parametrize("args, words", [
    (["--source", "local"], "--dir is required"),
    (["--source", "local", "--dir", "."], None),  # --out missing: click's own message
    (["--source", "local", "--dir", ".", "--shard-size", "0"], "--shard-size"),
    (["--source", "local", "--dir", ".", "--round", "2"], "--previous"),
    (["--source", "local", "--dir", ".", "--licenses", " , "], "--licenses"),
    (["--source", "nope", "--dir", "."], "--source"),
])
def test_cli_bad_flags_are_usage_errors(tmp_path, args, words):
    full = ["curate", *args] + ([] if words is None else ["--out", str(tmp_path / "m.parquet")])
    r = CliRunner().invoke(cli, full)
    assert r.exit_code == 2, r.output
    assert (words or "--out") in r.output and "Traceback" not in r.output


def test_cli_defaults_are_the_config_defaults():
    # the command module may not import manifests.curate at load time, so it repeats the defaults
    import dataclasses

    from pipeline.commands.curate import command

    defaults = {f.name: f.default for f in dataclasses.fields(CurateConfig)}
    opts = {p.name: p.default for p in command.params}
    assert opts["max_clips_per_asset"] == defaults["max_clips_per_asset"]
    assert opts["licenses"].split(",") == list(defaults["licenses"])
    assert (opts["min_faces"], opts["max_faces"], opts["max_vertices"]) == (defaults["min_faces"], defaults["max_faces"], defaults["max_vertices"])
    assert (opts["shard_size"], opts["seed"], opts["round_"]) == (defaults["shard_size"], defaults["seed"], defaults["round"])
    assert tuple(opts["xl_sources"].split(",")) == defaults["xl_sources"]
