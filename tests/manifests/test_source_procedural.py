"""`--source procedural`: render.procedural's real Blender-made GLBs, read like a local folder."""

from __future__ import annotations

import pytest

from manifests import read_manifest
from manifests.curate import CurateConfig, curate
from manifests.gltf_info import read_gltf_info

pytest.importorskip("bpy", reason="--source procedural builds its assets with Blender (the `render` extra)")
pytestmark = pytest.mark.blender


def test_procedural_assets_become_cc0_rows(tmp_path):
    res = curate(CurateConfig(source="procedural", count=3, seed=11, out=str(tmp_path / "m.parquet")), progress=False)
    m = read_manifest(res.manifest)
    files = sorted((tmp_path / "procedural-s11").glob("*.glb"))
    assert [f.stem for f in files] == ["proc_s11_00000", "proc_s11_00001", "proc_s11_00002"]
    assert sorted(m.uid.unique()) == [f.stem for f in files]
    assert set(m.source) == {"procedural"} and set(m.license) == {"cc0"} and m.sha256.notna().all()
    for f in files:
        info = read_gltf_info(f)
        rows = m[m.uid == f.stem].sort_values("clip")
        assert rows["clip"].tolist() == list(range(len(info.animations)))
        assert rows.clip_name.tolist() == [a.name for a in info.animations]
        assert rows.uri.iloc[0] == str(f.resolve())
    assert res.dropped == {}


def test_assets_out_and_seed_reproducible(tmp_path):
    a = curate(CurateConfig(source="procedural", count=2, seed=5, assets_out=str(tmp_path / "a"), out=str(tmp_path / "a.parquet")),
               progress=False)
    b = curate(CurateConfig(source="procedural", count=2, seed=5, assets_out=str(tmp_path / "b"), out=str(tmp_path / "b.parquet")),
               progress=False)
    ma, mb = read_manifest(a.manifest), read_manifest(b.manifest)
    assert ma.drop(columns="uri").equals(mb.drop(columns="uri"))  # same seed, same files (sha256), same rows
