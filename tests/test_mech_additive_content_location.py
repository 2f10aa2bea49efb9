"""Additive (Bahdanau), content (NTM) and location (Luong) attention.

Each variant gets an equation test that recomputes the paper's formula from the
module's own parameters with plain tensor ops, plus the contract's masking
rules, fast path == reference path, and additive's chunking (values and
gradients) against the unchunked computation.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import attnzoo
from attnzoo import causal_mask
from attnzoo.mechanisms.additive import AdditiveAttention
from attnzoo.mechanisms.content import ContentAttention
from attnzoo.mechanisms.location import LocationAttention

NAMES = ("additive", "content", "location")
ATOL = 1e-5


def _rand(*shape, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_(requires_grad)


def _softmax_written_out(e, mask=None):
    """exp(e_j) / sum_k exp(e_k) over allowed keys; masked entries 0; empty rows 0."""
    if mask is not None:
        e = torch.where(mask, e, torch.full_like(e, -1e300))
    e = e - e.max(dim=-1, keepdim=True).values
    ex = torch.exp(e)
    if mask is not None:
        ex = ex * mask
    z = ex.sum(dim=-1, keepdim=True)
    return torch.where(z > 0, ex / torch.where(z > 0, z, torch.ones_like(z)), torch.zeros_like(ex))


def _build(name, dq=6, dk=None, dv=None, **kw):
    torch.manual_seed(0)
    return attnzoo.create_attention(name, dq, dk, dv, **kw).double()


# -- registry ---------------------------------------------------------------


def test_registered_and_creatable():
    names = attnzoo.list_attention()
    for name in NAMES:
        assert name in names
        spec = attnzoo.get_spec(name)
        assert spec.family == name
        assert spec.paper and spec.url.startswith("https://arxiv.org/abs/")
        m = attnzoo.create_attention(name, 8)
        out = m(torch.randn(2, 5, 8))
        assert out.context.shape == (2, 5, 8)
    assert isinstance(attnzoo.create_attention("additive", 8, hidden_dim=3), AdditiveAttention)
    assert isinstance(attnzoo.create_attention("content", 8, beta="learned"), ContentAttention)
    assert isinstance(attnzoo.create_attention("location", 8, max_len=16), LocationAttention)
    assert attnzoo.get_spec("content").fused and attnzoo.get_spec("location").fused
    assert not attnzoo.get_spec("additive").fused
    assert attnzoo.list_attention(family="additive") == ["additive"]


@pytest.mark.parametrize("name", NAMES)
def test_multihead_and_cross_attention(name):
    torch.manual_seed(0)
    mh = attnzoo.create_attention(name, 16, num_heads=4)
    q, kv = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    out = mh(q, kv, need_weights=True)
    assert out.context.shape == (2, 5, 16) and out.weights.shape == (2, 5, 7)
    assert torch.allclose(out.weights.sum(-1), torch.ones(2, 5), atol=1e-5)
    cross = attnzoo.create_attention(name, 6, 4, 3)
    assert cross(torch.randn(2, 5, 6), torch.randn(2, 7, 4), torch.randn(2, 7, 3)).context.shape == (2, 5, 3)


# -- additive: Bahdanau et al. 2015, Eq. (6) ----------------------------------


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("init", ["default", "paper"])
def test_additive_equation(bias, init):
    m = _build("additive", 5, 4, 3, hidden_dim=7, bias=bias, init=init)
    if bias:
        with torch.no_grad():
            m.b_a.normal_()
    if init == "paper":  # v_a starts at 0 (uniform weights); give it values to test the formula
        assert torch.all(m.v_a == 0)
        with torch.no_grad():
            m.v_a.normal_()
    s, h, val = _rand(2, 3, 5, seed=1), _rand(2, 4, 4, seed=2), _rand(2, 4, 3, seed=3)
    W, U, v = m.W_a.weight, m.U_a.weight, m.v_a  # [n', Dq], [n', Dk], [n']
    assert W.shape == (7, 5) and U.shape == (7, 4) and v.shape == (7,)
    e = torch.zeros(2, 3, 4, dtype=torch.float64)
    for b in range(2):
        for i in range(3):
            for j in range(4):
                pre = W @ s[b, i] + U @ h[b, j]
                if bias:
                    pre = pre + m.b_a
                e[b, i, j] = (v * torch.tanh(pre)).sum()  # v_a^T tanh(W_a s + U_a h)
    alpha = torch.exp(e) / torch.exp(e).sum(-1, keepdim=True)  # Eq. (6)
    ctx = torch.einsum("bij,bjd->bid", alpha, val)  # Eq. (5): c_i = sum_j alpha_ij h_j
    out = m(s, h, val, need_weights=True)
    torch.testing.assert_close(m.score(s, h), e.detach(), atol=ATOL, rtol=0)
    torch.testing.assert_close(out.weights, alpha.detach(), atol=ATOL, rtol=0)
    torch.testing.assert_close(out.context, ctx.detach(), atol=ATOL, rtol=0)
    torch.testing.assert_close(m(s, h, val).context, ctx.detach(), atol=ATOL, rtol=0)


def test_additive_hidden_defaults_and_bad_options():
    m = AdditiveAttention(6, 4)
    assert m.hidden_dim == 4 and m.b_a is None
    for kw in ({"hidden_dim": 0}, {"chunk_size": 0}, {"chunk_elements": -1}, {"init": "xavier"}, {"bias": "yes"}):
        with pytest.raises(ValueError, match=next(iter(kw))):
            AdditiveAttention(6, **kw)


def test_additive_chunk_budget():
    m = AdditiveAttention(64, hidden_dim=64)
    c = m.chunk_len(4, 4096, 4096)
    assert 1 <= c < 4096 and 4 * c * 4096 * 64 <= m.chunk_elements
    assert m.chunk_len(2, 10, 10) == 10  # small inputs: one chunk
    assert AdditiveAttention(8, chunk_size=3).chunk_len(4, 10, 10) == 3
    assert AdditiveAttention(8, chunk_elements=1).chunk_len(4, 10, 10) == 1


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(1, 3),
    tq=st.integers(1, 9),
    tk=st.integers(1, 7),
    hidden=st.integers(1, 5),
    chunk=st.integers(1, 4),
    bias=st.booleans(),
    masked=st.booleans(),
    need_weights=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_additive_chunked_equals_unchunked(b, tq, tk, hidden, chunk, bias, masked, need_weights, seed):
    torch.manual_seed(seed)
    ref = AdditiveAttention(3, 4, 2, hidden_dim=hidden, bias=bias).double()
    if bias:
        with torch.no_grad():
            ref.b_a.normal_()
    chunked = AdditiveAttention(3, 4, 2, hidden_dim=hidden, bias=bias, chunk_size=chunk).double()
    chunked.load_state_dict(ref.state_dict())
    q = _rand(b, tq, 3, seed=seed, requires_grad=True)
    k = _rand(b, tk, 4, seed=seed + 1, requires_grad=True)
    v = _rand(b, tk, 2, seed=seed + 2, requires_grad=True)
    mask = (torch.rand(b, tq, tk) > 0.3) if masked else None
    outs, grads = [], []
    for m in (ref, chunked):
        out = m(q, k, v, mask=mask, need_weights=need_weights)
        loss = (out.context * torch.linspace(-1, 1, 2, dtype=torch.float64)).sum()
        if need_weights:
            loss = loss + (out.weights**2).sum()
        outs.append(out)
        grads.append(torch.autograd.grad(loss, [q, k, v, *m.parameters()]))
    torch.testing.assert_close(outs[1].context, outs[0].context, atol=1e-10, rtol=1e-10)
    if need_weights:
        torch.testing.assert_close(outs[1].weights, outs[0].weights, atol=1e-10, rtol=1e-10)
    else:
        assert outs[1].weights is None
    for g_chunked, g_ref in zip(grads[1], grads[0]):
        torch.testing.assert_close(g_chunked, g_ref, atol=1e-10, rtol=1e-10)
    # score() alone (chunked and checkpointed the same way) agrees, gradients included
    e_ref, e_chunked = ref.score(q, k), chunked.score(q, k)
    torch.testing.assert_close(e_chunked, e_ref, atol=1e-10, rtol=1e-10)
    g_ref = torch.autograd.grad(e_ref.tanh().sum(), [q, k, ref.v_a])
    g_chunked = torch.autograd.grad(e_chunked.tanh().sum(), [q, k, chunked.v_a])
    for a, b_ in zip(g_chunked, g_ref):
        torch.testing.assert_close(a, b_, atol=1e-10, rtol=1e-10)
    with torch.no_grad():  # the inference path (no checkpointing) agrees too
        torch.testing.assert_close(chunked(q, k, v, mask=mask).context, outs[0].context, atol=1e-10, rtol=1e-10)


def test_additive_uses_checkpoint_only_when_chunked(monkeypatch):
    import attnzoo.mechanisms.additive as mod

    calls = []
    real = mod.checkpoint

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(mod, "checkpoint", spy)
    q = torch.randn(2, 6, 4, requires_grad=True)
    AdditiveAttention(4)(q).context.sum().backward()
    assert calls == []  # one chunk: plain autograd
    AdditiveAttention(4, chunk_size=2)(q).context.sum().backward()
    assert len(calls) == 3
    with torch.no_grad():
        AdditiveAttention(4, chunk_size=2)(q)
    assert len(calls) == 3  # no grad: nothing to checkpoint


# -- content: Graves et al. 2014, Eq. (5)-(6) ---------------------------------


def _cos_written_out(u, w, eps=1e-8):
    """K[u, v] = u . v / (|u| |v|) for all pairs, norms sqrt(sum x^2) (clamped at eps)."""
    nu = torch.sqrt((u * u).sum(-1)).clamp_min(eps)  # (B, Tq)
    nw = torch.sqrt((w * w).sum(-1)).clamp_min(eps)  # (B, Tk)
    dots = (u[:, :, None, :] * w[:, None, :, :]).sum(-1)  # (B, Tq, Tk)
    return dots / (nu[:, :, None] * nw[:, None, :])


@pytest.mark.parametrize("beta", ["learned", "query", 2.5, 0.0])
@pytest.mark.parametrize("dims", [(5, 5), (6, 4)])
def test_content_equation(beta, dims):
    dq, dk = dims
    m = _build("content", dq, dk, 3, beta=beta)
    if beta == "learned":
        with torch.no_grad():
            m.beta_raw.fill_(-0.7)
    kq, mem, val = _rand(2, 3, dq, seed=1), _rand(2, 4, dk, seed=2), _rand(2, 4, 3, seed=3)
    k = kq if dq == dk else kq @ m.query_proj.weight.T + m.query_proj.bias  # the head's key k_t
    if beta == "learned":
        b = torch.log(1 + torch.exp(m.beta_raw))  # softplus
    elif beta == "query":
        b = torch.log(1 + torch.exp(kq @ m.beta_proj.weight.T + m.beta_proj.bias))  # (B, Tq, 1)
    else:
        b = torch.tensor(beta, dtype=torch.float64)
    assert torch.all(b >= 0)
    e = torch.exp(b * _cos_written_out(k, mem))  # Eq. (5) numerator, Eq. (6) similarity
    w = e / e.sum(-1, keepdim=True)
    ctx = torch.einsum("bij,bjd->bid", w, val)
    out = m(kq, mem, val, need_weights=True)
    torch.testing.assert_close(out.weights, w.detach(), atol=ATOL, rtol=0)
    torch.testing.assert_close(out.context, ctx.detach(), atol=ATOL, rtol=0)
    torch.testing.assert_close(m(kq, mem, val).context, ctx.detach(), atol=ATOL, rtol=0)  # fused path
    if beta == 0.0:
        torch.testing.assert_close(out.weights, torch.full_like(out.weights, 0.25))


@pytest.mark.parametrize("beta", ["learned", "query", 3.0])
def test_content_fast_equals_reference(beta):
    m = _build("content", 8, beta=beta)
    q = _rand(3, 6, 8, seed=4, requires_grad=True)
    k = _rand(3, 9, 8, seed=5, requires_grad=True)
    v = _rand(3, 9, 8, seed=6, requires_grad=True)
    mask = torch.rand(3, 6, 9, generator=torch.Generator().manual_seed(0)) > 0.4
    mask[0, 2] = False  # a fully masked row
    with torch.no_grad():
        k[1, 3] = 0.0  # a zero memory row: eps-safe cosine
        q[2, 1] = 0.0  # a zero key vector
    res = []
    for need in (False, True):
        out = m(q, k, v, mask=mask, need_weights=need)
        assert (out.weights is None) == (not need)
        g = torch.autograd.grad(out.context.pow(2).sum(), [q, k, v, *m.parameters()])
        res.append((out.context, g))
    torch.testing.assert_close(res[0][0], res[1][0], atol=1e-10, rtol=1e-10)
    for a, b in zip(res[0][1], res[1][1]):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


def test_content_beta_options():
    m = ContentAttention(4, beta="learned", beta_init=2.0)
    assert math.isclose(m.beta(torch.zeros(1, 1, 4)).item(), 2.0, rel_tol=1e-6)
    with torch.no_grad():
        m.beta_raw.fill_(-50.0)
    assert m.beta(torch.zeros(1, 1, 4)).item() >= 0
    mq = ContentAttention(4, beta="query", beta_init=3.0)
    b = mq.beta(torch.zeros(2, 5, 4))
    assert b.shape == (2, 5, 1) and torch.allclose(b, torch.full_like(b, 3.0))
    assert math.isclose(ContentAttention(16).beta_init, 4.0)  # default sqrt(key_dim)
    for bad in (-1.0, "sharp", float("inf"), True):
        with pytest.raises(ValueError, match="beta"):
            ContentAttention(4, beta=bad)
    with pytest.raises(ValueError, match="beta_init"):
        ContentAttention(4, beta_init=0.0)
    with pytest.raises(ValueError, match="key_proj"):
        ContentAttention(6, 4, key_proj=False)
    assert ContentAttention(4, key_proj=True).query_proj is not None
    assert ContentAttention(4).query_proj is None


# -- location: Luong et al. 2015, Eq. (9) --------------------------------------


@pytest.mark.parametrize("bias", [False, True])
def test_location_equation(bias):
    m = _build("location", 5, 4, 3, max_len=10, bias=bias)
    h, keys, val = _rand(2, 3, 5, seed=1), _rand(2, 6, 4, seed=2), _rand(2, 6, 3, seed=3)
    Wa = m.W_a.weight  # [max_len, Dq]
    assert Wa.shape == (10, 5)
    scores = torch.einsum("sd,btd->bts", Wa, h)  # W_a h_t, all max_len positions
    if bias:
        scores = scores + m.W_a.bias
    a = _softmax_written_out(scores[..., :6])  # only the Tk = 6 existing positions
    ctx = torch.einsum("bts,bsd->btd", a, val)
    out = m(h, keys, val, need_weights=True)
    torch.testing.assert_close(out.weights, a.detach(), atol=ATOL, rtol=0)
    torch.testing.assert_close(out.context, ctx.detach(), atol=ATOL, rtol=0)
    torch.testing.assert_close(m(h, keys, val).context, ctx.detach(), atol=ATOL, rtol=0)  # fused path
    # the key's content plays no part, only its length
    torch.testing.assert_close(m(h, keys * 7 + 1, val).context, ctx.detach(), atol=ATOL, rtol=0)


@pytest.mark.parametrize("bias", [False, True])
def test_location_fast_equals_reference(bias):
    m = _build("location", 8, max_len=12, bias=bias)
    q = _rand(3, 6, 8, seed=4, requires_grad=True)
    v = _rand(3, 12, 8, seed=6, requires_grad=True)
    mask = torch.rand(3, 6, 12, generator=torch.Generator().manual_seed(0)) > 0.4
    mask[1, 0] = False
    res = []
    for need in (False, True):
        out = m(q, v, v, mask=mask, need_weights=need)
        g = torch.autograd.grad(out.context.pow(2).sum(), [q, v, *m.parameters()])
        res.append((out.context, g))
    torch.testing.assert_close(res[0][0], res[1][0], atol=1e-10, rtol=1e-10)
    for a, b in zip(res[0][1], res[1][1]):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


def test_location_too_long_raises():
    m = LocationAttention(4, max_len=5)
    m(torch.randn(1, 2, 4), torch.randn(1, 5, 4))  # Tk == max_len is fine
    for need in (False, True):
        with pytest.raises(ValueError, match=r"key.*max_len=5.*Tk=6"):
            m(torch.randn(1, 2, 4), torch.randn(1, 6, 4), need_weights=need)
    with pytest.raises(ValueError, match="max_len"):
        LocationAttention(4, max_len=0)


def test_location_causal_safe():
    torch.manual_seed(0)
    m = LocationAttention(4, max_len=8)
    x = torch.randn(2, 6, 4)
    cm = causal_mask(6)[None].expand(2, 6, 6)
    base = m(x, mask=cm, need_weights=True)
    assert torch.all(base.weights[cm.logical_not()] == 0)
    y = x.clone()
    y[:, 4:] = torch.randn(2, 2, 4)  # change the future
    for need in (False, True):
        out = m(y, mask=cm, need_weights=need)
        torch.testing.assert_close(out.context[:, :4], base.context[:, :4])


# -- contract rules shared by all three ---------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("need_weights", [False, True])
def test_masking_rules(name, need_weights):
    m = _build(name, 6, chunk_size=2) if name == "additive" else _build(name, 6)
    q = _rand(2, 5, 6, seed=7, requires_grad=True)
    k = _rand(2, 7, 6, seed=8, requires_grad=True)
    mask = torch.rand(2, 5, 7, generator=torch.Generator().manual_seed(1)) > 0.5
    mask[:, :, 0] = True
    mask[0, 3] = False  # fully masked row
    mask[1] = False  # a fully masked batch element
    out = m(q, k, mask=mask, need_weights=need_weights)
    assert torch.isfinite(out.context).all()
    assert torch.all(out.context[0, 3] == 0) and torch.all(out.context[1] == 0)
    out.context.sum().backward()
    assert torch.isfinite(q.grad).all() and torch.isfinite(k.grad).all()
    if need_weights:
        w = out.weights
        assert torch.all(w[~mask] == 0)  # masked keys: exactly 0
        assert torch.all(w[0, 3] == 0) and torch.all(w[1] == 0)
        rows = mask.any(-1)
        torch.testing.assert_close(w.sum(-1)[rows], torch.ones(int(rows.sum()), dtype=w.dtype))
    # masked keys do not influence the output: change them, the context stays
    key_mask = mask[:, 0]  # [B, Tk] form of the mask for row 0
    out_a = m(q, k.detach(), mask=key_mask, need_weights=need_weights)
    kk = k.detach().clone()
    kk[~key_mask] = 100.0
    out_b = m(q, kk, k.detach(), mask=key_mask, need_weights=need_weights)
    torch.testing.assert_close(out_a.context, out_b.context)


@settings(max_examples=40, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(1, 6)),
    s_kind=st.sampled_from(["none", "row", "scalar"]),
    zero_row=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_scaled_unit_matches_autograd_of_the_written_formula(shape, s_kind, zero_row, seed):
    """content's fused path normalises with a hand-written backward (scaled_unit); its value and
    gradients (x and s) equal autograd's through ``x * s / clamp(|x|, eps)``, zero rows included."""
    from attnzoo.mechanisms.content import scaled_unit

    g = torch.Generator().manual_seed(seed)
    b, t, d = shape
    x = torch.randn(b, t, d, generator=g, dtype=torch.float64)
    if zero_row:
        x[0, 0] = 0.0
    s = {"none": None, "row": torch.rand(b, t, 1, generator=g, dtype=torch.float64) * 3,
         "scalar": torch.tensor(1.7, dtype=torch.float64)}[s_kind]
    up = torch.randn(b, t, d, generator=g, dtype=torch.float64)
    leaves = [x.clone().requires_grad_(True) for _ in range(2)]
    s_leaves = [None if s is None else s.clone().requires_grad_(True) for _ in range(2)]
    fast = scaled_unit(leaves[0], s_leaves[0], 1e-8)
    # vector_norm's gradient at a zero row is 0 (sqrt's would be NaN), as in the old written-out path
    norm = torch.linalg.vector_norm(leaves[1], dim=-1, keepdim=True).clamp_min(1e-8)
    ref = leaves[1] / norm * (1.0 if s is None else s_leaves[1])
    torch.testing.assert_close(fast, ref, rtol=1e-12, atol=1e-12)
    (fast * up).sum().backward()
    (ref * up).sum().backward()
    assert torch.isfinite(leaves[0].grad).all()
    torch.testing.assert_close(leaves[0].grad, leaves[1].grad, rtol=1e-9, atol=1e-12)
    if s is not None:
        torch.testing.assert_close(s_leaves[0].grad, s_leaves[1].grad, rtol=1e-9, atol=1e-12)
