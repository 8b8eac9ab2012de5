"""The L4GM family: window picker and builder on real renders, model shapes, the temporal-attention
switch, training and resuming, family checks, interpolation inputs."""

from __future__ import annotations

import json
import random
import tarfile
from pathlib import Path

import pytest
import torch

from tests.training.conftest import _pipeline
from training.data import shardspec
from training.data import synthetic
from training.config import ConfigError, DataConfig, apply_overrides, l4gm_tiny, tiny
from training.data.stream import make_dataset
from training.data.decode import SampleError, parse_sample
from training.models.registry import get_family
from training.geometry import intrinsics, orbit_cameras, plucker_image
from training.models.l4gm.model import VideoReconstructor, expand_window, forward_flops
from training.models.l4gm.samples import blend_middle, pick_window, view_kinds, window_item


def read_samples(tar: Path) -> list[dict]:
    """A tar's samples grouped by key, as the loader groups them ({'__key__', suffix: bytes})."""
    out: dict[str, dict] = {}
    with tarfile.open(tar) as tf:
        for m in tf.getmembers():
            key, suffix = m.name.split(".", 1)
            out.setdefault(key, {"__key__": key, "__url__": str(tar)})[suffix] = tf.extractfile(m).read()
    return list(out.values())


@pytest.fixture(scope="module")
def l4gm_render(tmp_path_factory) -> Path:
    """One procedural clip rendered with the l4gm preset, shrunk: 4 fixed + 2 random views, 4 times, 32 px."""
    import importlib.util

    if importlib.util.find_spec("bpy") is None:
        pytest.skip("render extra (bpy 5.0.1) not installed: no real renders")
    root = tmp_path_factory.mktemp("l4gm_render")
    _pipeline("-q", "curate", "--source", "procedural", "--categories", "legacy", "--count", "1", "--seed", "11", "--assets-out",
              str(root / "assets"), "--shard-size", "1", "--out", str(root / "m.parquet"))
    _pipeline("-q", "render", "--manifest", str(root / "m.parquet"), "--shard", "0", "--out", str(root / "ds"),
              "--no-ray", "--preset", "l4gm", "--resolution", "32", "--frames", "4", "--views", "4",
              "--random-views", "2", "--samples", "4", "--threads", "1")
    return root / "ds"


def _data_cfg(**kw) -> DataConfig:
    return DataConfig(**{**l4gm_tiny().data.__dict__, **kw})


def test_window_picker_uses_fixed_views_for_the_video_and_t0_and_keeps_only_used_members(l4gm_render):
    sample = read_samples(l4gm_render / "shard-000000.tar")[0]
    key, meta, T, V, members = parse_sample(sample)
    assert meta["render"]["preset"] == "l4gm" and (T, V) == (4, 6)
    fixed, rand = view_kinds(meta, V)
    assert fixed == [0, 1, 2, 3] and rand == [4, 5]  # from the JSON's cameras.fixed
    cfg = _data_cfg(window=3, n_t0_views=2, n_target=2)
    rng = random.Random(0)
    starts = set()
    for _ in range(30):
        ch = pick_window(rng, key, meta, T, V, members, cfg)
        s = ch["frames"][0]
        starts.add(s)
        assert ch["frames"] == [s, s + 1, s + 2]
        assert ch["video"] in fixed and set(ch["t0_views"]) <= set(fixed)
        assert len({ch["video"], *ch["t0_views"]}) == 3
        for k, views in enumerate(ch["targets"]):
            assert len(views) == 2 and ch["video"] not in views
            if k == 0:
                assert not set(views) & set(ch["t0_views"])
    assert starts == {0, 1}
    item = window_item(sample, key, meta, members, ch, cfg)
    # inputs: the video at every time, then the t0 views at the first time; the member values untouched
    assert [(t, v) for t, v, _, _ in item["inputs"]] == [(t, ch["video"]) for t in ch["frames"]] + [
        (ch["frames"][0], v) for v in ch["t0_views"]]
    for t, v, tm, data in item["inputs"] + item["targets"]:
        assert data is sample[f"t{t:03d}.v{v:03d}.png"] and tm == pytest.approx(meta["times"][t])
    used = {f"t{t:03d}.v{v:03d}.png" for t, v, _, _ in item["inputs"] + item["targets"]}
    assert len(used) < len(members)  # a window is a part of the sample, not all of it


