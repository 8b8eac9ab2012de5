"""`pipeline reconstruct` for both families on real renders, read back with an independent PLY reader;
the autoregressive long-video windows of the L4GM family."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from pipeline.cli import cli
from tests.training.test_l4gm import read_samples
from training import checkpoint as ckpt
from training.data import shardspec
from training.config import l4gm_tiny, tiny
from training.models.registry import build_model
from training.data.clip import Views
from training.models.l4gm.longvideo import reconstruct_video, window_spans
from training.render.frames import render_frames


def read_ply(path: Path) -> dict[str, np.ndarray]:
    """A binary little-endian PLY with float vertex properties, parsed here (not with our writer's code)."""
    raw = path.read_bytes()
    end = raw.index(b"end_header\n") + len(b"end_header\n")
    lines = raw[:end].decode("ascii").splitlines()
    assert lines[0] == "ply" and lines[1] == "format binary_little_endian 1.0"
    n = next(int(ln.split()[2]) for ln in lines if ln.startswith("element vertex"))
    names = [ln.split()[2] for ln in lines if ln.startswith("property")]
    assert all(ln.split()[1] == "float" for ln in lines if ln.startswith("property"))
    data = np.frombuffer(raw[end:], dtype="<f4")
    assert data.size == n * len(names)  # nothing missing, nothing trailing
    data = data.reshape(n, len(names))
    return {k: data[:, i] for i, k in enumerate(names)}


def _save_checkpoint(run: Path, cfg) -> Path:
    torch.manual_seed(0)
    model = build_model(cfg.model)
    return ckpt.save(run, 7, {"model": model.state_dict(), "config": cfg.to_dict(), "step": 7, "epoch": 0,
                              "family": cfg.model.family}, keep=1)


def _run(*args: str):
    return CliRunner().invoke(cli, ["reconstruct", *args], catch_exceptions=False)


def test_lrm4d_slices_at_requested_times_into_standard_ply_files(procedural_many, tmp_path):
    cfg = tiny()
    path = _save_checkpoint(tmp_path / "run", cfg)
    key = read_samples(Path(shardspec.resolve_shards(str(procedural_many))[0]))[0]["__key__"]
    out = tmp_path / "out"
    r = _run("--checkpoint", str(path), "--input", f"{procedural_many}#{key}", "--out", str(out),
             "--times", "0.1,0.35,0.6", "--anim-frames", "4", "--device", "cpu")
    assert r.exit_code == 0, r.output
    rec = json.loads((out / "reconstruct.json").read_text())
    assert rec["family"] == "lrm4d" and rec["step"] == 7 and [o["time"] for o in rec["outputs"]] == [0.1, 0.35, 0.6]
    assert len(rec["inputs"]) == cfg.data.n_in
    plys = [read_ply(out / f"frame-{k:03d}.ply") for k in range(3)]
    N = cfg.data.n_in * cfg.data.image_size ** 2
    for p in plys:
        assert list(p) == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2",
                           *[f"f_rest_{i}" for i in range(45)], "opacity", "scale_0", "scale_1", "scale_2",
                           "rot_0", "rot_1", "rot_2", "rot_3"]  # the full 3DGS record (DESIGN.md §6)
        assert len(p["x"]) == N
        rgb = np.stack([p[f"f_dc_{i}"] for i in range(3)], 1) * 0.28209479 + 0.5
        assert (rgb > -1e-4).all() and (rgb < 1 + 1e-4).all()
        q = np.stack([p[f"rot_{i}"] for i in range(4)], 1)
        np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-5)
        assert np.isfinite(np.stack(list(p.values()))).all()
        assert (np.linalg.norm(np.stack([p["x"], p["y"], p["z"]], 1), axis=1) < 4.0).all()  # normalised space
    # a Gaussian's opacity fades with its distance from its time centre: the slices differ
    o = [1 / (1 + np.exp(-p["opacity"])) for p in plys]
    assert not np.allclose(o[0], o[2], atol=1e-3)
    # its spatial shape does not depend on time (the conditional covariance is constant)
    np.testing.assert_allclose(plys[0]["scale_0"], plys[2]["scale_0"], atol=1e-5)
    with Image.open(out / "turntable.gif") as im:
        assert im.n_frames == 4 and im.size == (cfg.data.image_size,) * 2


