"""The GPU paths, checked without a GPU (issue 14, item 4), plus the same checks on CUDA when one is there.

- scaled-dot / dot / general reach SDPA's fused CUDA kernels: on CUDA the call goes in 4-D (the
  fused kernels reject 3-D inputs and SDPA would silently run the math kernel), with no mask
  when none was given; the CPU takes the 4-D call too (its flash kernel; the 3-D call would run the
  math kernel), and it gives the 3-D call's numbers up to rounding;
- ``impl="flex"`` (FlexAttention with a block mask from the boolean mask) equals the reference
  path on the CPU, where Flex runs eagerly and forward only: causal, padded, fully masked rows,
  a value size unlike the key's, through the multi-head wrapper;
- bf16 through the Trainer's precision flag: a smoke cell with ``precision="bf16-mixed"`` trains
  on the CPU with finite metrics;
- CUDA only (skipped here): fused kernels only (no math fallback) for scaled-dot forward and
  backward, Flex equal to the reference with gradients, a bf16 cell on the GPU.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from attnzoo.cell import Cell
from attnzoo.contract import causal_mask, sdpa
from attnzoo.harness.run import run_cell
from attnzoo.mechanisms import dot as dotmod
from attnzoo.registry import create_attention

MULTIPLICATIVE = ("dot", "scaled-dot", "general")
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
flex = pytest.mark.skipif(not dotmod.flex_available(), reason="this torch has no FlexAttention")


def _masks(b: int, tq: int, tk: int) -> dict[str, torch.Tensor | None]:
    g = torch.Generator().manual_seed(7)
    causal = causal_mask(tq, tk)[None].expand(b, tq, tk)
    padded = causal & (torch.arange(tk) < tk - 3)[None, None, :]
    padded = padded.clone()
    padded[0, 0] = False  # a query with no allowed key
    rand = torch.rand(b, tq, tk, generator=g) < 0.5
    rand[1, 2] = False
    return {"none": None, "causal": causal, "causal+pad+empty": padded, "random+empty": rand,
            "key-padding": (torch.arange(tk) < tk - 2)[None, None, :].expand(b, tq, tk)}


# -- SDPA's fused kernels ----------------------------------------------------------------
@pytest.mark.parametrize("mask_name", ["none", "causal", "causal+pad+empty", "key-padding"])
def test_sdpa_4d_gives_the_3d_numbers(mask_name):
    b, tq, tk, d, dv = 3, 9, 11, 16, 24
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(b, tq, d, generator=g), torch.randn(b, tk, d, generator=g)
    v = torch.randn(b, tk, dv, generator=g)
    mask = _masks(b, tq, tk)[mask_name]
    three = sdpa(q, k, v, mask, scale=0.3)
    four = dotmod.sdpa_4d(q, k, v, mask, 0.3)
    assert four.shape == (b, tq, dv)
    torch.testing.assert_close(four, three, rtol=1e-5, atol=1e-6)
    if mask is not None:
        empty = ~mask.any(-1)
        assert torch.equal(four[empty], torch.zeros_like(four[empty]))


def test_cuda_layout_is_4d_and_maskless_without_a_mask(monkeypatch):
    """What SDPA receives on the CUDA branch: 4-D q/k/v, attn_mask None when there is no mask
    (flash stays eligible), a 4-D broadcastable bool mask otherwise."""
    seen = []
    real = F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, *args, **kwargs):
        seen.append((q.dim(), k.dim(), v.dim(), None if attn_mask is None else (attn_mask.dim(), attn_mask.dtype),
                     kwargs.get("is_causal", False)))
        return real(q, k, v, attn_mask, *args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    q = torch.randn(2, 5, 8)
    dotmod.sdpa_4d(q, q, q, None, 0.5)
    dotmod.sdpa_4d(q, q, q, causal_mask(5)[None].expand(2, 5, 5), 0.5)
    assert seen == [(4, 4, 4, None, False), (4, 4, 4, (4, torch.bool), False)]
    # and the variant itself calls SDPA 4-D on the CPU too (the CPU flash kernel takes only 4-D inputs)
    seen.clear()
    create_attention("scaled-dot", 8)(q)
    assert seen == [(4, 4, 4, None, False)]


@pytest.mark.parametrize("name", [*MULTIPLICATIVE, "content", "location"])
@pytest.mark.parametrize("mask_name", ["none", "causal", "padded"])
def test_cpu_calls_reach_the_flash_kernel_not_the_math_one(name, mask_name):
    """On the CPU SDPA runs its flash kernel for 4-D inputs and its math kernel for 3-D ones; every
    variant that calls contract.sdpa must reach the flash kernel, forward and backward."""
    from torch.profiler import profile

    from attnzoo.contract import mark_causal

    b, t = 2, 6
    masks = {"none": None, "causal": mark_causal(causal_mask(t)[None].expand(b, t, t)),
             "padded": (torch.arange(t) < t - 2)[None, None, :].expand(b, t, t)}
    m = create_attention(name, 8)
    x = torch.randn(b, t, 8, requires_grad=True)
    with profile() as prof:
        m(x, mask=masks[mask_name]).context.sum().backward()
    ops = {e.key for e in prof.key_averages()}
    assert "aten::_scaled_dot_product_flash_attention_for_cpu" in ops, sorted(o for o in ops if "dot_product" in o)
    assert "aten::_scaled_dot_product_flash_attention_for_cpu_backward" in ops
    assert "aten::_scaled_dot_product_attention_math" not in ops


@pytest.mark.parametrize("name", MULTIPLICATIVE)
def test_impl_is_checked_and_reference_drops_weights(name):
    with pytest.raises(ValueError, match=r"impl: expected one of 'auto', 'sdpa', 'flex', 'reference', got 'fast'"):
        create_attention(name, 8, impl="fast")
    m = create_attention(name, 8, impl="reference")
    q = torch.randn(2, 4, 8)
    out = m(q, need_weights=False)
    assert out.weights is None
    torch.testing.assert_close(out.context, m(q, need_weights=True).context)


# -- FlexAttention on the CPU (eager, forward only) ------------------------------------------
@flex
@pytest.mark.parametrize("name", MULTIPLICATIVE)
@pytest.mark.parametrize("mask_name", ["none", "causal", "causal+pad+empty", "random+empty", "key-padding"])
def test_flex_equals_reference_on_cpu(name, mask_name):
    b, t, d = 2, 37, 16  # 37: not a multiple of Flex's block size
    torch.manual_seed(0)
    m = create_attention(name, d, impl="flex")
    ref = create_attention(name, d, impl="reference")
    ref.load_state_dict(m.state_dict())
    q = torch.randn(b, t, d)
    mask = _masks(b, t, t)[mask_name]
    with torch.no_grad():
        got = m(q, mask=mask, need_weights=False).context
        want = ref(q, mask=mask, need_weights=True).context
    torch.testing.assert_close(got, want, rtol=1e-5, atol=2e-6)
    assert torch.isfinite(got).all()
    if mask is not None:
        empty = ~mask.any(-1)
        assert torch.equal(got[empty], torch.zeros_like(got[empty]))


@flex
def test_flex_cross_attention_with_other_value_size():
    b, tq, tk, d, dv = 2, 5, 19, 16, 24
    m = create_attention("scaled-dot", d, d, dv, impl="flex")
    g = torch.Generator().manual_seed(3)
    q, k, v = torch.randn(b, tq, d, generator=g), torch.randn(b, tk, d, generator=g), torch.randn(b, tk, dv, generator=g)
    mask = torch.rand(b, tq, tk, generator=g) < 0.6
    with torch.no_grad():
        got = m(q, k, v, mask=mask).context
        want = m(q, k, v, mask=mask, need_weights=True).context
    assert got.shape == (b, tq, dv)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=2e-6)


@flex
def test_flex_through_the_multihead_wrapper():
    torch.manual_seed(0)
    d, h, t = 32, 4, 21
    fast = create_attention("scaled-dot", d, num_heads=h, impl="flex")
    slow = create_attention("scaled-dot", d, num_heads=h, impl="reference")
    slow.load_state_dict(fast.state_dict())
    x = torch.randn(2, t, d)
    mask = causal_mask(t)[None].expand(2, t, t)
    with torch.no_grad():
        torch.testing.assert_close(fast(x, mask=mask).context, slow(x, mask=mask).context, rtol=1e-5, atol=2e-6)


def test_auto_stays_on_sdpa_off_cuda(monkeypatch):
    """"auto" only takes Flex on CUDA: on the CPU it never builds a block mask."""
    monkeypatch.setattr(dotmod, "_flex", lambda *a, **k: pytest.fail("Flex used on the CPU under impl='auto'"))
    m = create_attention("scaled-dot", 8)
    q = torch.randn(1, dotmod.FLEX_MIN_KEYS, 8)
    m(q, mask=causal_mask(q.shape[1])[None])


# -- bf16 through the Trainer ---------------------------------------------------------------
def _smoke(backbone: str, attention: str | None, task: str, precision: str, accelerator: str = "cpu", **knobs) -> Cell:
    width = {"transformer": {"d_model": 32, "num_layers": 1, "num_heads": 2}}.get(backbone, {"d_model": 32})
    return Cell(task=task, backbone=backbone, attention=attention, task_kwargs=knobs, backbone_kwargs=width,
                max_steps=12, batch_size=16, lr=3e-3, warmup_steps=2, val_every=6, val_size=64, test_size=64,
                trainer={"accelerator": accelerator, "devices": 1, "precision": precision}, threads=1)


@pytest.mark.parametrize("backbone,attention,task,knobs", [
    ("transformer", "scaled-dot", "associative-recall", {"num_pairs": 3, "num_keys": 6, "num_values": 6}),
    ("seq2seq", "additive", "copy", {"length": 5, "num_symbols": 8}),
    ("mlp", None, "copy", {"length": 5, "num_symbols": 8}),
])
def test_bf16_mixed_cell_trains_on_cpu(backbone, attention, task, knobs):
    row = run_cell(_smoke(backbone, attention, task, "bf16-mixed", **knobs))
    assert row.status == "ok", row.error
    assert row.steps == 12
    assert row.metrics and all(math.isfinite(v) for v in row.metrics.values())
    losses = [p[1] for p in row.curve]
    assert losses and all(x is not None and math.isfinite(x) for x in losses)
    # bf16 really ran: its numbers differ from the fp32 run of the same cell
    fp32 = run_cell(_smoke(backbone, attention, task, "32-true", **knobs))
    assert fp32.status == "ok"
    assert [p[1] for p in fp32.curve] != losses


# -- on CUDA (skipped without a GPU; benchmarks/gpu_check.sh runs these) --------------------
@cuda
@pytest.mark.parametrize("name", MULTIPLICATIVE)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("masked", [False, True])
def test_cuda_fused_kernels_only(name, dtype, masked):
    """Under sdpa_kernel(flash, efficient, cuDNN) SDPA raises if only the math kernel would do."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    m = create_attention(name, 64, impl="sdpa").cuda().to(dtype)
    x = torch.randn(4, 256, 64, device="cuda", dtype=dtype, requires_grad=True)
    mask = causal_mask(256, device="cuda")[None].expand(4, 256, 256) if masked else None
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION]):
        out = m(x, mask=mask).context
        out.float().sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()


