"""Hard (Xu et al. 2015), local-m / local-p (Luong et al. 2015) and pointer (Vinyals et al. 2015) attention.

Every equation test recomputes the paper's formula in plain torch from the
module's own parameters and compares it with what the module returns.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnzoo import create_attention, get_spec
from attnzoo.mechanisms.pointer import pointed_mask

torch.set_default_dtype(torch.float32)


def general_scores(module, q, k):
    """Luong's general score h_t^T W_a h_s, in plain torch (W_a stored as Linear [Dk, Dq])."""
    return torch.einsum("bqd,kd,bsk->bqs", q, module.W_a.weight, k)


def dense_softmax(scores, allowed):
    """Reference softmax over allowed positions; rows with none allowed are zeros."""
    s = scores.masked_fill(~allowed, float("-inf"))
    out = torch.softmax(s, dim=-1)
    return torch.nan_to_num(out, nan=0.0) * allowed


def rand_qkv(b=2, tq=5, tk=7, d=8, dv=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, tq, d, generator=g), torch.randn(b, tk, d, generator=g), torch.randn(b, tk, dv, generator=g))


# ----------------------------------------------------------------------------- specs


def test_specs_are_honest():
    hard = get_spec("hard")
    assert not hard.differentiable and {"log_prob", "entropy"} <= set(hard.aux_keys)
    for name in ("local-m", "local-p"):
        assert get_spec(name).complexity == "O(Tq*window)"
    pointer = get_spec("pointer")
    assert pointer.pointer_logits and "logits" in pointer.aux_keys


# ----------------------------------------------------------------------------- hard


def test_hard_equation_probs_log_prob_and_context():
    """Eq. (8)-(9): alpha = softmax(score); s ~ alpha; z = a_s; log_prob = log alpha_s."""
    torch.manual_seed(0)
    q, k, v = rand_qkv()
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1, 5:] = False
    att = create_attention("hard", 8, 8, 3, expected_prob=0.0).train()
    out = att(q, k, v, mask=mask, need_weights=True)
    alpha = dense_softmax(general_scores(att.base, q, k), mask[:, None, :].expand(2, 5, 7))
    torch.testing.assert_close(out.aux["probs"], alpha)
    idx = out.weights.argmax(-1)  # (B, Tq)
    assert torch.equal(out.weights, torch.nn.functional.one_hot(idx, 7).float())
    torch.testing.assert_close(out.aux["log_prob"], alpha.gather(-1, idx[..., None]).squeeze(-1).log())
    torch.testing.assert_close(out.context, v[torch.arange(2)[:, None], idx])
    ent = -(alpha * alpha.clamp_min(1e-30).log()).sum(-1)
    torch.testing.assert_close(out.aux["entropy"], ent)


@settings(max_examples=30, deadline=None)
@given(
    b=st.integers(1, 3),
    tq=st.integers(1, 4),
    tk=st.integers(1, 6),
    per_query=st.booleans(),
    estimator=st.sampled_from(["reinforce", "gumbel"]),
    data=st.data(),
)
def test_hard_samples_only_allowed_keys(b, tq, tk, per_query, estimator, data):
    shape = (b, tq, tk) if per_query else (b, tk)
    bits = data.draw(st.lists(st.booleans(), min_size=math.prod(shape), max_size=math.prod(shape)))
    mask = torch.tensor(bits, dtype=torch.bool).view(shape)
    full = mask if per_query else mask[:, None, :].expand(b, tq, tk)
    q, k, v = rand_qkv(b, tq, tk, d=4, dv=2, seed=len(bits))
    att = create_attention("hard", 4, 4, 2, estimator=estimator, expected_prob=0.0).train()
    for _ in range(3):
        out = att(q, k, v, mask=mask, need_weights=True)
        w = out.weights.detach()
        assert torch.isfinite(out.context).all() and torch.isfinite(out.aux["entropy"]).all()
        assert not (w.bool() & ~full).any(), "sampled a masked key"
        has_key = full.any(-1)
        assert torch.equal(w.sum(-1), has_key.float()), "one-hot on rows with a key, zeros otherwise"
        assert (out.context[~has_key] == 0).all()
        assert (out.aux["entropy"][~has_key] == 0).all()
        if estimator == "reinforce":
            assert torch.isfinite(out.aux["log_prob"]).all()
            assert (out.aux["log_prob"][~has_key] == 0).all()
        else:
            assert "log_prob" not in out.aux