def test_bad_arguments_name_the_flag(procedural_many, tmp_path):
    path = _save_checkpoint(tmp_path / "run", tiny())
    key = read_samples(Path(shardspec.resolve_shards(str(procedural_many))[0]))[0]["__key__"]
    for times, msg in (("0.1,1.5", "outside [0, 1]"), ("0.1,x", "'x' is not a number"), ("nan", "outside")):
        r = _run("--checkpoint", str(path), "--input", f"{procedural_many}#{key}", "--out", str(tmp_path / "o"),
                 "--times", times)
        assert r.exit_code != 0 and "--times" in r.output and msg in r.output
    r = _run("--checkpoint", str(path), "--input", f"{procedural_many}#{key}", "--out", str(tmp_path / "o"),
             "--fast", "--device", "cpu")
    assert r.exit_code != 0 and "--fast" in r.output and "CUDA" in r.output
    r = _run("--checkpoint", str(path), "--input", f"{procedural_many}#nokey_000", "--out", str(tmp_path / "o"))
    assert r.exit_code != 0 and "no sample with key 'nokey_000'" in r.output
    r = _run("--checkpoint", str(path), "--input", str(tmp_path), "--out", str(tmp_path / "o"))
    assert r.exit_code != 0 and "cameras.json" in r.output
    l4 = _save_checkpoint(tmp_path / "run4", l4gm_tiny())
    r = _run("--checkpoint", str(l4), "--input", f"{procedural_many}#{key}", "--out", str(tmp_path / "o"),
             "--times", "0.5")
    assert r.exit_code != 0 and "--times applies to the lrm4d family" in r.output


def test_bad_checkpoints_name_the_flag(procedural_many, tmp_path):
    """An unreadable file and a run whose checkpoint has a foreign format: a clear error,
    no traceback (the same checkpoint reader as `pipeline eval`)."""
    key = read_samples(Path(shardspec.resolve_shards(str(procedural_many))[0]))[0]["__key__"]
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    old = tmp_path / "old"
    ckpt.checkpoint_dir(old).mkdir(parents=True)
    torch.save({"format_version": 0, "model": {}, "config": {}, "step": 1}, ckpt.checkpoint_dir(old) / "step-00000001.pt")
    for where, msg in ((junk, "not a readable checkpoint"), (old, "checkpoint format 0")):
        r = _run("--checkpoint", str(where), "--input", f"{procedural_many}#{key}", "--out", str(tmp_path / "o"))
        assert r.exit_code != 0 and msg in r.output and str(where) in r.output


def _camera_folder(procedural_many: Path, dest: Path, n_t0: int) -> dict:
    """A user folder from one real rendered clip: view 0's frames as the video, n_t0 views at time 0."""
    sample = read_samples(Path(shardspec.resolve_shards(str(procedural_many))[0]))[0]
    meta = json.loads(sample["json"])
    dest.mkdir()
    frames = []
    for t in range(meta["num_frames"]):
        for v in [0] + (list(range(1, 1 + n_t0)) if t == 0 else []):
            name = f"t{t}_v{v}.png"
            (dest / name).write_bytes(sample[f"t{t:03d}.v{v:03d}.png"])
            frames.append({"file": name, "c2w": meta["c2w"][t][v], "K": meta["K"][v], "time": meta["times"][t],
                           "view": v})
    (dest / "cameras.json").write_text(json.dumps({"frames": frames}))
    return meta


