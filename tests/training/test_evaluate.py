"""`pipeline eval`: a fixed, seeded protocol; one metrics row per sample (DESIGN.md §5); same pairs for
every checkpoint; batching does not change scores; broken samples are skipped and counted."""

from __future__ import annotations

import json
import shutil
import tarfile

import pyarrow.parquet as pq
import pytest
import torch

from training.config import apply_overrides, preset
from training.evaluate import KINDS, Protocol, choose_pairs, evaluate
from training.train import train

DESIGN_COLUMNS = ["uid", "clip", "key", "shard", "psnr", "ssim", "lpips", "loss", "step", "protocol"]


def _grid(T: int, V: int) -> list[tuple[int, int]]:
    return [(t, v) for t in range(T) for v in range(V)]


@pytest.mark.parametrize("T,V", [(4, 4), (24, 12), (16, 48), (3, 2)])
def test_protocol_pairs_are_fixed_by_key_and_hold_out_every_kind(T, V):
    p = Protocol()
    a = choose_pairs(p, "abc_000", _grid(T, V))
    assert a == choose_pairs(p, "abc_000", _grid(T, V))  # deterministic
    assert a != choose_pairs(Protocol(seed=1), "abc_000", _grid(T, V)) or V < 3
    inputs, targets, kinds = a
    assert len(inputs) == p.n_in and len(set(inputs)) == p.n_in
    assert len(targets) == p.n_target and not set(targets) & set(inputs)
    seen_t, seen_v = {t for t, _ in inputs}, {v for _, v in inputs}
    assert len({t for t, _ in _grid(T, V)} - seen_t) >= T // 2  # at least half the times stay unseen
    for (t, v), kind in zip(targets, kinds):
        if kind == "novel_view_time":
            assert t not in seen_t and v not in seen_v
        elif kind == "novel_time":
            assert t not in seen_t and v in seen_v
        else:
            assert kind == "novel_view" and t in seen_t
    if T >= 4 and V >= 4:
        assert [kinds.count(k) for k in KINDS] == [p.per_kind] * 3


def test_static_sample_gets_novel_views_only():
    inputs, targets, kinds = choose_pairs(Protocol(), "s_000", _grid(1, 8))
    assert {t for t, _ in inputs + targets} == {0}
    assert set(kinds) == {"novel_view"}


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory, analytic_shards):
    """A tiny run on the analytic shards with checkpoints at step 4 and step 12."""
    d, _ = analytic_shards
    run = tmp_path_factory.mktemp("evalrun")
    cfg = apply_overrides(preset("tiny"), ["steps=4", "data.num_workers=0", "ckpt_every=4", "keep_checkpoints=5",
                                           "grid_every=0", "log_every=4"])
    train(cfg, str(d), run, device="cpu")
    cfg = apply_overrides(cfg, ["steps=12"])
    train(cfg, str(d), run, device="cpu")
    ckpts = sorted((run / "checkpoints").glob("step-*.pt"))
    return d, ckpts[0], ckpts[-1], run


def test_metrics_rows_follow_design_and_checkpoints_share_pairs(two_checkpoints, tmp_path):
    d, early, late, run = two_checkpoints
    res_a = evaluate(early, str(d), tmp_path / "a.parquet", device="cpu", progress=False, grids_dir=tmp_path / "ga", worst=2)
    res_b = evaluate(run, str(d), tmp_path / "b.parquet", device="cpu", progress=False, worst=0)  # run folder = newest
    a = pq.read_table(tmp_path / "a.parquet")
    b = pq.read_table(tmp_path / "b.parquet")
    assert a.column_names[:10] == DESIGN_COLUMNS
    ra, rb = a.to_pylist(), b.to_pylist()
    assert len(ra) == 6 and [r["key"] for r in ra] == [r["key"] for r in rb]
    assert {r["step"] for r in ra} == {4} and {r["step"] for r in rb} == {12}
    assert {r["protocol"] for r in ra} == {"sparse4-v1"}
    assert [r["pairs"] for r in ra] == [r["pairs"] for r in rb]  # exactly the same pairs
    assert all(r["lpips"] is None for r in ra)  # no local LPIPS weights
    assert [r["psnr"] for r in ra] != [r["psnr"] for r in rb]  # a different model scores differently
    for r in ra:
        assert r["key"] == f"{r['uid']}_{r['clip']:03d}"
        assert r["shard"] in (0, 1, 2) and r["loss"] > 0 and 0 < r["ssim"] <= 1
        pairs = json.loads(r["pairs"])
        assert len(pairs["inputs"]) == 4 and len(pairs["targets"]) == 6
    assert len(res_a.worst) == 2 and all(p.is_file() for p in res_a.worst)
    meta = json.loads(pq.read_schema(tmp_path / "a.parquet").metadata[b"objaverse4d.metrics"])
    assert meta["protocol_tag"] == "sparse4-v1" and meta["step"] == 4
    assert res_b.summary["samples"] == 6


