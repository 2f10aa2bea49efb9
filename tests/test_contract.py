"""The contract's helpers: masks, masked softmax, SDPA wrapper, input checks, multi-head."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import attnzoo
from attnzoo.contract import causal_mask, masked_log_softmax, masked_softmax, normalize_mask, sdpa


@st.composite
def scores_and_mask(draw):
    b, tq, tk = draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(b, tq, tk, generator=g, dtype=torch.float64) * draw(st.sampled_from([1.0, 30.0]))
    mask = torch.rand(b, tq, tk, generator=g) < draw(st.sampled_from([0.0, 0.3, 0.7, 1.0]))
    return scores, mask


@settings(max_examples=40, deadline=None)
@given(scores_and_mask())
def test_masked_softmax_rows(data):
    scores, mask = data
    scores.requires_grad_(True)
    w = masked_softmax(scores, mask)
    assert torch.isfinite(w).all()
    assert (w >= 0).all()
    assert (w[~mask] == 0).all()
    rows = mask.any(-1)
    torch.testing.assert_close(w.sum(-1)[rows], torch.ones_like(w.sum(-1)[rows]))
    assert (w.sum(-1)[~rows] == 0).all()
    # Allowed entries equal a plain softmax over the allowed subset.
    for idx in rows.nonzero():
        b, q = idx.tolist()
        keep = mask[b, q]
        torch.testing.assert_close(w[b, q][keep], torch.softmax(scores[b, q][keep], -1))
    w.sum().backward()
    assert torch.isfinite(scores.grad).all()
    lw = masked_log_softmax(scores.detach(), mask)
    assert torch.isfinite(lw).all()
    torch.testing.assert_close(lw.exp()[mask], w.detach()[mask])


@settings(max_examples=25, deadline=None)
@given(scores_and_mask(), st.integers(1, 4))
def test_sdpa_wrapper_matches_reference_and_zeroes_empty_rows(data, dv):
    scores, mask = data
    b, tq, tk = scores.shape
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(b, tq, 3, generator=g), torch.randn(b, tk, 3, generator=g)
    v = torch.randn(b, tk, dv, generator=g)
    out = sdpa(q, k, v, mask, scale=0.7)
    ref = masked_softmax(q @ k.transpose(1, 2) * 0.7, mask) @ v
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
    assert (out[~mask.any(-1)] == 0).all()


def test_normalize_mask_shapes_and_errors():
    m2 = torch.tensor([[True, False, True]])
    full = normalize_mask(m2, 1, 2, 3)
    assert full.shape == (1, 2, 3) and (full[0, 1] == m2[0]).all()
    assert normalize_mask(None, 1, 2, 3) is None
    with pytest.raises(ValueError, match=r"mask: expected dtype torch.bool .*\[1, 3\].*got dtype torch.float32 shape \[1, 3\]"):
        normalize_mask(m2.float(), 1, 2, 3)
    with pytest.raises(ValueError, match=r"mask: expected shape \[B, Tk\] = \[1, 3\] or \[B, Tq, Tk\] = \[1, 2, 3\], got \[1, 4\]"):
        normalize_mask(torch.ones(1, 4, dtype=torch.bool), 1, 2, 3)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda m: m(torch.randn(3, 8)), r"query: expected a 3-D tensor \[B, Tq, 8\], got \[3, 8\]"),
        (lambda m: m(torch.randn(1, 3, 7)), r"query: expected last dim 8 .* got \[1, 3, 7\]"),
        (lambda m: m(torch.randn(1, 3, 8), torch.randn(2, 4, 8)), r"key: expected batch size 1"),
        (lambda m: m(torch.randn(1, 3, 8), torch.randn(1, 4, 6)), r"key: expected last dim 8 .*got \[1, 4, 6\]"),
        (lambda m: m(torch.randn(1, 3, 8), torch.randn(1, 4, 8), torch.randn(1, 5, 8)), r"value: expected 4 positions"),
    ],
)
def test_bad_inputs_name_argument_expected_and_received(call, match):
    m = attnzoo.create_attention("scaled-dot", 8)
    with pytest.raises(ValueError, match=match):
        call(m)


def test_causal_mask():
    m = causal_mask(3)
    assert m.tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    assert causal_mask(2, 4).tolist() == [[True, True, True, False], [True, True, True, True]]


@pytest.mark.parametrize("use_mask", [False, True])
def test_multihead_scaled_dot_equals_torch_multihead(use_mask):
    torch.manual_seed(0)
    d, h = 16, 4
    ours = attnzoo.create_attention("scaled-dot", d, num_heads=h)
    ref = torch.nn.MultiheadAttention(d, h, batch_first=True)
    with torch.no_grad():
        w = torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight])
        ref.in_proj_weight.copy_(w)
        ref.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        ref.out_proj.bias.copy_(ours.out_proj.bias)
    x = torch.randn(2, 5, d)
    mask = causal_mask(5).expand(2, 5, 5) if use_mask else None
    out = ours(x, mask=mask, need_weights=True)
    # torch's boolean attn_mask marks positions NOT allowed; ours marks allowed ones.
    ref_out, ref_w = ref(x, x, x, attn_mask=None if mask is None else ~mask[0])
    torch.testing.assert_close(out.context, ref_out, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.weights, ref_w, atol=1e-5, rtol=1e-4)
    fast = ours(x, mask=mask)
    assert fast.weights is None
    torch.testing.assert_close(fast.context, ref_out, atol=1e-5, rtol=1e-4)
    assert out.aux["head_weights"].shape == (2, h, 5, 5)


def test_multihead_rejects_indivisible_dims():
    with pytest.raises(ValueError, match="query_dim: 10 is not divisible by num_heads=4"):
        attnzoo.create_attention("scaled-dot", 10, num_heads=4)
    m = attnzoo.create_attention("scaled-dot", 10, num_heads=4, head_dim=3, value_head_dim=2)
    assert m(torch.randn(1, 2, 10)).context.shape == (1, 2, 10)


def test_dot_family_equations():
    torch.manual_seed(1)
    q, k, v = torch.randn(2, 3, 6), torch.randn(2, 4, 6), torch.randn(2, 4, 5)
    dot = attnzoo.create_attention("dot", 6, 6, 5)
    out = dot(q, k, v, need_weights=True)
    torch.testing.assert_close(out.weights, torch.softmax(torch.einsum("bqd,bkd->bqk", q, k), -1))
    sd = attnzoo.create_attention("scaled-dot", 6, 6, 5)
    torch.testing.assert_close(sd(q, k, v).context, F.scaled_dot_product_attention(q, k, v))
    gen = attnzoo.create_attention("general", 6, 6, 5)
    W_a = gen.W_a.weight.T  # [Dq, Dk]
    expect = torch.softmax(torch.einsum("bqd,de,bke->bqk", q, W_a, k), -1)
    torch.testing.assert_close(gen(q, k, v, need_weights=True).weights, expect)
    torch.testing.assert_close(gen(q, k, v).context, expect @ v, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="key_dim"):
        attnzoo.create_attention("dot", 6, 4)


# --------------------------------------------------------------------------- dtypes, over the registry (timm style)

VARIANTS = attnzoo.list_attention()


def _cross(name: str) -> bool:
    return attnzoo.get_spec(name).cross_attention


def _build(name: str):
    return attnzoo.create_attention(name, 8, 8, 6) if _cross(name) else attnzoo.create_attention(name, 8)


@pytest.mark.parametrize("name", VARIANTS)
def test_mixed_dtypes_are_named_like_shapes(name):
    """Issue 12: a float16 query beside a float32 key was a raw 'expected m1 and m2 to have the same dtype'."""
    if not _cross(name):
        pytest.skip(f"{name} takes no key/value (query-only)")
    m = _build(name).eval()
    q, k, v = torch.randn(2, 3, 8), torch.randn(2, 4, 8), torch.randn(2, 4, 6)
    with pytest.raises(ValueError, match=r"^key: expected the dtype of query \(torch\.float16\), got torch\.float32"):
        m(q.half(), k, v.half())
    with pytest.raises(ValueError, match=r"^value: expected the dtype of query \(torch\.float32\), got torch\.float64"):
        m(q, k, v.double())
    with pytest.raises(ValueError, match=r"^key: expected a floating-point tensor .*got dtype torch\.bool shape \[2, 4, 8\]"):
        m(q, k > 0, v)
    # Same dtypes throughout are fine in float64 as in float32.
    assert m.double()(q.double(), k.double(), v.double()).context.dtype == torch.float64


@pytest.mark.parametrize("name", VARIANTS)
def test_non_floating_query_is_named(name):
    m = _build(name)
    q = torch.randint(0, 5, (2, 3, 8))
    with pytest.raises(ValueError, match=r"^query: expected a floating-point tensor .*got dtype torch\.int64 shape \[2, 3, 8\]"):
        m(q)


@pytest.mark.parametrize("name", [n for n in VARIANTS if _cross(n)])
def test_autocast_may_mix_dtypes(name):
    """Under autocast a bf16 query beside an fp32 key is what autocast itself produces: no error."""
    m = _build(name).eval()
    q, k, v = torch.randn(2, 3, 8, dtype=torch.bfloat16), torch.randn(2, 4, 8), torch.randn(2, 4, 6)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(q, k, v)
    assert out.context.shape == (2, 3, 6)


def test_device_mismatch_is_named():
    m = attnzoo.create_attention("dot", 4)
    q = torch.randn(1, 2, 4)
    with pytest.raises(ValueError, match=r"^key: expected the device of query \(cpu\), got meta"):
        m(q, torch.randn(1, 3, 4, device="meta"))
