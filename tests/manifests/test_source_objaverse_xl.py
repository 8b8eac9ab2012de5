"""`--source objaverse-xl`: the real `objaverse.xl` annotation readers on a small cache in its layout."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from objaverse.utils import get_uid_from_str

from manifests import read_manifest
from manifests.assets import AssetUnavailable, resolve_asset
from manifests.curate import CurateConfig, CurationError, curate
from tests.manifests.caches import sha256_file, uid_for, write_xl_parquet

COMMIT = "6928b08a2501aa7a4a4aabac1f888b66e7782056"
GH = f"https://github.com/org1/repo1/blob/{COMMIT}"
SF = "https://sketchfab.com/3d-models"
SI = "https://3d-api.si.edu/content/document/3d_package:abc/model-{}.glb"


@pytest.fixture
def xl(tmp_path, gltf_dir):
    root = tmp_path / "xl"
    fox, boxanim, box = (sha256_file(gltf_dir / n) for n in ("Fox.glb", "BoxAnimated.glb", "Box.glb"))
    sf_uid = uid_for("sketchfab-boxanim")
    ids = {
        "G1": f"{GH}/models/Fox.glb", "G2": f"{GH}/models/walk.gltf", "G3": f"{GH}/models/thing.fbx",
        "G4": f"{GH}/models/nolicence.glb", "G5": f"{GH}/models/nosha.glb", "G6": f"{GH}/models/badsha.glb",
        "S1": f"{SF}/{sf_uid}", "S2": f"{SF}/{uid_for('nc')}", "S3": f"{SF}/{uid_for('foxcopy')}",
        "M1": SI.format(1), "M2": SI.format(2), "T1": "https://www.thingiverse.com/thing:1/file:2",
    }
    write_xl_parquet(root, "github", [
        dict(fileIdentifier=ids["G1"], source="github", license="Creative Commons - Attribution", fileType="glb", sha256=fox, metadata="{}"),
        dict(fileIdentifier=ids["G2"], source="github", license="cc-by-4.0", fileType="gltf", sha256="a" * 64, metadata="{}"),
        dict(fileIdentifier=ids["G3"], source="github", license="by", fileType="fbx", sha256="b" * 64, metadata="{}"),
        dict(fileIdentifier=ids["G4"], source="github", license=None, fileType="glb", sha256="c" * 64, metadata="{}"),
        dict(fileIdentifier=ids["G5"], source="github", license="by", fileType="glb", sha256=None, metadata="{}"),
        dict(fileIdentifier=ids["G6"], source="github", license="by", fileType="glb", sha256="../x", metadata="{}"),
    ])
    write_xl_parquet(root, "sketchfab", [
        dict(fileIdentifier=ids["S1"], source="sketchfab", license="by", fileType="glb", sha256=boxanim, metadata="{}"),
        dict(fileIdentifier=ids["S2"], source="sketchfab", license="by-nc", fileType="glb", sha256="d" * 64, metadata="{}"),
        dict(fileIdentifier=ids["S3"], source="sketchfab", license="by", fileType="glb", sha256=fox, metadata="{}"),
    ])
    write_xl_parquet(root, "smithsonian", [
        dict(fileIdentifier=ids["M1"], source="smithsonian", license="CC0", fileType="glb", sha256=box, metadata="{}"),
        dict(fileIdentifier=ids["M2"], source="smithsonian", license="CC0", fileType="glb", sha256="e" * 64, metadata="{}"),
    ])
    write_xl_parquet(root, "thingiverse", [
        dict(fileIdentifier=ids["T1"], source="thingiverse", license="Creative Commons - Attribution", fileType="stl",
             sha256="f" * 64, metadata="{}"),
    ])
    # files where the package's download code puts them
    (root / "github/repos/org1/repo1/models").mkdir(parents=True)
    shutil.copy(gltf_dir / "Fox.glb", root / "github/repos/org1/repo1/models/Fox.glb")
    (root / "hf-objaverse-v1/glbs/000-007").mkdir(parents=True)
    shutil.copy(gltf_dir / "BoxAnimated.glb", root / f"hf-objaverse-v1/glbs/000-007/{sf_uid}.glb")
    (root / "smithsonian/objects").mkdir(parents=True)
    shutil.copy(gltf_dir / "Box.glb", root / f"smithsonian/objects/{get_uid_from_str(ids['M1'])}.glb")
    return root, ids, {"fox": fox, "boxanim": boxanim, "box": box}


def _curate(root, tmp_path, **kw):
    cfg = CurateConfig(source="objaverse-xl", cache_dir=str(root), out=str(tmp_path / "m.parquet"),
                       dropped_out=str(tmp_path / "dropped.parquet"), **kw)
    res = curate(cfg, progress=False)
    return res, read_manifest(res.manifest), pd.read_parquet(res.dropped_out)


def test_gltf_rows_kept_others_dropped_with_reasons(xl, tmp_path):
    root, ids, sha = xl
    res, m, dropped = _curate(root, tmp_path)
    by_id = {u.split(":", 2)[2] if u.startswith("objaverse-xl:") else u: r for u, r in zip(dropped.uri, dropped.reason)}
    m1_file = str((root / f"smithsonian/objects/{get_uid_from_str(ids['M1'])}.glb").resolve())  # read from the cache
    assert by_id == {ids["G3"]: "unsupported_format", ids["T1"]: "unsupported_format", ids["G4"]: "license",
                     ids["G5"]: "bad_annotation", ids["G6"]: "invalid_uid", ids["S2"]: "license",
                     ids["S3"]: "duplicate", m1_file: "static"}
    assert res.dropped["unsupported_format"] == (2, 0)
    kept = m.groupby("file_identifier")["clip"].apply(list).to_dict()
    assert kept == {ids["G1"]: [0, 1, 2], ids["G2"]: [0], ids["S1"]: [0], ids["M2"]: [0]}
    assert set(m.source) == {"objaverse-xl"} and (m.uid == m.sha256).all()
    assert dict(zip(m.file_identifier, m.license)) == {ids["G1"]: "by", ids["G2"]: "by", ids["S1"]: "by", ids["M2"]: "cc0"}


def test_cached_files_are_read_uncached_rows_wait_for_render_time(xl, tmp_path):
    root, ids, sha = xl
    _, m, _ = _curate(root, tmp_path)
    fox = m[m.file_identifier == ids["G1"]].sort_values("clip")
    assert fox.clip_name.tolist() == ["Survey", "Walk", "Run"] and (fox.clip_count == 3).all()
    assert fox.uri.iloc[0] == str((root / "github/repos/org1/repo1/models/Fox.glb").resolve())
    walk = m[m.file_identifier == ids["G2"]]
    assert walk.clip_count.isna().all() and walk.static.isna().all() and walk.uri.iloc[0] == f"objaverse-xl:github:{ids['G2']}"
    assert m[m.file_identifier == ids["S1"]].uri.iloc[0].endswith(".glb")


def test_xl_sources_choose_the_files_and_missing_ones_fail_fast(xl, tmp_path):
    root, ids, _ = xl
    (root / "thingiverse" / "thingiverse.parquet").unlink()
    with pytest.raises(CurationError) as err:
        _curate(root, tmp_path)
    assert str(root / "thingiverse" / "thingiverse.parquet") in str(err.value) and "resolve/main/thingiverse" in str(err.value)
    _, m, dropped = _curate(root, tmp_path, xl_sources=("smithsonian",))
    assert set(m.file_identifier) == {ids["M2"]} and set(dropped.reason) == {"static"}


def test_unreadable_or_wrong_parquet_is_a_clear_error(xl, tmp_path):
    root, _, _ = xl
    (root / "smithsonian" / "smithsonian.parquet").write_text("not parquet")
    with pytest.raises(CurationError, match="smithsonian.parquet: not a readable Parquet annotation file"):
        _curate(root, tmp_path, xl_sources=("smithsonian",))
    pd.DataFrame({"fileIdentifier": ["x"], "license": ["by"]}).to_parquet(root / "smithsonian" / "smithsonian.parquet")
    with pytest.raises(CurationError, match="missing column.*source, fileType, sha256"):
        _curate(root, tmp_path, xl_sources=("smithsonian",))


def test_fetch_object_from_cache_and_offline(xl, tmp_path):
    root, ids, sha = xl
    row = {"uid": sha["fox"], "uri": f"objaverse-xl:github:{ids['G1']}", "sha256": sha["fox"]}
    assert resolve_asset(row, cache_dir=str(root)) == (root / "github/repos/org1/repo1/models/Fox.glb").resolve()
    row = {"uid": sha["box"], "uri": f"objaverse-xl:smithsonian:{ids['M1']}", "sha256": sha["box"]}
    assert resolve_asset(row, cache_dir=str(root)).name == f"{get_uid_from_str(ids['M1'])}.glb"
    row = {"uid": sha["boxanim"], "uri": f"objaverse-xl:sketchfab:{ids['S1']}", "sha256": sha["boxanim"]}
    assert resolve_asset(row, cache_dir=str(root)).parent.name == "000-007"
    for key in ("M2", "S2", "G2"):  # not cached: objaverse.xl's real download code runs, and fails offline
        row = {"uid": "e" * 64, "uri": f"objaverse-xl:{ {'M': 'smithsonian', 'S': 'sketchfab', 'G': 'github'}[key[0]]}:{ids[key]}",
               "sha256": "e" * 64}
        with pytest.raises(AssetUnavailable) as err:
            resolve_asset(row, cache_dir=str(root))
        assert err.value.reason == "download_failed", (key, err.value)
        assert key != "G2" or "already in" in err.value.detail  # the package skips a repository it already has
    other_repo = f"https://github.com/org2/repo2/blob/{COMMIT}/a.glb"  # not downloaded: `git clone` runs and fails offline
    with pytest.raises(AssetUnavailable) as err:
        resolve_asset({"uid": "e" * 64, "uri": f"objaverse-xl:github:{other_repo}", "sha256": "e" * 64}, cache_dir=str(root))
    assert err.value.reason == "download_failed" and "missing upstream, or offline" in err.value.detail
    with pytest.raises(AssetUnavailable) as err:
        resolve_asset({"uid": "e" * 64, "uri": "objaverse-xl:nowhere:x"}, cache_dir=str(root))
    assert err.value.reason == "bad_uri"
    escape = f"https://github.com/org1/repo1/blob/{COMMIT}/../../../../etc/passwd"
    with pytest.raises(AssetUnavailable):
        resolve_asset({"uid": "e" * 64, "uri": f"objaverse-xl:github:{escape}"}, cache_dir=str(root))
