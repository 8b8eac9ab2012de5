"""`pipeline eval`: a fixed, seeded protocol; one metrics row per sample (DESIGN.md §5); same pairs for
every checkpoint; batching does not change scores; broken samples are skipped and counted; seen and
held-out clips apart; the protocol tag, loss formula and background recorded; target kinds by camera."""

from __future__ import annotations

import json
import shutil
import tarfile

import pyarrow.parquet as pq
import pytest
import torch

from training.config import apply_overrides, preset
from training.evaluate import evaluate
from training.models.lrm4d.protocol import KINDS, Protocol, choose_pairs
from training.eval.protocol import fixed_views, read_metrics_info, target_kind
from training.train import train

DESIGN_COLUMNS = ["uid", "clip", "key", "shard", "psnr", "ssim", "lpips", "loss", "step", "protocol", "psnr_obj",
                  "seen_in_training"]
TAG = "sparse4-v2/lrm4d@32"


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
    real = [tp for tp, k in zip(targets, kinds) if k != "pad"]
    assert len(real) == len(set(real)) == min(p.n_target, T * V - p.n_in)  # distinct held-out pairs, then pads
    seen_t, seen_v = {t for t, _ in inputs}, {v for _, v in inputs}
    assert len({t for t, _ in _grid(T, V)} - seen_t) >= T // 2  # at least half the times stay unseen
    for (t, v), kind in zip(targets, kinds):
        if kind == "novel_view_time":
            assert t not in seen_t and v not in seen_v
        elif kind == "novel_time":
            assert t not in seen_t and v in seen_v
        elif kind != "pad":
            assert kind == "novel_view" and t in seen_t
    if T >= 4 and V >= 4:
        assert [kinds.count(k) for k in KINDS] == [p.per_kind] * 3


def test_static_sample_gets_novel_views_only():
    inputs, targets, kinds = choose_pairs(Protocol(), "s_000", _grid(1, 8))
    assert {t for t, _ in inputs + targets} == {0}
    assert set(kinds) - {"pad"} == {"novel_view"} and kinds.count("novel_view") == 4  # 8 pairs - 4 inputs


def test_small_sample_holds_out_a_pair_and_never_scores_inputs():
    """4 pairs and 4 inputs: 3 inputs (one repeated), the 4th pair the only scored target."""
    inputs, targets, kinds = choose_pairs(Protocol(), "s_000", _grid(1, 4))
    assert len(inputs) == 4 and len(set(inputs)) == 3
    held = set(_grid(1, 4)) - set(inputs)
    assert len(held) == 1 and set(targets) == held
    assert kinds.count("novel_view") == 1 and kinds.count("pad") == 5 and "seen" not in kinds
    with pytest.raises(Exception) as e:  # one pair: nothing can be held out
        choose_pairs(Protocol(), "one_000", [(0, 0)])
    assert getattr(e.value, "reason", None) == "too_few_pairs"


def test_fewer_pairs_of_a_kind_fill_from_other_held_out_pairs_without_repeats():
    """(3 frames x 2 views): 2 held-out pairs for 6 targets: both once, then pads; never a pair twice."""
    inputs, targets, kinds = choose_pairs(Protocol(), "k_000", _grid(3, 2))
    real = [tp for tp, k in zip(targets, kinds) if k != "pad"]
    assert len(real) == len(set(real)) == 2
    inputs, targets, kinds = choose_pairs(Protocol(per_kind=3), "k_000", _grid(5, 4))  # 16 held out, 9 asked
    assert len(set(targets)) == 9 and "pad" not in kinds


def test_target_kinds_by_camera_random_views_are_not_input_cameras():
    """Views 0-1 fixed, 2-5 random (redrawn at every time): a random view at an unseen time is a novel
    view at a novel time; `novel_time` only on fixed cameras an input uses; inputs on fixed cameras."""
    fixed = [True, True, False, False, False, False]
    assert target_kind((5, 3), [(0, 3), (2, 0)], fixed) == "novel_view_time"  # same index, other camera
    assert target_kind((5, 0), [(0, 3), (2, 0)], fixed) == "novel_time"
    assert target_kind((2, 3), [(0, 3), (2, 0)], fixed) == "novel_view"
    assert target_kind((0, 3), [(0, 3), (2, 0)], fixed) == "seen"
    p = Protocol(n_in=4, per_kind=2)
    inputs, targets, kinds = choose_pairs(p, "cam_000", _grid(8, 6), fixed)
    assert all(fixed[v] for _, v in inputs)
    seen_t = {t for t, _ in inputs}
    for (t, v), k in zip(targets, kinds):
        if k == "novel_time":
            assert fixed[v] and t not in seen_t
        if not fixed[v] and t not in seen_t:
            assert k == "novel_view_time"


