"""The manifest contract: read_manifest / write_manifest validate and say what is wrong."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from manifests import ManifestError, manifest_info, read_manifest, sample_key, stable_uid, write_manifest
from contracts.uids import is_valid_uid


def _rows(n=3, **over):
    df = pd.DataFrame({
        "uid": [f"asset{i}" for i in range(n)],
        "clip": [0] * n,
        "clip_name": ["walk"] * n,
        "source": ["local"] * n,
        "uri": [f"/data/asset{i}.glb" for i in range(n)],
        "sha256": [None] * n,
        "license": ["cc0"] * n,
        "shard": [0] * n,
        "weight": [1.0] * n,
        "round": [0] * n,
    })
    for k, v in over.items():
        df[k] = v
    return df


def test_round_trip_keeps_types_and_metadata(tmp_path):
    p = write_manifest(_rows(), tmp_path / "m.parquet", command="pipeline curate --source local", settings={"limit": 3})
    schema = pq.read_schema(p)
    assert schema.field("clip").type == pa.int32()
    assert schema.field("shard").type == pa.int32()
    assert schema.field("round").type == pa.int32()
    assert schema.field("weight").type == pa.float32()
    assert schema.field("uid").type == pa.string()
    df = read_manifest(p)
    assert list(df["uid"]) == ["asset0", "asset1", "asset2"]
    info = manifest_info(p)
    assert info.command == "pipeline curate --source local"
    assert info.settings == {"limit": 3}


def test_write_is_atomic_no_temp_left(tmp_path):
    write_manifest(_rows(), tmp_path / "m.parquet")
    assert [p.name for p in tmp_path.iterdir()] == ["m.parquet"]


def test_missing_column_is_named(tmp_path):
    df = _rows().drop(columns=["license"])
    with pytest.raises(ManifestError, match="missing required column.*license"):
        write_manifest(df, tmp_path / "m.parquet")


def test_missing_column_in_file_is_named(tmp_path):
    table = pa.Table.from_pandas(_rows().drop(columns=["shard"]), preserve_index=False)
    pq.write_table(table, tmp_path / "bad.parquet")
    with pytest.raises(ManifestError, match=r"bad\.parquet: missing required column.*shard"):
        read_manifest(tmp_path / "bad.parquet")


def test_wrong_type_is_named(tmp_path):
    table = pa.Table.from_pandas(_rows(clip=["a", "b", "c"]), preserve_index=False)
    pq.write_table(table, tmp_path / "bad.parquet")
    with pytest.raises(ManifestError, match="column 'clip' has the wrong type"):
        read_manifest(tmp_path / "bad.parquet")
    with pytest.raises(ManifestError, match="column 'weight' has the wrong type"):
        write_manifest(_rows(weight=["x", "y", "z"]), tmp_path / "m.parquet")


def test_duplicate_uid_clip_is_an_error(tmp_path):
    df = _rows(uid=["a", "a", "b"])
    with pytest.raises(ManifestError, match=r"duplicate \(uid, clip\) \('a', 0\)"):
        write_manifest(df, tmp_path / "m.parquet")


@pytest.mark.parametrize("uid", ["../x", "has space", "", "a" * 129, "ümlaut", "a/b", "a.b"])
def test_invalid_uid_is_an_error(tmp_path, uid):
    with pytest.raises(ManifestError, match="invalid uid"):
        write_manifest(_rows(uid=[uid, "b", "c"]), tmp_path / "m.parquet")
    assert not is_valid_uid(uid)


def test_nulls_where_not_allowed(tmp_path):
    with pytest.raises(ManifestError, match="column 'uri' has 1 null"):
        write_manifest(_rows(uri=["a", None, "c"]), tmp_path / "m.parquet")


def test_unknown_source_and_bad_weight(tmp_path):
    with pytest.raises(ManifestError, match="unknown source"):
        write_manifest(_rows(source=["web", "local", "local"]), tmp_path / "m.parquet")
    with pytest.raises(ManifestError, match="weight"):
        write_manifest(_rows(weight=[1.0, -1.0, 1.0]), tmp_path / "m.parquet")


def test_not_parquet_and_absent_files(tmp_path):
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ManifestError, match="junk.parquet: not a readable Parquet file"):
        read_manifest(tmp_path / "junk.parquet")
    with pytest.raises(ManifestError, match="no such manifest"):
        read_manifest(tmp_path / "absent.parquet")


def test_sample_key_and_stable_uid():
    assert sample_key("abc", 3) == "abc_003"
    with pytest.raises(ValueError):
        sample_key("../x", 0)
    u = stable_uid("sub dir/My Model.glb")
    assert u == stable_uid("sub dir/My Model.glb") and is_valid_uid(u)
    assert u != stable_uid("sub dir/My Model2.glb")


def test_extra_text_column_with_gaps_is_text_with_nulls(tmp_path):
    # `pipeline mine` writes `pool_reason` only on pool rows; the other rows are NaN (pandas 3 text dtype) or
    # None. Converting the Python list made pyarrow guess "double" from a leading NaN and fail (seen on the
    # GPU host's pandas); the column must round-trip as text with nulls whichever missing value pandas uses.
    for gap in (float("nan"), None):
        df = _rows(3, pool_reason=pd.Series([gap, "picked: like asset7", gap], dtype=object))
        p = write_manifest(df, tmp_path / "m.parquet")
        assert pq.read_schema(p).field("pool_reason").type == pa.string()
        back = read_manifest(p)
        assert back["pool_reason"].isna().tolist() == [True, False, True]
        assert back["pool_reason"].iloc[1] == "picked: like asset7"
