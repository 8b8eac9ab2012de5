"""The committed-shard index at scale (contracts.shard_index): the commit log, compaction, the view
readers merge, and their costs counted at a real S3-compatible server (moto on loopback)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time


from contracts import layout, listing, shard_index, storage
from pipeline.shards import ShardWriter, clear_shard
from render.result import SampleResult

from .conftest import TINY_FLAGS, run_cli


def _result(key: str, status: str = "ok") -> SampleResult:
    uid, clip = key.rsplit("_", 1)
    if status != "ok":
        return SampleResult.problem(uid, int(clip), key, "import_failed", "broken", 0.1)
    return SampleResult(uid=uid, clip=int(clip), key=key, status="ok", reason=None, detail=None, seconds=0.2,
                        members={f"{key}.json": b'{"a": 1}', f"{key}.t000.v000.png": b"p" * 700}, stats={"images": 1})


def commit(target, n: int, failed: bool = False) -> None:
    w = ShardWriter(target, n)
    w.add(_result(f"u{n}_000"))
    if failed:
        w.add(_result(f"v{n}_000", "failed"))
    w.commit()


def _shards(target) -> list[int]:
    return shard_index.IndexView(target).load().committed()


def test_the_view_merges_index_and_log_and_equals_a_listing_through_commits_removals_and_compactions(tmp_path):
    for n in range(5):
        commit(tmp_path, n, failed=n == 2)
    assert not (tmp_path / layout.INDEX_NAME).exists() and _shards(tmp_path) == [0, 1, 2, 3, 4]  # the log alone
    shard_index.compact(tmp_path)
    index = json.loads((tmp_path / layout.INDEX_NAME).read_text())
    assert index["schema_version"] == 1 and [e["shard"] for e in index["shards"]] == [0, 1, 2, 3, 4]
    assert [e["tar"] for e in index["shards"]] == [layout.tar_name(n) for n in range(5)]  # DESIGN.md §6 format kept
    e2 = index["shards"][2]
    assert (e2["samples"], e2["ok"], e2["failed"], e2["reasons"]) == (1, 1, 1, {"failed": {"import_failed": 1}})
    assert index["log_through"] == max(os.listdir(tmp_path / shard_index.LOG_DIR))
    clear_shard(tmp_path, 1)          # a removal entry, then the files go
    commit(tmp_path, 7)
    clear_shard(tmp_path, 3)
    commit(tmp_path, 3)               # re-committed after its removal: the newer entry wins
    truth = layout.committed_shards(tmp_path)
    assert _shards(tmp_path) == truth == [0, 2, 3, 4, 7]
    shard_index.compact(tmp_path)
    assert [e["shard"] for e in json.loads((tmp_path / layout.INDEX_NAME).read_text())["shards"]] == truth
    view, problems = shard_index.reconcile(tmp_path)  # a listing finds nothing the view missed
    assert problems == [] and view.committed() == truth
    assert {n: shard_index.shard_summary(tmp_path, n) for n in truth} == \
        {n: {k: v for k, v in view.entries[n].items() if k != "log"} for n in truth}  # summaries = the files


def test_an_older_log_entry_never_undoes_a_newer_one_and_junk_in_the_log_is_ignored(tmp_path):
    commit(tmp_path, 4)
    t_old = time.time() - 30
    shard_index.record_removal(tmp_path, 4, t=t_old)  # e.g. a status that listed before the commit
    (tmp_path / shard_index.LOG_DIR / "not-a-log-entry.json").write_text("{")
    assert _shards(tmp_path) == [4]
    shard_index.record_removal(tmp_path, 4)  # now: newer than the commit
    assert _shards(tmp_path) == []


def test_entries_older_than_the_margin_before_log_through_are_taken_from_index_json(tmp_path, monkeypatch):
    commit(tmp_path, 0)
    shard_index.compact(tmp_path)
    long_ago = time.time() - 3 * shard_index.MARGIN_S
    shard_index.record_removal(tmp_path, 0, t=long_ago)  # before the compaction's window: not listed again
    view = shard_index.IndexView(tmp_path).load()
    assert view.committed() == [0]
    late = time.time() - shard_index.MARGIN_S / 2  # became visible late but within the margin: applied
    shard_index.record_removal(tmp_path, 0, t=late)
    assert _shards(tmp_path) == [0]  # still older than the commit entry itself
    commit(tmp_path, 1)
    name = shard_index.log_name(1, "r", 0, time.time() + 5)
    storage.open_store(tmp_path / shard_index.LOG_DIR).write_bytes(name, b"{}")
    assert _shards(tmp_path) == [0]


def test_status_reads_summaries_not_shards_and_rereads_a_shard_whose_files_changed(tmp_path, monkeypatch):
    from pipeline import status

    for n in range(6):
        commit(tmp_path, n, failed=n == 5)
    status.collect_status(tmp_path)  # compacts
    reads = []
    real = shard_index.shard_summary
    monkeypatch.setattr(shard_index, "shard_summary", lambda d, n: reads.append(n) or real(d, n))
    rep = status.collect_status(tmp_path)
    assert reads == [] and rep.samples == {"ok": 6, "failed": 1} and rep.committed == list(range(6))
    from pipeline.shards import write_rows_parquet
    import pyarrow.parquet as pq

    rows = pq.read_table(tmp_path / layout.parquet_name(2)).to_pylist()
    rows[0]["status"], rows[0]["reason"] = "rejected", "too_small"
    write_rows_parquet(rows + [dict(rows[0], key="w2_000", uid="w2")], tmp_path / layout.parquet_name(2))
    rep = status.collect_status(tmp_path)
    assert reads == [2] and rep.samples == {"ok": 5, "failed": 1, "rejected": 2}
    assert rep.reasons["rejected"] == {"too_small": 2}


def test_a_corrupt_index_json_is_named_and_readers_and_status_still_find_every_shard(s3_env):
    from pipeline.status import collect_status
    from training.data import shardspec

    url = f"s3://{s3_env.new_bucket()}/ds"
    for n in range(3):
        commit(url, n)
    shard_index.compact(url)
    store = storage.open_store(url)
    store.write_bytes(layout.INDEX_NAME, b"\x00garbage{")
    view = shard_index.IndexView(url).load()
    assert not view.base and "not a usable committed-shard index" in view.problem and url in view.problem
    assert shardspec.resolve_shards(url) == [f"{url}/{layout.tar_name(n)}" for n in range(3)]  # listed instead
    log_names = list(listing.iter_names(store, shard_index.LOG_DIR))
    store_log = shard_index.log_store(url)
    store_log.write_bytes(log_names[1], b"not json")  # a corrupt log entry: rebuilt from the shard's files
    rep = collect_status(url)
    assert rep.committed == [0, 1, 2] and rep.samples == {"ok": 3} and rep.problems == []
    data = json.loads(store.read_bytes(layout.INDEX_NAME))  # rewritten whole and valid
    assert [e["shard"] for e in data["shards"]] == [0, 1, 2] and data["shards"][1]["ok"] == 1


def test_one_more_commit_costs_the_same_few_requests_at_5_and_at_60_shards(s3_env):
    """Counted at the server: a commit (clear_shard + ShardWriter) in a process that has checked the
    bucket once: one listing of shard-N.*, four file PUTs and one log PUT, whatever the dataset size."""
    costs = {}
    for size in (5, 60):
        url = f"s3://{s3_env.new_bucket()}/ds"
        for n in range(size):
            commit(url, n)
        shard_index.compact(url)
        s3_env.counter.reset()
        clear_shard(url, size)
        commit(url, size)
        costs[size] = s3_env.counter.snapshot()
        s3_env.counter.reset()
        view = shard_index.IndexView(url).load()  # a reader: index.json + the log's tail
        assert view.committed() == list(range(size + 1))
        costs[f"read{size}"] = s3_env.counter.snapshot()
    assert costs[5] == costs[60] == {"LIST": 1, "PUT object": 5}
    assert costs["read5"] == costs["read60"] and costs["read5"]["LIST"] == 1  # index.json (s3fs: HEAD + GET), log tail
    assert sum(costs["read5"].values()) <= 3


def test_a_follow_poll_with_nothing_new_is_one_request(s3_env):
    import torch

    from training import ddp
    from training.data.follow import ShardFollower

    url = f"s3://{s3_env.new_bucket()}/ds"
    for n in range(30):
        commit(url, n)
    shard_index.compact(url)
    world = ddp.DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    f = ShardFollower(url, 0.01, world)
    urls = f.initial()
    assert len(urls) == 30
    time.sleep(0.02)
    s3_env.counter.reset()
    assert f.poll(urls) is None
    assert s3_env.counter.snapshot() == {"LIST": 1}
    commit(url, 30)
    time.sleep(0.02)
    s3_env.counter.reset()
    new = f.poll(urls)
    assert new == urls + [f"{url}/{layout.tar_name(30)}"] and s3_env.counter.snapshot() == {"LIST": 1}


def test_a_follow_poll_while_the_server_is_down_keeps_the_list_and_resumes(s3_server, s3_env, caplog):
    import logging

    import torch

    from training import ddp
    from training.data.follow import ShardFollower

    caplog.set_level(logging.WARNING, logger="training.data.follow")
    url = f"s3://{s3_env.new_bucket()}/ds"
    commit(url, 0)
    shard_index.compact(url)
    f = ShardFollower(url, 0.01, ddp.DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu")))
    urls = f.initial()
    s3_server.stop()
    try:
        time.sleep(0.02)
        assert f.poll(urls) is None and "could not re-read" in caplog.text and url in caplog.text
    finally:
        s3_server.start()
    commit(url, 1)
    time.sleep(0.02)
    assert f.poll(urls) == [f"{url}/{layout.tar_name(n)}" for n in (0, 1)]


def test_killed_between_stats_json_and_its_log_entry_the_next_run_and_status_add_it(s3_server, s3_manifest, tmp_path):
    """A real render killed (SIGKILL) after stats.json, before the commit-log entry: the shard is
    committed (stats.json is the truth) but readers of the index do not see it yet; the next `pipeline
    render` of it skips it (HEAD) and writes its log entry, so readers see it, with no re-render."""
    from training.data import shardspec

    url = f"s3://{s3_server.new_bucket()}/ds"
    env = s3_server.env()
    run_cli("render", "--manifest", str(s3_manifest), "--shard", "0", "--out", url, *TINY_FLAGS, env=env)
    pause = tmp_path / "pause"
    pause.mkdir()
    e = {**os.environ, **env, "PIPELINE_TEST_UPLOAD_PAUSE": str(pause), "PIPELINE_TEST_UPLOAD_PAUSE_AT": "stats",
         "PIPELINE_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "render", "--manifest", str(s3_manifest), "--shard", "1",
                             "--out", url, *TINY_FLAGS], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not (pause / "reached-shard-1").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    os.environ.update(env)
    assert layout.committed_shards(url) == [0, 1]               # committed: stats.json is there
    assert shardspec.resolve_shards(url) == [f"{url}/{layout.tar_name(0)}"]  # not in the index yet
    tar_before = s3_server.client().head_object(Bucket=url.split("/")[2], Key="ds/" + layout.tar_name(1))["ETag"]
    r = run_cli("render", "--manifest", str(s3_manifest), "--shard", "1", "--out", url, *TINY_FLAGS, env=env)
    assert "skipped" in r.stdout or "already committed" in (r.stdout + r.stderr)
    assert shardspec.resolve_shards(url) == [f"{url}/{layout.tar_name(n)}" for n in (0, 1)]
    assert s3_server.client().head_object(Bucket=url.split("/")[2], Key="ds/" + layout.tar_name(1))["ETag"] == tar_before
    r = run_cli("status", url, "--json", env=env)
    assert json.loads(r.stdout)["committed"] == [0, 1]


def test_status_repairs_a_missing_log_entry_and_drops_a_shard_deleted_by_hand(tmp_path):
    for n in range(4):
        commit(tmp_path, n)
    shard_index.compact(tmp_path)
    for name in os.listdir(tmp_path / shard_index.LOG_DIR):  # as if shard 3's writer died before its entry
        if "-000003-c-" in name:
            os.unlink(tmp_path / shard_index.LOG_DIR / name)
    idx = json.loads((tmp_path / layout.INDEX_NAME).read_text())
    idx["shards"] = [e for e in idx["shards"] if e["shard"] != 3]
    (tmp_path / layout.INDEX_NAME).write_text(json.dumps(idx))
    (tmp_path / layout.stats_name(1)).unlink()  # by hand, without a removal entry
    assert _shards(tmp_path) == [0, 1, 2]
    from pipeline.status import collect_status

    rep = collect_status(tmp_path)
    assert rep.committed == [0, 2, 3] and rep.partial == [1]
    assert _shards(tmp_path) == [0, 2, 3]


def test_status_from_index_answers_in_a_few_requests_and_says_what_it_did_not_look_for(s3_env):
    from pipeline.status import collect_status, format_report

    url = f"s3://{s3_env.new_bucket()}/ds"
    for n in range(40):
        commit(url, n, failed=n == 3)
    storage.open_store(url).write_bytes(layout.tar_name(40), b"half a shard")  # partial: no stats.json
    full = collect_status(url)  # lists, compacts
    s3_env.counter.reset()
    quick = collect_status(url, from_index=True)
    assert sum(s3_env.counter.snapshot().values()) <= 4  # index.json (HEAD + GET), the log's tail
    assert (quick.committed, quick.samples, quick.reasons, quick.images) == \
        (full.committed, full.samples, full.reasons, full.images)
    assert full.partial == [40] and quick.partial == [] and not quick.listed
    assert "partial shards not looked for" in format_report(quick)


def test_an_index_json_from_before_the_log_is_kept_by_compaction_and_filled_by_status(tmp_path, monkeypatch):
    from pipeline.status import collect_status
    from training.data import synthetic

    synthetic.write_dataset(tmp_path, 2, 1, views=2, frames=1, size=8)  # as the old code left it:
    old = {"schema_version": 1, "shards": [{"shard": n, "tar": layout.tar_name(n), "samples": 1} for n in (0, 1)]}
    (tmp_path / layout.INDEX_NAME).write_text(json.dumps(old))  # its index.json, no log
    commit(tmp_path, 5)
    reads = []
    real = shard_index.shard_summary
    monkeypatch.setattr(shard_index, "shard_summary", lambda d, n: reads.append(n) or real(d, n))
    shard_index.compact(tmp_path)  # what a render run does: no read of the older shards
    data = json.loads((tmp_path / layout.INDEX_NAME).read_text())
    assert reads == [] and [e["shard"] for e in data["shards"]] == [0, 1, 5]
    assert data["shards"][0] == old["shards"][0] and shard_index.has_summary(data["shards"][2])
    rep = collect_status(tmp_path)  # reads the two older shards once, and caches them
    assert sorted(reads) == [0, 1] and rep.samples == {"ok": 3}
    assert all(shard_index.has_summary(e) for e in json.loads((tmp_path / layout.INDEX_NAME).read_text())["shards"])


def test_a_log_entry_stamped_in_the_future_does_not_blind_later_polls(tmp_path):
    commit(tmp_path, 0)
    shard_index.compact(tmp_path)
    view = shard_index.IndexView(tmp_path).load()
    future = shard_index.log_name(9, "c", 1, time.time() + 86400)  # a host whose clock is a day ahead
    storage.open_store(tmp_path / shard_index.LOG_DIR).write_bytes(future, b"{}")
    assert view.poll() == {9}
    commit(tmp_path, 1)  # stamped now, long before the future entry
    assert view.poll() == {1} and view.committed() == [0, 1, 9]
