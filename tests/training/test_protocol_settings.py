"""Protocol tags carry every setting that changes which pairs are scored (DESIGN.md §5), target kinds
that tell a camera seen at another time from one never seen, and interpolation: trained on the frames it
must invent, and scored by its own protocol."""

from __future__ import annotations

import json
import random

import pandas as pd
import pytest
import torch

from training import checkpoint as ckpt
from training.config import DataConfig, apply_overrides, l4gm_tiny
from training.evaluate import evaluate
from training.models.lrm4d.protocol import Protocol
from training.models.registry import build_model
from training.models.l4gm.protocol import VideoProtocol, protocol_from_options
from training.models.l4gm.samples import pick_window
from training.eval.protocol import parse_tag, protocol_tag, target_kind


def test_sparse4_tag_names_each_setting_that_differs_from_the_default():
    assert Protocol().tag(256) == "sparse4-v2/lrm4d@256"  # defaults: unchanged tags, old files still compare
    assert Protocol(n_in=8).tag(256) == "sparse4-v2[n_in=8]/lrm4d@256"
    assert Protocol(per_kind=3, seed=7).tag(64) == "sparse4-v2[seed=7,per_kind=3]/lrm4d@64"
    assert Protocol(n_in=8, image_size=128).tag(256) == "sparse4-v2[n_in=8]/lrm4d@128"
    assert parse_tag("sparse4-v2[seed=7,per_kind=3]/lrm4d@64") == {
        "name": "sparse4", "version": 2, "family": "lrm4d", "image_size": 64, "settings": {"seed": "7", "per_kind": "3"}}
    assert parse_tag("sparse4-v2/lrm4d@64")["settings"] == {}
    with pytest.raises(ValueError, match="NAME-vN"):
        parse_tag("sparse4-v2[n_in]/lrm4d@64")


def test_mono_tag_names_each_setting_that_differs_from_the_default():
    assert VideoProtocol().tag(256) == "mono4-v2/l4gm@256"
    assert protocol_from_options({"n_in": 2}).tag(256) == "mono4-v2[n_t0_views=1]/l4gm@256"
    assert protocol_from_options({"per_kind": 3, "seed": 5}).tag(32) == "mono4-v2[seed=5,per_time=3]/l4gm@32"
    assert VideoProtocol(interp=True).tag(32) == "mono4-v2[interp=true]/l4gm@32"
    assert protocol_from_options({"name": "mono8"}).tag(32) == "mono8-v2/l4gm@32"  # the window is in the name
    with pytest.raises(ValueError, match="no middle frame to blend"):
        VideoProtocol(window=2, interp=True)
    assert protocol_tag("x", 1, "f", 8, {"a": False}) == "x-v1[a=false]/f@8"


def test_kinds_tell_a_camera_seen_at_another_time_from_one_never_seen():
    fixed = [True] * 5
    inputs = [(0, 0), (1, 0), (2, 0), (0, 1), (0, 2)]  # the video (view 0) at every time, t0 views 1 and 2
    assert target_kind((2, 1), inputs, fixed, split_views=True) == "known_view"  # t0 camera, later time
    assert target_kind((2, 3), inputs, fixed, split_views=True) == "novel_view"  # never seen
    assert target_kind((0, 3), inputs, fixed, split_views=True) == "novel_view"
    assert target_kind((2, 1), inputs, fixed) == "novel_view"  # sparse4's grouping, unchanged
    assert target_kind((2, 1), inputs, [True, False, True, True, True], split_views=True) == "novel_view"  # random view


def _layout(T=4, V=6):
    meta = {"num_frames": T, "static": False, "cameras": {"fixed": [True] * V}}
    members = {(t, v): f"t{t:03d}.v{v:03d}.png" for t in range(T) for v in range(V)}
    return meta, members


def test_interpolation_training_supervises_the_video_camera_at_middle_times():
    meta, members = _layout()
    cfg = DataConfig(window=4, n_t0_views=2, n_target=2, interp=True)
    rng = random.Random(0)
    draws = hits = 0
    for _ in range(300):
        ch = pick_window(rng, "k", meta, 4, 6, members, cfg)
        for k in (1, 2):  # middle times: the video frame there is a blend
            draws += 1
            hits += ch["video"] in ch["targets"][k]
            assert len(ch["targets"][k]) == 2 and len(set(ch["targets"][k])) == 2
        assert ch["video"] not in ch["targets"][0] and ch["video"] not in ch["targets"][3]  # true inputs there
    assert draws == 600 and hits == 600
    plain = DataConfig(window=4, n_t0_views=2, n_target=2)
    ch = pick_window(random.Random(0), "k", meta, 4, 6, members, plain)
    assert all(ch["video"] not in views for views in ch["targets"])  # the base model: the video is an input


def _l4gm_checkpoint(run, interp: bool, trained_on=None):
    cfg = apply_overrides(l4gm_tiny(), [f"data.interp={str(interp).lower()}"])
    torch.manual_seed(0)
    model = build_model(cfg.model)
    return ckpt.save(run, 3, {"model": model.state_dict(), "config": cfg.to_dict(), "step": 3, "epoch": 0,
                              "family": "l4gm", "trained_on": trained_on}, keep=1)


def test_an_interpolation_checkpoint_is_scored_on_blended_inputs_under_its_own_tag(procedural_many, tmp_path):
    c = _l4gm_checkpoint(tmp_path / "interp", True)
    res = evaluate(c, str(procedural_many), tmp_path / "i.parquet", None, device="cpu", worst=0, progress=False)
    df = pd.read_parquet(tmp_path / "i.parquet")
    assert res.tag == "mono4-v2[interp=true]/l4gm@32" and set(df["protocol"]) == {res.tag}
    for r in res.rows:
        p = json.loads(r["pairs"])
        video = p["inputs"][0][1]
        middle = [(tuple(tg), k) for tg, k in zip(p["targets"], p["kinds"]) if tg[0] in (1, 2)]
        # the true middle frames of the video camera are scored, as frames no input shows
        assert {(1, video), (2, video)} <= {tg for tg, _ in middle}
        assert all(k in ("novel_time", "novel_view_time", "pad") for _, k in middle)
    assert df["psnr_novel_time"].notna().all()
    # the same checkpoint without blending would score it on the frames it must invent: refused
    with pytest.raises(ValueError, match=r"data\.interp=true.*interp=true"):
        evaluate(c, str(procedural_many), tmp_path / "x.parquet", {"interp": False}, device="cpu", worst=0,
                 progress=False)
    base = _l4gm_checkpoint(tmp_path / "base", False)
    rb = evaluate(base, str(procedural_many), tmp_path / "b.parquet", None, device="cpu", worst=0, progress=False)
    assert rb.tag == "mono4-v2/l4gm@32"
