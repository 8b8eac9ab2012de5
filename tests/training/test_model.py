"""The reconstructor (training/models/lrm4d/model.py): shapes, bounds, initial state, presets."""

from __future__ import annotations

import torch

from training.config import base, small, tiny
from training.geometry import orbit_cameras, pixel_rays, plucker_image, scale_intrinsics, intrinsics
from training.models.lrm4d.model import Reconstructor, count_parameters


def _inputs(B=2, V=2, S=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    c2w = orbit_cameras(B * V, 2.0).reshape(B, V, 4, 4)
    K = intrinsics(35.0, S, S).expand(B, V, 3, 3).clone()
    t = torch.rand(B, V, generator=g)
    cond = torch.cat([plucker_image(c2w, K, S, S), t[..., None, None, None].expand(B, V, 1, S, S)], 2)
    return torch.rand(B, V, 3, S, S, generator=g), cond, c2w, K, t


def test_one_gaussian_per_input_pixel_within_bounds():
    cfg = tiny().model
    model = Reconstructor(cfg)
    rgb, cond, c2w, K, t = _inputs()
    with torch.no_grad():
        for p in model.head.parameters():  # push the raw outputs to extremes: activations must still bound them
            p.normal_(0, 5.0)
        g = model(rgb, cond, c2w, K, t)
    B, V, S = 2, 2, 32
    N = V * S * S
    assert g.means.shape == (B, N, 3) and g.q_l.shape == (B, N, 4) and g.opacity.shape == (B, N)
    o, d = pixel_rays(c2w, K, S, S)
    dist = ((g.means.reshape(B, V, S, S, 3) - o) * d).sum(-1)  # distance along each pixel's own ray
    torch.testing.assert_close(torch.linalg.cross(g.means.reshape(B, V, S, S, 3) - o, d),
                               torch.zeros(B, V, S, S, 3), atol=1e-4, rtol=0)  # centres lie on their rays
    cam = o.norm(dim=-1)
    assert (dist >= (cam - cfg.dist_span).clamp_min(0.05) - 1e-4).all() and (dist <= cam + cfg.dist_span + 1e-4).all()
    assert ((g.opacity >= 0) & (g.opacity <= 1)).all() and ((g.rgb >= 0) & (g.rgb <= 1)).all()
    torch.testing.assert_close(g.q_l.norm(dim=-1), torch.ones(B, N))
    assert (g.scales > 0).all() and (g.scale_t > 0).all()


def test_initial_gaussians_show_their_pixel_at_their_input_time():
    model = Reconstructor(tiny().model)
    rgb, cond, c2w, K, t = _inputs()
    with torch.no_grad():
        g = model(rgb, cond, c2w, K, t)
    px = rgb.clamp(0.02, 0.98).permute(0, 1, 3, 4, 2).reshape(2, -1, 3)
    torch.testing.assert_close(g.rgb, px, atol=0.05, rtol=0)
    torch.testing.assert_close(g.mu_t, t[:, :, None].expand(2, 2, 32 * 32).reshape(2, -1), atol=0.05, rtol=0)
    ident = torch.tensor([1.0, 0, 0, 0])
    assert float((g.q_l - ident).abs().max()) < 0.05 and float((g.q_r - ident).abs().max()) < 0.05


def test_activation_checkpointing_gives_the_same_outputs_and_gradients():
    cfg = tiny().model
    torch.manual_seed(0)
    a = Reconstructor(cfg)
    cfg2 = tiny().model
    cfg2.grad_checkpoint = True
    b = Reconstructor(cfg2)
    b.load_state_dict(a.state_dict())
    x = _inputs()
    outs = []
    for m in (a, b):
        m.train()
        g = m(*x)
        (g.means.square().sum() + g.rgb.sum()).backward()
        outs.append((g.means.detach(), [p.grad.clone() for p in m.parameters()]))
    torch.testing.assert_close(outs[0][0], outs[1][0])
    for ga, gb in zip(outs[0][1], outs[1][1]):
        torch.testing.assert_close(ga, gb)


def test_base_preset_has_about_300m_parameters():
    with torch.device("meta"):  # no memory: only shapes
        n = count_parameters(Reconstructor(base().model))
    assert 290e6 < n < 320e6, n
    cfg = base()
    assert (cfg.model.depth, cfg.model.width, cfg.model.patch_size, cfg.data.image_size) == (24, 1024, 8, 256)
    with torch.device("meta"):
        assert count_parameters(Reconstructor(small().model)) < count_parameters(Reconstructor(base().model))


def test_resized_inputs_keep_pixel_footprint_scales_consistent():
    # the same camera at half resolution gives Gaussians about twice as wide (pixel footprint)
    model = Reconstructor(tiny().model)
    rgb, cond, c2w, K, t = _inputs(S=32)
    K2 = scale_intrinsics(K, 0.5, 0.5)
    rgb2 = torch.nn.functional.avg_pool2d(rgb.flatten(0, 1), 2).reshape(2, 2, 3, 16, 16)
    cond2 = torch.cat([plucker_image(c2w, K2, 16, 16), t[..., None, None, None].expand(2, 2, 1, 16, 16)], 2)
    with torch.no_grad():
        s1 = model(rgb, cond, c2w, K, t).scales.median()
        s2 = model(rgb2, cond2, c2w, K2, t).scales.median()
    assert 1.6 < float(s2 / s1) < 2.5