def test_hard_samples_follow_alpha():
    """s ~ Multinoulli(alpha): empirical frequencies match alpha (not the argmax)."""
    torch.manual_seed(1)
    att = create_attention("hard", 4, score="dot", expected_prob=0.0).train()
    k = torch.tensor([[[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]]])
    q = torch.tensor([0.5, 0.0, -0.5, 1.0]).expand(1, 20000, 4)
    out = att(q, k, need_weights=True)
    freq = out.weights.mean(dim=1)[0]
    alpha = torch.softmax(torch.tensor([0.5, 0.0, -0.5, 1.0]), 0)
    torch.testing.assert_close(freq, alpha, atol=0.015, rtol=0)


def test_hard_eval_is_deterministic_argmax():
    q, k, v = rand_qkv()
    mask = torch.rand(2, 5, 7, generator=torch.Generator().manual_seed(3)) > 0.4
    for estimator in ("reinforce", "gumbel"):
        att = create_attention("hard", 8, 8, 3, estimator=estimator).eval()
        a = att(q, k, v, mask=mask, need_weights=True)
        b = att(q, k, v, mask=mask, need_weights=True)
        assert torch.equal(a.weights, b.weights) and torch.equal(a.context, b.context)
        alpha = a.aux["probs"]
        has_key = mask.any(-1)
        expect = torch.nn.functional.one_hot(alpha.argmax(-1), 7).float() * has_key[..., None]
        assert torch.equal(a.weights, expect)


def test_hard_estimator_gradients():
    q, k, v = rand_qkv()
    gum = create_attention("hard", 8, 8, 3, estimator="gumbel", temperature=0.5, expected_prob=0.0).train()
    out = gum(q, k, v, need_weights=True)
    assert set(out.weights.detach().unique().tolist()) <= {0.0, 1.0}
    out.context.sum().backward()
    assert gum.base.W_a.weight.grad is not None and gum.base.W_a.weight.grad.abs().sum() > 0

    rf = create_attention("hard", 8, 8, 3, estimator="reinforce", expected_prob=0.0).train()
    out = rf(q, k, v.requires_grad_())
    (gv,) = torch.autograd.grad(out.context.sum(), v, retain_graph=True)
    assert gv.abs().sum() > 0  # the sampled values get gradients
    # the sample blocks the path to the score; only log_prob (the harness's REINFORCE term) reaches it. The
    # fused training path computes context and log_prob in one autograd node, so the context's gradient on
    # the score is an exact zero there rather than no path at all (the reference path: None).
    for weights in (False, True):
        out = rf(q, k, v, need_weights=weights)
        (none,) = torch.autograd.grad(out.context.sum(), rf.base.W_a.weight, allow_unused=True)
        assert none is None or not none.abs().any()
    (g,) = torch.autograd.grad(out.aux["log_prob"].sum(), rf.base.W_a.weight)
    assert g.abs().sum() > 0


def test_hard_other_scores_and_errors():
    q, k, v = rand_qkv()
    for score in ("dot", "scaled-dot"):
        out = create_attention("hard", 8, 8, 3, score=score)(q, k, v)
        assert out.context.shape == (2, 5, 3)
    with pytest.raises(ValueError, match="score"):
        create_attention("hard", 8, score="local-m")
    with pytest.raises(ValueError, match="estimator"):
        create_attention("hard", 8, estimator="vimco")
    mh = create_attention("hard", 8, num_heads=2)
    assert mh(q).aux["log_prob"].shape == (2, 2, 5)
    with pytest.raises(ValueError, match="expected_prob"):
        create_attention("hard", 8, expected_prob=1.5)


