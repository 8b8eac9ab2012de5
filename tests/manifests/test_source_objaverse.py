"""`--source objaverse`: the real `objaverse` package reads a small cache built in its exact layout.

No network: tests/manifests/conftest.py blocks it, and the code must fail fast (with a message naming
the missing file) before the package would try to download.
"""

from __future__ import annotations

import gzip

import objaverse
import pandas as pd
import pytest
from click.testing import CliRunner

from manifests import read_manifest
from manifests.assets import AssetUnavailable, resolve_asset
from manifests.curate import CurateConfig, CurationError, curate
from manifests.sources import objaverse as ov_source
from pipeline.cli import cli
from tests.manifests.caches import annotation, build_objaverse_cache, uid_for, write_gz_json

U = {name: uid_for(name) for name in (
    "fox", "boxanim", "duck", "nc", "adult", "huge", "nofaces", "manyverts", "nofield", "wrongtype", "norecord",
    "interp", "truncated", "morph", "cesium", "stillpose")}


def _records_a():
    return {
        U["fox"]: annotation(U["fox"], "Fox", animations=3, license="by"),
        U["boxanim"]: annotation(U["boxanim"], "Box Animated", animations=1, license="cc0"),
        U["duck"]: annotation(U["duck"], "Duck", animations=0),
        U["nc"]: annotation(U["nc"], "Not commercial", animations=2, license="by-nc"),
        U["adult"]: annotation(U["adult"], "Adult", animations=1, age_restricted=True),
        U["huge"]: annotation(U["huge"], "Huge", animations=1, faces=10_000_000),
        U["nofaces"]: annotation(U["nofaces"], "Point cloud", animations=1, faces=0),
        U["manyverts"]: annotation(U["manyverts"], "Scan", animations=1, vertices=5_000_000),
        U["nofield"]: {k: v for k, v in annotation(U["nofield"], "No count", animations=1).items() if k != "animationCount"},
        U["wrongtype"]: {**annotation(U["wrongtype"], "Faces as text", animations=1), "faceCount": "12"},
        U["norecord"]: None,
    }


def _records_b():
    return {
        U["interp"]: annotation(U["interp"], "Interpolation", animations=9, license="by-sa"),
        U["truncated"]: annotation(U["truncated"], "Cut", animations=1),
        U["morph"]: annotation(U["morph"], "Morph", animations=1),
        U["cesium"]: annotation(U["cesium"], "Cesium Man", animations=1),
        U["stillpose"]: annotation(U["stillpose"], "Pose only", animations=1),
    }


@pytest.fixture
def cache(tmp_path, gltf_dir):
    from tests.manifests.caches import edit_glb

    pose = edit_glb(gltf_dir / "BoxAnimated.glb", tmp_path / "pose.glb", _collapse_times)
    return build_objaverse_cache(
        tmp_path / "objaverse",
        {"000-000": _records_a(), "000-001": _records_b()},
        glbs={U["fox"]: gltf_dir / "Fox.glb", U["interp"]: gltf_dir / "InterpolationTest.glb",
              U["truncated"]: (gltf_dir / "CesiumMan.glb").read_bytes()[:3000], U["morph"]: gltf_dir / "AnimatedMorphCube.glb",
              U["stillpose"]: pose},
        extra_paths={"../evil": "glbs/000-000/../evil.glb", "has space": "glbs/000-000/has space.glb",
                     uid_for("escape"): "glbs/../../../etc/passwd"},
    )


def _collapse_times(doc):
    """Every sampler input of the clip spans 0 s: a single pose, not motion."""
    for s in doc["animations"][0]["samplers"]:
        acc = doc["accessors"][s["input"]]
        acc["min"], acc["max"] = [1.0], [1.0]


def _curate(cache, tmp_path, **kw):
    cfg = CurateConfig(source="objaverse", cache_dir=str(cache), out=str(tmp_path / "m.parquet"),
                       dropped_out=str(tmp_path / "dropped.parquet"), **kw)
    res = curate(cfg, progress=False)
    return res, read_manifest(res.manifest), pd.read_parquet(res.dropped_out)


