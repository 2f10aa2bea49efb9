"""Interpreter cases of the fused additive kernel; tests/test_additive_triton.py runs this file in a
subprocess with ``TRITON_INTERPRET=1`` set from the start (Triton reads it when each jit function
is defined, its own library functions included, so it cannot be switched on inside a running test
session). Not collected on its own (no ``test_`` prefix); run it directly as
``TRITON_INTERPRET=1 python -m pytest tests/additive_triton_cases.py``.
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attnzoo.mechanisms.additive import AdditiveAttention, triton_available
from attnzoo.mechanisms.pointer import PointerAttention

pytestmark = pytest.mark.skipif(not triton_available() or os.environ.get("TRITON_INTERPRET") != "1",
                                reason="needs Triton and TRITON_INTERPRET=1 from the start")


@pytest.fixture(scope="module")
def interpreted():
    """The kernel module, after one tiny call: a Triton that cannot interpret it skips, saying why."""
    try:
        from attnzoo.mechanisms import additive_triton as mod

        g = torch.Generator().manual_seed(0)
        mod.fused_additive_scores(torch.randn(1, 2, 3, generator=g), torch.randn(1, 2, 3, generator=g), torch.randn(3))
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"Triton's interpreter does not run the kernel here: {type(exc).__name__}: {exc}")
    return mod


def _mask(kind: str, b: int, tq: int, tk: int, g: torch.Generator) -> torch.Tensor | None:
    if kind == "none":
        return None
    if kind == "keys":
        m = torch.rand(b, tk, generator=g) < 0.7
        m[:, 0] = True
        return m
    m = torch.rand(b, tq, tk, generator=g) < 0.6
    m[0, tq // 2] = False  # a query with no allowed key
    return m


def _pair(cls, dq: int, dk: int, dv: int, **kw):
    torch.manual_seed(0)
    ref = cls(dq, dk, dv, impl="reference", **kw)
    fused = cls(dq, dk, dv, impl="triton", **kw)
    fused.load_state_dict(ref.state_dict())
    return ref, fused


def _grads(m, out: torch.Tensor, inputs: list[torch.Tensor], w: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.autograd.grad((out * w).sum(), [*inputs, *m.parameters()]))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(b=st.integers(1, 2), tq=st.integers(1, 20), tk=st.integers(1, 20), hidden=st.integers(1, 20),
       dv=st.integers(1, 20), kind=st.sampled_from(["none", "keys", "queries"]), bias=st.booleans())
def test_fused_equals_reference_with_gradients(interpreted, b, tq, tk, hidden, dv, kind, bias) -> None:
    g = torch.Generator().manual_seed(b + 10 * tq + 100 * tk)
    dq, dk = 6, 5
    ref, fused = _pair(AdditiveAttention, dq, dk, dv, hidden_dim=hidden, bias=bias)
    q, k, v = (torch.randn(b, t, d, generator=g, requires_grad=True) for t, d in ((tq, dq), (tk, dk), (tk, dv)))
    mask = _mask(kind, b, tq, tk, g)
    a, f = ref(q, k, v, mask=mask).context, fused(q, k, v, mask=mask).context
    assert not torch.isnan(f).any()
    torch.testing.assert_close(f, a, rtol=1e-5, atol=2e-6)
    if mask is not None and mask.dim() == 3:
        assert torch.equal(f[0, tq // 2], torch.zeros(dv))
    w = torch.randn(a.shape, generator=g)
    for x, y in zip(_grads(fused, f, [q, k, v], w), _grads(ref, a, [q, k, v], w)):
        assert not torch.isnan(x).any()
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)


def test_fully_masked_rows_get_zero_gradients(interpreted) -> None:
    g = torch.Generator().manual_seed(3)
    _, fused = _pair(AdditiveAttention, 4, 4, 4)
    q = torch.randn(1, 3, 4, generator=g, requires_grad=True)
    k = torch.randn(1, 17, 4, generator=g, requires_grad=True)  # two key blocks
    mask = torch.ones(1, 3, 17, dtype=torch.bool)
    mask[0, 1] = False
    out = fused(q, k, mask=mask).context
    (gq,) = torch.autograd.grad(out.sum(), [q])
    assert torch.equal(out[0, 1], torch.zeros(4)) and torch.equal(gq[0, 1], torch.zeros(4))
    assert torch.isfinite(gq).all()


@pytest.mark.parametrize("kind", ["none", "keys"])
def test_pointer_scores_fused_equal_reference(interpreted, kind: str) -> None:
    g = torch.Generator().manual_seed(5)
    b, tq, tk, d = 2, 7, 18, 6
    ref, fused = _pair(PointerAttention, d, d, d)
    q, k = torch.randn(b, tq, d, generator=g, requires_grad=True), torch.randn(b, tk, d, generator=g, requires_grad=True)
    mask = _mask(kind, b, tq, tk, g)
    a, f = ref(q, k, mask=mask, need_weights=True), fused(q, k, mask=mask, need_weights=True)
    for x, y in ((f.aux["logits"], a.aux["logits"]), (f.weights, a.weights), (f.context, a.context)):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=2e-6)
    w = torch.randn(a.aux["logits"].shape, generator=g)
    fl = f.aux["logits"].clamp_min(-1e4)  # masked logits are finfo.min in both
    al = a.aux["logits"].clamp_min(-1e4)
    for x, y in zip(_grads(fused, fl, [q, k], w), _grads(ref, al, [q, k], w)):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)




def test_no_hidden_sized_pair_tensor_is_allocated(interpreted) -> None:
    """Torch allocations of a fused forward+backward stay far below one [B, Tq, Tk, H] tensor, which the
    chunked path allocates (the interpreter's tiles are numpy arrays, not torch allocations)."""
    from attnzoo.speed import peak_memory_mb

    b, t, h = 1, 40, 16
    pair_mb = b * t * t * h * 4 / 2**20  # one float32 [B, Tq, Tk, H]
    ref, fused = _pair(AdditiveAttention, h, h, h)
    x = torch.randn(b, t, h, requires_grad=True)

    def step(m):
        return lambda: m(x).context.sum().backward()

    assert peak_memory_mb(step(ref), torch.device("cpu")) >= pair_mb  # the measure sees the pair tensor
    assert peak_memory_mb(step(fused), torch.device("cpu")) < pair_mb / 3  # measured 0.018 vs 0.098 MiB
