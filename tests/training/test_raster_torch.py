"""The pure-torch rasteriser follows gsplat's conventions (training/render/raster_torch.py)."""

from __future__ import annotations

import math

import torch

from training.render.raster_torch import rasterize

W = H = 32
F = 100.0


def _cam(dtype=torch.float64):
    K = torch.tensor([[F, 0, W / 2], [0, F, H / 2], [0, 0, 1]], dtype=dtype)[None]  # [1, 3, 3]
    return torch.eye(4, dtype=dtype)[None], K  # camera at the origin looking down +z


def _iso(points, sigma, dtype=torch.float64):
    n = len(points)
    return (torch.tensor(points, dtype=dtype), (sigma ** 2) * torch.eye(3, dtype=dtype).expand(n, 3, 3).clone())


def _render(means, covars, opac, colors, bg=None, **kw):
    view, K = _cam(means.dtype)
    bgs = None if bg is None else torch.tensor([bg], dtype=means.dtype)
    img, alpha = rasterize(means, covars, torch.as_tensor(opac, dtype=means.dtype),
                           torch.as_tensor(colors, dtype=means.dtype), view, K, W, H, backgrounds=bgs, **kw)
    return img[0], alpha[0, ..., 0]


def test_one_gaussian_matches_the_ewa_formula_with_the_low_pass():
    means, covars = _iso([[0.0, 0.0, 2.0]], 0.05)
    img, alpha = _render(means, covars, [0.8], [[1.0, 0.5, 0.25]], bg=[0.0, 0.0, 0.0])
    var2d = (F / 2.0 * 0.05) ** 2 + 0.3  # projected variance + the 0.3 px^2 low-pass
    j, i = torch.meshgrid(torch.arange(W, dtype=torch.float64) + 0.5, torch.arange(H, dtype=torch.float64) + 0.5,
                          indexing="xy")
    a = 0.8 * torch.exp(-0.5 * ((j - W / 2) ** 2 + (i - H / 2) ** 2) / var2d)
    a = torch.where(a >= 1 / 255, a, torch.zeros_like(a))  # below 1/255: skipped
    torch.testing.assert_close(alpha, a)
    torch.testing.assert_close(img[..., 1], 0.5 * a)