@settings(max_examples=30, deadline=None)
@given(b=st.integers(1, 3), tq=st.integers(1, 3), tk=st.integers(1, 9), sample=st.booleans(), data=st.data())
def test_hard_core_gradient_equals_autograd_reference(b, tq, tk, sample, data):
    """The fused backward of alpha, log alpha_s, H[alpha] and the expected context z = alpha V is autograd's,
    masked keys and empty rows included, for no, some and all examples taking z, and for any subset of the
    outputs in the loss (an unused output's gradient reaches backward as None and its term is skipped)."""
    from attnzoo.mechanisms.hard import _Categorical, _fill_value

    n = b * tq
    g = torch.Generator().manual_seed(n * 10 + tk)
    s = torch.randn(n, tk, generator=g, dtype=torch.float64) * 3
    bits = data.draw(st.lists(st.booleans(), min_size=n * tk, max_size=n * tk))
    allowed = torch.tensor(bits, dtype=torch.bool).view(n, tk)
    allowed[0] = True  # at least one row with every key
    sel = sorted(data.draw(st.sets(st.integers(0, b - 1))))
    filled = s.masked_fill(~allowed, _fill_value(s.dtype)).requires_grad_()
    v = torch.randn(b, tk, 2, generator=g, dtype=torch.float64, requires_grad=True)
    u = torch.rand(n, generator=g, dtype=torch.float64) if sample else None
    alpha, index, lp, h, z = _Categorical.apply(filled, u, v if sel else None, sel)
    has = allowed.any(-1)
    assert allowed[has].gather(-1, index[has, None]).all(), "drew a masked key"
    w_a = torch.randn(n, tk, generator=g, dtype=torch.float64)
    w_lp, w_h = torch.randn(n, generator=g, dtype=torch.float64), torch.randn(n, generator=g, dtype=torch.float64) * 3
    w_z = torch.randn(len(sel), tq, 2, generator=g, dtype=torch.float64)
    keep = has.view(b, tq)[sel]  # rows of z with a key
    used = data.draw(st.sets(st.sampled_from(["alpha", "lp", "h", "z"]), min_size=1))
    if not sel and used == {"z"}:
        used = {"z", "lp"}

    def total(a, lp_, h_, z_):
        terms = [t for k, t in (("alpha", (a * w_a).sum(-1)), ("lp", lp_ * w_lp), ("h", h_ * w_h)) if k in used]
        out = sum(terms)[has].sum() if terms else 0.0
        if sel and "z" in used:
            out = out + ((z_ * w_z).sum(-1) * keep).sum()
        return out

    ours = torch.autograd.grad(total(alpha, lp, h, z), [filled, v], allow_unused=True)

    ref_in = s.clone().requires_grad_()
    ref_v = v.detach().clone().requires_grad_()
    logp = torch.log_softmax(ref_in.masked_fill(~allowed, float("-inf")), -1)
    p = torch.nan_to_num(logp.exp(), nan=0.0)
    ref_h = -(p * logp.masked_fill(~allowed, 0.0)).sum(-1)
    ref_lp = logp.gather(-1, index[:, None]).squeeze(-1)
    ref_z = (p.view(b, tq, tk) @ ref_v)[sel]
    ref = torch.autograd.grad(total(p, ref_lp, ref_h, ref_z), [ref_in, ref_v], allow_unused=True)
    torch.testing.assert_close(alpha[has], p[has].detach())
    torch.testing.assert_close(lp[has], ref_lp[has].detach())
    torch.testing.assert_close(h[has], ref_h[has].detach())
    if sel:
        torch.testing.assert_close((z * keep[..., None]), (ref_z * keep[..., None]).detach())
    ref_s = ref[0] if ref[0] is not None else torch.zeros_like(s)
    torch.testing.assert_close(ours[0][has], ref_s[has].masked_fill(~allowed[has], 0.0))
    assert torch.isfinite(ours[0]).all()
    if sel:
        ours_v = ours[1] if ours[1] is not None else torch.zeros_like(v)
        torch.testing.assert_close(ours_v, ref[1] if ref[1] is not None else torch.zeros_like(v))
    else:
        assert ours[1] is None or not ours[1].abs().any()


def test_hard_inverse_cdf_edge_never_draws_a_masked_tail():
    """u just below 1 rounds u * total up to total: the draw is the last key with mass, not a masked one."""
    from attnzoo.mechanisms.hard import _Categorical, _fill_value

    s = torch.zeros(3, 6)
    s[:, 4:] = _fill_value(torch.float32)
    _, index, _, _, _ = _Categorical.apply(s, torch.full((3,), 1 - 2**-24), None, None)
    assert index.tolist() == [3, 3, 3]
    _, index, _, _, _ = _Categorical.apply(s, torch.zeros(3), None, None)
    assert index.tolist() == [0, 0, 0]


def _soft_reference(att, q, k, v, mask=None):
    allowed = torch.ones(q.shape[0], q.shape[1], k.shape[1], dtype=torch.bool) if mask is None else (
        mask if mask.dim() == 3 else mask[:, None, :].expand(q.shape[0], q.shape[1], k.shape[1]))
    alpha = dense_softmax(general_scores(att.base, q, k), allowed)
    return alpha, alpha @ v


@pytest.mark.parametrize("estimator", ["reinforce", "gumbel"])
def test_hard_expected_prob_one_is_soft_attention(estimator):
    """Xu et al. Sec. 4.1 with probability 1: z = sum_i alpha_i a_i, no choice made, log_prob 0."""
    q, k, v = rand_qkv()
    mask = torch.ones(2, 5, 7, dtype=torch.bool)
    mask[0, 1, 3:] = False
    mask[1, 4] = False  # fully masked row
    att = create_attention("hard", 8, 8, 3, expected_prob=1.0, estimator=estimator).train()
    out = att(q, k, v, mask=mask, need_weights=True)
    alpha, ctx = _soft_reference(att, q, k, v, mask)
    torch.testing.assert_close(out.context, ctx)
    torch.testing.assert_close(out.weights, alpha)
    if estimator == "reinforce":
        assert (out.aux["log_prob"] == 0).all()
    assert (out.context[1, 4] == 0).all()
    # gradients reach the score through alpha, as in soft attention
    (g,) = torch.autograd.grad(out.context.sum(), att.base.W_a.weight)
    assert g.abs().sum() > 0
    # eval mode never takes the expected context: argmax as before
    ev = att.eval()(q, k, v, mask=mask, need_weights=True)
    assert set(ev.weights.unique().tolist()) <= {0.0, 1.0}


