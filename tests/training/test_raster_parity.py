"""gsplat (CUDA) against the pure-torch twin on random scenes: images and gradients.

Needs a CUDA GPU; gsplat compiles its kernels on first use (~45 s with MAX_JOBS=16 and
TORCH_CUDA_ARCH_LIST=9.0 on Hopper). Run on the GPU machine: `pytest tests/training/test_raster_parity.py`.
"""

from __future__ import annotations

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="gsplat needs a CUDA GPU; this machine has none"),
]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def _scene(B, T, N, seed, device):
    g = torch.Generator(device="cpu").manual_seed(seed)
    means = (torch.randn(B, T, N, 3, generator=g) * 0.3).to(device)
    L = (torch.randn(B, T, N, 3, 3, generator=g) * 0.03).to(device)
    opac = (torch.rand(B, T, N, generator=g) * 0.9 + 0.05).to(device)
    colors = torch.rand(B, T, N, 3, generator=g).to(device)
    return means, L, opac, colors


def _cameras(B, T, size, device):
    from training.geometry import intrinsics, orbit_cameras, world_to_camera

    c2w = orbit_cameras(B * T, 2.2, elevation_deg=25.0).reshape(B, T, 1, 4, 4)
    K = intrinsics(45.0, size, size).expand(B, T, 1, 3, 3)
    return world_to_camera(c2w).to(device), K.contiguous().to(device)


@pytest.mark.parametrize("seed,packed", [(0, False), (1, False), (2, False), (0, True), (1, True)])
def test_images_and_gradients_match(seed, packed):
    """Unpacked and packed gsplat (packed: render.packed, with the backgrounds composited after gsplat)."""
    from functools import partial

    from training.render import raster_gsplat
    from training.render import raster_torch

    dev = torch.device("cuda")
    B, T, N, S = 2, 2, 1500, 48
    scene = _scene(B, T, N, seed, dev)
    view, K = _cameras(B, T, S, dev)
    bg = torch.rand(B, T, 1, 3, device=dev)
    w = torch.randn(B, T, 1, S, S, 3, device=dev)  # a random linear loss weighs every pixel differently
    results = []
    for fn in (partial(raster_gsplat.rasterize, packed=packed), raster_torch.rasterize):
        means, L, opac, colors = [t.clone().requires_grad_(True) for t in scene]
        covars = L @ L.transpose(-1, -2) + 1e-5 * torch.eye(3, device=dev)
        img, alpha = fn(means, covars, opac, colors, view, K, S, S, backgrounds=bg)
        ((img * w).sum() + (alpha[..., 0] * w[..., 0]).sum()).backward()
        results.append((img.detach(), alpha.detach(), [t.grad for t in (means, L, opac, colors)]))
    (img_g, a_g, grads_g), (img_t, a_t, grads_t) = results
    assert img_g.shape == img_t.shape == (B, T, 1, S, S, 3)
    assert float(a_t.mean()) > 0.05  # the scene really covers the images
    assert _rel(img_g, img_t) < 1e-3 and float((img_g - img_t).abs().max()) < 1e-2
    assert _rel(a_g, a_t) < 1e-3
    for name, gg, gt in zip(("means", "covariance factor", "opacities", "colors"), grads_g, grads_t):
        assert _rel(gg, gt) < 2e-2, f"{name} gradients differ: rel {_rel(gg, gt):.2e}"


def test_full_4d_render_path_matches():
    """Slicing + rendering through training.render.frames with both backends, gradients on the 4D parameters."""
    from training.config import RenderConfig
    from training.geometry import intrinsics, orbit_cameras
    from training.render.frames import render_gaussians
    from training.render.slicing import Gaussians4D

    dev = torch.device("cuda")
    B, N, T, S = 2, 3000, 3, 40
    g = torch.Generator().manual_seed(7)
    params = {
        "means": torch.randn(B, N, 3, generator=g) * 0.3, "mu_t": torch.rand(B, N, generator=g),
        "rgb": torch.rand(B, N, 3, generator=g), "scales": torch.rand(B, N, 3, generator=g) * 0.03 + 0.005,
        "scale_t": torch.rand(B, N, generator=g) * 0.4 + 0.1, "q_l": torch.randn(B, N, 4, generator=g),
        "q_r": torch.randn(B, N, 4, generator=g), "opacity": torch.rand(B, N, generator=g) * 0.8 + 0.1,
    }
    c2w = orbit_cameras(B * T, 2.0).reshape(B, T, 4, 4).to(dev)
    K = intrinsics(40.0, S, S).expand(B, T, 3, 3).contiguous().to(dev)
    times = torch.rand(B, T, generator=g).to(dev)
    bg = torch.ones(B, 3, device=dev)
    out = []
    for backend in ("gsplat", "torch"):
        leaves = {k: v.to(dev).requires_grad_(True) for k, v in params.items()}
        rgb, alpha = render_gaussians(Gaussians4D(**leaves), c2w, K, times, S, S, bg, RenderConfig(), backend)
        (rgb.square().sum() + alpha.sum()).backward()
        out.append((rgb.detach(), {k: v.grad for k, v in leaves.items()}))
    assert _rel(out[0][0], out[1][0]) < 1e-3
    for k in params:
        assert _rel(out[0][1][k], out[1][1][k]) < 2e-2, f"{k}: rel {_rel(out[0][1][k], out[1][1][k]):.2e}"