@cuda
@pytest.mark.parametrize("name", ["content", "location"])
def test_cuda_other_sdpa_variants_reach_the_fused_kernels(name):
    """content and location call contract.sdpa, which takes 4-D views on CUDA itself."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    m = create_attention(name, 64).cuda().to(torch.bfloat16)
    x = torch.randn(4, 256, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION]):
        out = m(x).context
        out.float().sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()


@cuda
@flex
@pytest.mark.parametrize("name", MULTIPLICATIVE)
def test_cuda_flex_equals_reference_with_gradients(name):
    torch.manual_seed(0)
    m = create_attention(name, 64, impl="flex").cuda()
    ref = create_attention(name, 64, impl="reference").cuda()
    ref.load_state_dict(m.state_dict())
    t = 1100  # past FLEX_MIN_KEYS, not a multiple of the block size
    x = torch.randn(2, t, 64, device="cuda", requires_grad=True)
    y = x.detach().clone().requires_grad_(True)
    mask = causal_mask(t, device="cuda")[None].expand(2, t, t)
    a = m(x, mask=mask).context
    b = ref(y, mask=mask, need_weights=True).context
    torch.testing.assert_close(a, b, rtol=2e-4, atol=2e-5)
    a.sum().backward()
    b.sum().backward()
    torch.testing.assert_close(x.grad, y.grad, rtol=2e-3, atol=2e-4)


@cuda
def test_cuda_bf16_cell():
    row = run_cell(_smoke("transformer", "scaled-dot", "associative-recall", "bf16-mixed", accelerator="gpu",
                          num_pairs=3, num_keys=6, num_values=6))
    assert row.status == "ok", row.error
    assert all(math.isfinite(v) for v in row.metrics.values())
    assert row.peak_mem_kind == "cuda_max_allocated"
