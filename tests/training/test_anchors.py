"""Tracked cameras (framing 'track', DESIGN.md §2) in the loader and the models: per-pair anchors.

A procedural asset travelling several times its size along x, rendered by the real `pipeline render`
(32 px, 6 orbit views, 4 times) under both framings. Under 'track' every camera of time t is moved by
`cameras.offsets[t]`, so the object sits near that point, not near the origin; the loader hands each
pair's offset to the model as its anchor, and the models place every Gaussian within
|camera - anchor| +- model.dist_span along its pixel ray (training/blocks.ray_depth_means).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from training.models.registry import get_family
from training.data import stream as data
from training.data import shardspec
from training.models.blocks import ray_depth_means
from training.config import DataConfig, ModelConfig, apply_overrides, tiny
from training.data.decode import SampleError, camera_anchors
from training.geometry import pixel_rays

from .conftest import RENDER_FLAGS, _pipeline

TRAVEL = 4.0  # glTF units along x over the clip: several times the procedural asset's size


@pytest.fixture(scope="module")
def traveller(tmp_path_factory) -> dict[str, Path]:
    """{"track": DIR, "union": DIR}: one committed shard each, holding the travelling asset's clip."""
    import importlib.util

    if importlib.util.find_spec("bpy") is None:
        pytest.skip("render extra (bpy 5.0.1) not installed: no real renders of a traveller")
    import pandas as pd

    from manifests.schema import write_manifest
    from tests.render.glb import with_travel

    root = tmp_path_factory.mktemp("traveller")
    _pipeline("-q", "curate", "--source", "procedural", "--categories", "legacy", "--count", "1", "--seed", "11", "--assets-out",
              str(root / "assets"), "--shard-size", "1", "--out", str(root / "m.parquet"))
    df = pd.read_parquet(root / "m.parquet").iloc[:1].copy()
    moved = with_travel(Path(df["uri"].iloc[0]), root / "traveller.glb", TRAVEL)
    df["uid"], df["uri"], df["source"], df["sha256"], df["shard"] = "traveller", str(moved), "local", None, 0
    manifest = write_manifest(df, root / "t.parquet", command="test")
    out = {}
    for framing in ("track", "union"):
        _pipeline("-q", "render", "--manifest", str(manifest), "--shard", "0", "--out", str(root / framing),
                  *RENDER_FLAGS, "--framing", framing, "--min-coverage", "0")
        out[framing] = root / framing
    return out


def _meta(ds: Path) -> dict:
    from contracts.shardread import iter_shard

    (sample,) = iter_shard(ds / "shard-000000.tar")
    return sample.meta


def _batches(ds: Path, cfg: DataConfig, n: int = 1, family: str = "lrm4d", seed: int = 0) -> list[dict]:
    pipe = data.make_dataset(shardspec.resolve_shards(str(ds)), cfg, batch_size=1, seed=seed, resampled=True,
                             batches_per_worker=n, stages=get_family(family).sample_stages())
    return list(pipe)


CFG = DataConfig(image_size=32, n_in=4, n_target=8, shuffle_buffer=1, num_workers=0, load_depth=True)


def test_the_renders_travel_and_track(traveller):
    t, u = _meta(traveller["track"]), _meta(traveller["union"])
    assert t["render"]["framing"] == "track" and u["render"]["framing"] == "union"
    offsets = np.array(t["cameras"]["offsets"])  # [T, 3]
    assert np.ptp(offsets[:, 0]) > 1.5 and not np.any(u["cameras"]["offsets"])  # the cameras travel under track
    # The default model.dist_span holds every surface once measured from the anchors (the worker's figure).
    assert t["quality"]["dist_span_needed"] < ModelConfig().dist_span


def test_the_loader_emits_each_pairs_anchor(traveller):
    offsets = torch.tensor(_meta(traveller["track"])["cameras"]["offsets"], dtype=torch.float32)  # [T, 3]
    for b in _batches(traveller["track"], CFG, n=3):
        in_t, tg_t = b["in_pairs"][0, :, 0], b["tg_pairs"][0, :, 0]  # frames
        assert b["in_anchor"].shape == (1, CFG.n_in, 3) and b["tg_anchor"].shape == (1, CFG.n_target, 3)
        assert torch.equal(b["in_anchor"][0], offsets[in_t]) and torch.equal(b["tg_anchor"][0], offsets[tg_t])
        # a camera's position minus its anchor is its orbit around the origin: radius fixed by the preset
        orbit = (b["in_c2w"][0, :, :3, 3] - b["in_anchor"][0]).norm(dim=-1)
        assert torch.allclose(orbit, orbit[0].expand_as(orbit), atol=1e-4)
    (u,) = _batches(traveller["union"], CFG)
    assert not u["in_anchor"].any() and not u["tg_anchor"].any()


