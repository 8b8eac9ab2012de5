"""The L4GM family's render path on the GPU: gsplat against the pure-torch twin, on real model outputs
(per-time pixel-aligned 3D Gaussians rendered at their own times): images, alphas and the gradients that
reach the model's weights. Needs a CUDA GPU (gsplat has no CPU path)."""

from __future__ import annotations

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="gsplat needs a CUDA GPU; this machine has none"),
]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


@pytest.mark.parametrize("seed", [0, 1])
def test_gsplat_and_torch_render_the_same_frames_and_gradients(seed):
    from tests.training.test_l4gm import _inputs
    from training.config import l4gm_tiny
    from training.models.l4gm.model import VideoReconstructor, forward_render

    dev = torch.device("cuda")
    cfg = l4gm_tiny()
    torch.manual_seed(seed)
    model = VideoReconstructor(cfg.model).to(dev)
    with torch.no_grad():
        for p in model.head.parameters():  # away from the initial state: varied depths, sizes and opacities
            p.normal_(0, 0.3)
    W, n0, M, S = 4, 2, 3, 32
    rgb, cond, c2w, K = (x.to(dev) for x in _inputs(B=2, T=W, n0=n0, S=S, seed=seed))
    from training.geometry import intrinsics, orbit_cameras

    tg_c2w = orbit_cameras(2 * W * M, 2.0, elevation_deg=30.0, phase=0.4).reshape(2, W * M, 4, 4).to(dev)
    tg_K = intrinsics(49.1, S, S).expand(2, W * M, 3, 3).contiguous().to(dev)
    batch = {"in_rgb": rgb, "in_cond": cond, "in_c2w": c2w, "in_K": K, "window": torch.tensor([W, W], device=dev),
             "window_frames": torch.arange(W, device=dev).expand(2, W),
             "tg_c2w": tg_c2w, "tg_K": tg_K, "background": torch.rand(2, 3, device=dev)}
    wgt = torch.randn(2, W * M, 3, S, S, device=dev)
    results = []
    for backend in ("gsplat", "torch"):
        model.zero_grad(set_to_none=True)
        _g, img, alpha = forward_render(model, batch, cfg, backend, torch.autocast("cuda", enabled=False))
        ((img * wgt).sum() + (alpha[:, :, 0] * wgt[:, :, 0]).sum()).backward()
        results.append((img.detach(), alpha.detach(), [p.grad.detach().clone() for p in model.parameters()]))
    (ig, ag, gg), (it, at, gt) = results
    assert ig.shape == (2, W * M, 3, S, S) and float(at.mean()) > 0.05
    assert _rel(ig, it) < 1e-3 and _rel(ag, at) < 1e-3
    for a, b in zip(gg, gt):
        assert _rel(a, b) < 2e-2


def test_compiled_l4gm_blocks_match_eager_blocks():
    """training/fast.setup_model compiles the multi-view and the temporal blocks (regional compilation):
    same Gaussians and weight gradients as the eager model, state-dict keys unchanged, and a training
    step that does not wait on the GPU to learn the window (torch.cuda sync debug mode)."""
    from tests.training.test_l4gm import _inputs
    from training.models import fast
    from training.config import l4gm_tiny
    from training.models.l4gm.model import VideoReconstructor

    dev = torch.device("cuda")
    cfg = l4gm_tiny().model
    torch.manual_seed(0)
    eager = VideoReconstructor(cfg).to(dev)
    with torch.no_grad():
        for p in eager.head.parameters():
            p.normal_(0, 0.3)
    comp = VideoReconstructor(cfg).to(dev)
    comp.load_state_dict(eager.state_dict())
    keys = list(comp.state_dict())
    assert fast.setup_model(comp, dev, compile_model=True).endswith(f"compiled blocks={2 * cfg.depth}")
    assert list(comp.state_dict()) == keys
    rgb, cond, c2w, K = (x.to(dev) for x in _inputs(B=2, T=4, n0=2, S=32))
    outs = []
    for m in (eager, comp):
        m.zero_grad(set_to_none=True)
        g = m(rgb, cond, c2w, K, window=4)
        (g.means * torch.linspace(-1, 1, 3, device=dev)).sum().backward()
        outs.append((g.means.detach(), [p.grad for p in m.parameters()]))
    assert _rel(outs[1][0], outs[0][0]) < 1e-3
    for a, b in zip(outs[1][1], outs[0][1]):
        assert _rel(a, b) < 2e-2
    from training.models.l4gm.model import window_of

    batch = {"window": torch.tensor([4, 4], device=dev), "window_frames": torch.arange(4, device=dev).expand(2, 4)}
    torch.cuda.set_sync_debug_mode("error")  # reading a CUDA value on the host raises
    try:
        assert window_of(batch) == 4
        with pytest.raises(RuntimeError):
            int(batch["window"][0])  # the old way: a sync
    finally:
        torch.cuda.set_sync_debug_mode(0)