def test_fixed_views_read_from_the_json():
    c2w = [[[[1.0 if i == j else 0.0 for j in range(4)] for i in range(4)]] * 3] * 2  # [T=2][V=3]
    assert fixed_views({"cameras": {"fixed": [True, False, False]}, "c2w": c2w}, 2, 3) == [True, False, False]
    assert fixed_views({"render": {"spec": {"fixed_views": 2}}, "c2w": c2w}, 2, 3) == [True, True, False]
    moved = json.loads(json.dumps(c2w))
    moved[1][2][0][3] = 0.5  # view 2 moves between the two times
    assert fixed_views({"c2w": moved}, 2, 3) == [True, True, False]


def test_object_box_metrics():
    from training.losses.terms import object_boxes, psnr_in_boxes

    tg = torch.ones(2, 3, 16, 16)
    alpha = torch.zeros(2, 1, 16, 16)
    alpha[0, :, 4:8, 2:12] = 1.0  # object of image 0; image 1 has none
    assert object_boxes(alpha) == [(4, 8, 2, 12), (0, 16, 0, 16)]
    pred = tg.clone()
    pred[:, :, 12:, :] = 0.0  # wrong only below the object's box
    full = float(-10 * torch.log10(torch.tensor(0.25)))
    box = psnr_in_boxes(pred, tg, object_boxes(alpha))
    assert float(box[0]) > 90 and float(box[1]) == pytest.approx(full, abs=1e-4)  # no object: the whole image


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory, analytic_shards):
    """A tiny run on analytic shards 0 and 1 (shard 2 held out) with checkpoints at step 4 and step 12."""
    d, _ = analytic_shards
    run = tmp_path_factory.mktemp("evalrun")
    cfg = apply_overrides(preset("tiny"), ["steps=4", "data.num_workers=0", "ckpt_every=4", "keep_checkpoints=5",
                                           "grid_every=0", "log_every=4"])
    train(cfg, str(d / "shard-000000.tar"), run, device="cpu")
    cfg = apply_overrides(cfg, ["steps=12"])
    train(cfg, str(d / "shard-{000000..000001}.tar"), run, device="cpu")  # resumed on one more shard
    ckpts = sorted((run / "checkpoints").glob("step-*.pt"))
    return d, ckpts[0], ckpts[-1], run


def test_metrics_rows_follow_design_and_checkpoints_share_pairs(two_checkpoints, tmp_path):
    d, early, late, run = two_checkpoints
    res_a = evaluate(early, str(d), tmp_path / "a.parquet", device="cpu", progress=False, grids_dir=tmp_path / "ga", worst=2)
    res_b = evaluate(run, str(d), tmp_path / "b.parquet", device="cpu", progress=False, worst=0)  # run folder = newest
    a = pq.read_table(tmp_path / "a.parquet")
    b = pq.read_table(tmp_path / "b.parquet")
    assert a.column_names[:12] == DESIGN_COLUMNS
    ra, rb = a.to_pylist(), b.to_pylist()
    assert len(ra) == 6 and [r["key"] for r in ra] == [r["key"] for r in rb]
    assert {r["step"] for r in ra} == {4} and {r["step"] for r in rb} == {12}
    assert {r["protocol"] for r in ra} == {TAG}
    assert [r["pairs"] for r in ra] == [r["pairs"] for r in rb]  # exactly the same pairs
    assert all(r["lpips"] is None for r in ra)  # no local LPIPS weights
    assert [r["psnr"] for r in ra] != [r["psnr"] for r in rb]  # a different model scores differently
    for r in ra:
        assert r["key"] == f"{r['uid']}_{r['clip']:03d}"
        assert r["shard"] in (0, 1, 2) and r["loss"] > 0 and 0 < r["ssim"] <= 1
        assert r["psnr_obj"] is not None and r["psnr_obj_nearest_input"] is not None
        pairs = json.loads(r["pairs"])
        assert len(pairs["inputs"]) == 4 and len(pairs["targets"]) == 6
        scored = [tuple(t) for t, k in zip(pairs["targets"], pairs["kinds"]) if k != "pad"]
        assert r["n_targets"] == len(scored) >= 1 and not set(scored) & {tuple(x) for x in pairs["inputs"]}
    static = [r for r in ra if json.loads(r["pairs"])["inputs"][0][0] == 0 and r["n_targets"] == 1]
    assert static, "the static samples (4 views, 1 frame) keep one held-out pair"
    assert len(res_a.worst) == 2 and all(p.is_file() for p in res_a.worst)
    meta = json.loads(pq.read_schema(tmp_path / "a.parquet").metadata[b"objaverse4d.metrics"])
    assert meta["protocol_tag"] == TAG and meta["step"] == 4
    assert res_b.summary["samples"] == 6