def test_hard_expected_prob_zero_always_samples():
    q, k, v = rand_qkv(4, 5, 7)
    att = create_attention("hard", 8, 8, 3, expected_prob=0.0).train()
    for _ in range(5):
        out = att(q, k, v, need_weights=True)
        assert set(out.weights.unique().tolist()) == {0.0, 1.0} and (out.weights.sum(-1) == 1).all()
        assert (out.aux["log_prob"] < 0).all()
        torch.testing.assert_close(out.context, (out.weights @ v))


def test_hard_expected_prob_half_splits_examples_and_the_harness_sums_only_sampled_log_probs():
    """About half the examples take each branch (seeded); an expected example adds 0 to the REINFORCE sum."""
    from attnzoo.backbones.base import AuxAccumulator

    torch.manual_seed(0)
    b = 400
    q, k, v = rand_qkv(b, 3, 6, seed=5)
    att = create_attention("hard", 8, 8, 3).train()  # the default is Xu's recipe
    assert att.expected_prob == 0.5
    torch.manual_seed(1)
    out = att(q, k, v, need_weights=True)
    alpha, soft = _soft_reference(att, q, k, v)
    took_soft = torch.isclose(out.context, soft, atol=1e-6).all(-1).all(-1)  # (B,)
    assert 0.4 < took_soft.float().mean() < 0.6
    sampled = ~took_soft
    assert torch.equal(out.weights[took_soft], alpha[took_soft])
    assert ((out.weights[sampled] == 0) | (out.weights[sampled] == 1)).all()
    lp = out.aux["log_prob"]
    assert (lp[took_soft] == 0).all() and (lp[sampled] < 0).all()
    acc = AuxAccumulator()
    acc.add(out.aux)
    acc.add(out.aux)  # two calls (two layers or decoder steps) add up per example
    per_example = acc.result()["log_prob"]
    assert per_example.shape == (b,)
    assert (per_example[took_soft] == 0).all()
    torch.testing.assert_close(per_example[sampled], 2 * lp[sampled].sum(-1))
    # seeded: the same seed gives the same split and the same draws
    torch.manual_seed(1)
    again = att(q, k, v).context
    torch.testing.assert_close(again, out.context)


def test_hard_expected_context_for_few_and_for_most_examples():
    """Both ways of forming the expected context (a copy of few examples, a select among all) agree with Eq. (8)."""
    q, k, v = rand_qkv(4, 3, 6, seed=9)
    att = create_attention("hard", 8, 8, 3).train()
    alpha, soft = _soft_reference(att, q, k, v)
    seen = set()
    for seed in range(40):
        torch.manual_seed(seed)
        out = att(q, k, v, need_weights=True)
        took = (out.aux["log_prob"] == 0).all(-1)  # (B,)
        seen.add(int(took.sum()))
        torch.testing.assert_close(out.context[took], soft[took])
        torch.testing.assert_close(out.weights[took], alpha[took])
        w = out.weights[~took]
        assert ((w == 0) | (w == 1)).all() and (w.sum(-1) == 1).all()
        torch.testing.assert_close(out.context[~took], w @ v[~took])
    assert {1, 3} <= seen, seen  # the loop over a few examples and the all-examples batch both ran


def test_hard_expected_context_for_many_examples_takes_the_batched_copy(monkeypatch):
    import attnzoo.mechanisms.hard as hard

    monkeypatch.setattr(hard, "_LOOP_MAX", 1)
    test_hard_expected_context_for_few_and_for_most_examples()
    # and its gradients are the loop's
    q, k, v = rand_qkv(6, 3, 5, seed=4)
    att = create_attention("hard", 8, 8, 3).train()
    grads = []
    for loop_max in (1, 8):
        monkeypatch.setattr(hard, "_LOOP_MAX", loop_max)
        vv = v.clone().requires_grad_()
        torch.manual_seed(3)  # the same draws: 2-4 of 6 examples take the expected context
        out = att(q, k, vv)
        assert 1 < int((out.aux["log_prob"] == 0).all(-1).sum()) < 6
        loss = (out.context * torch.arange(3.0)).sum() + out.aux["log_prob"].sum() + out.aux["entropy"].sum()
        grads.append(torch.autograd.grad(loss, [vv, att.base.W_a.weight]))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("estimator", ["reinforce", "gumbel"])