def test_l4gm_reconstructs_a_camera_folder_frame_by_frame_in_overlapping_windows(procedural_many, tmp_path):
    cfg = l4gm_tiny()
    path = _save_checkpoint(tmp_path / "run", cfg)
    meta = _camera_folder(procedural_many, tmp_path / "user", cfg.data.n_t0_views)
    T = meta["num_frames"]
    out = tmp_path / "out"
    r = _run("--checkpoint", str(path), "--input", str(tmp_path / "user"), "--out", str(out), "--window", "3",
             "--anim-frames", "3", "--device", "cpu")
    assert r.exit_code == 0, r.output
    rec = json.loads((out / "reconstruct.json").read_text())
    assert rec["family"] == "l4gm" and rec["inputs"]["windows"] == [[0, 3], [2, 4]]
    assert [o["time"] for o in rec["outputs"]] == pytest.approx(meta["times"])
    assert [f["view"] for f in rec["inputs"]["t0"]] == [1, 2]
    N = (1 + cfg.data.n_t0_views) * (cfg.data.image_size // cfg.model.gauss_stride) ** 2
    for k in range(T):
        p = read_ply(out / f"frame-{k:03d}.ply")
        assert len(p["x"]) == N and np.isfinite(p["opacity"]).all()
    assert not (out / f"frame-{T:03d}.ply").exists()


def test_long_video_windows_overlap_by_one_frame_and_feed_renders_forward():
    assert window_spans(10, 4) == [(0, 4), (3, 7), (6, 10)]
    assert window_spans(4, 4) == [(0, 4)] and window_spans(5, 4) == [(0, 4), (3, 5)]
    with pytest.raises(ValueError, match="--window 1"):
        window_spans(5, 1)
    cfg = l4gm_tiny()
    torch.manual_seed(0)
    model = build_model(cfg.model).eval()
    from tests.training.test_l4gm import _inputs

    rgb, cond, c2w, K = _inputs(T=7, n0=2)
    times = cond[0, :, 6, 0, 0]
    video = Views(rgb[0, :7], c2w[0, :7], K[0, :7], times[:7])
    t0 = Views(rgb[0, 7:], c2w[0, 7:], K[0, 7:], times[7:])
    bg = torch.ones(3)
    g, record = reconstruct_video(model, video, t0, 4, cfg.render, "torch", bg)
    assert g.means.shape[1] == 7 and [r["span"] for r in record] == [(0, 4), (3, 7)]
    torch.testing.assert_close(record[0]["t0_rgb"], t0.rgb)
    with torch.no_grad():  # the second window's t0 views are renders of the first window's last frame
        first = model(torch.cat([video.rgb[:4], t0.rgb])[None], torch.cat([video.cond()[:4], t0.cond()])[None],
                      torch.cat([video.c2w[:4], t0.c2w])[None], torch.cat([video.K[:4], t0.K])[None], window=4)
        want, _ = render_frames(first.frames([3]), t0.c2w[None, None], t0.K[None, None], 32, 32, bg[None],
                                cfg.render, "torch")
    torch.testing.assert_close(record[1]["t0_rgb"], want[0, 0].clamp(0, 1))
    torch.testing.assert_close(g.means[:, :4], first.means)  # the overlap frame kept from the first window


def test_interpolation_inference_triples_the_frame_rate_with_blended_windows(procedural_many, tmp_path):
    from tests.training.test_l4gm import _inputs
    from training.models.l4gm.longvideo import interpolate_video

    cfg = l4gm_tiny()
    torch.manual_seed(0)
    model = build_model(cfg.model).eval()
    rgb, cond, c2w, K = _inputs(T=3, n0=2)
    times = torch.tensor([0.0, 0.5, 1.0, 0.0, 0.0])
    video = Views(rgb[0, :3], c2w[0, :3], K[0, :3], times[:3])
    t0 = Views(rgb[0, 3:], c2w[0, 3:], K[0, 3:], times[3:])
    g, record = interpolate_video(model, video, t0, cfg.render, "torch", torch.ones(3))
    assert g.means.shape[1] == 7 and [r["span"] for r in record] == [(0, 4), (3, 7)]
    a, b = video.rgb[0], video.rgb[1]  # the first window: [a, 2/3 a + 1/3 b, 1/3 a + 2/3 b, b] at times between
    blends = Views(torch.stack([a, a * 2 / 3 + b / 3, a / 3 + b * 2 / 3, b]), c2w[0, [0, 0, 1, 1]], K[0, [0, 0, 1, 1]],
                   torch.tensor([0.0, 1 / 6, 2 / 6, 0.5]))
    with torch.no_grad():
        first = model(torch.cat([blends.rgb, t0.rgb])[None], torch.cat([blends.cond(), t0.cond()])[None],
                      torch.cat([blends.c2w, t0.c2w])[None], torch.cat([blends.K, t0.K])[None], window=4)
    torch.testing.assert_close(g.means[:, :4], first.means)
    # the command: 4 video frames -> 10 frames
    path = _save_checkpoint(tmp_path / "run", cfg)
    meta = _camera_folder(procedural_many, tmp_path / "user", cfg.data.n_t0_views)
    out = tmp_path / "out"
    r = _run("--checkpoint", str(path), "--input", str(tmp_path / "user"), "--out", str(out), "--interp",
             "--anim-frames", "2", "--device", "cpu")
    assert r.exit_code == 0, r.output
    rec = json.loads((out / "reconstruct.json").read_text())
    T = meta["num_frames"]
    assert rec["interpolated"] and len(rec["outputs"]) == 3 * (T - 1) + 1 and len(list(out.glob("*.ply"))) == 3 * T - 2
    assert [o["time"] for o in rec["outputs"]][::3] == pytest.approx(meta["times"])
