"""The member index (DESIGN.md §4) that ShardWriter writes, checked against Python's tarfile as an
independent reader: long (GNU) names, empty and block-sized members, every row exact; and the commit
order in a local folder (no stats.json before the index)."""

from __future__ import annotations

import io
import tarfile

import pyarrow.parquet as pq

from contracts import layout, shard_index
from pipeline.shards import ShardWriter
from render.result import SampleResult


def _result(uid: str, sizes: dict[str, int]) -> SampleResult:
    key = f"{uid}_000"
    members = {f"{key}.{suffix}": bytes((i * 7 + j) % 251 for j in range(n)) for i, (suffix, n) in enumerate(sizes.items())}
    return SampleResult(uid, 0, key, "ok", None, None, 0.5, members, {})


def test_every_row_gives_its_member_exactly_as_tarfile_reads_it(tmp_path):
    w = ShardWriter(tmp_path, 7)
    w.add(_result("a", {"json": 10, "t000.v000.png": 512, "t000.v000.depth.png": 0, "t000.v001.png": 513}))
    w.add(_result("b" * 120, {"json": 1000, "t000.v000.png": 1}))  # names over 100 bytes: GNU long-name headers
    w.add(SampleResult.problem("c", 0, "c_000", "import_failed", "x", 0.1))  # a failed row has no members
    w.commit()
    data = (tmp_path / layout.tar_name(7)).read_bytes()
    table = pq.read_table(tmp_path / layout.members_name(7))
    assert table.column_names == ["name", "offset", "size"]
    assert [str(t) for t in table.schema.types] == ["string", "int64", "int64"]
    rows = table.to_pylist()
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        infos = [m for m in tf.getmembers() if m.isfile()]
        truth = {m.name: tf.extractfile(m).read() for m in infos}
    assert [(r["name"], r["offset"], r["size"]) for r in rows] == [(m.name, m.offset_data, m.size) for m in infos]
    assert len(rows) == 6 and any(len(r["name"]) > 100 for r in rows)
    for r in rows:
        assert data[r["offset"]: r["offset"] + r["size"]] == truth[r["name"]]
    assert layout.read_member_index((tmp_path / layout.members_name(7)).read_bytes(), "x") == \
        [(r["name"], r["offset"], r["size"]) for r in rows]
    assert layout.tar_member_offsets(tmp_path / layout.tar_name(7)) == [(r["name"], r["offset"], r["size"]) for r in rows]


def test_an_aborted_writer_leaves_no_index_and_a_commit_writes_stats_last(tmp_path):
    w = ShardWriter(tmp_path, 1)
    w.add(_result("a", {"json": 3}))
    w.abort()
    assert list(tmp_path.iterdir()) == []
    w = ShardWriter(tmp_path, 1)
    w.add(_result("a", {"json": 3}))
    w.commit()
    mtimes = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    assert mtimes[layout.stats_name(1)] >= max(mtimes[layout.tar_name(1)], mtimes[layout.parquet_name(1)],
                                               mtimes[layout.members_name(1)])


def test_the_committed_shard_index_updated_per_commit_equals_a_full_rebuild(tmp_path):
    import json

    from training.data import synthetic

    def commit(n: int) -> None:
        synthetic.commit_shard(tmp_path, n, [synthetic.make_sample(f"u{n}", n, views=2, frames=1, size=8)])

    for n in range(3):
        commit(n)
    shard_index.write_index(tmp_path)
    commit(5)
    shard_index.write_index(tmp_path, refresh={5})  # what pipeline render does after each commit
    incremental = json.loads((tmp_path / layout.INDEX_NAME).read_text())
    shard_index.write_index(tmp_path)
    assert incremental == json.loads((tmp_path / layout.INDEX_NAME).read_text())
    assert [s["shard"] for s in incremental["shards"]] == [0, 1, 2, 5]
    (tmp_path / layout.stats_name(1)).unlink()  # uncommitted (e.g. --force in progress): gone from the index
    shard_index.write_index(tmp_path, refresh={5})
    assert [s["shard"] for s in json.loads((tmp_path / layout.INDEX_NAME).read_text())["shards"]] == [0, 2, 5]


def test_status_names_the_shards_without_a_member_index(tmp_path):
    from pipeline.status import collect_status, format_report
    from training.data import synthetic

    synthetic.write_dataset(tmp_path, 2, 1, views=2, frames=1, size=8)  # written like older renders: no index
    w = ShardWriter(tmp_path, 2)
    w.add(_result("a", {"json": 3}))
    w.commit()
    rep = collect_status(tmp_path)
    assert rep.committed == [0, 1, 2] and rep.no_member_index == [0, 1]
    assert "without a member index (trainers stream them whole): 0-1" in format_report(rep)


def test_local_range_reads_follow_a_shard_replaced_in_place(tmp_path):
    # --retry-failed and --force replace a committed tar by a rename; a reader that kept a handle on
    # the old file must not serve the old bytes at the new index's offsets (a `--follow` trainer).
    from contracts import reads

    w = ShardWriter(tmp_path, 3)
    w.add(_result("a", {"json": 10, "t000.v000.png": 600}))
    w.commit()
    tar = str(tmp_path / layout.tar_name(3))
    name, off, size = layout.tar_member_offsets(tar)[1]
    old = reads.read_range(tar, off, size)
    w = ShardWriter(tmp_path, 3)  # the same names, other bytes: a re-render
    w.add(SampleResult("a", 0, "a_000", "ok", None, None, 0.5,
                       {"a_000.json": b"x" * 10, "a_000.t000.v000.png": b"\x07" * 600}, {}))
    w.commit()
    name2, off2, size2 = layout.tar_member_offsets(tar)[1]
    assert (name2, off2, size2) == (name, off, size) and old != b"\x07" * 600
    assert reads.read_range(tar, off2, size2) == b"\x07" * 600
