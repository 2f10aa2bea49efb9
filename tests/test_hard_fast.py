"""Hard attention's fused training path (``_FusedHard``) against its reference path (``_Categorical``).

A REINFORCE training call without weights on a multiplicative score takes the fused path; with
``need_weights=True`` the same call takes the reference (tested against autograd in
tests/test_mech_hard_local_pointer.py). From the same seed the two make the same draws and give the same
numbers to float rounding, gradients included; the fused path's two-level CDF search is an exact sample.
"""

from __future__ import annotations

import pytest
import torch

import attnzoo.mechanisms.hard as hard
from attnzoo import create_attention


def _inputs(b, tq, tk, mask_kind, dtype=torch.float64, seed=1):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(b, tq, 8, generator=g, dtype=dtype), torch.randn(b, tk, 8, generator=g, dtype=dtype),
               torch.randn(b, tk, 3, generator=g, dtype=dtype))
    mask = None
    if mask_kind == "query":
        mask = torch.rand(b, tq, tk, generator=g) < 0.7
        mask[0, min(1, tq - 1)] = False  # a fully masked row
    elif mask_kind == "key":
        km = torch.ones(b, tk, dtype=torch.bool)
        km[-1, tk // 2:] = False
        mask = km[:, None, :].expand(b, tq, tk)
    return q, k, v, mask


def _run(att, q, k, v, mask, need_weights, seed=5, terms=("ctx", "lp", "h", "probs")):
    """One seeded call, its outputs and the gradients of a loss using ``terms`` (q, k, v, W_a)."""
    q, k, v = (t.clone().requires_grad_() for t in (q, k, v))
    torch.manual_seed(seed)
    out = att(q, k, v, mask=mask, need_weights=need_weights)
    rng = torch.get_rng_state()
    w = torch.linspace(-1.0, 2.0, v.shape[-1], dtype=v.dtype)
    parts = {"ctx": (out.context * w).sum(), "lp": (out.aux["log_prob"] * 1.3).sum(),
             "h": (out.aux["entropy"] * 0.7).sum(), "probs": (out.aux["probs"] * 0.2).sum()}
    loss = sum(parts[t] for t in terms)
    grads = torch.autograd.grad(loss, [q, k, v, att.base.W_a.weight], allow_unused=True)
    return out, rng, [torch.zeros_like(x) if g is None else g for g, x in zip(grads, (q, k, v, att.base.W_a.weight))]


def _fused_calls(monkeypatch):
    calls = []
    real = hard._FusedHard.apply
    monkeypatch.setattr(hard._FusedHard, "apply", lambda *a: calls.append(1) or real(*a))
    return calls


@pytest.mark.parametrize("expected_prob", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("mask_kind", [None, "key", "query"])
@pytest.mark.parametrize("shape,block", [((4, 6, 7), None), ((3, 20, 128), 600), ((5, 4, 9), 80), ((2, 9, 1), None)])
@pytest.mark.parametrize("terms", [("ctx", "lp"), ("ctx", "lp", "h", "probs")])
def test_fused_equals_reference(monkeypatch, expected_prob, mask_kind, shape, block, terms):
    """Values and gradients of the fused path are the reference's: one block, blocks of whole examples
    (``_BLOCK`` 80) and blocks of rows (``_BLOCK`` 600, Tk 128 above ``_CDF_DIRECT``: the two-level draw)."""
    if block is not None:
        monkeypatch.setattr(hard, "_BLOCK", block)
    monkeypatch.setattr(hard, "_CDF_DIRECT", 64)
    b, tq, tk = shape
    q, k, v, mask = _inputs(b, tq, tk, mask_kind)
    att = create_attention("hard", 8, 8, 3, expected_prob=expected_prob).train().double()
    calls = _fused_calls(monkeypatch)
    ours, rng, g_ours = _run(att, q, k, v, mask, need_weights=False, terms=terms)
    assert calls, "the call did not take the fused path"
    if block is not None:
        assert len(hard._blocks(b, tq, tk, q.device)) > 1
    ref, ref_rng, g_ref = _run(att, q, k, v, mask, need_weights=True, terms=terms)
    assert len(calls) == 1, "need_weights=True took the fused path"
    assert torch.equal(rng, ref_rng)  # the same random numbers consumed
    for key in ("log_prob", "entropy", "probs"):
        torch.testing.assert_close(ours.aux[key], ref.aux[key])
    torch.testing.assert_close(ours.context, ref.context)  # the same draws
    for a, r in zip(g_ours, g_ref):
        torch.testing.assert_close(a, r)
    for t in (ours.context, *ours.aux.values(), *g_ours):
        assert torch.isfinite(t).all()
    if mask_kind == "query":
        assert (ours.context[0, 1] == 0).all() and (ours.aux["probs"][0, 1] == 0).all()
        assert ours.aux["log_prob"][0, 1] == 0 and ours.aux["entropy"][0, 1] == 0


@pytest.mark.parametrize("block", [None, 40])
def test_fused_takes_strided_inputs(monkeypatch, block):
    """Transposed (non-contiguous) query, key and value give the contiguous inputs' numbers."""
    if block is not None:
        monkeypatch.setattr(hard, "_BLOCK", block)
    q, k, v, mask = _inputs(3, 6, 5, "key")
    att = create_attention("hard", 8, 8, 3).train().double()
    ref, _, g_ref = _run(att, q, k, v, mask, need_weights=False)
    qs, ks, vs = (t.transpose(1, 2).contiguous().transpose(1, 2) for t in (q, k, v))
    assert not vs.is_contiguous()
    out, _, grads = _run(att, qs, ks, vs, mask, need_weights=False)
    torch.testing.assert_close(out.context, ref.context)
    for a, r in zip(grads, g_ref):
        torch.testing.assert_close(a, r)


def test_fused_device_path_reads_nothing_on_the_host(monkeypatch):
    """Off the CPU the fused path reads no value on the host (no device sync) and gives the host path's numbers."""
    q, k, v, mask = _inputs(4, 5, 7, "query")
    att = create_attention("hard", 8, 8, 3).train().double()
    ref, ref_rng, g_ref = _run(att, q, k, v, mask, need_weights=False)
    with monkeypatch.context() as m:
        m.setattr(hard, "_host_readable", lambda t: False)

        def forbidden(*_a, **_k):
            raise AssertionError("hard read a tensor's values on the host (a device sync on a GPU)")

        for name in ("tolist", "item", "__bool__"):
            m.setattr(torch.Tensor, name, forbidden)
        out, rng, grads = _run(att, q, k, v, mask, need_weights=False)
    assert torch.equal(rng, ref_rng)
    torch.testing.assert_close(out.context, ref.context)
    for key in ref.aux:
        torch.testing.assert_close(out.aux[key], ref.aux[key])
    for a, r in zip(grads, g_ref):
        torch.testing.assert_close(a, r)


def test_fused_nan_query_gives_nan_row():
    q, k, v, mask = _inputs(2, 5, 7, "query", dtype=torch.float32)
    q[1, 3, 0] = float("nan")
    att = create_attention("hard", 8, 8, 3, expected_prob=0.0).train()
    out = att(q, k, v, mask=mask)
    assert torch.isnan(out.context[1, 3]).all() and torch.isnan(out.aux["log_prob"][1, 3])
    assert (out.context[0, 1] == 0).all()
    rest = torch.ones(2, 5, dtype=torch.bool)
    rest[1, 3] = False
    assert torch.isfinite(out.context[rest]).all()


@pytest.mark.parametrize("tk,direct", [(256, 512), (256, 64), (257, 64)])
def test_draw_is_an_exact_sample(monkeypatch, tk, direct):
    """The draw (full CDF, or groups of keys then one group) follows alpha: a chi-square bound over many
    seeded draws, masked keys (alpha exactly 0) never drawn."""
    monkeypatch.setattr(hard, "_CDF_DIRECT", direct)
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(tk, generator=g, dtype=torch.float64) * 1.5
    scores[::5] = hard._fill_value(torch.float64)  # masked keys
    alpha = torch.softmax(scores, 0)
    n = 200_000
    u = torch.rand(n, 1, generator=g, dtype=torch.float64)
    index = hard._draw(alpha.expand(n, tk), u).squeeze(-1)
    counts = torch.bincount(index, minlength=tk).double()
    assert counts[::5].sum() == 0
    keep = alpha > 0
    expected = alpha[keep] * n
    chi2 = ((counts[keep] - expected) ** 2 / expected).sum().item()
    dof = int(keep.sum()) - 1
    assert chi2 < dof + 5 * (2 * dof) ** 0.5, (chi2, dof)  # about 5 sigma above the mean


@pytest.mark.parametrize("direct", [512, 64])
def test_draw_edges_never_take_a_masked_key(monkeypatch, direct):
    """u just below 1 (u * total may round up to the total) takes the last key with mass; u = 0 the first."""
    monkeypatch.setattr(hard, "_CDF_DIRECT", direct)
    s = torch.zeros(3, 128)
    s[:, 100:] = hard._fill_value(torch.float32)
    s[:, :3] = hard._fill_value(torch.float32)
    alpha = torch.softmax(s, -1)
    assert hard._draw(alpha, torch.full((3, 1), 1 - 2**-24)).flatten().tolist() == [99, 99, 99]
    assert hard._draw(alpha, torch.zeros(3, 1)).flatten().tolist() == [3, 3, 3]


def test_fused_same_seed_same_draws():
    q, k, v, _ = _inputs(4, 16, 16, None, dtype=torch.float32)
    att = create_attention("hard", 8, 8, 3).train()
    outs = []
    for _ in range(2):
        torch.manual_seed(7)
        outs.append(att(q, k, v).context)
    assert torch.equal(*outs)


def test_only_plain_reinforce_training_calls_are_fused(monkeypatch):
    q, k, v, _ = _inputs(2, 3, 4, None, dtype=torch.float32)
    calls = _fused_calls(monkeypatch)
    for name, kw, train, weights in (("general", {}, True, False), ("dot", {}, True, False),
                                     ("scaled-dot", {}, True, False)):
        create_attention("hard", 8, 8, 3 if name == "general" else 8, score=name, **kw).train(train)(
            q, k, v if name == "general" else k, need_weights=weights)
    assert len(calls) == 3
    create_attention("hard", 8, 8, 3, estimator="gumbel").train()(q, k, v)
    create_attention("hard", 8, 8, 3).eval()(q, k, v)
    create_attention("hard", 8, 8, 3).train()(q, k, v, need_weights=True)
    create_attention("hard", 8, 8, 3, score="additive").train()(q, k, v)
    att = create_attention("hard", 8, 8, 3).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        att(q, k, v)
    assert len(calls) == 3
