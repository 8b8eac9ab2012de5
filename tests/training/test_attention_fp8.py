"""training/models/attention_fp8.py: the inference-only FP8 attention.

On a CPU: the per-tensor float8 cast (scale, round trip, no overflow), the clear refusals (no CUDA; a call that
records gradients; `pipeline reconstruct --fp8-attention` and `pipeline eval --fp8-attention` on a CPU), and the
hook in the shared attention block (a model with the hook replaced computes through it, and by default computes
exactly what F.scaled_dot_product_attention does).
On a Hopper GPU with nvidia-cudnn-frontend (the device machine; skipped elsewhere with the reason): cuDNN's FP8
attention against float32 attention at the inference shape of 24 views and at peaked attention, inside
torch.compile'd blocks and inside a CUDA graph, and the refusal of a gradient-recording call.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from training.models import attention_fp8, fast
from training.models.blocks import Attention, Block


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12))


def test_quantize_maps_the_largest_magnitude_to_448_and_round_trips():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 64, 32, generator=g) * 7.0
    x[0, 0, 0, 0] = -50.0  # the largest magnitude, negative
    x8, descale = attention_fp8.quantize(x)
    assert x8.dtype == torch.float8_e4m3fn and descale.shape == (1, 1, 1, 1)
    assert float(x8.float().abs().max()) == 448.0
    assert float(x8[0, 0, 0, 0].float()) == -448.0
    back = x8.float() * descale
    assert torch.isfinite(back).all()
    # e4m3 keeps 3 mantissa bits: each value within 1/16 of itself (or of the smallest normal, for tiny ones)
    err = (back - x).abs()
    assert bool((err <= x.abs() / 16 + 50.0 / 448 * 2 ** -6).all()), float(err.max())
    assert _rel(back, x) < 0.04


def test_quantize_of_an_all_zero_tensor_stays_finite():
    x8, descale = attention_fp8.quantize(torch.zeros(1, 1, 4, 16))
    assert torch.isfinite(descale).all() and float(x8.float().abs().max()) == 0.0


def test_fp8_attention_refuses_a_cpu_with_the_reason():
    blk = Block(64, 4, 2.0, qk_norm=True)
    assert "CUDA" in (attention_fp8.unavailable_reason("cpu") or "")
    with pytest.raises(RuntimeError, match="needs a CUDA device"):
        fast.fp8_attention(blk)
    with pytest.raises(RuntimeError, match="needs a CUDA device"):
        fast.setup_model(blk, torch.device("cpu"), compile_model=False, fp8_attn=True)
    assert blk.attn.sdpa is Attention.sdpa  # nothing half-switched


def test_fp8_sdpa_refuses_a_call_that_records_gradients():
    q = torch.randn(1, 2, 8, 16, requires_grad=True)
    with pytest.raises(RuntimeError, match="inference only"):
        attention_fp8.sdpa(q, q.detach(), q.detach())


def test_the_attention_hook_is_what_the_block_calls():
    torch.manual_seed(0)
    blk = Block(64, 4, 2.0, qk_norm=True).eval()
    x = torch.randn(2, 10, 64)
    with torch.no_grad():
        ref = blk(x)
        q_seen = []

        def spy(q, k, v):  # the default kernel, recorded
            q_seen.append(q.shape)
            return F.scaled_dot_product_attention(q, k, v)

        blk.attn.sdpa = spy
        same = blk(x)
        blk.attn.sdpa = lambda q, k, v: torch.zeros_like(q)  # a kernel that drops attention changes the output
        other = blk(x)
    assert q_seen == [(2, 4, 10, 16)]
    assert torch.equal(ref, same)
    assert not torch.allclose(ref, other)
    assert "sdpa" not in blk.state_dict() and not any("sdpa" in k for k in blk.state_dict())


def test_the_twin_of_uniform_attention_is_the_mean_of_v_through_float8():
    """q = 0: every key equally likely, so the output is the mean of the (float8) values, cast once more."""
    g = torch.Generator().manual_seed(5)
    v = torch.randn(1, 2, 64, 16, generator=g)
    q8, dq = attention_fp8.quantize(torch.zeros(1, 2, 64, 16))
    k8, dk = attention_fp8.quantize(torch.randn(1, 2, 64, 16, generator=g))
    v8, dv = attention_fp8.quantize(v)
    got = attention_fp8.reference(q8, k8, v8, dq, dk, dv, 1.0 / dv, 0.25, block=16)
    mean = (v8.float() * dv).mean(2, keepdim=True).expand_as(v)
    want = (mean / dv).clamp(-448, 448).to(torch.float8_e4m3fn)
    assert torch.equal(got.float(), want.float())


def test_a_shape_without_a_cudnn_plan_falls_back_to_the_twin(monkeypatch):
    """What the op computes when cuDNN has no FP8 plan for a shape (here: every shape, the plan lookup replaced; on
    a CPU that is the only path the op can take): the pure-torch twin of the kernel. Float8's three mantissa bits
    cost ~6-9 % relative error against float32 attention (logits of std 1 and 4; bf16 alone: 0.4-0.6 %); a wrong
    scale would cost ~100 %."""
    monkeypatch.setattr(attention_fp8, "_plan", lambda shape, device, scale: None)
    g = torch.Generator().manual_seed(3)
    for sharp, bound in ((1.0, 0.07), (4.0, 0.12)):
        q, k, v = (torch.randn(2, 4, 256, 64, generator=g) for _ in range(3))
        q = F.rms_norm(q, (64,)) * sharp  # what QK-norm hands the kernel (unit RMS): logits of std `sharp`
        k = F.rms_norm(k, (64,))
        ref = F.scaled_dot_product_attention(q, k, v)
        with torch.no_grad():
            got = attention_fp8.sdpa(q.bfloat16(), k.bfloat16(), v.bfloat16())
        assert got.dtype == torch.bfloat16 and got.shape == ref.shape
        assert 0.01 < _rel(got, ref) < bound, (sharp, _rel(got, ref))  # float8's error is there, and bounded
        # the output went through float8 with scale 448 / amax(v): never above amax(v), up to rounding
        assert float(got.float().abs().max()) <= float(v.abs().max()) * 1.07


def test_reconstruct_and_eval_refuse_fp8_attention_on_a_cpu(tmp_path):
    from click.testing import CliRunner

    from pipeline.commands.evaluate import command as eval_command
    from pipeline.commands.reconstruct import command as reconstruct_command

    ckpt = tmp_path / "c.pt"
    ckpt.write_bytes(b"")  # never read: the device check comes first
    r = CliRunner().invoke(reconstruct_command, ["--checkpoint", str(ckpt), "--input", "x#y", "--out",
                                                 str(tmp_path / "o"), "--device", "cpu", "--fp8-attention"])
    assert r.exit_code != 0 and "--fp8-attention" in r.output and "CUDA" in r.output, r.output
    assert "--fp8-attention" in CliRunner().invoke(eval_command, ["--help"]).output


def test_fast_takes_fp8_attention_only_where_it_can_run():
    """`pipeline reconstruct`: neither flag follows --fast; --fast where the kernel cannot run stays bf16 with the
    reason as a note (never an error); --fp8-attention there is refused; --bf16-attention is off whatever else."""
    from training.export.reconstruct import InputError, resolve_fp8_attention

    cpu = torch.device("cpu")
    assert resolve_fp8_attention(None, False, cpu) == (False, None)
    assert resolve_fp8_attention(False, True, cpu) == (False, None)
    on, note = resolve_fp8_attention(None, True, cpu)
    assert on is False and note.startswith("--fast: attention stays bf16") and "CUDA" in note, note
    with pytest.raises(InputError, match="--fp8-attention: .*CUDA"):
        resolve_fp8_attention(True, False, cpu)
    if _REASON is None:  # a GPU where the kernel runs: --fast takes it
        assert resolve_fp8_attention(None, True, torch.device("cuda")) == (True, None)


# -- on the GPU -----------------------------------------------------------------------------------------------

_REASON = attention_fp8.unavailable_reason("cuda") if torch.cuda.is_available() else "needs a CUDA GPU; this machine has none"
needs_fp8 = pytest.mark.skipif(_REASON is not None, reason=str(_REASON))


def _qkv(B, H, L, D, seed, sharp=1.0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    t = lambda: torch.randn(B, H, L, D, device="cuda", generator=g)  # noqa: E731
    q, k, v = t(), t(), t()
    q = F.rms_norm(q, (D,)) * sharp  # what QK-norm hands the kernel, sharpened
    k = F.rms_norm(k, (D,))
    return q.bfloat16(), k.bfloat16(), v.bfloat16()


@pytest.mark.gpu
@needs_fp8
@pytest.mark.parametrize("shape", [(1, 8, 24576, 128), (4, 4, 1024, 128), (2, 16, 4096, 64)])
def test_cudnn_fp8_attention_is_close_to_float32_attention(shape):
    B, H, L, D = shape
    q, k, v = _qkv(B, H, L, D, seed=1)
    with torch.no_grad():
        ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float())
        bf16 = F.scaled_dot_product_attention(q, k, v)
        got = attention_fp8.sdpa(q, k, v)
    assert got.dtype == torch.bfloat16 and got.shape == ref.shape
    assert torch.isfinite(got).all()
    e_fp8, e_bf16 = _rel(got, ref), _rel(bf16, ref)
    q8, dq = attention_fp8.quantize(q)
    k8, dk = attention_fp8.quantize(k)
    v8, dv = attention_fp8.quantize(v)
    with torch.no_grad():
        kernel = torch.ops.objaverse4d.cudnn_fp8_sdpa(q8, k8, v8, dq, dk, dv, 1.0 / dv, D ** -0.5).float() * dv
        twin = attention_fp8.reference(q8, k8, v8, dq, dk, dv, 1.0 / dv, D ** -0.5).float() * dv
    e_twin = _rel(kernel, twin)
    print(f"{shape}: relative error fp8 {e_fp8:.4f}, bf16 {e_bf16:.4f}; kernel vs its twin {e_twin:.4f}")
    assert shape not in attention_fp8.FALLBACK_SHAPES  # cuDNN's FP8 kernel ran, not the fallback
    assert e_twin < 0.05, e_twin  # the same arithmetic up to float8 rounding (online softmax, accumulation order)
    # float8 q, k, v, probabilities and output: ~5-10 % (the CPU fallback, probabilities in bf16: 5.3 % at logits of
    # std 1); a wrong scale or layout gives ~100 %
    assert e_fp8 < 0.12, (e_fp8, e_bf16)


@pytest.mark.gpu
@needs_fp8
def test_cudnn_fp8_attention_with_peaked_attention():
    """Sharp logits (a few keys dominate each query): the probabilities' float8 cast is what is tested."""
    q, k, v = _qkv(2, 4, 2048, 128, seed=2, sharp=4.0)
    with torch.no_grad():
        ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float())
        got = attention_fp8.sdpa(q, k, v)
    print(f"peaked: relative error fp8 {_rel(got, ref):.4f}")
    assert _rel(got, ref) < 0.15, _rel(got, ref)


