"""Location-based attention: Luong's ``a_t = softmax(W_a h_t)``.

- Luong, Pham, Manning (2015). *Effective Approaches to Attention-based Neural
  Machine Translation.* EMNLP. arXiv:1508.04025, Sec. 3.1, Eq. (9).

The alignment is computed from the target state alone: one score per source
position, read off a linear layer with a row per position up to ``max_len``.
Keys only decide how many positions exist (``Tk``); their content is never
looked at. Rows ``Tk..max_len-1`` of ``W_a`` are simply not used, which is the
same as masking those positions out.

Fused path: ``W_a h_t`` restricted to the first ``Tk`` rows is ``h_t . w_s``
for position vectors ``w_s = W_a[s]``, i.e. a dot product of the query with a
"key" matrix ``W_a[:Tk]`` that is shared by the whole batch, so
``F.scaled_dot_product_attention(q, W_a[:Tk], value, scale=1)`` computes it
without materialising the weights (an optional bias rides along as an extra
feature: ``[h_t, 1] . [w_s, b_s]``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnzoo.contract import AttentionOutput, ScoreAttention, masked_softmax, sdpa
from attnzoo.hookspecs import hookimpl
from attnzoo.spec import AttentionSpec

__all__ = ["LocationAttention"]

LUONG = "Luong, Pham, Manning 2015. Effective Approaches to Attention-based Neural Machine Translation. EMNLP"
LUONG_URL = "https://arxiv.org/abs/1508.04025"


class LocationAttention(ScoreAttention):
    r"""Luong's *location* score (Luong, Pham, Manning 2015, EMNLP, arXiv:1508.04025, Eq. (9)):

    .. math::
        a_t = \mathrm{softmax}(W_a h_t),\qquad c_t = \sum_s a_t(s)\,\bar h_s

    ``W_a`` is ``nn.Linear(Dq, max_len)`` (no bias in the paper): row ``s``
    scores source position ``s`` from the query ``h_t`` alone. The softmax runs
    over the first ``Tk`` positions only (the rest are masked out), and a
    boolean ``mask`` removes more (masked positions get weight exactly 0, so a
    causal mask makes it causal-safe).

    Shapes: query ``[B, Tq, Dq]``, key ``[B, Tk, Dk]`` (only ``Tk`` is used),
    value ``[B, Tk, Dv]`` (default: key), mask bool ``[B, Tk]`` or
    ``[B, Tq, Tk]`` -> context ``[B, Tq, Dv]``, weights ``[B, Tq, Tk]``.

    :param max_len: the most key positions scored (rows of ``W_a``); a longer
        key raises ValueError.
    :param bias: add a per-position bias to ``W_a h_t`` (not in Eq. (9); off by default).
    :param need_weights: return weights by default (takes the reference path).
    """

    def __init__(
        self,
        query_dim: int,
        key_dim: int | None = None,
        value_dim: int | None = None,
        *,
        max_len: int = 256,
        bias: bool = False,
        need_weights: bool = False,
    ) -> None:
        super().__init__(query_dim, key_dim, value_dim, need_weights=need_weights)
        if not isinstance(max_len, int) or isinstance(max_len, bool) or max_len <= 0:
            raise ValueError(f"max_len: expected a positive int, got {max_len!r}")
        if not isinstance(bias, bool):
            raise ValueError(f"bias: expected a bool, got {bias!r}")
        self.max_len = max_len
        self.W_a = nn.Linear(self.query_dim, max_len, bias=bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, max_len={self.max_len}, bias={self.W_a.bias is not None}"

    def _check_len(self, tk: int) -> None:
        if tk > self.max_len:
            raise ValueError(
                f"key: LocationAttention scores at most max_len={self.max_len} key positions, "
                f"got Tk={tk}; build it with max_len >= {tk}"
            )

    def score(self, query: Tensor, key: Tensor) -> Tensor:
        """``(W_a h_t)[:Tk]`` ``[B, Tq, Tk]``: scores from the query alone (Eq. (9))."""
        tk = key.shape[1]
        self._check_len(tk)
        bias = None if self.W_a.bias is None else self.W_a.bias[:tk]
        return F.linear(query, self.W_a.weight[:tk], bias)  # (B, Tq, Tk)

    def attend(self, query, key, value, mask, *, state=None, need_weights=True) -> AttentionOutput:
        b = query.shape[0]
        tk = key.shape[1]
        self._check_len(tk)
        if need_weights:
            weights = masked_softmax(self.score(query, key), mask)  # (B, Tq, Tk)
            return AttentionOutput(torch.bmm(weights, value), weights)
        pos = self.W_a.weight[:tk]  # (Tk, Dq)  one "key" per source position
        q = query
        if self.W_a.bias is not None:
            q = torch.cat([query, query.new_ones(*query.shape[:-1], 1)], dim=-1)  # (B, Tq, Dq+1)
            pos = torch.cat([pos, self.W_a.bias[:tk, None]], dim=-1)  # (Tk, Dq+1)
        pos = pos.to(q.dtype)[None].expand(b, tk, pos.shape[-1])  # (B, Tk, Dq[+1])
        return AttentionOutput(sdpa(q, pos, value, mask, scale=1.0))


SPECS: dict[str, tuple[AttentionSpec, Any]] = {
    "location": (
        AttentionSpec(
            name="location",
            family="location",
            summary="Luong location score softmax(W_a q) over key positions (ignores key content)",
            paper=f"{LUONG}, Eq. (9) 'location'",
            url=LUONG_URL,
            fused=True,
            complexity="O(Tq*Tk), Tk <= max_len",
            defaults={},
            notes="scores depend on the query and the key position only; Tk is limited to max_len",
        ),
        LocationAttention,
    ),
}


@hookimpl
def register_attention(register):
    for spec, factory in SPECS.values():
        register(spec, factory)
