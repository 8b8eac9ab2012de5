"""training/models/fast.py: the GPU speed settings compute what the eager float32/TF32 code computes.

The CPU test checks that nothing changes on a CPU; the others need a CUDA GPU (run on the GPU
machine: `pytest tests/training/test_fast.py`) and compare, on fresh random inputs, each fast path
with its reference: compiled blocks vs eager blocks, cuDNN attention vs a float32 math reference,
compiled slicing vs eager slicing, bf16 LPIPS vs float32 LPIPS, compiled vs eager Gaussian activations,
a CUDA-graphed reconstruction vs the same model called directly, and evaluation on the GPU (compiled,
cuDNN attention: eval_loop calls fast.setup_model) vs on the CPU. The speed knobs of the loss (LPIPS at a
lower resolution, on every k-th step) are checked on the CPU.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from training.models import fast
from training.render import slicing
from training.config import ConfigError, ModelConfig


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12))


def _gaussians(B, N, device, seed):
    g = torch.Generator().manual_seed(seed)
    t = lambda *s: torch.randn(*s, generator=g).to(device)  # noqa: E731
    return slicing.Gaussians4D(means=t(B, N, 3), mu_t=t(B, N).sigmoid(), rgb=t(B, N, 3).sigmoid(),
                               scales=t(B, N, 3).exp() * 0.05, scale_t=t(B, N).exp() * 0.2, q_l=t(B, N, 4),
                               q_r=t(B, N, 4), opacity=t(B, N).sigmoid())


def _block_fwd_bwd(blocks, x: torch.Tensor) -> list:
    """Each block's output, input gradient and parameter gradients under bf16 autocast, for the same x
    [B, L, W] and the same weighted-sum loss."""
    outs = []
    for m in blocks:
        xi = x.clone().requires_grad_(True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            y = m(xi)
        (y.float() * torch.linspace(-1, 1, x.shape[-1], device=x.device)).sum().backward()
        outs.append((y.detach(), xi.grad, [p.grad for p in m.parameters()]))
    return outs


def test_setup_is_a_no_op_on_cpu():
    from training.models.lrm4d.model import Reconstructor

    model = Reconstructor(ModelConfig(patch_size=4, width=64, depth=2, heads=2))
    assert fast.setup_model(model, torch.device("cpu"), compile_model=True,
                            compile_head=True) == "attention=default, compiled blocks=0"
    assert not slicing._USE_COMPILED
    assert "activate" not in model.__dict__  # the head's activations stay the eager method
    graphed = fast.GraphedCall(lambda a, b: (a * b, {"s": a + b}))  # CPU tensors: called as it is
    out = graphed(torch.ones(2), torch.full((2,), 3.0))
    assert out[0].tolist() == [3.0, 3.0] and out[1]["s"].tolist() == [4.0, 4.0] and not graphed.graphs
    g = _gaussians(1, 50, "cpu", 0)
    times = torch.rand(1, 3)
    s = slicing.slice_at(g, times)
    means, cov3, opac = slicing._slice_core(g.means, g.mu_t, g.scales, g.scale_t, g.q_l, g.q_r, g.opacity, times)
    torch.testing.assert_close(s.means, means, rtol=0, atol=0)


def test_fp8_is_a_no_op_on_cpu_and_a_recorded_setting():
    from training.config import apply_overrides, preset
    from training.models.lrm4d.model import Reconstructor

    model = Reconstructor(ModelConfig(patch_size=4, width=64, depth=2, heads=2))
    names = sorted(model.state_dict())
    assert fast.setup_model(model, torch.device("cpu"), compile_model=False, fp8=True) == \
        "attention=default, compiled blocks=0"
    assert fast.float8_blocks(model) == 0 and sorted(model.state_dict()) == names  # CPU: nothing converted
    cfg = preset("base")
    assert cfg.fp8 is False  # off by default: it changes numerics
    assert apply_overrides(cfg, ["fp8=true"]).fp8 is True
    assert cfg.fp8_recipe == "rowwise" and apply_overrides(cfg, ["fp8_recipe=tensorwise"]).fp8_recipe == "tensorwise"
    with pytest.raises(ConfigError, match="fp8_recipe='columnwise': one of rowwise, tensorwise"):
        apply_overrides(cfg, ["fp8_recipe=columnwise"])


@pytest.mark.parametrize("recipe", ["rowwise", "tensorwise"])
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; this machine has none")
def test_fp8_blocks_train_close_to_bf16_blocks(recipe):
    torchao = pytest.importorskip("torchao", reason="fp8 needs torchao (carry its wheel to the GPU host)")
    if torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("float8 tensor cores need sm_89 or newer")
    from training.models.blocks import Block

    dev = torch.device("cuda")
    fast.configure(dev)
    torch.manual_seed(0)
    ref = Block(256, 2, 4.0, True).to(dev)
    f8 = Block(256, 2, 4.0, True).to(dev)
    f8.load_state_dict(ref.state_dict())
    assert fast.float8_blocks(f8, recipe) == 4 and torchao  # qkv, proj and the MLP's two layers
    assert sorted(f8.state_dict()) == sorted(ref.state_dict())  # checkpoints load either way
    f8.compile()
    outs = _block_fwd_bwd((ref, f8), torch.randn(4, 512, 256, device=dev))
    assert _rel(outs[1][0], outs[0][0]) < 5e-2  # e4m3 keeps 3 mantissa bits: a few % per product
    assert _rel(outs[1][1], outs[0][1]) < 1e-1
    assert 0.0 < _rel(outs[1][0], outs[0][0])  # it really ran in float8


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; this machine has none")
def test_compiled_blocks_match_eager_blocks(seed):
    from training.models.blocks import Block

    dev = torch.device("cuda")
    fast.configure(dev)
    torch.manual_seed(seed)
    eager = Block(256, 4, 4.0, True).to(dev)
    for p in eager.parameters():  # non-trivial norms and biases
        p.data.add_(torch.randn_like(p) * 0.1)
    comp = Block(256, 4, 4.0, True).to(dev)
    comp.load_state_dict(eager.state_dict())
    comp.compile()
    outs = _block_fwd_bwd((eager, comp), torch.randn(2, 512, 256, device=dev))
    assert _rel(outs[1][0], outs[0][0]) < 1e-2
    assert _rel(outs[1][1], outs[0][1]) < 2e-2
    for ga, gb in zip(outs[1][2], outs[0][2]):
        assert _rel(ga, gb) < 3e-2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; this machine has none")
def test_preferred_attention_matches_a_float32_reference():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    dev = torch.device("cuda")
    choice = fast.configure(dev)
    g = torch.Generator(device=dev).manual_seed(3)
    q, k, v, do = (torch.randn(2, 16, 1024, 64, device=dev, generator=g) for _ in range(4))
    ref_in = [t.clone().requires_grad_(True) for t in (q, k, v)]
    with sdpa_kernel(SDPBackend.MATH):
        ref = F.scaled_dot_product_attention(*ref_in)
    ref.backward(do)
    ins = [t.bfloat16().requires_grad_(True) for t in (q, k, v)]
    out = F.scaled_dot_product_attention(*ins)  # the process-wide priority set by configure()
    out.backward(do.bfloat16())
    assert torch.isfinite(out).all(), choice
    assert _rel(out, ref) < 1e-2, choice
    for a, b in zip(ins, ref_in):
        assert _rel(a.grad, b.grad) < 2e-2, choice


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; this machine has none")
def test_compiled_slicing_matches_eager_slicing():
    dev = torch.device("cuda")
    g = _gaussians(2, 4000, dev, 5)
    times = torch.rand(2, 3, device=dev)
    res = []
    for on in (False, True):
        slicing.use_compiled(on)
        leaves = {k: t.clone().requires_grad_(True) for k, t in g.__dict__.items()}
        s = slicing.slice_at(slicing.Gaussians4D(**leaves), times)
        w = [torch.randn(t.shape, generator=torch.Generator(device=dev).manual_seed(i), device=dev)
             for i, t in enumerate((s.means, s.covars, s.opacities))]
        ((s.means * w[0]).sum() + (s.covars * w[1]).sum() + (s.opacities * w[2]).sum()).backward()
        res.append(([s.means.detach(), s.covars.detach(), s.opacities.detach()], [t.grad for t in leaves.values()]))
    slicing.use_compiled(False)
    for a, b in zip(res[1][0], res[0][0]):
        assert _rel(a, b) < 1e-5
    for a, b in zip(res[1][1], res[0][1]):
        if b is not None:
            assert _rel(a, b) < 1e-4


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; this machine has none")
def test_bf16_lpips_is_close_to_float32():
    from training.losses.lpips import LPIPS

    dev = torch.device("cuda")
    torch.manual_seed(0)
    ref = LPIPS().to(dev)
    for lin in ref.lin:
        lin.weight.data.abs_()
    fast_net = LPIPS(bf16=True).to(dev).to(memory_format=torch.channels_last)
    fast_net.load_state_dict(ref.state_dict())
    g = torch.Generator(device=dev).manual_seed(7)
    y = torch.rand(6, 3, 128, 128, device=dev, generator=g)
    x0 = (y + 0.1 * torch.randn(6, 3, 128, 128, device=dev, generator=g)).clamp(0, 1)
    vals, grads = [], []
    for net in (ref, fast_net):
        x = x0.clone().requires_grad_(True)
        d = net(x, y)
        d.sum().backward()
        vals.append(d.detach())
        grads.append(x.grad)
    assert _rel(vals[1], vals[0]) < 2e-2
    assert F.cosine_similarity(grads[1].flatten(), grads[0].flatten(), dim=0) > 0.99


def test_gsplat_covariance_gather_has_the_same_gradient_as_indexing():
    from training.render.raster_gsplat import _UpperTriangle

    g = torch.Generator().manual_seed(11)
    base = torch.randn(2, 7, 3, 3, generator=g, dtype=torch.float64)
    base = (base + base.transpose(-1, -2)).requires_grad_(True)
    view = base[:, None].expand(2, 3, 7, 3, 3)  # what slice_at hands the rasteriser
    w = torch.randn(2, 3, 7, 6, generator=g, dtype=torch.float64)
    grads = []
    for fn in (_UpperTriangle.apply, lambda c: c[..., [0, 0, 0, 1, 1, 2], [0, 1, 2, 1, 2, 2]]):
        base.grad = None
        out = fn(view)
        (out * w).sum().backward()
        grads.append((out.detach(), base.grad.clone()))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=0, atol=0)
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=0, atol=0)
    assert torch.autograd.gradcheck(_UpperTriangle.apply, (base.detach().clone().requires_grad_(True),))


def test_fused_lpips_distance_is_the_lin_layer_formula():
    from training.losses.lpips import LPIPS, _tap_distance

    torch.manual_seed(0)
    net = LPIPS()
    for lin in net.lin:
        lin.weight.data.abs_()
    x, y = torch.rand(2, 3, 48, 48), torch.rand(2, 3, 48, 48)
    for lin, a, b in zip(net.lin, net._features(x), net._features(y)):
        an = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        bn = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        torch.testing.assert_close(_tap_distance(a, b, lin.weight), lin((an - bn) ** 2).mean(dim=(1, 2, 3)),
                                   rtol=1e-5, atol=1e-8)


def test_lpips_size_is_lpips_of_the_area_downsampled_images():
    from training.losses.lpips import LPIPS

    torch.manual_seed(0)
    full, small = LPIPS(), LPIPS(size=16)
    small.load_state_dict(full.state_dict())
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    down = lambda t: F.avg_pool2d(t, 2)  # noqa: E731 (area 32 -> 16 px = 2x2 means)
    torch.testing.assert_close(small(x, y), full(down(x), down(y)), rtol=1e-5, atol=1e-7)
    assert not torch.allclose(small(x, y), full(x, y))
    same = LPIPS(size=32)  # not larger than the images: nothing to downsample
    same.load_state_dict(full.state_dict())
    torch.testing.assert_close(same(x, y), full(x, y), rtol=0, atol=0)


def test_lpips_every_k_steps_logs_lpips_on_those_steps_only_weighted_k_times(analytic_shards, tmp_path):
    import json

    from training.config import apply_overrides, tiny
    from training.losses.lpips import LPIPS
    from training.train import train

    torch.manual_seed(0)
    weights = tmp_path / "lpips_random.pt"
    torch.save(LPIPS().state_dict(), weights)
    d, _ = analytic_shards
    cfg = apply_overrides(tiny(), ["steps=4", "log_every=1", "grid_every=0", "ckpt_every=4", "data.image_size=16",
                                   "loss.lpips=0.5", f"loss.lpips_weights={weights}", "loss.lpips_every=2",
                                   "loss.lpips_size=16"])
    train(cfg, str(d), tmp_path / "run", device="cpu")
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4]
    assert ["lpips" in x for x in lines] == [True, False, True, False]  # steps 0 and 2 of 0..3 have the term
    assert all(x["lpips"] > 0 for x in lines if "lpips" in x)
    for x in lines:  # weighted k = 2 x where it is computed: the same LPIPS gradient in expectation over steps
        want = x["mse"] + cfg.loss.mask * x["mask"] + cfg.loss.lpips * 2 * x.get("lpips", 0.0)
        assert x["loss"] == pytest.approx(want, rel=1e-4, abs=1e-6)


def _small_reconstructor(dev):
    from training.models.lrm4d.model import Reconstructor

    torch.manual_seed(0)
    model = Reconstructor(ModelConfig(patch_size=8, width=128, depth=2, heads=2)).to(dev).eval()
    for p in model.head.parameters():  # a head that is not ~0: the activations see real values
        p.data.normal_(0, 0.05)
    return model


def _recon_inputs(dev, n_views=2, S=64, seed=0):
    from training.geometry import intrinsics, orbit_cameras, plucker_image

    g = torch.Generator().manual_seed(seed)
    c2w = orbit_cameras(n_views, 2.1, elevation_deg=15.0)[None].to(dev)  # [1, V, 4, 4]
    K = intrinsics(49.1, S, S).expand(1, n_views, 3, 3).contiguous().to(dev)
    t = torch.linspace(0, 1, n_views, device=dev)[None]
    cond = torch.cat([plucker_image(c2w, K, S, S), t[..., None, None, None].expand(1, n_views, 1, S, S)], 2)
    return torch.rand(1, n_views, 3, S, S, generator=g).to(dev), cond, c2w, K, t


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; this machine has none")
def test_graphed_reconstruction_matches_the_direct_call_on_new_inputs():
    dev = torch.device("cuda")
    model = _small_reconstructor(dev)
    fast.setup_model(model, dev, compile_model=True)

    def forward(*args):
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False):
            return model(*args)

    graphed = fast.GraphedCall(forward)
    for seed in (0, 1):  # the second call replays the captured graph on other inputs
        args = _recon_inputs(dev, seed=seed)
        ref, got = forward(*args), graphed(*args)
        for k in ref.__dict__:
            assert _rel(getattr(got, k), getattr(ref, k)) < 1e-5, k
    assert len(graphed.graphs) == 1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; this machine has none")
def test_compiled_activations_match_eager():
    dev = torch.device("cuda")
    eager, comp = _small_reconstructor(dev), _small_reconstructor(dev)
    assert fast.compile_activations(comp)
    rgb, cond, c2w, K, t = _recon_inputs(dev)
    raw = torch.randn(1, 2, 64, 64, 18, device=dev, generator=torch.Generator(device=dev).manual_seed(2))
    outs = []
    for m in (eager, comp):
        r = raw.clone().requires_grad_(True)
        g = m.activate(r, rgb, c2w, K, t)
        sum((getattr(g, k).float() * (i + 1)).sum() for i, k in enumerate(sorted(g.__dict__))).backward()
        outs.append((g, r.grad))
    for k in outs[0][0].__dict__:
        assert _rel(getattr(outs[1][0], k), getattr(outs[0][0], k)) < 1e-5, k
    assert _rel(outs[1][1], outs[0][1]) < 1e-4


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; this machine has none")
def test_eval_on_the_gpu_gives_the_cpu_metrics(analytic_shards, tmp_path):
    """pipeline eval on CUDA (fast.setup_model: compiled blocks, cuDNN attention; gsplat) scores a tiny
    checkpoint as the CPU does (eager, torch rasteriser), within float/rasteriser noise."""
    from training.config import apply_overrides, tiny
    from training.evaluate import evaluate
    from training.train import train

    d, keys = analytic_shards
    run = tmp_path / "run"
    train(apply_overrides(tiny(), ["steps=2", "log_every=1", "grid_every=0", "ckpt_every=2", "data.image_size=16"]),
          str(d), run, device="cpu")
    a = evaluate(run, str(d), tmp_path / "cpu.parquet", device="cpu", progress=False, worst=0).rows
    b = evaluate(run, str(d), tmp_path / "gpu.parquet", device="cuda", progress=False, worst=0).rows
    assert len(a) == len(b) == len(keys)
    for ra, rb in zip(sorted(a, key=lambda r: r["key"]), sorted(b, key=lambda r: r["key"])):
        assert ra["key"] == rb["key"] and abs(ra["psnr"] - rb["psnr"]) < 0.05, (ra, rb)