@pytest.mark.gpu
@needs_fp8
def test_a_head_dim_cudnn_cannot_take_falls_back_on_the_gpu():
    q, k, v = _qkv(1, 2, 256, 8, seed=4)  # head dim 8: not a multiple of 16
    with torch.no_grad():
        ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float())
        got = attention_fp8.sdpa(q, k, v)
    assert (1, 2, 256, 8) in attention_fp8.FALLBACK_SHAPES
    assert _rel(got, ref) < 0.12, _rel(got, ref)


@pytest.mark.gpu
@needs_fp8
def test_fp8_attention_in_compiled_blocks_and_a_cuda_graph():
    torch.manual_seed(0)
    blk = Block(512, 4, 4.0, qk_norm=True).cuda().eval()
    x = torch.randn(2, 2048, 512, device="cuda")
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        ref = blk(x)
    assert fast.fp8_attention(blk) == 1 and blk.attn.sdpa is attention_fp8.sdpa
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        eager = blk(x)
    fast.compile_blocks(blk)

    def fwd(x):
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False):
            return blk(x)

    compiled = fwd(x)
    graphed = fast.GraphedCall(fwd)(x)
    assert _rel(eager, ref) < 0.1, _rel(eager, ref)
    assert _rel(compiled, eager) < 0.05, _rel(compiled, eager)  # fused casts may round a few values the other way
    assert _rel(graphed, compiled) < 1e-3, _rel(graphed, compiled)
    x2 = torch.randn_like(x)  # new inputs through the captured graph: the scales are recomputed on the device
    g = fast.GraphedCall(fwd)
    g(x)
    assert _rel(g(x2 * 3.0), fwd(x2 * 3.0)) < 1e-3