def test_every_reason_from_a_real_package_read(cache, tmp_path):
    res, m, dropped = _curate(cache, tmp_path, max_clips_per_asset=4)
    reason = {u: r for u, r, c in zip(dropped.uid, dropped.reason, dropped["clip"]) if pd.isna(c)}
    assert reason == {
        "../evil": "invalid_uid", "has space": "invalid_uid", uid_for("escape"): "bad_annotation",
        U["duck"]: "static", U["nc"]: "license", U["adult"]: "age_restricted", U["huge"]: "too_many_faces",
        U["nofaces"]: "too_few_faces", U["manyverts"]: "too_many_vertices", U["nofield"]: "bad_annotation",
        U["wrongtype"]: "bad_annotation", U["norecord"]: "bad_annotation", U["truncated"]: "unreadable_file",
        U["stillpose"]: "static",
    }
    detail = dict(zip(dropped.uid, dropped.detail))
    assert "lacks animationCount" in detail[U["nofield"]] and "metadata/000-000.json.gz" in detail[U["nofield"]]
    assert "no record" in detail[U["norecord"]]
    assert "faceCount is '12'" in detail[U["wrongtype"]]
    clipped = dropped[dropped["clip"].notna()]
    assert set(clipped.uid) == {U["interp"]} and sorted(clipped["clip"].astype(int)) == [4, 5, 6, 7, 8]
    assert set(clipped.reason) == {"max_clips"}
    assert res.dropped["max_clips"] == (0, 5) and res.dropped["bad_annotation"] == (4, 0)


def test_cached_glbs_give_names_and_local_paths(cache, tmp_path):
    _, m, _ = _curate(cache, tmp_path)
    fox = m[m.uid == U["fox"]].sort_values("clip")
    assert fox.clip_name.tolist() == ["Survey", "Walk", "Run"]
    assert fox.uri.iloc[0] == str((cache / "hf-objaverse-v1" / f"glbs/000-000/{U['fox']}.glb").resolve())
    assert fox.duration_s.iloc[0] == pytest.approx(3.416667, abs=1e-5)
    box = m[m.uid == U["boxanim"]]  # not cached: count from the annotation, names empty, a locator as uri
    assert box["clip"].tolist() == [0] and box.clip_name.tolist() == [""]
    assert box.uri.iloc[0] == f"objaverse:glbs/000-000/{U['boxanim']}.glb" and box.duration_s.isna().all()
    assert set(m.source) == {"objaverse"} and m.sha256.isna().all()
    assert dict(zip(m.uid, m.license))[U["interp"]] == "by-sa"
    assert sorted(m.uid.unique()) == sorted([U["fox"], U["boxanim"], U["interp"], U["morph"], U["cesium"]])


def test_package_globals_are_restored(cache, tmp_path):
    before = (objaverse.BASE_PATH, objaverse._VERSIONED_PATH, objaverse._load_object_paths)
    _curate(cache, tmp_path)
    assert (objaverse.BASE_PATH, objaverse._VERSIONED_PATH, objaverse._load_object_paths) == before


def test_one_metadata_file_at_a_time_and_object_paths_parsed_once(cache, tmp_path, monkeypatch):
    calls, parses = [], []
    real_load, real_paths = objaverse.load_annotations, objaverse._load_object_paths

    def load_annotations(uids=None):  # observes the package's function, then runs it
        calls.append(sorted(uids))
        return real_load(uids)

    def load_object_paths():
        parses.append(1)
        return real_paths()

    monkeypatch.setattr(objaverse, "load_annotations", load_annotations)
    monkeypatch.setattr(objaverse, "_load_object_paths", load_object_paths)
    _curate(cache, tmp_path)
    a = sorted(u for u in _records_a())
    b = sorted(u for u in _records_b())
    assert calls == [a, b]  # one call per metadata file, with exactly that file's uids
    assert len(parses) == 1


