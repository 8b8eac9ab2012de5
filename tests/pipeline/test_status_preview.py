"""`pipeline status` and `pipeline preview` on a real rendered shard (Blender, no Ray)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from manifests import read_manifest, sample_key
from contracts.layout import INDEX_NAME, parquet_name, stats_name, tar_name
from pipeline.runner import rows_by_shard
from pipeline.assembly import render_shard
from tests.pipeline.conftest import run_cli

pytestmark = pytest.mark.blender


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, proc_manifest, tiny_spec):
    """Shard 0 of the procedural manifest rendered and committed; shard 1 left as crash debris."""
    out = tmp_path_factory.mktemp("rendered")
    shards = rows_by_shard(read_manifest(proc_manifest))
    render_shard(shards[0], tiny_spec, out, 0)
    (out / tar_name(1)).write_bytes(b"half a tar")  # what a killed run leaves: a tar, no stats.json
    return out, shards


def test_status_counts_committed_partial_missing(rendered, proc_manifest):
    out, shards = rendered
    r = run_cli("status", str(out), "--manifest", str(proc_manifest), "--json")
    rep = json.loads(r.stdout)
    assert rep["committed"] == [0]
    assert rep["partial"] == [1]
    assert rep["missing"] == sorted(set(shards) - {0, 1})
    assert sum(rep["samples"].values()) == len(shards[0])
    assert rep["samples_missing"] == 0 and rep["samples_duplicated"] == 0
    assert rep["images"] == json.loads((out / stats_name(0)).read_text())["images"] > 0
    index = json.loads((out / INDEX_NAME).read_text())
    assert [s["shard"] for s in index["shards"]] == [0]


def test_status_text_names_reasons_and_missing_samples(rendered, proc_manifest, tmp_path):
    out, shards = rendered
    # A copy of the dataset where one sample's row was dropped from the shard parquet, and one row failed.
    import pyarrow.parquet as pq

    d = tmp_path / "ds"
    shutil.copytree(out, d)
    table = pq.read_table(d / parquet_name(0)).to_pylist()
    table[0]["status"], table[0]["reason"] = "failed", "import_failed"
    from pipeline.shards import write_rows_parquet

    write_rows_parquet(table[:-1], d / parquet_name(0))
    r = run_cli("status", str(d), "--manifest", str(proc_manifest))
    assert "import_failed" in r.stdout
    assert "1 missing" in r.stdout and "manifest row(s) have no sample" in r.stdout
    assert "partial: 1" in r.stdout


def test_status_without_manifest_and_bad_manifest(rendered, tmp_path):
    out, _ = rendered
    r = run_cli("status", str(out))
    assert "1 committed" in r.stdout and "missing" not in r.stdout.split("\n")[1]
    (tmp_path / "bad.parquet").write_bytes(b"nope")
    r = run_cli("status", str(out), "--manifest", str(tmp_path / "bad.parquet"), check=False)
    assert r.returncode != 0 and "not a readable Parquet file" in r.stderr


def test_preview_writes_contact_sheets_and_gifs(rendered, tiny_spec, tmp_path):
    out, shards = rendered
    r = run_cli("preview", str(out), "--shard", "0", "--out", str(tmp_path / "pv"))
    keys = sorted(sample_key(row["uid"], int(row["clip"])) for row in shards[0])
    pngs = sorted(p.stem for p in (tmp_path / "pv").glob("*.png"))
    gifs = sorted(p.stem for p in (tmp_path / "pv").glob("*.gif"))
    assert pngs == gifs == keys
    res, T, V = tiny_spec.resolution, tiny_spec.num_frames, tiny_spec.num_views
    with Image.open(tmp_path / "pv" / f"{keys[0]}.png") as im:
        assert im.size == (T * res, 14 + V * 2 * res)  # times across, (view, depth) rows down, a header
        sheet = np.asarray(im.convert("RGB")).astype(int)
    # Something was drawn in the first view row (not the flat background grey of an empty sheet).
    assert sheet[14:14 + res].std() > 5
    with Image.open(tmp_path / "pv" / f"{keys[0]}.gif") as g:
        assert g.n_frames == T
    assert str(tmp_path / "pv") in r.stdout


def test_preview_one_key_and_errors(rendered, tmp_path):
    out, shards = rendered
    key = sample_key(shards[0][0]["uid"], int(shards[0][0]["clip"]))
    run_cli("preview", str(out), "--shard", "0", "--key", key, "--out", str(tmp_path / "one"), "--no-depth")
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == [f"{key}.gif", f"{key}.png"]
    r = run_cli("preview", str(out), "--shard", "0", "--key", "nope_000", "--out", str(tmp_path / "x"), check=False)
    assert r.returncode != 0 and "nope_000" in r.stderr
    r = run_cli("preview", str(out), "--shard", "7", check=False)
    assert r.returncode != 0 and "no such shard tar" in r.stderr


def test_preview_never_writes_outside_its_folder_for_a_bad_key_in_the_tar(tmp_path, caplog):
    # A tar member name is data, not a path: a sample "key" like /somewhere/evil must not become
    # /somewhere/evil.png. The bad sample is left out (with a warning), the good one is previewed.
    from pipeline.preview import preview_shard
    from training.data import synthetic

    outside = tmp_path / "outside"
    outside.mkdir()
    assert "." not in str(outside)  # the key is the member name up to its first dot
    good = synthetic.make_sample("good", 0, views=2, frames=2, size=16)
    evil = {str(outside / "evil") + name[len("good_000"):]: data for name, data in good.items()}
    data = tmp_path / "data"
    data.mkdir()
    synthetic.write_tar(data / tar_name(0), [evil, good])  # (uncommitted: preview warns and goes on)
    with caplog.at_level("WARNING"):
        written = preview_shard(data, 0, out_dir=tmp_path / "prev")
    assert sorted(p.name for p in written) == ["good_000.gif", "good_000.png"]
    assert list(outside.iterdir()) == []
    assert "evil" in caplog.text and "not a sample key" in caplog.text


def test_status_names_a_corrupt_stats_json_instead_of_crashing(tmp_path):
    from contracts.layout import read_stats
    from pipeline.status import collect_status

    (tmp_path / tar_name(0)).write_bytes(b"")
    (tmp_path / stats_name(0)).write_text("{trunc")
    with pytest.raises(ValueError, match=f"{stats_name(0)}: not a valid stats.json"):
        read_stats(tmp_path, 0)
    rep = collect_status(tmp_path, update_index=False)
    assert rep.committed == [0] and len(rep.problems) == 1
    assert "shard 0: unreadable stats.json" in rep.problems[0] and str(tmp_path / stats_name(0)) in rep.problems[0]
    r = run_cli("status", str(tmp_path), check=False)
    assert r.returncode == 0 and "unreadable stats.json" in r.stdout + r.stderr and "Traceback" not in r.stderr
