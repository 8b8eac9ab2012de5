"""Losses and metrics (training/losses/terms.py, training/losses/lpips.py), LPIPS with and without local weights."""

from __future__ import annotations

import logging

import pytest
import torch

from training.config import LossConfig
from training.losses.terms import psnr, reconstruction_losses, ssim
from training.losses.lpips import LPIPS, convert, load_lpips


def _imgs(seed=0, shape=(2, 3, 3, 32, 32)):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g)


def test_psnr_of_a_known_error():
    a = torch.zeros(1, 3, 8, 8)
    torch.testing.assert_close(psnr(a + 0.1, a), torch.tensor([20.0]))


def test_ssim_is_one_for_identical_images_and_lower_for_noise():
    x = _imgs()[0]
    torch.testing.assert_close(ssim(x, x), torch.ones(3))
    assert (ssim(x, (x + 0.3 * torch.randn_like(x)).clamp(0, 1)) < 0.9).all()


def test_terms_and_weighted_sum_without_lpips():
    pred, tgt = _imgs(0), _imgs(1)
    a_pred, a_tgt = _imgs(2, (2, 3, 1, 32, 32)), _imgs(3, (2, 3, 1, 32, 32))
    cfg = LossConfig(mse=1.0, mask=0.5, ssim=0.2, lpips=0.5)
    out = reconstruction_losses(pred, a_pred, tgt, a_tgt, cfg, lpips_net=None)
    assert "lpips" not in out
    expected = out["mse"] + 0.5 * out["mask"] + 0.2 * out["ssim"]
    torch.testing.assert_close(out["loss"], expected)
    torch.testing.assert_close(out["mse"], ((pred - tgt) ** 2).mean())


def test_missing_lpips_weights_warn_once_and_give_no_term(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        assert load_lpips(tmp_path / "absent.pt") is None
    assert caplog.text.count("LPIPS weights not found") == 1


def test_lpips_from_a_local_weights_file(tmp_path):
    torch.manual_seed(0)
    net = LPIPS()
    for lin in net.lin:  # the real lin weights are non-negative
        lin.weight.data.abs_()
    torch.save(net.state_dict(), tmp_path / "lpips.pt")
    loaded = load_lpips(tmp_path / "lpips.pt")
    assert loaded is not None
    x, y = _imgs(0, (2, 3, 32, 32)), _imgs(1, (2, 3, 32, 32))
    torch.testing.assert_close(loaded(x, x), torch.zeros(2))
    assert (loaded(x, y) > 0).all()
    pred = _imgs(0).requires_grad_(True)
    a = torch.ones(2, 3, 1, 32, 32)
    out = reconstruction_losses(pred, a, _imgs(1), a, LossConfig(lpips=0.5), lpips_net=loaded)
    assert "lpips" in out and float(out["lpips"].detach()) > 0
    out["loss"].backward()
    assert pred.grad is not None and float(pred.grad.abs().sum()) > 0
    assert not any(p.requires_grad for p in loaded.parameters())  # the network itself is frozen


def test_a_file_that_is_not_lpips_weights_is_rejected(tmp_path):
    torch.save({"something": torch.zeros(3)}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="not an LPIPS weights file"):
        load_lpips(tmp_path / "bad.pt")


def test_convert_maps_torchvision_vgg_and_lpips_lin_names():
    ref = LPIPS()
    vgg = {k: torch.randn_like(v) for k, v in ref.state_dict().items() if k.startswith("features.")}
    vgg["features.30.weight"] = torch.zeros(1)  # later layers of torchvision's vgg16 are dropped
    vgg["classifier.0.weight"] = torch.zeros(1)
    lin = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate((64, 128, 256, 512, 512))}
    out = convert(vgg, lin)
    assert "classifier.0.weight" not in out and "features.30.weight" not in out
    torch.testing.assert_close(out["lin.2.weight"], lin["lin2.model.1.weight"])
    torch.testing.assert_close(out["features.28.weight"], vgg["features.28.weight"])