def test_missing_object_paths_fails_fast_naming_the_file(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CurationError) as err:
        _curate(empty, tmp_path)
    msg = str(err.value)
    assert str(empty / "hf-objaverse-v1" / "object-paths.json.gz") in msg and "download" in msg
    assert not (empty / "hf-objaverse-v1").exists()  # the package's downloader never ran


def test_missing_metadata_file_fails_before_reading_any(cache, tmp_path):
    (cache / "hf-objaverse-v1" / "metadata" / "000-001.json.gz").unlink()
    with pytest.raises(CurationError, match=r"missing: .*metadata/000-001\.json\.gz.*huggingface\.co"):
        _curate(cache, tmp_path)
    assert not (tmp_path / "m.parquet").exists() and not (tmp_path / "dropped.parquet").exists()


def test_uids_file_reads_only_the_needed_metadata(cache, tmp_path):
    (cache / "hf-objaverse-v1" / "metadata" / "000-001.json.gz").unlink()  # not needed for these uids
    uids = tmp_path / "uids.txt"
    uids.write_text(f"# wanted\n{U['fox']}\n{U['boxanim']}  # trailing comment\n../x\nhas space\n{uid_for('absent')}\n\n")
    res, m, dropped = _curate(cache, tmp_path, uids_file=str(uids))
    assert sorted(m.uid.unique()) == sorted([U["fox"], U["boxanim"]])
    reason = dict(zip(dropped.uid, dropped.reason))
    assert reason["../x"] == "invalid_uid" and reason["has space"] == "invalid_uid"
    assert reason[uid_for("absent")] == "not_in_source"
    assert reason[U["duck"]] == "not_in_uids_file" and reason[U["interp"]] == "not_in_uids_file"


def test_unreadable_metadata_file_is_a_clear_error(cache, tmp_path):
    (cache / "hf-objaverse-v1" / "metadata" / "000-001.json.gz").write_text("not gzip")
    with pytest.raises(CurationError, match=r"000-001\.json\.gz: not a readable gzip-compressed JSON file"):
        _curate(cache, tmp_path)
    write_gz_json(cache / "hf-objaverse-v1" / "object-paths.json.gz", ["a", "list"])
    with pytest.raises(CurationError, match="expected a JSON object"):
        _curate(cache, tmp_path)
    (cache / "hf-objaverse-v1" / "object-paths.json.gz").write_bytes(gzip.compress(b"{broken"))
    with pytest.raises(CurationError, match="object-paths.json.gz: not a readable"):
        _curate(cache, tmp_path)


def test_cli_reports_missing_cache_without_traceback(tmp_path):
    r = CliRunner().invoke(cli, ["curate", "--source", "objaverse", "--cache-dir", str(tmp_path), "--out", str(tmp_path / "m.parquet")])
    assert r.exit_code == 1
    assert "object-paths.json.gz" in r.output and "Traceback" not in r.output


def test_fetch_object_uses_the_cache_then_the_package(cache, tmp_path):
    row = {"uid": U["fox"], "uri": f"objaverse:glbs/000-000/{U['fox']}.glb"}
    assert resolve_asset(row, cache_dir=str(cache)) == cache / "hf-objaverse-v1" / f"glbs/000-000/{U['fox']}.glb"
    row = {"uid": U["boxanim"], "uri": f"objaverse:glbs/000-000/{U['boxanim']}.glb"}
    with pytest.raises(AssetUnavailable) as err:  # not cached, and the network is off: the package's download fails
        resolve_asset(row, cache_dir=str(cache))
    assert err.value.reason == "download_failed" and U["boxanim"] in err.value.detail
    with pytest.raises(AssetUnavailable) as err:
        ov_source.fetch_object(U["fox"], "glbs/000-000/../../x.glb", str(cache))
    assert err.value.reason == "bad_uri"