def test_window_picker_errors_and_static_samples(tmp_path):
    d = tmp_path / "syn"
    synthetic.write_dataset(d, 3, 3, seed=2, static_every=3, views=4, frames=3, size=16)
    samples = read_samples(d / "shard-000000.tar")
    cfg = _data_cfg(window=4, n_t0_views=2)
    rng = random.Random(1)
    moving, static = samples[0], samples[2]
    key, meta, T, V, members = parse_sample(moving)
    with pytest.raises(SampleError, match="window needs 4") as e:
        pick_window(rng, key, meta, T, V, members, cfg)
    assert e.value.reason == "short_clip"
    with pytest.raises(SampleError, match="n_t0_views=5"):
        pick_window(rng, key, meta, T, V, members, _data_cfg(window=2, n_t0_views=5))
    key, meta, T, V, members = parse_sample(static)
    ch = pick_window(rng, key, meta, T, V, members, cfg)  # a static clip: one time held for the window
    assert ch["static"] and ch["frames"] == [0, 0, 0, 0]
    inputs = {ch["video"], *ch["t0_views"]}
    assert all(not inputs & set(v) for v in ch["targets"])


def test_built_batches_have_the_flat_window_layout(procedural_many):
    cfg = l4gm_tiny().data
    urls = shardspec.resolve_shards(str(procedural_many))
    batch = next(iter(make_dataset(urls, cfg, batch_size=2, seed=0, resampled=False, stages=get_family("l4gm").sample_stages())))
    W, n0, M, S = cfg.window, cfg.n_t0_views, cfg.n_target, cfg.image_size
    assert batch["in_rgb"].shape == (2, W + n0, 3, S, S) and batch["in_cond"].shape == (2, W + n0, 7, S, S)
    assert batch["tg_rgb"].shape == (2, W * M, 3, S, S) and batch["window"].tolist() == [W, W]
    assert batch["tg_frame"][0].tolist() == [k for k in range(W) for _ in range(M)]
    assert batch["window_frames"].tolist() == [list(range(W))] * 2  # the step reads W from this shape
    for b in range(2):
        pairs = batch["in_pairs"][b].tolist()
        frames = [t for t, _ in pairs[:W]]
        assert frames == list(range(frames[0], frames[0] + W))
        assert len({v for _, v in pairs[:W]}) == 1 and all(t == frames[0] for t, _ in pairs[W:])
        tg = batch["tg_pairs"][b].tolist()
        assert [t for t, _ in tg] == [f for f in frames for _ in range(M)]  # targets at every time, time-major
        torch.testing.assert_close(batch["in_cond"][b, :W, 6, 0, 0], batch["tg_time"][b, ::M])


def test_interpolation_inputs_blend_the_window_ends(procedural_many):
    x = torch.rand(4 + 2, 3, 8, 8)
    y = blend_middle(x, 4)
    torch.testing.assert_close(y[1], x[0] * 2 / 3 + x[3] / 3)
    torch.testing.assert_close(y[2], x[0] / 3 + x[3] * 2 / 3)
    torch.testing.assert_close(y[[0, 3, 4, 5]], x[[0, 3, 4, 5]])  # ends and t0 views untouched
    cfg = _data_cfg(interp=True)
    urls = shardspec.resolve_shards(str(procedural_many))
    plain = next(iter(make_dataset(urls, _data_cfg(), batch_size=1, seed=3, resampled=False, stages=get_family("l4gm").sample_stages())))
    interp = next(iter(make_dataset(urls, cfg, batch_size=1, seed=3, resampled=False, stages=get_family("l4gm").sample_stages())))
    assert plain["key"] == interp["key"]
    torch.testing.assert_close(interp["in_rgb"][0], blend_middle(plain["in_rgb"][0], 4))
    M = cfg.n_target  # targets per time, time-major: the video camera's true frame is the first at middle times
    video = int(plain["in_pairs"][0, 0, 1])
    for k in (1, 2):
        assert tuple(interp["tg_pairs"][0, k * M].tolist()) == tuple(plain["in_pairs"][0, k].tolist())
        assert int(interp["tg_pairs"][0, k * M, 1]) == video
        torch.testing.assert_close(interp["tg_rgb"][0, k * M], plain["in_rgb"][0, k])  # supervised on the true frame
    assert not torch.allclose(interp["in_rgb"][0, 1], plain["in_rgb"][0, 1])
    with pytest.raises(ConfigError, match="data.window >= 3"):
        apply_overrides(l4gm_tiny(), ["data.interp=true", "data.window=2"])


