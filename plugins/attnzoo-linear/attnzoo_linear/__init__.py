"""Linear attention as an attnzoo plugin.

Katharopoulos, Vyas, Pappas, Fleuret (2020). *Transformers are RNNs: Fast
Autoregressive Transformers with Linear Attention.* ICML. arXiv:2006.16236.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

import attnzoo
from attnzoo import AttentionOutput, AttentionSpec

__all__ = ["LinearAttention"]


def elu_feature_map(x: Tensor) -> Tensor:
    """phi(x) = elu(x) + 1 (Katharopoulos et al. 2020, Eq. 7): positive, so weights are >= 0."""
    return F.elu(x) + 1.0


class LinearAttention(attnzoo.Attention):
    r"""Linear attention (Katharopoulos et al. 2020, Eq. 4-6):

    .. math:: V'_i = \frac{\phi(Q_i)^\top \sum_j \phi(K_j) V_j^\top}{\phi(Q_i)^\top \sum_j \phi(K_j)}

    i.e. weights ``w_ij = phi(q_i).phi(k_j) / sum_j phi(q_i).phi(k_j)`` with
    ``phi = elu + 1``. Without a mask the sums over keys are formed once, so time
    and memory are O((Tq + Tk) * D * Dv) instead of O(Tq * Tk). An arbitrary mask
    (a causal one included) takes the dense O(Tq * Tk) form of the same equation.

    Shapes: query ``[B, Tq, D]``, key ``[B, Tk, D]``, value ``[B, Tk, Dv]`` ->
    context ``[B, Tq, Dv]``, weights ``[B, Tq, Tk]`` (dense form, when asked for).

    :param eps: added to the normaliser, as in the paper's reference code.
    """

    def __init__(self, query_dim: int, key_dim: int | None = None, value_dim: int | None = None, *,
                 eps: float = 1e-6, need_weights: bool = False) -> None:
        super().__init__(query_dim, key_dim, value_dim, need_weights=need_weights)
        if self.key_dim != self.query_dim:
            raise ValueError(f"key_dim: linear attention needs key_dim == query_dim ({self.query_dim}), got {self.key_dim}")
        self.eps = eps

    def attend(self, query, key, value, mask, *, state=None, need_weights=True) -> AttentionOutput:
        q, k = elu_feature_map(query), elu_feature_map(key)  # (B, Tq, D), (B, Tk, D)
        if mask is None and not need_weights:
            kv = torch.einsum("bkd,bkv->bdv", k, value)  # (B, D, Dv): sum_j phi(k_j) v_j^T
            z = k.sum(dim=1)  # (B, D): sum_j phi(k_j)
            num = torch.einsum("bqd,bdv->bqv", q, kv)
            den = torch.einsum("bqd,bd->bq", q, z).unsqueeze(-1) + self.eps
            return AttentionOutput(num / den)
        sim = torch.bmm(q, k.transpose(1, 2))  # (B, Tq, Tk), >= 0
        if mask is not None:
            sim = sim * mask
        den = sim.sum(dim=-1, keepdim=True)
        # A fully masked row has den == 0: dividing by den + eps leaves exact zeros.
        weights = sim / (den + self.eps)
        return AttentionOutput(torch.bmm(weights, value), weights)


SPEC = AttentionSpec(
    name="linear",
    family="efficient",
    summary="linear attention phi(q).phi(k) with phi = elu + 1, O(T) without a mask",
    paper="Katharopoulos, Vyas, Pappas, Fleuret 2020. Transformers are RNNs. ICML, Eq. (4)-(7)",
    url="https://arxiv.org/abs/2006.16236",
    complexity="O(Tq*D*Dv) unmasked, O(Tq*Tk) masked",
    notes="masked (and causal) calls take the dense form; a causal prefix-sum path is future work",
)


@attnzoo.hookimpl
def register_attention(register):
    register(SPEC, LinearAttention)