@pytest.mark.parametrize("train", [True, False])
def test_hard_nan_query_gives_nan_row(estimator, train):
    """NaN in, NaN out: the row reading a NaN query is NaN (not key 0 with weight 1); a fully masked row stays 0."""
    q, k, v = rand_qkv(2, 5, 7)
    mask = torch.ones(2, 5, 7, dtype=torch.bool)
    mask[1, 3] = False
    bad = q.clone()
    bad[0, 2, 4] = float("nan")
    bad[1, 3, 0] = float("nan")  # the fully masked row
    for expected in (0.0, 1.0):
        att = create_attention("hard", 8, 8, 3, estimator=estimator, expected_prob=expected).train(train)
        out = att(bad, k, v, mask=mask, need_weights=True)
        assert torch.isnan(out.context[0, 2]).all() and torch.isnan(out.weights[0, 2]).all()
        assert (out.context[1, 3] == 0).all() and (out.weights[1, 3] == 0).all()
        rest = torch.ones(2, 5, dtype=torch.bool)
        rest[0, 2] = False
        assert torch.isfinite(out.context[rest]).all()
        if estimator == "reinforce":
            assert torch.isnan(out.aux["log_prob"][0, 2]) or (expected == 1.0 and train)


# ----------------------------------------------------------------------------- hard without host reads


def _hard_run(estimator, expected_prob, mask_kind, seed=1, b=6, dtype=torch.float32):
    """One seeded training call of hard and its gradients (q, k, v, W_a), with the RNG state after it."""
    torch.manual_seed(0)
    att = create_attention("hard", 8, 8, 3, estimator=estimator, expected_prob=expected_prob).train()
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(b, 4, 8, generator=g), torch.randn(b, 7, 8, generator=g), torch.randn(b, 7, 3, generator=g))
    q, k, v = (t.to(dtype).requires_grad_() for t in (q, k, v))
    att = att.to(dtype)
    mask = None
    if mask_kind == "query":
        mask = torch.ones(b, 4, 7, dtype=torch.bool)
        mask[1, 2] = False  # a fully masked row
        mask[3, :, 5:] = False
    elif mask_kind == "key":
        km = torch.ones(b, 7, dtype=torch.bool)
        km[2, 4:] = False
        mask = km[:, None, :].expand(b, 4, 7)
    torch.manual_seed(5)
    out = att(q, k, v, mask=mask, need_weights=True)
    rng = torch.get_rng_state()
    loss = (out.context * torch.arange(1.0, 4.0)).sum() + (out.weights * 0.5).sum() + out.aux["entropy"].sum()
    if estimator == "reinforce":
        loss = loss + out.aux["log_prob"].sum()
    grads = torch.autograd.grad(loss, [q, k, v, att.base.W_a.weight])
    return out, rng, grads


@pytest.mark.parametrize("estimator", ["reinforce", "gumbel"])
def test_hard_draws_are_pinned(estimator):
    """Same seed, same draws: which examples take the expected context, which key each query samples,
    and how much of the global RNG stream the call consumes (recorded before the host-read-free path landed)."""
    pinned = {
        "reinforce": ([False, True, False, False, True, True],
                      [[5, 0, 5, 5], [5, 3, 0, 5], [0, 6, 4, 3], [0, 4, 1, 3], [5, 3, 3, 1], [6, 2, 2, 0]],
                      [0.16613507270812988, 0.2636159658432007]),
        "gumbel": ([False, True, False, False, False, True],
                   [[0, 4, 5, 0], [5, 3, 0, 5], [4, 3, 5, 5], [0, 0, 0, 1], [5, 3, 4, 1], [6, 2, 2, 0]],
                   [0.3370249271392822, 0.12584495544433594]),
    }
    took, idx, after = pinned[estimator]
    out, rng, _ = _hard_run(estimator, 0.5, "query")
    assert ((out.weights != 0).sum(-1) > 1).any(-1).tolist() == took
    assert out.weights.argmax(-1).tolist() == idx  # a sample, or alpha's argmax where the example took z
    torch.set_rng_state(rng)
    assert torch.rand(2).tolist() == after


def _no_host_reads(monkeypatch):
    """Make hard take its off-CPU path on the CPU, and fail on any read of a tensor's values on the host."""
    import attnzoo.mechanisms.hard as hard

    def forbidden(*_a, **_k):
        raise AssertionError("hard read a tensor's values on the host (a device sync on a GPU)")

    monkeypatch.setattr(hard, "_host_readable", lambda t: False)
    for name in ("tolist", "item", "__bool__"):
        monkeypatch.setattr(torch.Tensor, name, forbidden)