def test_batch_size_does_not_change_scores(two_checkpoints, tmp_path):
    d, _, late, _ = two_checkpoints
    one = evaluate(late, str(d), tmp_path / "1.parquet", device="cpu", batch_size=1, progress=False, worst=0).rows
    four = evaluate(late, str(d), tmp_path / "4.parquet", device="cpu", batch_size=4, progress=False, worst=0).rows
    assert [r["key"] for r in one] == [r["key"] for r in four]
    for x, y in zip(one, four):
        assert x["psnr"] == pytest.approx(y["psnr"], abs=1e-4)
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-4)


def test_lpips_column_filled_when_local_weights_exist(two_checkpoints, tmp_path):
    from training.lpips import LPIPS

    d, _, late, _ = two_checkpoints
    torch.manual_seed(0)
    torch.save(LPIPS().state_dict(), tmp_path / "lpips.pt")  # random weights: the mechanism, not the numbers
    rows = evaluate(late, str(d), tmp_path / "m.parquet", device="cpu", lpips_weights=str(tmp_path / "lpips.pt"),
                    progress=False, worst=0).rows
    assert all(isinstance(r["lpips"], float) for r in rows)


def test_corrupt_sample_is_skipped_and_counted(two_checkpoints, tmp_path):
    d, _, late, _ = two_checkpoints
    bad = tmp_path / "ds"
    shutil.copytree(d, bad)
    tar = bad / "shard-000000.tar"
    with tarfile.open(tar) as tf:
        members = [(m, tf.extractfile(m).read()) for m in tf.getmembers()]
    key = members[0][0].name.split(".")[0]
    with tarfile.open(tar, "w") as tf:
        for m, data in members:
            if m.name == f"{key}.json":
                data = b"{not json"
            m.size = len(data)
            import io

            tf.addfile(m, io.BytesIO(data))
    res = evaluate(late, str(bad), tmp_path / "m.parquet", device="cpu", progress=False, worst=0)
    assert len(res.rows) == 5 and key not in {r["key"] for r in res.rows}
    assert res.skipped == {"bad_json": 1}


def test_eval_command_and_its_errors(two_checkpoints, tmp_path):
    from click.testing import CliRunner

    from pipeline.cli import cli

    d, early, _, _ = two_checkpoints
    r = CliRunner().invoke(cli, ["eval", "--checkpoint", str(early), "--shards", str(d), "--out", str(tmp_path / "m.parquet"),
                                 "--device", "cpu", "--no-progress", "--worst", "1"])
    assert r.exit_code == 0, r.output
    assert "evaluated 6 sample(s) with protocol sparse4-v1 at step 4" in r.output
    assert "baselines: nearest input frame" in r.output and (tmp_path / "m_worst").is_dir()
    r = CliRunner().invoke(cli, ["eval", "--checkpoint", str(tmp_path), "--shards", str(d), "--out", str(tmp_path / "x.parquet")])
    assert r.exit_code == 1 and "has no checkpoints" in r.output
    (tmp_path / "junk.pt").write_bytes(b"junk")
    r = CliRunner().invoke(cli, ["eval", "--checkpoint", str(tmp_path / "junk.pt"), "--shards", str(d),
                                 "--out", str(tmp_path / "x.parquet")])
    assert r.exit_code == 1 and "junk.pt: not a readable checkpoint" in r.output
    r = CliRunner().invoke(cli, ["eval", "--checkpoint", str(early), "--shards", str(tmp_path / "nothing"),
                                 "--out", str(tmp_path / "x.parquet")])
    assert r.exit_code == 1 and "--shards" in r.output and "missing" in r.output
    assert not (tmp_path / "x.parquet").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the GPU path (gsplat, batched) needs a CUDA GPU")
def test_gpu_path_batches_and_matches_cpu(two_checkpoints, tmp_path):
    d, _, late, _ = two_checkpoints
    cpu = evaluate(late, str(d), tmp_path / "c.parquet", device="cpu", progress=False, worst=0).rows
    gpu = evaluate(late, str(d), tmp_path / "g.parquet", device="cuda", batch_size=6, progress=False, worst=0).rows
    assert [r["pairs"] for r in cpu] == [r["pairs"] for r in gpu]
    for x, y in zip(cpu, gpu):
        assert x["psnr"] == pytest.approx(y["psnr"], abs=0.05)