def _inputs(B=1, T=4, n0=2, S=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = T + n0
    c2w = orbit_cameras(B * n, 2.0).reshape(B, n, 4, 4)
    K = intrinsics(49.1, S, S).expand(B, n, 3, 3).clone()
    t = torch.rand(B, n, generator=g)
    cond = torch.cat([plucker_image(c2w, K, S, S), t[..., None, None, None].expand(B, n, 1, S, S)], 2)
    return torch.rand(B, n, 3, S, S, generator=g), cond, c2w, K


def test_model_outputs_one_set_of_gaussians_per_time():
    cfg = l4gm_tiny().model
    model = VideoReconstructor(cfg)
    rgb, cond, c2w, K = _inputs(B=2)
    with torch.no_grad():
        g = model(rgb, cond, c2w, K, window=4)
    N = 3 * (32 // cfg.gauss_stride) ** 2  # 1 video + 2 t0 views, one Gaussian per 2x2 pixels
    assert g.means.shape == (2, 4, N, 3) and g.quats.shape == (2, 4, N, 4) and g.opacity.shape == (2, 4, N)
    assert g.covars().shape == (2, 4, N, 3, 3)
    assert ((g.rgb > 0) & (g.rgb < 1)).all() and (g.scales > 0).all()
    ex = expand_window(rgb, 4)  # t0 views repeated at every time
    assert ex.shape == (2, 4, 3, 3, 32, 32) and torch.equal(ex[:, 3, 1:], rgb[:, 4:])
    with pytest.raises(ValueError, match="l4gm family"):
        VideoReconstructor(tiny().model)


@pytest.mark.parametrize("temporal", [True, False])
def test_temporal_attention_is_what_mixes_information_across_times(temporal):
    cfg = l4gm_tiny().model
    cfg.temporal_attention = temporal
    torch.manual_seed(0)
    model = VideoReconstructor(cfg)
    with torch.no_grad():
        for p in model.head.parameters():  # a trained-looking head, so outputs depend on the features
            p.normal_(0, 0.5)
    rgb, cond, c2w, K = _inputs()
    other = rgb.clone()
    other[:, 3] = 1 - other[:, 3]  # change the video frame at time 3 only
    with torch.no_grad():
        a, b = model(rgb, cond, c2w, K, window=4), model(other, cond, c2w, K, window=4)
    frame0 = float((a.means[:, 0] - b.means[:, 0]).abs().max())
    frame3 = float((a.means[:, 3] - b.means[:, 3]).abs().max())
    assert frame3 > 1e-3  # the changed time itself always changes
    if temporal:
        assert frame0 > 1e-4
    else:
        assert frame0 == 0.0
    n_blocks = len(list(model.children()))
    assert (model.time_blocks is not None) == temporal and n_blocks == (5 if temporal else 4)


def test_the_step_reads_the_window_from_a_shape_not_a_device_value():
    """forward_render must not read a tensor's value to learn the window (on a GPU: a sync every step).
    A meta tensor has a shape but no values: reading one raises."""
    from training.models.l4gm.model import forward_render

    cfg = l4gm_tiny()
    torch.manual_seed(0)
    model = VideoReconstructor(cfg.model).eval()
    W, M, S = 4, 2, 32
    rgb, cond, c2w, K = _inputs(B=2, T=W, n0=2, S=S)
    tg_c2w = orbit_cameras(2 * W * M, 2.0, elevation_deg=30.0).reshape(2, W * M, 4, 4)
    batch = {"in_rgb": rgb, "in_cond": cond, "in_c2w": c2w, "in_K": K,
             "window": torch.empty(2, dtype=torch.long, device="meta"),  # unreadable
             "window_frames": torch.empty(2, W, dtype=torch.long, device="meta"),
             "tg_c2w": tg_c2w, "tg_K": intrinsics(49.1, S, S).expand(2, W * M, 3, 3), "background": torch.ones(2, 3)}
    import contextlib

    with torch.no_grad():
        g, img, alpha = forward_render(model, batch, cfg, "torch", contextlib.nullcontext())
    assert g.means.shape[:2] == (2, W) and img.shape == (2, W * M, 3, S, S) and alpha.shape == (2, W * M, 1, S, S)
    del batch["window_frames"]
    with pytest.raises(KeyError, match="window_frames"):
        forward_render(model, batch, cfg, "torch", contextlib.nullcontext())


@pytest.mark.parametrize("temporal", [True, False])
def test_regional_compilation_finds_both_kinds_of_l4gm_blocks(temporal):
    """training/models/fast.py compiles what transformer_blocks returns: every multi-view and temporal block
    (CPU: compile_blocks itself is a no-op, as before)."""
    from training.models import fast
    from training.models.lrm4d.model import Reconstructor

    cfg = l4gm_tiny().model
    cfg.temporal_attention = temporal
    model = VideoReconstructor(cfg)
    found = fast.transformer_blocks(model)
    want = list(model.view_blocks) + (list(model.time_blocks) if temporal else [])
    assert len(found) == len(want) == cfg.depth * (2 if temporal else 1)
    assert {id(b) for b in found} == {id(b) for b in want}
    lrm = Reconstructor(tiny().model)
    assert [id(b) for b in fast.transformer_blocks(lrm)] == [id(b) for b in lrm.blocks]
    assert fast.compile_blocks(model) == 0  # CPU


def test_flop_count_grows_with_the_temporal_blocks():
    cfg = l4gm_tiny().model
    on = forward_flops(cfg, 8, 4, 32)
    cfg.temporal_attention = False
    off = forward_flops(cfg, 8, 4, 32)
    assert 1.8 < on / off < 2.5


def test_train_resume_and_family_checks(procedural_many, tmp_path):
    from training.train import train

    cfg = l4gm_tiny()
    cfg.steps, cfg.ckpt_every, cfg.log_every, cfg.grid_every = 3, 3, 1, 3
    run = tmp_path / "run"
    m1 = train(cfg, str(procedural_many), run)
    assert m1["step"] == 3 and m1["psnr"] > 0
    state = torch.load(run / "checkpoints" / "step-00000003.pt", weights_only=True)
    assert state["family"] == "l4gm" and state["config"]["model"]["family"] == "l4gm"
    cfg.steps = 5
    m2 = train(cfg, str(procedural_many), run)  # resumes at 3, stops at 5
    assert m2["step"] == 5
    lines = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert [ln["step"] for ln in lines] == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="holds 'l4gm' checkpoints"):
        train(tiny(), str(procedural_many), run)  # a 4D-LRM run in an L4GM run folder
    wrong = tiny()
    wrong.init_from = str(run)
    with pytest.raises(ValueError, match="family 'l4gm', but this needs 'lrm4d'"):
        train(wrong, str(procedural_many), tmp_path / "other")
    # interpolation model: a new run fine-tuned from the reconstruction checkpoint
    ft = apply_overrides(l4gm_tiny(), ["data.interp=true", f"init_from={run}", "steps=1", "ckpt_every=1"])
    assert train(ft, str(procedural_many), tmp_path / "interp")["step"] == 1
    fam = get_family("l4gm")
    model = fam.build_model(ft.model)
    model.load_state_dict(torch.load(tmp_path / "interp" / "checkpoints" / "step-00000001.pt",
                                     weights_only=True)["model"])