def test_seen_in_training_follows_the_checkpoints_shards(two_checkpoints, tmp_path):
    """The step-4 checkpoint trained on shard 0; the resumed step-12 one on shards 0 and 1."""
    d, early, late, _ = two_checkpoints
    state = torch.load(late, map_location="cpu", weights_only=True)
    assert state["family"] == "lrm4d" and len(state["trained_on"]["shards"]) == 2
    for ck, seen_shards in ((early, {0}), (late, {0, 1})):
        rows = evaluate(ck, str(d), tmp_path / "m.parquet", device="cpu", progress=False, worst=0).rows
        assert {r["shard"] for r in rows if r["seen_in_training"]} == seen_shards
        assert {r["shard"] for r in rows if r["seen_in_training"] is False} == {0, 1, 2} - seen_shards
    res = evaluate(late, str(d), tmp_path / "m.parquet", device="cpu", progress=False, worst=0)
    assert res.summary["groups"]["unseen"]["samples"] == 2 and res.summary["groups"]["seen"]["samples"] == 4
    from training.evaluate import format_summary

    text = format_summary(res)
    assert "held-out clips (shards never trained on): 2 sample(s)" in text
    assert "clips seen in training: 4 sample(s)" in text


def test_summary_warns_when_every_clip_was_seen(two_checkpoints, tmp_path):
    from training.evaluate import format_summary

    d, early, _, _ = two_checkpoints
    res = evaluate(early, str(d / "shard-000000.tar"), tmp_path / "m.parquet", device="cpu", progress=False, worst=0)
    text = format_summary(res)
    assert "clips seen in training: 2 sample(s)" in text and "held-out clips" not in text
    assert "every clip was seen in training; these numbers say nothing about generalisation" in text


def test_loss_column_uses_the_protocols_weights_and_background(two_checkpoints, tmp_path):
    """Neither the checkpoint's loss weights nor --lpips-weights change `loss`; the formula and the
    background (the checkpoint's training background) are recorded; another image size is another tag."""
    from training.losses.lpips import LPIPS

    d, _, late, _ = two_checkpoints
    base = evaluate(late, str(d), tmp_path / "a.parquet", device="cpu", progress=False, worst=0).rows
    state = torch.load(late, map_location="cpu", weights_only=True)
    state["config"]["loss"].update(mask=3.0, ssim=1.0)
    torch.save(state, tmp_path / "reweighted.pt")
    torch.manual_seed(0)
    torch.save(LPIPS().state_dict(), tmp_path / "lpips.pt")
    other = evaluate(tmp_path / "reweighted.pt", str(d), tmp_path / "b.parquet", device="cpu", progress=False, worst=0,
                     lpips_weights=str(tmp_path / "lpips.pt")).rows
    assert [r["loss"] for r in base] == pytest.approx([r["loss"] for r in other], rel=1e-5)
    info = read_metrics_info(tmp_path / "a.parquet")
    assert info["loss_weights"] == {"mse": 1.0, "mask": 0.5} and info["background"] == "white"
    state["config"]["data"]["background"] = "black"
    torch.save(state, tmp_path / "black.pt")
    black = evaluate(tmp_path / "black.pt", str(d), tmp_path / "c.parquet", device="cpu", progress=False, worst=0,
                     protocol={"image_size": 16})
    assert read_metrics_info(tmp_path / "c.parquet")["background"] == "black"
    assert {r["protocol"] for r in black.rows} == {"sparse4-v2/lrm4d@16"}
    # on black, the empty background no longer matches a white mean-colour guess the same way
    assert [r["psnr_mean_colour"] for r in black.rows] != pytest.approx([r["psnr_mean_colour"] for r in base])


def test_batch_size_does_not_change_scores(two_checkpoints, tmp_path):
    d, _, late, _ = two_checkpoints
    one = evaluate(late, str(d), tmp_path / "1.parquet", device="cpu", batch_size=1, progress=False, worst=0).rows
    four = evaluate(late, str(d), tmp_path / "4.parquet", device="cpu", batch_size=4, progress=False, worst=0).rows
    assert [r["key"] for r in one] == [r["key"] for r in four]
    for x, y in zip(one, four):
        assert x["psnr"] == pytest.approx(y["psnr"], abs=1e-4)
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-4)


