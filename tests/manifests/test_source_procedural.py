"""`--source procedural`: render.procedural's real Blender-made GLBs, read like a local folder."""

from __future__ import annotations

import pytest

from manifests import read_manifest
from manifests.curate import CurateConfig, curate
from manifests.gltf_info import read_gltf_info

pytest.importorskip("bpy", reason="--source procedural builds its assets with Blender (the `render` extra)")
pytestmark = pytest.mark.blender


def test_procedural_assets_become_cc0_rows_with_their_category(tmp_path):
    res = curate(CurateConfig(source="procedural", count=3, seed=11, out=str(tmp_path / "m.parquet")), progress=False)
    m = read_manifest(res.manifest)
    files = sorted((tmp_path / "procedural-s11").glob("*.glb"))
    assert [f.stem for f in files] == ["proc_biped_s11_00000", "proc_biped_s11_00001", "proc_quadruped_s11_00000"]  # default mix
    assert sorted(m.uid.unique()) == [f.stem for f in files]
    assert dict(zip(m.uid, m.category)) == {f.stem: f.stem.split("_")[1] for f in files}
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


def test_categories_pick_the_mix_and_bad_names_are_refused(tmp_path):
    res = curate(CurateConfig(source="procedural", count=2, seed=4, categories="vehicle,legacy", out=str(tmp_path / "m.parquet")),
                 progress=False)
    m = read_manifest(res.manifest)
    assert dict(zip(m.uid, m.category)) == {"proc_vehicle_s4_00000": "vehicle", "proc_s4_00000": "legacy"}
    assert read_manifest(res.manifest).pipe(lambda d: d["clip_count"].min()) >= 1
    with pytest.raises(ValueError, match="--categories: unknown procedural category.*'robot'"):
        CurateConfig(source="procedural", count=2, categories="biped,robot", out=str(tmp_path / "x.parquet"))
    with pytest.raises(ValueError, match="--categories"):
        CurateConfig(source="local", dir=str(tmp_path), categories="biped", out=str(tmp_path / "y.parquet"))