@pytest.mark.parametrize("estimator", ["reinforce", "gumbel"])
@pytest.mark.parametrize("expected_prob", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("mask_kind", [None, "key", "query"])
def test_hard_device_path_matches_the_host_path(monkeypatch, estimator, expected_prob, mask_kind):
    """Off the CPU hard never reads a value on the host (no device sync): every example's expected context
    is formed and picked per example. It makes the same draws from the same RNG stream as the host path (the
    CPU's, kept as the reference), the same numbers where its arithmetic is the same (no or every example
    taking z: bitwise) and to float rounding otherwise, gradients included; a fully masked row gives zeros."""
    ref, ref_rng, ref_grads = _hard_run(estimator, expected_prob, mask_kind)
    with monkeypatch.context() as m:
        _no_host_reads(m)
        out, rng, grads = _hard_run(estimator, expected_prob, mask_kind)
    assert torch.equal(rng, ref_rng)
    exact = expected_prob in (0.0, 1.0)
    pairs = [(out.context, ref.context), (out.weights, ref.weights), *zip(grads, ref_grads)]
    pairs += [(out.aux[k], ref.aux[k]) for k in ref.aux]
    for ours, theirs in pairs:
        if exact:
            assert torch.equal(ours, theirs)
        else:
            torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    for t in (out.context, out.weights, *grads, *out.aux.values()):
        assert torch.isfinite(t).all()
    if mask_kind == "query":
        assert (out.context[1, 2] == 0).all() and (out.weights[1, 2] == 0).all()


def test_hard_device_path_without_mask_or_expected_context_reads_nothing(monkeypatch):
    """Eval mode and plain sampling take no host read either."""
    q, k, v = rand_qkv(3, 4, 6)
    for train, prob in ((False, 0.5), (True, 0.0)):
        att = create_attention("hard", 8, 8, 3, expected_prob=prob).train(train)
        with monkeypatch.context() as m:
            _no_host_reads(m)
            out = att(q, k, v, mask=torch.ones(3, 4, 6, dtype=torch.bool), need_weights=True)
        assert torch.isfinite(out.context).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_hard_on_cuda_never_syncs():
    """On CUDA a training step of hard (sampling, the expected context, a mask) makes no host-device sync."""
    dev = torch.device("cuda")
    att = create_attention("hard", 8, 8, 3).train().to(dev)
    q, k, v = (t.to(dev).requires_grad_() for t in rand_qkv(4, 5, 7))
    mask = torch.ones(4, 5, 7, dtype=torch.bool, device=dev)
    mask[1, 2] = False
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = att.attend(q, k, v, mask, need_weights=True)  # hard's own code, past the contract's checks
        (out.context.sum() + out.aux["log_prob"].sum() + out.aux["entropy"].sum()).backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(out.context).all()


# ----------------------------------------------------------------------------- local


def local_m_reference(att, q, k, v, mask, d):
    """Dense masked reference of local-m: softmax of the general score over |s - p_t| <= D."""
    b, tq, _ = q.shape
    tk = k.shape[1]
    t = torch.arange(tq, dtype=torch.float32)
    p = t if tq == tk else (torch.round(t * (tk - 1) / (tq - 1)) if tq > 1 else torch.zeros(tq))
    s = torch.arange(tk, dtype=torch.float32)
    allowed = ((s[None, :] - p[:, None]).abs() <= d)[None].expand(b, tq, tk)
    if mask is not None:
        allowed = allowed & (mask if mask.dim() == 3 else mask[:, None, :])
    w = dense_softmax(general_scores(att.base, q, k), allowed)
    return w, w @ v


@pytest.mark.parametrize("tq,tk", [(9, 9), (5, 13), (12, 6), (1, 6)])
@pytest.mark.parametrize("d", [0, 1, 3])
def test_local_m_equals_dense_reference(tq, tk, d):
    q, k, v = rand_qkv(2, tq, tk, seed=tq * 100 + tk)
    mask = torch.ones(2, tk, dtype=torch.bool)
    mask[1, tk // 2 :] = False
    att = create_attention("local-m", 8, 8, 3, window=d)
    for m in (None, mask, torch.rand(2, tq, tk, generator=torch.Generator().manual_seed(d)) > 0.3):
        out = att(q, k, v, mask=m, need_weights=True)
        w, ctx = local_m_reference(att, q, k, v, m, d)
        torch.testing.assert_close(out.weights, w)
        torch.testing.assert_close(out.context, ctx)
        assert torch.isfinite(out.context).all()
        without = att(q, k, v, mask=m)
        assert without.weights is None
        torch.testing.assert_close(without.context, ctx)


def test_local_m_step_by_step_matches_full():
    q, k, v = rand_qkv(2, 8, 8)
    att = create_attention("local-m", 8, 8, 3, window=2)
    full = att(q, k, v).context
    state = 0
    steps = []
    for t in range(8):
        out = att(q[:, t : t + 1], k, v, state=state)
        steps.append(out.context)
        state = out.state
    torch.testing.assert_close(torch.cat(steps, dim=1), full)
    assert state.tolist() == [8, 8]


def local_p_reference(att, q, k, v, lengths, d, key_mask=None):
    """Luong Eq. (9)-(10) in plain torch, with S per batch row and an optional [B, Tk] key mask."""
    b, tq, _ = q.shape
    tk = k.shape[1]
    h = torch.tanh(q @ att.W_p.weight.T)  # (B, Tq, P)
    p = lengths[:, None] * torch.sigmoid(h @ att.v_p.weight.T).squeeze(-1)  # (B, Tq), Eq. (9)
    s = torch.arange(tk, dtype=torch.float32)
    dist = s[None, None, :] - p[..., None]  # (B, Tq, Tk)
    allowed = dist.abs() <= d
    if key_mask is not None:
        allowed = allowed & key_mask[:, None, :]
    align = dense_softmax(general_scores(att.base, q, k), allowed)
    sigma = d / 2
    w = align * torch.exp(-dist**2 / (2 * sigma**2))  # Eq. (10)
    return w, w @ v


@pytest.mark.parametrize("d", [1, 2, 4])
def test_local_p_equation_10_exactly(d):
    torch.manual_seed(d)
    q, k, v = rand_qkv(3, 6, 11, seed=d)
    lengths = torch.tensor([11, 7, 3])
    mask = torch.arange(11)[None, :] < lengths[:, None]
    att = create_attention("local-p", 8, 8, 3, window=d, renormalize=False)
    with torch.no_grad():  # spread p_t over the source
        att.v_p.weight.mul_(4.0)
    out = att(q, k, v, mask=mask, need_weights=True)
    w, ctx = local_p_reference(att, q, k, v, lengths.float(), d, mask)  # S from the mask
    torch.testing.assert_close(out.weights, w)
    torch.testing.assert_close(out.context, ctx)
    assert (out.weights.sum(-1) <= 1 + 1e-6).all()

    # renormalize=True (the default) is the same distribution divided by its sum
    att.renormalize = True
    out_n = att(q, k, v, mask=mask, need_weights=True)
    torch.testing.assert_close(out_n.weights, w / w.sum(-1, keepdim=True))
    torch.testing.assert_close(out_n.weights.sum(-1), torch.ones(3, 6))

    # S given through state (no mask): same p_t, keys past S allowed when in the window
    att.renormalize = False
    out_s = att(q, k, v, state=lengths, need_weights=True)
    w_s, ctx_s = local_p_reference(att, q, k, v, lengths.float(), d)
    torch.testing.assert_close(out_s.weights, w_s)
    torch.testing.assert_close(out_s.context, ctx_s)
    assert out_s.state is lengths
    # and without either, S = Tk
    w_tk, _ = local_p_reference(att, q, k, v, torch.full((3,), 11.0), d)
    torch.testing.assert_close(att(q, k, v, need_weights=True).weights, w_tk)


def test_local_p_gradients_reach_position_predictor():
    q, k, v = rand_qkv()
    att = create_attention("local-p", 8, 8, 3, window=2)
    att(q, k, v).context.square().sum().backward()
    assert att.v_p.weight.grad.abs().sum() > 0 and att.W_p.weight.grad.abs().sum() > 0
    assert att.base.W_a.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["local-m", "local-p"])
def test_local_fully_masked_rows_are_zero(name):
    q, k, v = rand_qkv(2, 6, 6)
    mask = torch.ones(2, 6, 6, dtype=torch.bool)
    mask[0, 2] = False  # a fully masked query row
    mask[1, :, :] = torch.arange(6)[None, :] >= 5  # only key 5: far outside early windows
    att = create_attention(name, 8, 8, 3, window=1)
    out = att(q, k, v, mask=mask, need_weights=True)
    assert torch.isfinite(out.context).all() and torch.isfinite(out.weights).all()
    assert (out.context[0, 2] == 0).all() and (out.weights[0, 2] == 0).all()
    assert (out.weights[1, 0] == 0).all() and (out.context[1, 0] == 0).all()  # window [0, 1] has no allowed key
    assert not (out.weights.bool() & ~mask).any()


def test_local_causal_self_attention():
    q, _, _ = rand_qkv(2, 10, 10, d=8)
    causal = torch.ones(10, 10, dtype=torch.bool).tril()[None].expand(2, 10, 10)
    for name in ("local-m", "local-p"):
        att = create_attention(name, 8, window=3)
        w = att(q, mask=causal, need_weights=True).weights
        assert (w.triu(1) == 0).all()
        torch.testing.assert_close(w.sum(-1), torch.ones(2, 10))


def _max_storage_bytes(fn):
    """Largest storage any op allocates while ``fn`` runs (views share storage, so are not counted)."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    class Track(TorchDispatchMode):
        peak = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor):
                    Track.peak = max(Track.peak, t.untyped_storage().nbytes())
            return out

    with Track():
        fn()
    return Track.peak


@pytest.mark.parametrize("name", ["local-m", "local-p"])
def test_local_never_builds_tq_by_tk(name):
    """O(Tq * window): no allocation as large as a [Tq, Tk] bool, unless dense weights are asked for."""
    tq = tk = 2048
    q, k, v = rand_qkv(1, tq, tk, d=8, dv=8)
    key_mask = torch.ones(1, tk, dtype=torch.bool)
    key_mask[0, -100:] = False
    att = create_attention(name, 8, 8, 8, window=4)
    with torch.no_grad():
        peak = _max_storage_bytes(lambda: att(q, k, v, mask=key_mask))
        assert peak < tq * tk, f"allocated {peak} bytes, as much as a dense [Tq, Tk] bool"
        dense = _max_storage_bytes(lambda: att(q, k, v, mask=key_mask, need_weights=True))
        assert dense >= tq * tk * 4  # the probe sees the dense weights when they are requested


# ----------------------------------------------------------------------------- pointer


def test_pointer_logits_equation_3():
    """u_j^i = v^T tanh(W1 e_j + W2 d_i); p = softmax(u); masked logits = finfo.min."""
    q, k, v = rand_qkv(2, 4, 6, d=8, dv=5)
    att = create_attention("pointer", 8, 8, 5, hidden_dim=7)
    mask = torch.ones(2, 4, 6, dtype=torch.bool)
    mask[0, 1, 3:] = False
    mask[1, 2] = False  # fully masked row
    out = att(q, k, v, mask=mask)
    u = torch.empty(2, 4, 6)
    for bi in range(2):
        for i in range(4):
            for j in range(6):
                # Vinyals' W1 (encoder e_j), W2 (decoder d_i), v are AdditiveAttention's U_a, W_a, v_a.
                u[bi, i, j] = att.v_a @ torch.tanh(att.U_a.weight @ k[bi, j] + att.W_a.weight @ q[bi, i])
    min_ = torch.finfo(torch.float32).min
    torch.testing.assert_close(out.aux["logits"], u.masked_fill(~mask, min_))
    assert torch.isfinite(out.aux["logits"]).all()
    w = dense_softmax(u, mask)
    torch.testing.assert_close(out.weights, w)
    torch.testing.assert_close(out.context, w @ v)
    assert (out.weights[1, 2] == 0).all() and (out.context[1, 2] == 0).all()
    # the logits are cross-entropy ready: log_softmax over allowed keys equals log of the weights there
    logp = torch.log_softmax(out.aux["logits"][0], dim=-1)
    torch.testing.assert_close(logp[mask[0]], w[0][mask[0]].log())


def test_pointer_exclude_pointed_decoding():
    torch.manual_seed(0)
    q, k, v = rand_qkv(3, 6, 6, d=8, dv=2)
    att = create_attention("pointer", 8, 8, 2, exclude_pointed=True)
    # all queries alike, so without exclusion they would point at the same key
    q = q[:, :1].expand(3, 6, 8)
    out = att(q, k, v)
    picks = out.weights.argmax(-1)
    assert all(sorted(row) == list(range(6)) for row in picks.tolist()), "a permutation, no repeats"
    assert out.state.all()
    # one step at a time with the returned state gives the same result
    state = None
    for t in range(6):
        step = att(q[:, t : t + 1], k, v, state=state)
        torch.testing.assert_close(step.weights[:, 0], out.weights[:, t])
        state = step.state
    assert torch.equal(state, out.state)
    # a 7th step has nothing left: zero weights, finfo.min logits, no NaN
    last = att(q[:, :1], k, v, state=state)
    assert (last.weights == 0).all() and torch.isfinite(last.aux["logits"]).all()
    with pytest.raises(ValueError, match="state"):
        att(q, k, v, state=torch.zeros(3, 5, dtype=torch.bool))


def test_pointed_mask_for_teacher_forcing():
    targets = torch.tensor([[2, 0, 1], [1, 1, 0]])
    pad = torch.tensor([[True, True, True, False], [True, True, True, True]])
    m = pointed_mask(targets, 4, pad)
    expect = torch.ones(2, 3, 4, dtype=torch.bool)
    for b in range(2):
        for i in range(3):
            for j in targets[b, :i].tolist():
                expect[b, i, j] = False
    expect &= pad[:, None, :]
    assert torch.equal(m, expect)
