"""`pipeline render` end to end on Ray: SIGKILL and resume, --retry-failed, two Ray nodes, a Ray job.

Everything here is real: the command runs as a subprocess, Ray starts for real, Blender renders.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from manifests import read_manifest, sample_key
from contracts.layout import committed_shards, parquet_name, read_stats, tar_name
from pipeline.runner import rows_by_shard
from contracts.shardread import iter_shard
from tests.pipeline.conftest import TINY_FLAGS, run_cli

pytestmark = [pytest.mark.ray, pytest.mark.blender]


def _render_args(manifest: Path, out: Path, *extra: str) -> list[str]:
    return ["render", "--manifest", str(manifest), "--shards", "all", "--out", str(out), *TINY_FLAGS,
            "--workers", "2", "--no-progress", *extra]


def assert_complete(manifest: Path, out: Path) -> None:
    """Every manifest shard committed once; each shard's parquet has exactly its manifest rows, its tar
    exactly the ok ones, each once; no leftovers."""
    shards = rows_by_shard(read_manifest(manifest))
    assert committed_shards(out) == sorted(shards)
    for n, rows in shards.items():
        want = sorted(sample_key(r["uid"], int(r["clip"])) for r in rows)
        table = pq.read_table(out / parquet_name(n)).to_pylist()
        assert sorted(r["key"] for r in table) == want  # no gap, no duplicate
        ok = sorted(r["key"] for r in table if r["status"] == "ok")
        assert sorted(s.key for s in iter_shard(out / tar_name(n))) == ok
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")], "temporary files left behind"


def _kill_group_when(proc: subprocess.Popen, condition, timeout: float = 240) -> None:
    t0 = time.time()
    while not condition():
        if proc.poll() is not None:
            raise AssertionError("the render finished before the kill point; make the job bigger")
        if time.time() - t0 > timeout:
            raise AssertionError("kill point never reached")
        time.sleep(0.05)
    os.killpg(os.getpgid(proc.pid), signal.SIGKILL)  # the whole command: driver, Ray, Blender workers
    proc.wait()


@pytest.mark.parametrize("kill_point", ["early", "after_first_commit"])
def test_sigkill_then_rerun_gives_every_shard_once(proc_manifest, tmp_path, kill_point):
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", *_render_args(proc_manifest, out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    if kill_point == "early":
        # Killed while the first shard is being assembled: its tar exists only under a temporary name.
        _kill_group_when(proc, lambda: out.is_dir() and any(p.name.startswith(".shard-") for p in out.iterdir()))
    else:
        _kill_group_when(proc, lambda: (out / "shard-000000.stats.json").exists())
    before = {n: read_stats(out, n)["committed_at"] for n in committed_shards(out)} if out.is_dir() else {}
    if kill_point == "after_first_commit":
        assert 0 in before
    r = run_cli(*_render_args(proc_manifest, out))
    assert f"already committed {len(before)}" in r.stdout
    assert_complete(proc_manifest, out)
    for n, stamp in before.items():  # shards committed before the kill were not redone
        assert read_stats(out, n)["committed_at"] == stamp


@pytest.mark.parametrize("use_ray", [True, False], ids=["ray", "plain"])
def test_retry_failed_rerenders_only_failed_samples(proc_manifest, tmp_path, use_ray):
    df = read_manifest(proc_manifest)
    shards = rows_by_shard(df)
    n, rows = next((n, rows) for n, rows in shards.items() if len({r["uid"] for r in rows}) >= 2)
    victim = rows[0]
    asset = Path(victim["uri"])
    # Render with the victim's file away: its rows fail with missing_file, the shard commits.
    manifest = tmp_path / "m.parquet"
    moved = tmp_path / "assets"
    shutil.copytree(asset.parent, moved)
    df = df.assign(uri=[str(moved / Path(u).name) for u in df["uri"]])
    from manifests import write_manifest

    write_manifest(df, manifest)
    (moved / asset.name).rename(tmp_path / "away.glb")
    out = tmp_path / "out"
    mode = [] if use_ray else ["--no-ray"]
    args = ["render", "--manifest", str(manifest), "--shard", str(n), "--out", str(out), *TINY_FLAGS, "--no-progress", *mode]
    if use_ray:
        args += ["--workers", "1"]
    run_cli(*args)
    first = {r["key"]: r for r in pq.read_table(out / parquet_name(n)).to_pylist()}
    failed = {k for k, r in first.items() if r["status"] == "failed"}
    assert failed and all(first[k]["reason"] == "missing_file" for k in failed)
    kept_members = {s.key: s.members for s in iter_shard(out / tar_name(n))}
    # Put the file back and retry the failed samples only.
    (tmp_path / "away.glb").rename(moved / asset.name)
    r = run_cli(*args, "--retry-failed")
    assert "retried 1" in r.stdout
    second = {r["key"]: r for r in pq.read_table(out / parquet_name(n)).to_pylist()}
    assert set(second) == set(first)
    assert all(second[k]["status"] == "ok" for k in failed)
    for k in set(first) - failed:  # untouched: same row (same render time), same bytes
        assert second[k]["seconds"] == first[k]["seconds"]
    now = {s.key: s.members for s in iter_shard(out / tar_name(n))}
    assert sorted(now) == sorted(second)  # every sample once
    for k, members in kept_members.items():
        assert now[k] == members
    assert read_stats(out, n)["retried"] == sorted(failed)
    # Nothing failed any more: a second retry renders nothing.
    r = run_cli(*args, "--retry-failed")
    assert "retried 0, already committed 1" in r.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _can_unshare() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-n", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _can_unshare(), reason="needs `unshare -n` (root or user namespaces) for a loopback-only Ray cluster")
def test_two_ray_nodes_and_a_ray_job(proc_manifest, tmp_path):
    """`ray start --head` + `ray start --address` (a second node) on this machine, inside a fresh network
    namespace so that Ray's node address is 127.0.0.1; `pipeline render --address` spreads work over both;
    then the same command submitted as a Ray job (`--address auto` inside the job)."""
    port, dash = _free_port(), _free_port()
    bindir = Path(sys.executable).parent
    out, out_job = tmp_path / "out", tmp_path / "job"
    script = textwrap.dedent(f"""
        set -euo pipefail
        ip link set lo up
        export PATH="{bindir}:$PATH" RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=disabled RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1 PYTHONPATH="{Path.cwd()}"
        trap 'ray stop --force >/dev/null 2>&1 || true' EXIT
        ray start --head --port {port} --num-cpus 1 --resources '{{"head_node": 1}}' \\
            --include-dashboard true --dashboard-host 127.0.0.1 --dashboard-port {dash} --disable-usage-stats >/dev/null
        ray start --address 127.0.0.1:{port} --num-cpus 1 --resources '{{"second_node": 1}}' >/dev/null
        python -c "import ray; ray.init(address='127.0.0.1:{port}'); n=[x for x in ray.nodes() if x['Alive']]; \\
print('NODES', len(n), sorted(x['NodeManagerAddress'] for x in n))"
        pipeline render --manifest {proc_manifest} --shards all --out {out} {' '.join(TINY_FLAGS)} \\
            --address 127.0.0.1:{port} --workers 2 --no-progress
        ray job submit --address http://127.0.0.1:{dash} --working-dir {tmp_path} -- \\
            pipeline render --manifest {proc_manifest} --shards all --out {out_job} {' '.join(TINY_FLAGS)} \\
            --address auto --workers 2 --no-progress
    """)
    r = subprocess.run(["unshare", "-n", "bash", "-c", script], capture_output=True, text=True, timeout=600,
                       cwd=Path(__file__).resolve().parents[2])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    assert "NODES 2 ['127.0.0.1', '127.0.0.1']" in r.stdout
    assert_complete(proc_manifest, out)
    assert_complete(proc_manifest, out_job)
    nodes = set()
    for n in committed_shards(out):
        nodes |= {row["worker_node"] for row in pq.read_table(out / parquet_name(n)).to_pylist()}
    assert len(nodes) == 2, nodes  # both Ray nodes rendered
