"""`--source local`: real glTF files in, one row per clip out; every broken file is a row with a reason."""

from __future__ import annotations

import gzip
import os
import shutil

import pandas as pd
import pytest

from manifests import read_manifest, stable_uid
from manifests.curate import CurateConfig, curate
from tests.manifests.caches import edit_glb, sha256_file


def _run(tmp_path, folder, **kw):
    out = tmp_path / "out"
    cfg = CurateConfig(source="local", dir=str(folder), out=str(out / "m.parquet"), dropped_out=str(out / "dropped.parquet"), **kw)
    res = curate(cfg, progress=False)
    return res, read_manifest(res.manifest), pd.read_parquet(res.dropped_out)


def test_real_folder_one_row_per_clip(gltf_dir, tmp_path):
    res, m, dropped = _run(tmp_path, gltf_dir)
    per_asset = m.groupby("uid")["clip"].apply(list).to_dict()
    assert per_asset == {"BoxAnimated": [0], "CesiumMan": [0], "AnimatedMorphCube": [0], "RiggedSimple": [0],
                         "Fox": [0, 1, 2], "InterpolationTest": list(range(9))}
    fox = m[m.uid == "Fox"].sort_values("clip")
    assert fox.clip_name.tolist() == ["Survey", "Walk", "Run"]
    assert fox.duration_s.tolist() == pytest.approx([3.416667, 0.708333, 1.158333], abs=1e-5)
    assert set(m.source) == {"local"} and m.license.isna().all() and (m.weight == 1.0).all() and (m["round"] == 0).all()
    assert fox.uri.iloc[0] == str((gltf_dir / "Fox.glb").resolve())
    assert fox.sha256.iloc[0] == sha256_file(gltf_dir / "Fox.glb")
    assert not m.static.any() and m.uid_origin.isna().all()
    assert sorted(dropped.uid) == ["Box", "Duck"] and set(dropped.reason) == {"static"} and dropped["clip"].isna().all()
    assert res.dropped == {"static": (2, 0)} and res.kept_assets == 6 and res.kept_rows == 16


def test_include_static_keeps_one_static_row(gltf_dir, tmp_path):
    _, m, dropped = _run(tmp_path, gltf_dir, include_static=True)
    box = m[m.uid == "Box"]
    assert len(box) == 1 and box["clip"].iloc[0] == 0 and bool(box.static.iloc[0]) and box.clip_count.iloc[0] == 0
    assert "Duck" in set(m.uid) and len(dropped) == 0


def _broken_folder(gltf_dir, root):
    root.mkdir()
    fox = (gltf_dir / "Fox.glb").read_bytes()
    (root / "truncated.glb").write_bytes(fox[:5000])
    (root / "notgltf.glb").write_text("this is a text file, not a model, but it is long")
    (root / "badjson.gltf").write_text('{"asset": {"version": "2.0"}, "nodes": [')
    (root / "plain.glb.gz").write_bytes(fox)  # named .gz, not gzip
    (root / "real.glb.gz").write_bytes(gzip.compress(fox))
    (root / "old.gltf").write_text('{"asset": {"version": "1.0"}}')

    def no_min(doc):
        del doc["accessors"][doc["animations"][0]["samplers"][0]["input"]]["min"]
    edit_glb(gltf_dir / "BoxAnimated.glb", root / "nominmax.glb", no_min)
    (root / "notes.txt").write_text("ignored: not a glTF name")
    os.symlink(root / "gone.glb", root / "dangling.glb")  # listed, but its target does not exist
    return root


def test_broken_files_become_rows_with_reasons(gltf_dir, tmp_path):
    folder = _broken_folder(gltf_dir, tmp_path / "in")
    res, m, dropped = _run(tmp_path, folder)
    reasons = dict(zip(dropped.uid, dropped.reason))
    assert reasons == {"truncated": "unreadable_file", "notgltf": "unreadable_file", "badjson": "unreadable_file",
                       "plain": "not_gzip", "old": "unsupported_format", "nominmax": "bad_animation",
                       "dangling": "missing_file"}
    assert all(str(folder) in d for d in dropped.detail)  # each detail names the file
    assert m.uid.unique().tolist() == ["real"] and len(m) == 3
    assert res.dropped["unreadable_file"] == (3, 0)


def test_uids_from_stems_hashes_and_duplicates(gltf_dir, tmp_path):
    folder = tmp_path / "in"
    (folder / "a").mkdir(parents=True)
    (folder / "b").mkdir()
    shutil.copy(gltf_dir / "Fox.glb", folder / "a" / "Fox.glb")
    shutil.copy(gltf_dir / "Fox.glb", folder / "b" / "Fox.glb")  # same stem twice
    shutil.copy(gltf_dir / "RiggedSimple.glb", folder / "my model.glb")  # space
    shutil.copy(gltf_dir / "BoxAnimated.glb", folder / "v1.2.glb")  # dot
    _, m, _ = _run(tmp_path, folder)
    origin = m.drop_duplicates("uid").set_index("uid")["uid_origin"].to_dict()
    assert origin["Fox"] is None
    assert origin[stable_uid("b/Fox.glb")] == "b/Fox.glb"
    assert origin[stable_uid("my model.glb")] == "my model.glb"
    assert origin[stable_uid("v1.2.glb")] == "v1.2.glb"
    assert m[m.uid == "Fox"].uri.iloc[0].endswith("/a/Fox.glb")


def test_symlinked_folders_are_not_followed(gltf_dir, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(gltf_dir / "Fox.glb", folder / "Fox.glb")
    os.symlink(gltf_dir, folder / "link")
    _, m, _ = _run(tmp_path, folder)
    assert m.uid.unique().tolist() == ["Fox"]


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="--dir .*nowhere: no such folder"):
        curate(CurateConfig(source="local", dir=str(tmp_path / "nowhere"), out=str(tmp_path / "m.parquet")), progress=False)


def test_nothing_is_written_outside_the_outputs(gltf_dir, tmp_path):
    folder = _broken_folder(gltf_dir, tmp_path / "in")
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    _run(tmp_path, folder)
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["dropped.parquet", "m.parquet"]
