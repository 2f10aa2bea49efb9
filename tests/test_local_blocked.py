"""local-m / local-p: the blocked path equals the gathered reference, values and gradients, in float64.

The gathered path (``impl="gather"``) scores the 2D+1 keys of each query one by
one; the blocked path (``impl="blocked"``, what ``auto`` picks) groups queries
by key block and scores each group against a run of keys in one matmul. They
must agree to float rounding for every shape, window, mask (fully masked rows
included) and spread of local-p's predicted positions.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnzoo import create_attention

TOL = dict(atol=1e-10, rtol=1e-10)


def _inputs(b, tq, tk, d, dv, seed):
    g = torch.Generator().manual_seed(seed)
    mk = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).requires_grad_()  # noqa: E731
    return mk(b, tq, d), mk(b, tk, d), mk(b, tk, dv)


def _both(name, kwargs, q, k, v, mask, state=None):
    """Outputs and input/parameter gradients of both paths on the same module."""
    torch.manual_seed(0)
    att = create_attention(name, q.shape[-1], k.shape[-1], v.shape[-1], **kwargs).double()
    if name == "local-p":
        with torch.no_grad():  # spread p_t over the source so blocks hold queries far apart
            att.v_p.weight.mul_(6.0)
    res = {}
    for impl in ("gather", "blocked"):
        att.impl = impl
        out = att(q, k, v, mask=mask, state=state, need_weights=True)
        ctx_only = att(q, k, v, mask=mask, state=state).context
        torch.testing.assert_close(ctx_only, out.context, atol=0, rtol=0)  # weights or not, one result
        loss = (out.context * torch.linspace(-1, 1, out.context.shape[-1], dtype=torch.float64)).sum()
        params = [q, k, v, *att.parameters()]
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        res[impl] = (out, grads)
    return res


def _assert_same(res):
    (og, gg), (ob, gb) = res["gather"], res["blocked"]
    torch.testing.assert_close(ob.context, og.context, **TOL)
    torch.testing.assert_close(ob.weights, og.weights, **TOL)
    for a, b in zip(gg, gb):
        if a is None or b is None:
            assert a is None or not a.abs().any()
            assert b is None or not b.abs().any()
        else:
            torch.testing.assert_close(b, a, **TOL)


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(["local-m", "local-p"]),
    b=st.integers(1, 3),
    tq=st.integers(1, 40),
    tk=st.integers(1, 40),
    window=st.integers(0, 7),
    block=st.sampled_from([None, 1, 3, 8]),
    mask_kind=st.sampled_from(["none", "key", "query", "causal"]),
    data=st.data(),
)
def test_blocked_equals_gathered(name, b, tq, tk, window, block, mask_kind, data):
    if name == "local-p":
        window = max(window, 1)
    if mask_kind == "causal":
        tk = tq
    seed = data.draw(st.integers(0, 2**16))
    q, k, v = _inputs(b, tq, tk, 4, 3, seed)
    g = torch.Generator().manual_seed(seed + 1)
    mask = None
    if mask_kind == "key":
        mask = torch.rand(b, tk, generator=g) > data.draw(st.sampled_from([0.0, 0.3, 0.8]))
        mask[0] = data.draw(st.booleans()) or mask[0]  # sometimes a fully masked item
    elif mask_kind == "query":
        mask = torch.rand(b, tq, tk, generator=g) > 0.4
        mask[0, tq // 2] = False  # a fully masked query row
    elif mask_kind == "causal":
        mask = torch.ones(tq, tk, dtype=torch.bool).tril()[None].expand(b, tq, tk)
    _assert_same(_both(name, dict(window=window, block_size=block), q, k, v, mask))


@pytest.mark.parametrize("state", [3, torch.tensor([0, 5])])
def test_blocked_equals_gathered_with_state(state):
    """local-m decoding offsets and local-p source lengths shift p_t; both paths follow them."""
    q, k, v = _inputs(2, 6, 17, 4, 3, 7)
    _assert_same(_both("local-m", dict(window=2), q, k, v, None, state=state))
    _assert_same(_both("local-p", dict(window=2), q, k, v, None, state=torch.tensor([17, 9]) + state))


def test_auto_is_blocked_for_long_sequences_and_gathers_sparse_queries():
    """auto picks the blocked path for Tq ~ Tk, and gathers when queries sit far apart (Tq << Tk)."""
    att = create_attention("local-m", 8, window=2)
    q = torch.randn(1, 64, 8)
    calls = []
    orig = att._attend_gather

    def spy(*a, **kw):
        calls.append(a[0].shape[1])
        return orig(*a, **kw)

    att._attend_gather = spy
    att(q)
    assert calls == []  # Tq = Tk = 64: blocked
    att(torch.randn(1, 4, 8), q)  # 4 queries over 64 keys: 1 query per sub-block of 16, gathered
    assert calls == [4]
    att(q[:, :1], q, state=0)  # one decoding step
    assert calls == [4, 1]


def test_bad_impl_and_block_size_are_named():
    with pytest.raises(ValueError, match="impl"):
        create_attention("local-m", 8, impl="flash")
    with pytest.raises(ValueError, match="block_size"):
        create_attention("local-p", 8, block_size=0)
    with pytest.raises(ValueError, match="max_span_factor"):
        create_attention("local-m", 8, max_span_factor=0.5)


@pytest.mark.parametrize("name", ["local-m", "local-p"])
@pytest.mark.parametrize("impl", ["gather", "blocked"])
def test_nan_query_gives_nan_row_not_zeros(name, impl):
    """NaN in, NaN out, in the poisoned row only; a fully masked row keeps its zeros."""
    q, k, v = (t.detach().float() for t in _inputs(2, 12, 12, 4, 3, 1))
    att = create_attention(name, 4, 4, 3, window=2, impl=impl)
    mask = torch.ones(2, 12, 12, dtype=torch.bool)
    mask[1, 5] = False  # fully masked row
    mask[0, 3, :] = False
    mask[0, 3, 11] = True  # row 3 may only see key 11, far outside local-m's window
    bad = q.clone()
    bad[0, 3, 1] = float("nan")
    bad[1, 5, 0] = float("nan")
    out = att(bad, k, v, mask=mask, need_weights=True)
    assert torch.isnan(out.context[0, 3]).all() and torch.isnan(out.weights[0, 3]).all()
    assert (out.context[1, 5] == 0).all() and (out.weights[1, 5] == 0).all()
    rest = torch.ones(2, 12, dtype=torch.bool)
    rest[0, 3] = rest[1, 5] = False
    assert torch.isfinite(out.context[rest]).all() and torch.isfinite(out.weights[rest]).all()
    clean = att(q, k, v, mask=mask, need_weights=True)
    torch.testing.assert_close(out.context[rest], clean.context[rest])


_SPECIAL = {"nan": float("nan"), "inf": math.inf, "-inf": -math.inf, "big": 3e38, "-big": -3e38}


@settings(max_examples=60, deadline=None)
@given(cells=st.lists(st.tuples(st.integers(0, 1), st.integers(0, 5), st.integers(0, 3), st.sampled_from(sorted(_SPECIAL))),
                      max_size=6),
       mask_row=st.booleans())
def test_nan_rows_are_exactly_the_query_rows_holding_a_nan(cells, mask_row):
    """``_propagate_nan``'s one-sum shortcut never hides a NaN: whatever mix of NaN, +-inf and sums that
    overflow float32 the query holds, the NaN output rows are the rows with a NaN (fully masked rows aside),
    and every other row is the context as it came."""
    from attnzoo.mechanisms.local import _propagate_nan

    query = torch.randn(2, 6, 4)
    for b, t, d, kind in cells:
        query[b, t, d] = _SPECIAL[kind]
    context = torch.randn(2, 6, 3)
    mask = torch.ones(2, 6, 5, dtype=torch.bool)
    if mask_row:
        mask[1, 2] = False
    out, _ = _propagate_nan(query, None, mask, context, None)
    expected = torch.isnan(query).any(dim=-1) & mask.any(dim=-1)  # (B, Tq)
    assert torch.equal(torch.isnan(out).all(dim=-1), expected)
    assert torch.equal(out[~expected], context[~expected])


def test_nan_p_of_local_p_is_nan_out():
    """A NaN in W_p's input row makes p_t NaN: the row's context is NaN, not a window laid out nowhere."""
    q, k, v = (t.detach().float() for t in _inputs(1, 8, 8, 4, 3, 2))
    att = create_attention("local-p", 4, 4, 3, window=1)
    bad = q.clone()
    bad[0, 2, 0] = float("nan")
    p, _ = att.positions(bad, 8, None, None)
    assert torch.isnan(p[0, 2])
    ctx = att(bad, k, v).context
    assert torch.isnan(ctx[0, 2]).all() and torch.isfinite(ctx[0, [0, 1, 3, 4, 5, 6, 7]]).all()


@pytest.mark.parametrize("name", ["local-m", "local-p"])
def test_blocked_memory_is_linear(name):
    """Peak single allocation of the blocked path grows ~linearly in T (no T x T tensor, no T x 2D+1 gather copy)."""
    from tests.test_mech_hard_local_pointer import _max_storage_bytes

    peaks = []
    for t in (1024, 4096):
        x = torch.randn(1, t, 8)
        att = create_attention(name, 8, window=8, impl="blocked")
        with torch.no_grad():
            peaks.append(_max_storage_bytes(lambda: att(x)))
    assert peaks[1] < 4 * peaks[0] * 1.5, peaks  # x4 in T -> about x4 in bytes
    assert peaks[1] < 4096 * 4096 / 16


def test_block_cost_is_a_small_multiple_of_the_window():
    """The blocked path scores ~(block + 2D) keys per query: at most 2x the 2D+1 of the band for D >= block."""
    att = create_attention("local-m", 8, window=32, impl="blocked")
    seen = {}
    orig = att.base.score

    def spy(q, k):
        seen["shape"] = (q.shape[0], q.shape[1], k.shape[1])
        return orig(q, k)

    att.base.score = spy
    att(torch.randn(2, 1024, 8))
    ns, blk, wk = seen["shape"]
    assert ns * blk == 2 * 1024  # every slot filled: Tq = Tk
    assert wk == 32 + 64 and wk / (2 * 32 + 1) < 1.5 + 1e-9
    assert math.isclose(ns * blk * wk / (2 * 1024 * 65), 96 / 65)