def test_lpips_column_filled_when_local_weights_exist(two_checkpoints, tmp_path):
    from training.losses.lpips import LPIPS

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
    assert f"evaluated 6 sample(s) with protocol {TAG} at step 4" in r.output
    assert "held-out clips (shards never trained on): 4 sample(s)" in r.output
    assert "baselines psnr (obj): nearest input frame" in r.output and (tmp_path / "m_worst").is_dir()
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


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="the GPU path (gsplat, batched) needs a CUDA GPU")
def test_gpu_path_batches_and_matches_cpu(two_checkpoints, tmp_path):
    d, _, late, _ = two_checkpoints
    cpu = evaluate(late, str(d), tmp_path / "c.parquet", device="cpu", progress=False, worst=0).rows
    gpu = evaluate(late, str(d), tmp_path / "g.parquet", device="cuda", batch_size=6, progress=False, worst=0).rows
    assert [r["pairs"] for r in cpu] == [r["pairs"] for r in gpu]
    for x, y in zip(cpu, gpu):
        assert x["psnr"] == pytest.approx(y["psnr"], abs=0.05)


# -- the training loader's pair choice and depth (training/data/stream.py), same camera rules -------------------


def _pick_sample(T: int, V: int, fixed: list[bool]) -> dict:
    eye = [[1.0 if i == j else 0.0 for j in range(4)] for i in range(4)]
    meta = {"schema_version": 1, "num_frames": T, "num_views": V, "times": [t / max(1, T - 1) for t in range(T)],
            "c2w": [[eye] * V] * T, "K": [[[32.0, 0, 16], [0, 32.0, 16], [0, 0, 1]]] * V,
            "cameras": {"fixed": fixed}}
    sample = {"__key__": "pick_000", "json": json.dumps(meta).encode()}
    sample.update({f"t{t:03d}.v{v:03d}.png": b"" for t in range(T) for v in range(V)})
    return sample


def test_training_novel_time_targets_are_by_camera():
    """novel_time_fraction picks fixed cameras an input uses at unseen frames, not random views there."""
    import random

    from training.config import DataConfig
    from training.data.stream import PickViews

    fixed = [True, True, False, False, False, False]
    cfg = DataConfig(n_in=2, n_target=4, novel_time_fraction=0.5)
    pick = PickViews(cfg, handler=None, seed=0, rank=0, epoch=0)
    for seed in range(40):
        out = pick.pick(_pick_sample(8, 6, fixed), random.Random(seed))
        inputs = [(t, v) for t, v, _, _ in out["inputs"]]
        targets = [(t, v) for t, v, _, _ in out["targets"]]
        kinds = [target_kind(p, inputs, fixed) for p in targets]
        available = sum(target_kind((t, v), inputs, fixed) == "novel_time" for t in range(8) for v in range(6))
        assert kinds.count("novel_time") >= min(2, available), (seed, inputs, targets)
        assert sum(k in ("novel_time", "novel_view_time") for k in kinds) >= 2


def test_training_targets_fill_without_repeats_when_novel_pairs_run_short():
    import random

    from training.config import DataConfig
    from training.data.stream import PickViews

    cfg = DataConfig(n_in=2, n_target=4, novel_time_fraction=1.0)  # asks 4 novel-time targets; few exist
    pick = PickViews(cfg, handler=None, seed=0, rank=0, epoch=0)
    for seed in range(40):
        out = pick.pick(_pick_sample(3, 2, [True, True]), random.Random(seed))  # 6 pairs: 4 held out
        inputs = {(t, v) for t, v, _, _ in out["inputs"]}
        targets = [(t, v) for t, v, _, _ in out["targets"]]
        assert len(set(targets)) == 4 and not set(targets) & inputs, (seed, targets)


def test_depth_is_resized_by_pixel_centres_like_rgb():
    """A 128 px depth map whose value is its column, resized to 32 px: output pixel x covers source
    columns [4x, 4x+4), so its centre is column 4x+2 ('nearest' would take column 4x)."""
    import random

    import numpy as np

    from training.config import DataConfig
    from training.data.stream import BuildSample
    from training.data.synthetic import DEPTH_SCALE, encode_depth, encode_rgba

    cols = np.tile(np.arange(128, dtype=np.float32), (128, 1)) * DEPTH_SCALE * 8  # [128, 128]
    rgba = encode_rgba(np.ones((128, 128, 4), np.float32))
    eye = [[1.0 if i == j else 0.0 for j in range(4)] for i in range(4)]
    meta = {"c2w": [[eye]], "K": [[[128.0, 0, 64], [0, 128.0, 64], [0, 0, 1]]], "depth_scale": DEPTH_SCALE}
    item = {"key": "d_000", "meta": meta, "inputs": [(0, 0, 0.0, rgba)], "targets": [(0, 0, 0.0, rgba)],
            "depth": [encode_depth(cols)]}
    out = BuildSample(DataConfig(image_size=32, n_in=1, n_target=1), None, seed=0, rank=0, epoch=0).build(
        item, random.Random(0))
    got = out["tg_depth"][0, 0, 0] / (DEPTH_SCALE * 8)  # [32] columns
    assert got.tolist() == pytest.approx([4 * x + 2 for x in range(32)], abs=1e-3)
