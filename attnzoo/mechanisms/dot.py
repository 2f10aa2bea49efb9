"""Multiplicative scores: Luong's ``dot`` and ``general``, Vaswani's ``scaled-dot``.

- Luong, Pham, Manning (2015). *Effective Approaches to Attention-based Neural
  Machine Translation.* EMNLP. arXiv:1508.04025, Eq. (7)-(8).
- Vaswani et al. (2017). *Attention Is All You Need.* NeurIPS.
  arXiv:1706.03762, Eq. (1).

All three fold into one ``q' . k * s`` product, so when weights are not asked
for they run through ``F.scaled_dot_product_attention`` (the fused path), and
through a plain softmax(QK^T)V reference path otherwise.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from attnzoo.contract import AttentionOutput, ScoreAttention, default_scale, masked_softmax, sdpa
from attnzoo.hookspecs import hookimpl
from attnzoo.spec import AttentionSpec

__all__ = ["DotAttention", "ScaledDotAttention", "GeneralAttention"]

LUONG = "Luong, Pham, Manning 2015. Effective Approaches to Attention-based Neural Machine Translation. EMNLP"
LUONG_URL = "https://arxiv.org/abs/1508.04025"


class _Multiplicative(ScoreAttention):
    """score(q, k) = s * (project(q) . k); a fused SDPA path when weights are not needed."""

    scale: float

    def project_query(self, query: Tensor) -> Tensor:
        return query

    def score(self, query: Tensor, key: Tensor) -> Tensor:
        q = self.project_query(query)  # (B, Tq, Dk)
        return torch.bmm(q, key.transpose(1, 2)) * self.scale  # (B, Tq, Tk)

    def attend(self, query, key, value, mask, *, state=None, need_weights=True) -> AttentionOutput:
        if need_weights:
            weights = masked_softmax(self.score(query, key), mask)  # (B, Tq, Tk)
            return AttentionOutput(torch.bmm(weights, value), weights)
        return AttentionOutput(sdpa(self.project_query(query), key, value, mask, scale=self.scale))


class DotAttention(_Multiplicative):
    r"""Luong's *dot* score (Luong et al. 2015, Eq. 8):

    .. math:: \mathrm{score}(h_t, \bar h_s) = h_t^\top \bar h_s,\quad
              a_t = \mathrm{softmax}(\mathrm{score}),\quad c_t = \sum_s a_t(s)\,\bar h_s

    No parameters. Requires ``query_dim == key_dim``.

    Shapes: query ``[B, Tq, D]``, key ``[B, Tk, D]``, value ``[B, Tk, Dv]`` ->
    context ``[B, Tq, Dv]``, weights ``[B, Tq, Tk]``.

    :param need_weights: return weights by default (takes the reference path).
    """

    def __init__(self, query_dim: int, key_dim: int | None = None, value_dim: int | None = None, *, need_weights: bool = False) -> None:
        super().__init__(query_dim, key_dim, value_dim, need_weights=need_weights)
        if self.query_dim != self.key_dim:
            raise ValueError(
                f"key_dim: {type(self).__name__} scores q . k, so key_dim must equal query_dim "
                f"({self.query_dim}), got {self.key_dim}; use 'general' for different sizes"
            )
        self.scale = 1.0


class ScaledDotAttention(DotAttention):
    r"""Scaled dot-product attention (Vaswani et al. 2017, Eq. 1):

    .. math:: \mathrm{Attention}(Q, K, V) = \mathrm{softmax}\!\left(\frac{QK^\top}{\sqrt{d_k}}\right) V

    Shapes as :class:`DotAttention`. Without ``need_weights`` this is one call
    to ``F.scaled_dot_product_attention``.

    :param scale: the factor on ``q . k``; default ``1 / sqrt(key_dim)``.
    """

    def __init__(
        self,
        query_dim: int,
        key_dim: int | None = None,
        value_dim: int | None = None,
        *,
        scale: float | None = None,
        need_weights: bool = False,
    ) -> None:
        super().__init__(query_dim, key_dim, value_dim, need_weights=need_weights)
        self.scale = default_scale(self.key_dim) if scale is None else float(scale)


class GeneralAttention(_Multiplicative):
    r"""Luong's *general* score (Luong et al. 2015, Eq. 8):

    .. math:: \mathrm{score}(h_t, \bar h_s) = h_t^\top W_a \bar h_s

    ``W_a`` is ``[Dq, Dk]`` (stored as ``W_a.weight`` ``[Dk, Dq]``, an
    ``nn.Linear`` without bias), so query and key sizes may differ. The fused
    path folds ``W_a`` into the query: ``(h_t^T W_a) . h_s``.

    Shapes: query ``[B, Tq, Dq]``, key ``[B, Tk, Dk]``, value ``[B, Tk, Dv]``.
    """

    def __init__(self, query_dim: int, key_dim: int | None = None, value_dim: int | None = None, *, need_weights: bool = False) -> None:
        super().__init__(query_dim, key_dim, value_dim, need_weights=need_weights)
        self.W_a = nn.Linear(self.query_dim, self.key_dim, bias=False)
        self.scale = 1.0

    def project_query(self, query: Tensor) -> Tensor:
        return self.W_a(query)  # (B, Tq, Dk) = h_t^T W_a


SPECS: dict[str, tuple[AttentionSpec, Any]] = {
    "dot": (
        AttentionSpec(
            name="dot",
            family="multiplicative",
            summary="Luong dot score q^T k, softmax over keys",
            paper=f"{LUONG}, Eq. (8) 'dot'",
            url=LUONG_URL,
            fused=True,
        ),
        DotAttention,
    ),
    "scaled-dot": (
        AttentionSpec(
            name="scaled-dot",
            family="multiplicative",
            summary="Transformer scaled dot product softmax(QK^T/sqrt(d))V",
            paper="Vaswani et al. 2017. Attention Is All You Need. NeurIPS, Eq. (1)",
            url="https://arxiv.org/abs/1706.03762",
            fused=True,
        ),
        ScaledDotAttention,
    ),
    "general": (
        AttentionSpec(
            name="general",
            family="multiplicative",
            summary="Luong general score q^T W_a k (bilinear)",
            paper=f"{LUONG}, Eq. (8) 'general'",
            url=LUONG_URL,
            fused=True,
        ),
        GeneralAttention,
    ),
}


@hookimpl
def register_attention(register):
    for spec, factory in SPECS.values():
        register(spec, factory)
