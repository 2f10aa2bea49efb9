"""NaN in = NaN out, as a property over sizes, positions, masks and both paths (issue 12).

The kit's ``nan.propagates`` check looks at one seeded case; this drives the
soft-attention variants over many, and checks the rules around it: the rows
that read the NaN are NaN, other batch items and (for a NaN query) other query
rows stay finite, and a fully masked row is still exactly zero.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import attnzoo

#: cross-attention variants whose every row reads its query, every allowed key and value.
SOFT = ["dot", "scaled-dot", "general", "additive", "content", "pointer"]


@st.composite
def case(draw):
    b, tq, tk = draw(st.integers(2, 3)), draw(st.integers(2, 4)), draw(st.integers(2, 5))
    return {
        "b": b, "tq": tq, "tk": tk,
        "bi": draw(st.integers(0, b - 1)), "t": draw(st.integers(0, tq - 1)), "s": draw(st.integers(0, tk - 1)),
        "seed": draw(st.integers(0, 2**16)), "masked": draw(st.booleans()), "empty_row": draw(st.booleans()),
        "need_weights": draw(st.booleans()),
    }


def _inputs(c, d=8, dv=6):
    g = torch.Generator().manual_seed(c["seed"])
    q = torch.randn(c["b"], c["tq"], d, generator=g)
    k = torch.randn(c["b"], c["tk"], d, generator=g)
    v = torch.randn(c["b"], c["tk"], dv, generator=g)
    mask = None
    if c["masked"]:
        mask = torch.rand(c["b"], c["tq"], c["tk"], generator=g) > 0.4
        mask[:, :, c["s"]] = True  # every row reads the poisoned key position
    return q, k, v, mask


@pytest.mark.parametrize("name", SOFT)
@settings(max_examples=25, deadline=None)
@given(c=case())
def test_nan_query_poisons_its_row_only(name, c):
    torch.manual_seed(0)
    m = attnzoo.create_attention(name, 8, 8, 6).eval()
    q, k, v, mask = _inputs(c)
    bi, t = c["bi"], c["t"]
    empty = None
    if mask is not None and c["empty_row"] and c["tq"] > 1:
        empty = (bi, (t + 1) % c["tq"])  # another row of the poisoned item, with no key at all
        mask[empty] = False
    q[bi, t] = float("nan")
    with torch.no_grad():
        ctx = m(q, k, v, mask=mask, need_weights=c["need_weights"]).context
    assert torch.isnan(ctx[bi, t]).any()
    others = torch.ones(c["b"], c["tq"], dtype=torch.bool)
    others[bi, t] = False
    assert torch.isfinite(ctx[others]).all()
    if empty is not None:
        assert (ctx[empty] == 0).all()  # a fully masked row is still exactly zero


@pytest.mark.parametrize("name", SOFT)
@settings(max_examples=25, deadline=None)
@given(c=case(), where=st.sampled_from(["key", "value"]))
def test_nan_key_or_value_poisons_the_rows_that_read_it(name, c, where):
    torch.manual_seed(0)
    m = attnzoo.create_attention(name, 8, 8, 6).eval()
    q, k, v, mask = _inputs(c)
    bi, s = c["bi"], c["s"]
    (k if where == "key" else v)[bi, s] = float("nan")
    with torch.no_grad():
        ctx = m(q, k, v, mask=mask, need_weights=c["need_weights"]).context
    assert torch.isnan(ctx[bi]).any(-1).all()  # every row of the item reads position s
    rest = [i for i in range(c["b"]) if i != bi]
    assert torch.isfinite(ctx[rest]).all()
