"""Fixtures for the viewer's tests: a real Blender render (the trainer tests' fixture, reused), a real
`pipeline reconstruct` output of it (a tiny checkpoint), a viser server on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.training.conftest import procedural_one  # noqa: F401 (the shared real render, one clip)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A real checkpoint of the `tiny` 4D-LRM preset (seeded random weights: the viewer draws what any
    checkpoint predicts, learning is not what is tested here)."""
    import torch

    from training import checkpoint as ckpt
    from training.config import tiny
    from training.models.registry import build_model

    cfg = tiny()
    torch.manual_seed(0)
    model = build_model(cfg.model)
    return ckpt.save(tmp_path_factory.mktemp("ckpt"), 5, {"model": model.state_dict(), "config": cfg.to_dict(),
                                                          "step": 5, "epoch": 0, "family": cfg.model.family}, keep=1)


@pytest.fixture(scope="session")
def first_key(procedural_one) -> str:  # noqa: F811
    from viewer.dataset import Dataset

    ds = Dataset(str(procedural_one))
    return next(r["key"] for r in ds.rows(ds.listing().committed[0].number) if r["status"] == "ok")


@pytest.fixture(scope="session")
def reconstruction(procedural_one, tiny_checkpoint, first_key, tmp_path_factory) -> Path:  # noqa: F811
    """`pipeline reconstruct` of the rendered clip: one .ply per rendered time, reconstruct.json."""
    from click.testing import CliRunner

    from pipeline.cli import cli

    out = tmp_path_factory.mktemp("rec") / "rec"
    r = CliRunner().invoke(cli, ["reconstruct", "--checkpoint", str(tiny_checkpoint), "--input",
                                 f"{procedural_one}#{first_key}", "--out", str(out), "--anim-frames", "2",
                                 "--anim-size", "16", "--device", "cpu"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert json.loads((out / "reconstruct.json").read_text())["outputs"]
    return out


@pytest.fixture
def viser_server():
    """A real viser server on an ephemeral loopback port (no browser attached)."""
    import viser

    server = viser.ViserServer(host="127.0.0.1", port=0, verbose=False)
    yield server
    server.stop()
