"""The Ray render pool on a real local Ray instance with real Blender actors: scheduling, real crashes,
real hangs, recycling. Faults are injected through the documented test-only PIPELINE_TEST_FAULTS."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from manifests import read_manifest, sample_key
from contracts.layout import committed_shards, parquet_name, stats_name, tar_name
from pipeline.scheduler import PoolConfig, RenderPool, parse_faults
from contracts.shardread import iter_shard
from pipeline.assembly import render_shard

pytestmark = [pytest.mark.ray, pytest.mark.blender]


def _shards(manifest_path, only=None):
    from pipeline.runner import rows_by_shard

    return rows_by_shard(read_manifest(manifest_path), only)


def _mixed_shard(manifest_path):
    """A shard holding clips of at least two assets, so a fault on one uid leaves others to check."""
    shards = _shards(manifest_path)
    for n, rows in shards.items():
        if len({r["uid"] for r in rows}) >= 2:
            return n, rows
    raise AssertionError("no shard with two assets; change the fixture's seed or shard size")


def _parquet(out, n):
    return {r["key"]: r for r in pq.read_table(out / parquet_name(n)).to_pylist()}


def _fault_once(monkeypatch, tmp_path, kind: str, uid: str) -> None:
    """The test-only fault switch: `kind` (crash or hang) on `uid`, the first time only."""
    monkeypatch.setenv("PIPELINE_TEST_FAULTS", f"{kind}={uid}")
    monkeypatch.setenv("PIPELINE_TEST_FAULTS_ONCE_DIR", str(tmp_path / "once"))
    (tmp_path / "once").mkdir()


def test_parse_faults():
    assert parse_faults({"PIPELINE_TEST_FAULTS": "crash=a,hang=b_1"}) == {"a": "crash", "b_1": "hang"}
    assert parse_faults({}) == {}
    with pytest.raises(ValueError, match="PIPELINE_TEST_FAULTS"):
        parse_faults({"PIPELINE_TEST_FAULTS": "explode=a"})


def test_a_local_instance_runs_its_workers_at_niceness_0(ray_local):
    # Ray's default worker niceness (15) made samples ~5% slower than a plain process (BENCHMARKS.md).
    @ray_local.remote(num_cpus=1)
    def niceness() -> int:
        import os

        return os.getpriority(os.PRIO_PROCESS, 0)

    assert ray_local.get(niceness.remote(), timeout=60) == 0


def test_pool_commits_every_shard_with_every_row_once(ray_local, proc_manifest, tiny_spec, tmp_path):
    shards = _shards(proc_manifest)
    assert len(shards) >= 2
    pool = RenderPool(tiny_spec, tmp_path, PoolConfig(workers=2, progress=False))
    stats = pool.run(shards)
    assert sorted(stats) == sorted(shards) == committed_shards(tmp_path)
    nodes = set()
    for n, rows in shards.items():
        want = {sample_key(r["uid"], int(r["clip"])) for r in rows}
        got = _parquet(tmp_path, n)
        assert set(got) == want
        assert all(r["status"] == "ok" for r in got.values()), [(k, r["reason"], r["detail"]) for k, r in got.items()]
        in_tar = [s.key for s in iter_shard(tmp_path / tar_name(n))]
        assert sorted(in_tar) == sorted(want)  # each sample exactly once
        nodes |= {r["worker_pid"] for r in got.values()}
        st = json.loads((tmp_path / stats_name(n)).read_text())
        assert st["ok"] == len(want) and st["scheduler"] == "ray"
    assert len(nodes) == 2  # both workers did work
    assert pool.counts["actors_started"] == 2
    assert not list(tmp_path.glob(".*tmp*"))


def test_pool_matches_the_plain_render_shard(ray_local, proc_manifest, tiny_spec, tmp_path):
    shards = _shards(proc_manifest, only=[0])
    RenderPool(tiny_spec, tmp_path / "ray", PoolConfig(workers=1, progress=False)).run(shards)
    render_shard(shards[0], tiny_spec, tmp_path / "plain", 0)
    a = {s.key: s for s in iter_shard(tmp_path / "ray" / tar_name(0))}
    b = {s.key: s for s in iter_shard(tmp_path / "plain" / tar_name(0))}
    assert set(a) == set(b)
    for key in a:
        assert sorted(a[key].members) == sorted(b[key].members)
        assert a[key].meta["c2w"] == b[key].meta["c2w"] and a[key].meta["times_s"] == b[key].meta["times_s"]


def test_crash_is_retried_on_a_fresh_worker(ray_local, proc_manifest, tiny_spec, tmp_path, monkeypatch):
    shards = _shards(proc_manifest, only=[0])
    victim = shards[0][0]["uid"]
    _fault_once(monkeypatch, tmp_path, "crash", victim)
    pool = RenderPool(tiny_spec, tmp_path / "out", PoolConfig(workers=1, max_attempts=2, progress=False))
    pool.run(shards)
    rows = _parquet(tmp_path / "out", 0)
    assert all(r["status"] == "ok" for r in rows.values())
    crashed = [r for r in rows.values() if r["uid"] == victim]
    assert crashed and all(r["attempts"] == 2 for r in crashed[:1])
    assert pool.counts["worker_crashed"] == 1
    assert pool.counts["actors_started"] == 2  # the dead one was replaced


def test_crash_every_time_gives_a_failed_row_and_the_shard_commits(ray_local, proc_manifest, tiny_spec, tmp_path, monkeypatch):
    n, rows = _mixed_shard(proc_manifest)
    victim = rows[-1]
    monkeypatch.setenv("PIPELINE_TEST_FAULTS", f"crash={victim['uid']}")
    pool = RenderPool(tiny_spec, tmp_path, PoolConfig(workers=1, max_attempts=2, progress=False))
    pool.run({n: rows})
    rows = _parquet(tmp_path, n)
    bad = [r for r in rows.values() if r["uid"] == victim["uid"]]
    assert bad and all(r["status"] == "failed" and r["reason"] == "worker_crashed" for r in bad)
    assert "after 2 attempt(s)" in bad[0]["detail"]
    good = [r for r in rows.values() if r["uid"] != victim["uid"]]
    assert good and all(r["status"] == "ok" for r in good)
    assert committed_shards(tmp_path) == [n]


def test_hang_is_killed_at_the_timeout_and_retried(ray_local, proc_manifest, tiny_spec, tmp_path, monkeypatch):
    shards = _shards(proc_manifest, only=[1])
    victim = shards[1][0]["uid"]
    _fault_once(monkeypatch, tmp_path, "hang", victim)
    pool = RenderPool(tiny_spec, tmp_path / "out", PoolConfig(workers=1, asset_timeout_s=20, progress=False))
    pool.run(shards)
    rows = _parquet(tmp_path / "out", 1)
    assert all(r["status"] == "ok" for r in rows.values()), rows
    assert pool.counts["timeout"] == 1
    assert pool.counts["actors_started"] == 2


def test_hang_every_time_is_recorded_as_timeout(ray_local, proc_manifest, tiny_spec, tmp_path, monkeypatch):
    n, rows = _mixed_shard(proc_manifest)
    victim = rows[0]["uid"]
    monkeypatch.setenv("PIPELINE_TEST_FAULTS", f"hang={victim}")
    pool = RenderPool(tiny_spec, tmp_path, PoolConfig(workers=1, asset_timeout_s=15, max_attempts=1, progress=False))
    pool.run({n: rows})
    rows = _parquet(tmp_path, n)
    bad = [r for r in rows.values() if r["uid"] == victim]
    assert bad and all(r["status"] == "failed" and r["reason"] == "timeout" for r in bad)
    assert any(r["status"] == "ok" for r in rows.values() if r["uid"] != victim)


def test_workers_are_recycled_by_count_and_by_memory(ray_local, proc_manifest, tiny_spec, tmp_path):
    shards = _shards(proc_manifest, only=[0])
    n = len(shards[0])
    pool = RenderPool(tiny_spec, tmp_path / "a", PoolConfig(workers=1, recycle_after=1, progress=False))
    pool.run(shards)
    assert pool.counts["recycled"] == n and pool.counts["actors_started"] == n + 1
    pool = RenderPool(tiny_spec, tmp_path / "b", PoolConfig(workers=1, recycle_rss_gb=0.05, progress=False))
    pool.run(shards)
    assert pool.counts["recycled"] == n  # a bpy process is far above 50 MB
    rows = _parquet(tmp_path / "b", 0)
    assert len({r["worker_pid"] for r in rows.values()}) == n
