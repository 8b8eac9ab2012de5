"""The L4GM family's eval protocol (training/models/l4gm/protocol.py) on real renders: rows, tag, fixed choice,
baselines, seen_in_training, and `pipeline mine` reading the result unchanged."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from pipeline.cli import cli
from training import checkpoint as ckpt
from training.data import shardspec
from training.config import l4gm_tiny
from training.evaluate import evaluate
from training.models.registry import build_model
from training.models.l4gm.protocol import VideoProtocol, protocol_from_options
from training.eval.protocol import DESIGN_COLUMNS, read_metrics_info


def _checkpoint(run, seed, trained_on):
    cfg = l4gm_tiny()
    torch.manual_seed(seed)
    model = build_model(cfg.model)
    return ckpt.save(run, 5, {"model": model.state_dict(), "config": cfg.to_dict(), "step": 5, "epoch": 0,
                              "family": "l4gm", "trained_on": trained_on}, keep=1)


def test_mono_protocol_rows_and_mining(procedural_many, tmp_path):
    urls = shardspec.resolve_shards(str(procedural_many))
    trained = {"shards": [ckpt.shard_id(urls[0])], "manifests": []}
    a = _checkpoint(tmp_path / "a", 0, trained)
    b = _checkpoint(tmp_path / "b", 1, trained)
    ra = evaluate(a, str(procedural_many), tmp_path / "a.parquet", None, device="cpu", worst=1, progress=False)
    rb = evaluate(b, str(procedural_many), tmp_path / "b.parquet", {"seed": None}, device="cpu", worst=0,
                  progress=False)
    df = pd.read_parquet(tmp_path / "a.parquet")
    assert list(df.columns[: len(DESIGN_COLUMNS)]) == list(DESIGN_COLUMNS)
    assert set(df["protocol"]) == {"mono4-v2/l4gm@32"} and ra.tag == "mono4-v2/l4gm@32"
    assert len(df) >= 3 and df["psnr"].notna().all() and df["psnr_obj"].notna().all()
    for col in ("psnr_t0", "psnr_later", "psnr_nearest_input", "psnr_mean_colour", "loss"):
        assert df[col].notna().all(), col
    assert df["seen_in_training"].tolist() == [s == int(urls[0].split("-")[-1][:6]) for s in df["shard"]]
    # the same images for every checkpoint: the choice depends on the protocol and the key only
    pa = {r["key"]: r["pairs"] for r in ra.rows}
    pb = {r["key"]: r["pairs"] for r in rb.rows}
    assert pa == pb and {r["key"]: r["psnr"] for r in ra.rows} != {r["key"]: r["psnr"] for r in rb.rows}
    p = json.loads(ra.rows[0]["pairs"])
    W = 4
    frames = [t for t, _ in p["inputs"][:W]]
    assert frames == [0, 1, 2, 3] and len({v for _, v in p["inputs"][:W]}) == 1  # one video view from the start
    # the video shows every time: a held-out camera is a t0 view's camera (seen at the first time) at a
    # later time (known_view) or a camera no input uses (novel_view)
    t0_views = {v for _, v in p["inputs"][W:]}
    for (t, v), k in zip(p["targets"], p["kinds"]):
        assert k == "pad" or k == ("known_view" if t > 0 and v in t0_views else "novel_view"), (t, v, k)
    kinds = [k for r in ra.rows for k in json.loads(r["pairs"])["kinds"]]
    assert "known_view" in kinds and "novel_view" in kinds
    assert df["psnr_known_view"].notna().any() and df["psnr_novel_view"].notna().any()
    info = read_metrics_info(tmp_path / "a.parquet")
    assert info["protocol_tag"] == "mono4-v2/l4gm@32" and info["protocol"]["n_t0_views"] == 3
    assert len(ra.worst) == 1 and ra.worst[0].exists()
    # mining reads the metrics unchanged
    manifest = procedural_many.parent / "m.parquet"
    r = CliRunner().invoke(cli, ["mine", "--metrics", str(tmp_path / "a.parquet"), "--manifest", str(manifest),
                                 "--out", str(tmp_path / "next.parquet"), "--preset", "debug"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert len(pd.read_parquet(tmp_path / "next.parquet")) >= 1


def test_protocol_options_and_family_checks(tmp_path):
    p = protocol_from_options({"name": "mono8", "per_kind": 3, "n_in": 2, "image_size": None})
    assert (p.window, p.per_time, p.n_t0_views) == (8, 3, 1) and p.tag(256) == "mono8-v2[n_t0_views=1,per_time=3]/l4gm@256"
    assert protocol_from_options(None) == VideoProtocol()
    with pytest.raises(ValueError, match="--n-in 0"):
        protocol_from_options({"n_in": 0})
    with pytest.raises(ValueError, match="--protocol sparse4: not a protocol of the l4gm family"):
        protocol_from_options({"name": "sparse4"})
    from training.models.l4gm.protocol import evaluate_l4gm
    from training.config import tiny

    state = {"model": {}, "config": tiny().to_dict(), "step": 1, "family": "lrm4d"}
    with pytest.raises(ValueError, match="family 'lrm4d', but this needs 'l4gm'"):
        evaluate_l4gm(state, tmp_path / "x.pt", "unused", tmp_path / "m.parquet")