def test_the_l4gm_window_builder_emits_anchors(traveller):
    offsets = torch.tensor(_meta(traveller["track"])["cameras"]["offsets"], dtype=torch.float32)
    cfg = DataConfig(image_size=32, window=3, n_t0_views=2, n_target=2, shuffle_buffer=1, num_workers=0)
    (b,) = _batches(traveller["track"], cfg, family="l4gm")
    frames = b["in_pairs"][0, :, 0]  # video at each window time, then the t0 views at the first
    assert torch.equal(b["in_anchor"][0], offsets[frames])
    assert torch.equal(b["tg_anchor"][0], offsets[b["tg_pairs"][0, :, 0]])
    assert torch.equal(frames[3:], frames[:1].expand(2))


def _ray_distance(depth: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Planar depth [n, 1, S, S] -> distance along each pixel's ray [n, S, S] (DESIGN.md §2 conventions)."""
    S = depth.shape[-1]
    c = torch.arange(S, dtype=torch.float32) + 0.5
    i, j = torch.meshgrid(c, c, indexing="ij")
    x = (j - K[:, 0, 2, None, None]) / K[:, 0, 0, None, None]
    y = (i - K[:, 1, 2, None, None]) / K[:, 1, 1, None, None]
    return depth[:, 0] * torch.sqrt(1 + x ** 2 + y ** 2)


def _outside(b: dict, span: float, anchored: bool) -> tuple[int, int]:
    """(surface pixels outside the model's representable depth range, all surface pixels) over a batch's
    targets, through the real ray_depth_means at both ends of its sigmoid."""
    c2w, K, depth = b["tg_c2w"], b["tg_K"], b["tg_depth"]  # [1, n, 4, 4], [1, n, 3, 3], [1, n, 1, S, S]
    S = depth.shape[-1]
    anchor = b["tg_anchor"] if anchored else None
    _, lo = ray_depth_means(torch.full((*c2w.shape[:2], S, S, 1), -60.0), c2w, K, span, anchor)  # [1, n, S, S, 1]
    _, hi = ray_depth_means(torch.full((*c2w.shape[:2], S, S, 1), 60.0), c2w, K, span, anchor)
    ray = _ray_distance(depth[0], K[0])  # [n, S, S]
    m = depth[0, :, 0] > 0
    bad = (ray < lo[0, ..., 0] - 1e-3) | (ray > hi[0, ..., 0] + 1e-3)
    return int((bad & m).sum()), int(m.sum())


def test_with_anchors_every_tracked_surface_pixel_is_within_the_default_dist_span(traveller):
    span = ModelConfig().dist_span
    counts = {True: [0, 0], False: [0, 0]}
    for b in _batches(traveller["track"], CFG, n=4):
        for anchored in (True, False):
            bad, total = _outside(b, span, anchored)
            counts[anchored][0] += bad
            counts[anchored][1] += total
    assert counts[True][1] > 500
    assert counts[True][0] == 0, counts  # every surface pixel is representable
    assert counts[False][0] > 0.1 * counts[False][1], counts  # measured from the origin, many are not (~18 %)
    (u,) = _batches(traveller["union"], CFG)
    assert _outside(u, span, True) == _outside(u, span, False) and _outside(u, span, True)[0] == 0


def test_the_models_place_gaussians_from_the_anchor(traveller):
    # 4D-LRM: each input's Gaussians within |camera - its anchor| +- dist_span of its camera along its ray.
    from training.models.l4gm.model import VideoReconstructor
    from training.models.lrm4d.model import Reconstructor

    torch.manual_seed(0)
    cfg = tiny().model
    (b,) = _batches(traveller["track"], CFG)
    g = Reconstructor(cfg)(b["in_rgb"], b["in_cond"], b["in_c2w"], b["in_K"], b["in_time"], in_anchor=b["in_anchor"])
    o, _ = pixel_rays(b["in_c2w"], b["in_K"], 32, 32)  # [1, n, S, S, 3]
    dist = (g.means.reshape(o.shape) - o).norm(dim=-1)  # [1, n, S, S]
    centre = (o - b["in_anchor"][:, :, None, None]).norm(dim=-1)
    assert ((dist - centre).abs() <= cfg.dist_span + 1e-4).all()
    g0 = Reconstructor(cfg)(b["in_rgb"], b["in_cond"], b["in_c2w"], b["in_K"], b["in_time"])  # from the origin
    assert ((g0.means.reshape(o.shape) - o).norm(dim=-1) - o.norm(dim=-1)).abs().max() <= cfg.dist_span + 1e-4
    # L4GM: time t's Gaussians, t0 views included, measured from the video's anchor at t.
    lc = apply_overrides(tiny(), ["model.family=l4gm", "model.gauss_stride=1"]).model
    dc = DataConfig(image_size=32, window=3, n_t0_views=2, n_target=2, shuffle_buffer=1, num_workers=0)
    (w,) = _batches(traveller["track"], dc, family="l4gm")
    g3 = VideoReconstructor(lc)(w["in_rgb"], w["in_cond"], w["in_c2w"], w["in_K"], window=3, in_anchor=w["in_anchor"])
    for t in range(3):
        idx = [t, 3, 4]  # the video at t and the two t0 views
        o, _ = pixel_rays(w["in_c2w"][:, idx], w["in_K"][:, idx], 32, 32)  # [1, 3, S, S, 3]
        dist = (g3.means[:, t].reshape(o.shape) - o).norm(dim=-1)
        centre = (o - w["in_anchor"][:, t, None, None, None]).norm(dim=-1)
        assert ((dist - centre).abs() <= lc.dist_span + 1e-4).all(), t


def test_reconstruct_reads_a_samples_anchors(traveller):
    from training.data.clip import anchor_at, load_input, to_views

    meta = _meta(traveller["track"])
    clip = load_input(f"{traveller['track']}#traveller_000")
    offsets = np.array(meta["cameras"]["offsets"], np.float32)
    for fr in clip.frames:
        assert fr.anchor == pytest.approx(tuple(offsets[fr.frame]), abs=1e-6)
    v = to_views(clip.frames[:3], 16, torch.ones(3))
    assert torch.equal(v.anchors(), torch.tensor([fr.anchor for fr in clip.frames[:3]]))
    # the turntable follows the anchor through time, linearly between rendered times
    times = meta["times"]
    for t, off in zip(times, offsets):
        np.testing.assert_allclose(anchor_at(clip, t), off, atol=1e-6)
    np.testing.assert_allclose(anchor_at(clip, (times[0] + times[1]) / 2), (offsets[0] + offsets[1]) / 2, atol=1e-6)


def test_camera_anchors_reads_offsets_or_zeros_and_names_bad_ones():
    def meta(T: int, offsets=None, **kw) -> dict:
        eye = np.eye(4).tolist()
        cams = {"cameras": {"offsets": offsets}} if offsets is not None else {}
        return {"num_frames": T, "c2w": [[eye]] * T, **cams, **kw}

    assert camera_anchors("k", meta(2, [[0.5, 0, 0], [1.5, 0, 0]])).tolist() == [[0.5, 0, 0], [1.5, 0, 0]]
    assert camera_anchors("k", meta(3)).tolist() == [[0, 0, 0]] * 3  # before framing existed
    assert camera_anchors("k", meta(1, [[0.25, 0, 0]], static=True)).tolist() == [[0.25, 0, 0]]
    for bad in ([[0, 0, 0]], [[0, 0], [0, 0]], [[0, 0, 0], [float("nan"), 0, 0]], "x"):
        with pytest.raises(SampleError, match=r"k\.json: cameras\.offsets") as e:
            camera_anchors("k", meta(2, bad))
        assert e.value.reason == "bad_json"


def test_a_tiny_model_learns_the_tracked_traveller_and_its_turntable_follows_it(traveller, tmp_path):
    from PIL import Image, ImageSequence

    from training.export.reconstruct import reconstruct
    from training.train import train

    run = tmp_path / "run"
    cfg = apply_overrides(tiny(), ["steps=40", "log_every=10", "grid_every=0", "ckpt_every=40", "optim.lr=2e-3",
                                   "data.shuffle_buffer=1", "data.n_in=4", "optim.warmup_steps=5"])
    train(cfg, str(traveller["track"]), run)
    m = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in m] == [10, 20, 30, 40]
    assert m[-1]["loss"] < 0.8 * m[0]["loss"], [x["loss"] for x in m]
    # pipeline reconstruct on the tracked sample: the turntable circles each time's anchor, so the object
    # (which travels 4.5 units in normalised space) is in view in every frame; around the origin it left
    # the view (about 0.1% of the pixels in the last frames)
    res = reconstruct(str(run), f"{traveller['track']}#traveller_000", tmp_path / "rec", anim_frames=12)
    with Image.open(res.animation) as gif:
        drawn = [float((np.abs(np.asarray(f.convert("RGB"), np.int32) - 255).sum(-1) > 30).mean())
                 for f in ImageSequence.Iterator(gif)]
    assert len(drawn) == 12 and min(drawn) > 0.03, drawn