def test_front_to_back_whatever_the_input_order():
    means, covars = _iso([[0.0, 0.0, 3.0], [0.0, 0.0, 2.0]], 0.2)  # far blue first, near red second
    img, _ = _render(means, covars, [0.9, 0.6], [[0, 0, 1.0], [1.0, 0, 0]], bg=[0.0, 1.0, 0.0])
    c = img[H // 2, W // 2]  # the centre pixel is 0.5 px from both means
    a_near = 0.6 * math.exp(-0.5 * 0.5 / ((F / 2 * 0.2) ** 2 + 0.3))
    a_far = 0.9 * math.exp(-0.5 * 0.5 / ((F / 3 * 0.2) ** 2 + 0.3))
    expected = torch.tensor([a_near, (1 - a_near) * (1 - a_far), (1 - a_near) * a_far], dtype=torch.float64)
    torch.testing.assert_close(c, expected)


def test_alpha_clamps_at_0999_and_a_pixel_stops_before_transmittance_1e4():
    means, covars = _iso([[0.0, 0.0, 2.0], [0.0, 0.0, 2.5], [0.0, 0.0, 3.0]], 0.6)
    img, alpha = _render(means, covars, [1.0, 1.0, 1.0], [[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]], bg=[1.0, 1.0, 1.0])
    # first: alpha 0.999 (clamped), T -> 1e-3; second would take T to 1e-6 <= 1e-4: stop, exclusive
    c = img[H // 2, W // 2]
    torch.testing.assert_close(c, torch.tensor([0.999 + 0.001, 0.001, 0.001], dtype=torch.float64), atol=2e-6, rtol=0)
    assert abs(float(alpha[H // 2, W // 2]) - 0.999) < 2e-6


def test_faint_and_hidden_gaussians_contribute_nothing():
    means, covars = _iso([[0.0, 0.0, 2.0], [0.0, 0.0, -2.0], [0.0, 0.0, 0.005]], 0.1)
    # opacity 0.003 < 1/255; one behind the camera; one nearer than the near plane (0.01)
    img, alpha = _render(means, covars, [0.003, 0.9, 0.9], [[1.0, 1.0, 1.0]] * 3, bg=[0.2, 0.3, 0.4])
    assert float(alpha.abs().max()) == 0.0
    torch.testing.assert_close(img, torch.tensor([0.2, 0.3, 0.4], dtype=torch.float64).expand(H, W, 3))


def _random_scene(n=60, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g, dtype=dtype) * 0.25 + torch.tensor([0, 0, 2.0], dtype=dtype)
    A = torch.randn(n, 3, 3, generator=g, dtype=dtype) * 0.04
    covars = A @ A.transpose(-1, -2) + 1e-4 * torch.eye(3, dtype=dtype)
    opac = torch.rand(n, generator=g, dtype=dtype) * 0.8 + 0.1
    colors = torch.rand(n, 3, generator=g, dtype=dtype)
    return means, covars, opac, colors


def test_tiles_and_chunks_do_not_change_images_or_gradients():
    scene = _random_scene()
    outs = []
    for kw in ({"tile_size": 16, "max_elems": 1 << 22}, {"tile_size": 8, "max_elems": 1024},
               {"tile_size": 16, "max_elems": 1024, "use_checkpoint": True}):
        leaves = [t.clone().requires_grad_(True) for t in scene]
        img, alpha = _render(*leaves, bg=[0.5, 0.5, 0.5], **kw)
        (img * torch.linspace(0, 1, 3, dtype=torch.float64)).sum().backward()
        outs.append((img.detach(), alpha.detach(), [t.grad for t in leaves]))
    for img, alpha, grads in outs[1:]:
        torch.testing.assert_close(img, outs[0][0])
        torch.testing.assert_close(alpha, outs[0][1])
        for g, g0 in zip(grads, outs[0][2]):
            torch.testing.assert_close(g, g0)


def test_batch_dims_render_each_sample_with_its_own_camera():
    means, covars, opac, colors = _random_scene(20)
    view, K = _cam()
    view2 = view.clone()
    view2[0, 0, 3] = 0.2  # second camera shifted
    b = lambda t: torch.stack([t, t])  # noqa: E731
    img, _ = rasterize(b(means), b(covars), b(opac), b(colors), torch.stack([view, view2]), torch.stack([K, K]), W, H)
    one, _ = rasterize(means, covars, opac, colors, view2, K, W, H)
    torch.testing.assert_close(img[1], one)
    assert not torch.allclose(img[0], img[1])


def test_gradcheck_float64():
    means, covars, opac, colors = _random_scene(4, seed=3)
    view, K = _cam()
    K = K * torch.tensor([[0.25], [0.25], [1.0]], dtype=torch.float64)  # an 8x8 image keeps gradcheck quick

    def fn(m, o, c):
        return rasterize(m, covars, o, c, view, K, 8, 8)[0]

    inputs = (means.clone().requires_grad_(True), opac.clone().requires_grad_(True), colors.clone().requires_grad_(True))
    assert torch.autograd.gradcheck(fn, inputs, atol=1e-6)


def test_nothing_visible_still_back_propagates_zero_gradients():
    """A target that sees no Gaussian (all behind the camera) gives background and alpha 0 that stay in the
    graph: backward works and every gradient is 0, as with gsplat (a batch of empty targets must not crash
    the trainer)."""
    means, covars = _iso([[0.0, 0.0, -1.0], [0.1, 0.0, -2.0]], 0.05)
    means.requires_grad_(True)
    opac = torch.tensor([0.9, 0.9], dtype=torch.float64, requires_grad=True)
    colors = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]], dtype=torch.float64, requires_grad=True)
    img, alpha = _render(means, covars, opac, colors, bg=[1.0, 1.0, 1.0])
    assert torch.equal(alpha, torch.zeros_like(alpha)) and torch.equal(img, torch.ones_like(img))
    (img.sum() + alpha.sum()).backward()
    for t in (means, opac, colors):
        assert t.grad is not None and torch.equal(t.grad, torch.zeros_like(t))


def test_a_gaussian_at_the_camera_plane_sends_no_nan_back():
    """float32, as in training: a Gaussian a hair in front of the camera plane (culled: nearer than the near
    plane) beside a visible one. Projected at its own depth, 1/z^2 overflows to inf and the zero gradient it
    gets back becomes NaN (0 * inf) in the products' backward: one such Gaussian once made a whole model NaN
    (issue 22's CPU runs). The visible Gaussian's gradients are those of a render without the culled one."""
    f32 = torch.float32
    means, covars = _iso([[0.0, 0.0, 2.0], [0.01, 0.0, 1e-21]], 0.05, dtype=f32)
    opac, colors = torch.tensor([0.8, 0.8], dtype=f32), torch.tensor([[1.0, 0.5, 0.2], [0.2, 0.5, 1.0]], dtype=f32)
    grads = []
    for keep in (2, 1):
        leaves = [t[:keep].clone().requires_grad_(True) for t in (means, covars, opac, colors)]
        img, alpha = _render(*leaves, bg=[0.3, 0.3, 0.3])
        (img.sum() + alpha.sum()).backward()
        for t in leaves:
            assert torch.isfinite(t.grad).all(), t.grad
        grads.append([t.grad[:1] for t in leaves])
    for g2, g1 in zip(*grads):
        torch.testing.assert_close(g2, g1)
