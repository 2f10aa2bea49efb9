"""Content-based addressing: the Neural Turing Machine's cosine-similarity read weights.

- Graves, Wayne, Danihelka (2014). *Neural Turing Machines.* arXiv:1410.5401,
  Sec. 3.3.1, Eq. (5)-(6).

Each key row is a memory location ``M(i)`` and each query row is a head's key
vector ``k``. The weight on location ``i`` is a softmax of the key strength
``beta`` times the cosine similarity ``K[k, M(i)]``. Because
``beta * cos(k, M(i)) = (beta * k/|k|) . (M(i)/|M(i)|)``, normalising both
sides and folding ``beta`` into the query turns the whole thing into one
``F.scaled_dot_product_attention`` call with ``scale=1`` (the fused path); the
reference path computes Eq. (5)-(6) term by term and returns the weights.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnzoo.contract import AttentionOutput, ScoreAttention, masked_softmax, sdpa
from attnzoo.hookspecs import hookimpl
from attnzoo.spec import AttentionSpec

__all__ = ["ContentAttention", "cosine_similarity", "scaled_unit"]

NTM = "Graves, Wayne, Danihelka 2014. Neural Turing Machines. arXiv:1410.5401"
NTM_URL = "https://arxiv.org/abs/1410.5401"

_BETA_MODES = ("learned", "query")


def _norm_floor(eps: float, x: Tensor) -> float:
    """The lower bound on ``|x|``: eps, at least ``x``'s dtype's smallest normal."""
    return max(eps, torch.finfo(x.dtype).tiny)


def _safe_norm(x: Tensor, eps: float) -> Tensor:
    """``max(|x|, eps)`` over the last dim, keepdim (eps floored by :func:`_norm_floor`)."""
    return torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min(_norm_floor(eps, x))


def cosine_similarity(u: Tensor, v: Tensor, eps: float = 1e-8) -> Tensor:
    r"""NTM Eq. (6), all pairs: ``K[u_i, v_j] = u_i . v_j / (|u_i| |v_j|)``.

    Norms are clamped below by ``eps``, so a zero vector has similarity 0 with
    everything instead of NaN.

    :param u: ``[B, Tq, D]``; v ``[B, Tk, D]``.
    :returns: ``[B, Tq, Tk]`` in ``[-1, 1]``.
    """
    dots = torch.bmm(u, v.transpose(1, 2))  # (B, Tq, Tk)  u . v
    return dots / (_safe_norm(u, eps) * _safe_norm(v, eps).transpose(1, 2))  # / (|u| |v|)


class _ScaledUnit(torch.autograd.Function):
    r"""``y = x * s / max(|x|, eps)`` over the last dim, with a hand-written backward.

    The fused path's ``beta_t * k_t / |k_t|`` and ``M(i) / |M(i)|`` (NTM Eq. (6) split across the two
    sides of one SDPA call). Written out, autograd runs a norm, a clamp, a divide and a multiply, each
    with its own backward node and full-size temporaries; here the forward is one norm and one multiply
    and the backward two full-size passes (``x`` ``[..., D]``, ``s`` ``[..., 1]`` or a scalar):

    .. math::
        \frac{\partial L}{\partial x} = r\,g - x\,\frac{r \langle g, x\rangle}{|x|^2}\;[|x| > \epsilon],\qquad
        \frac{\partial L}{\partial s} = \frac{\langle g, x\rangle}{\max(|x|, \epsilon)},\qquad
        r = \frac{s}{\max(|x|, \epsilon)}

    (below ``eps`` the norm is the constant ``eps``, so only ``r g`` is left; a zero row maps to zero
    with a finite gradient).
    """

    # torch.func (the grouped executor's vmap) needs forward without ctx, setup_context and a vmap rule;
    # the norm and the factor leave forward as outputs so setup_context can save them.
    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, s: Tensor | None, eps: float) -> tuple[Tensor, Tensor, Tensor]:  # type: ignore[override]
        n = torch.linalg.vector_norm(x, dim=-1, keepdim=True)  # (..., 1)  |x|
        r = n.clamp_min(eps).reciprocal() if s is None else s / n.clamp_min(eps)  # (..., 1)  s / max(|x|, eps)
        return x * r, n, r  # (..., D), (..., 1), (..., 1)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        x, s, eps = inputs
        _, n, r = output
        ctx.mark_non_differentiable(n, r)
        ctx.save_for_backward(x, n, r)
        ctx.eps = eps
        ctx.s_shape = None if s is None else s.shape

    @staticmethod
    def backward(ctx, g: Tensor, _gn: Tensor, _gr: Tensor):  # type: ignore[override]
        x, n, r = ctx.saved_tensors
        nc = n.clamp_min(ctx.eps)  # (..., 1)
        dot = torch.linalg.vecdot(g, x).unsqueeze(-1)  # (..., 1)  <g, x>
        dx = ds = None
        if ctx.needs_input_grad[0]:
            c = torch.where(n > ctx.eps, r * dot / (nc * nc), 0.0)  # (..., 1)  the norm's share
            dx = torch.addcmul(g * r, x, c, value=-1)  # (..., D)
        if ctx.s_shape is not None and ctx.needs_input_grad[1]:
            ds = (dot / nc).sum_to_size(ctx.s_shape)
        return dx, ds, None


def scaled_unit(x: Tensor, s: Tensor | None = None, eps: float = 1e-8) -> Tensor:
    """``x * s / max(|x|, eps)`` over the last dim (``s`` None: 1): ``x`` ``[..., D]``, ``s`` ``[..., 1]``
    or a scalar tensor -> ``[..., D]``; eps floored as in :func:`cosine_similarity` (:func:`_norm_floor`)."""
    return _ScaledUnit.apply(x, s, _norm_floor(eps, x))[0]


class ContentAttention(ScoreAttention):
    r"""NTM content addressing (Graves, Wayne, Danihelka 2014, arXiv:1410.5401, Eq. (5)-(6)):

    .. math::
        w_t(i) = \frac{\exp\big(\beta_t K[k_t, M_t(i)]\big)}{\sum_j \exp\big(\beta_t K[k_t, M_t(j)]\big)},\qquad
        K[u, v] = \frac{u \cdot v}{\lVert u\rVert\,\lVert v\rVert},\qquad \beta_t \ge 0

    The query row plays the head's key vector ``k_t``, each key row a memory
    location ``M_t(i)``; the context is ``sum_i w_t(i) value_i`` (the NTM read,
    Eq. (2), when ``value = key``).

    Shapes: query ``[B, Tq, Dq]``, key ``[B, Tk, Dk]``, value ``[B, Tk, Dv]``,
    mask bool ``[B, Tk]`` or ``[B, Tq, Tk]`` -> context ``[B, Tq, Dv]``,
    weights ``[B, Tq, Tk]`` (when requested; otherwise the fused SDPA path).

    :param beta: the key strength. ``"query"`` (default): emitted per query by
        a linear layer and a softplus, as the NTM heads emit ``beta_t``
        (``beta_proj``, ``nn.Linear(Dq, 1)``); ``"learned"``: one learned scalar
        ``softplus(beta_raw)``; a float ``>= 0``: fixed.
    :param beta_init: the starting strength for ``"learned"``/``"query"`` (the
        bias of ``beta_proj``, or ``beta_raw``, is set so the softplus gives
        it). Default ``sqrt(key_dim)``: cosine scores lie in ``[-1, 1]``, and this
        matches the logit range of scaled dot product on unit-variance features
        (the paper does not say how ``beta`` starts).
    :param key_proj: map the query to a ``Dk``-sized key with ``nn.Linear(Dq, Dk)``
        (``query_proj``), as the NTM heads emit ``k_t`` from the controller.
        None (default): only when ``query_dim != key_dim`` (cosine needs equal sizes).
    :param eps: lower bound on the norms (a zero vector has similarity 0).
    :param need_weights: return weights by default (takes the reference path).
    """

    def __init__(
        self,
        query_dim: int,
        key_dim: int | None = None,
        value_dim: int | None = None,
        *,
        beta: str | float = "query",
        beta_init: float | None = None,
        key_proj: bool | None = None,
        eps: float = 1e-8,
        need_weights: bool = False,
    ) -> None:
        super().__init__(query_dim, key_dim, value_dim, need_weights=need_weights)
        if isinstance(beta, str):
            if beta not in _BETA_MODES:
                raise ValueError(f"beta: expected 'learned', 'query' or a float >= 0, got {beta!r}")
        elif isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta >= 0 or math.isinf(beta):
            raise ValueError(f"beta: expected 'learned', 'query' or a finite float >= 0, got {beta!r}")
        beta_init = math.sqrt(self.key_dim) if beta_init is None else beta_init
        if isinstance(beta_init, bool) or not isinstance(beta_init, (int, float)) or not 0 < beta_init < math.inf:
            raise ValueError(f"beta_init: expected a finite float > 0, got {beta_init!r}")
        if not isinstance(eps, (int, float)) or not eps > 0:
            raise ValueError(f"eps: expected a float > 0, got {eps!r}")
        if key_proj is None:
            key_proj = self.query_dim != self.key_dim
        elif not key_proj and self.query_dim != self.key_dim:
            raise ValueError(
                f"key_proj: cosine similarity needs query_dim == key_dim without a projection, "
                f"got query_dim={self.query_dim}, key_dim={self.key_dim}; pass key_proj=True or None"
            )
        self.beta_mode = beta if isinstance(beta, str) else "fixed"
        self.beta_init = float(beta_init)
        self.eps = float(eps)
        self.query_proj = nn.Linear(self.query_dim, self.key_dim) if key_proj else None
        # inverse softplus: softplus(raw) == beta_init
        raw = self.beta_init + math.log(-math.expm1(-self.beta_init))
        self.beta_raw: nn.Parameter | None = None
        self.beta_proj: nn.Linear | None = None
        self.beta_fixed: float | None = None
        if self.beta_mode == "learned":
            self.beta_raw = nn.Parameter(torch.tensor(raw))
        elif self.beta_mode == "query":
            self.beta_proj = nn.Linear(self.query_dim, 1)
            with torch.no_grad():
                self.beta_proj.bias.fill_(raw)
        else:
            self.beta_fixed = float(beta)

    def extra_repr(self) -> str:
        beta = self.beta_fixed if self.beta_mode == "fixed" else repr(self.beta_mode)
        return f"{super().extra_repr()}, beta={beta}, key_proj={self.query_proj is not None}, eps={self.eps}"

    def head_key(self, query: Tensor) -> Tensor:
        """The key vector ``k_t`` ``[B, Tq, Dk]`` (the query, or its projection)."""
        return query if self.query_proj is None else self.query_proj(query)

    def beta(self, query: Tensor) -> Tensor:
        """The key strength ``beta_t >= 0``: ``[B, Tq, 1]`` (``"query"``) or a scalar tensor."""
        if self.beta_proj is not None:
            return F.softplus(self.beta_proj(query))  # (B, Tq, 1)
        if self.beta_raw is not None:
            return F.softplus(self.beta_raw)  # ()
        return query.new_tensor(self.beta_fixed)  # ()

    def score(self, query: Tensor, key: Tensor) -> Tensor:
        """``beta_t * K[k_t, M(i)]`` ``[B, Tq, Tk]`` (NTM Eq. (5)'s exponent)."""
        return self.beta(query) * cosine_similarity(self.head_key(query), key, self.eps)

    def attend(self, query, key, value, mask, *, state=None, need_weights=True) -> AttentionOutput:
        if need_weights:
            weights = masked_softmax(self.score(query, key), mask)  # (B, Tq, Tk)  Eq. (5)
            return AttentionOutput(torch.bmm(weights, value), weights)
        q_hat = scaled_unit(self.head_key(query), self.beta(query), self.eps)  # (B, Tq, Dk)  beta * k/|k|
        m_hat = scaled_unit(key, None, self.eps)  # (B, Tk, Dk)  M(i)/|M(i)|
        return AttentionOutput(sdpa(q_hat, m_hat, value, mask, scale=1.0))


SPECS: dict[str, tuple[AttentionSpec, Any]] = {
    "content": (
        AttentionSpec(
            name="content",
            family="content",
            summary="NTM content addressing softmax(beta * cosine(q, k)), beta >= 0",
            paper=f"{NTM}, Sec. 3.3.1, Eq. (5)-(6)",
            url=NTM_URL,
            fused=True,
        ),
        ContentAttention,
    ),
}


@hookimpl
def register_attention(register):
    for spec, factory in SPECS.values():
        register(spec, factory)
