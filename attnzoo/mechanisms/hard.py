"""Stochastic hard attention: attend to one sampled key position.

- Xu, Ba, Kiros, Cho, Courville, Salakhutdinov, Zemel, Bengio (2015).
  *Show, Attend and Tell: Neural Image Caption Generation with Visual
  Attention.* ICML. arXiv:1502.03044, Sec. 4.1, Eq. (8)-(12).
- Jang, Gu, Poole (2017). *Categorical Reparameterization with
  Gumbel-Softmax.* ICLR. arXiv:1611.01144 (the ``gumbel`` estimator).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from attnzoo.contract import Attention, AttentionOutput, masked_log_softmax, masked_softmax
from attnzoo.hookspecs import hookimpl
from attnzoo.mechanisms.scoring import build_score
from attnzoo.spec import AttentionSpec

__all__ = ["HardAttention", "build_score"]  # build_score: re-exported from scoring for old imports

XU = (
    "Xu et al. 2015. Show, Attend and Tell: Neural Image Caption Generation with Visual Attention. "
    "ICML, Sec. 4.1, Eq. (8)-(12)"
)
XU_URL = "https://arxiv.org/abs/1502.03044"

ESTIMATORS = ("reinforce", "gumbel")


class HardAttention(Attention):
    r"""Stochastic "hard" attention of Xu et al. (2015), Sec. 4.1.

    A base score ``e_{t,i} = score(q_t, k_i)`` gives the attention distribution
    ``alpha_t = softmax(e_t)`` over allowed keys. One location is sampled and its
    value is the context (Eq. (8)-(9))::

        p(s_{t,i} = 1 | a) = alpha_{t,i},   s_t ~ Multinoulli(alpha_t),   z_t = sum_i s_{t,i} a_i

    The sample is not differentiable. With ``estimator="reinforce"`` the module
    returns ``aux["log_prob"] = log alpha_{t, s_t}`` and ``aux["entropy"] =
    H[alpha_t]``; the harness adds the REINFORCE term with a moving-average
    baseline and the entropy bonus of Eq. (12). (Xu et al.'s other trick, using
    the expected context with probability 0.5, is not done here.) With
    ``estimator="gumbel"`` the sample is a straight-through Gumbel-softmax
    (Jang et al. 2017): the forward is the same one-hot sample, the backward
    that of ``softmax((log alpha + g) / temperature)``, so gradients reach the
    score's parameters directly and only ``aux["entropy"]`` is returned.

    In eval mode (``module.eval()``) the sample is replaced by the argmax of
    ``alpha`` (deterministic). Masked keys are never chosen; a fully masked
    query row gives a zero context, zero weights, ``log_prob`` 0 and entropy 0.

    Shapes: query ``[B, Tq, Dq]``, key ``[B, Tk, Dk]``, value ``[B, Tk, Dv]`` ->
    context ``[B, Tq, Dv]``; weights ``[B, Tq, Tk]`` (the one-hot sample, only
    when asked for); ``aux["log_prob"]`` ``[B, Tq]`` (reinforce only),
    ``aux["entropy"]`` ``[B, Tq]``, ``aux["probs"]`` ``[B, Tq, Tk]`` (alpha).

    :param score: a registered base score variant (anything with a
        ``.score(q, k)`` method) by name or as a factory: "general" (default), "dot", "scaled-dot", "additive", ...
    :param score_kwargs: options for the base score variant.
    :param estimator: "reinforce" (default) or "gumbel".
    :param temperature: Gumbel-softmax temperature (``gumbel`` only), > 0.
    :param need_weights: return the one-hot weights by default.
    """

    def __init__(
        self,
        query_dim: int,
        key_dim: int | None = None,
        value_dim: int | None = None,
        *,
        score: str | Callable[..., Any] = "general",
        score_kwargs: dict[str, Any] | None = None,
        estimator: str = "reinforce",
        temperature: float = 1.0,
        need_weights: bool = False,
    ) -> None:
        super().__init__(query_dim, key_dim, value_dim, need_weights=need_weights)
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator: expected one of {', '.join(ESTIMATORS)}, got {estimator!r}")
        if not float(temperature) > 0:
            raise ValueError(f"temperature: expected a positive float, got {temperature!r}")
        self.score_name = score
        self.estimator = estimator
        self.temperature = float(temperature)
        self.base = build_score("HardAttention", score, self.query_dim, self.key_dim, self.value_dim, score_kwargs)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, score={self.score_name!r}, estimator={self.estimator!r}"

    def attend(self, query, key, value, mask, *, state=None, need_weights=True) -> AttentionOutput:
        scores = self.base.score(query, key)  # (B, Tq, Tk)
        log_alpha = masked_log_softmax(scores, mask)  # (B, Tq, Tk), masked = finfo.min
        alpha = masked_softmax(scores, mask)  # (B, Tq, Tk), masked = 0
        allowed = torch.ones_like(scores, dtype=torch.bool) if mask is None else mask
        has_key = allowed.any(dim=-1)  # (B, Tq)
        entropy = -(alpha * log_alpha.masked_fill(~allowed, 0.0)).sum(dim=-1)  # (B, Tq)

        if self.training:
            # Gumbel-max: argmax(log alpha + g) is an exact sample of alpha.
            gumbel = -torch.empty_like(log_alpha).exponential_().log()  # (B, Tq, Tk)
            perturbed = log_alpha.detach() + gumbel
            index = perturbed.masked_fill(~allowed, float("-inf")).argmax(dim=-1)  # (B, Tq)
        else:
            index = log_alpha.argmax(dim=-1)  # (B, Tq)
        one_hot = F.one_hot(index, scores.shape[-1]).to(scores.dtype) * has_key[..., None]  # (B, Tq, Tk)

        aux = {"entropy": entropy, "probs": alpha}
        if self.estimator == "gumbel" and self.training:
            # Straight-through: forward = one-hot sample, backward = relaxed sample.
            soft = masked_softmax((log_alpha + gumbel) / self.temperature, allowed)
            weights = one_hot + (soft - soft.detach())  # exactly one_hot forward
            context = torch.bmm(weights, value)  # (B, Tq, Dv)
        else:
            weights = one_hot
            b, tq = index.shape
            picked = index[..., None].expand(b, tq, value.shape[-1])  # (B, Tq, Dv)
            context = value.gather(1, picked) * has_key[..., None].to(value.dtype)  # (B, Tq, Dv)
            if self.estimator == "reinforce":
                log_prob = log_alpha.gather(-1, index[..., None]).squeeze(-1)  # (B, Tq)
                aux["log_prob"] = log_prob.masked_fill(~has_key, 0.0)
        return AttentionOutput(context, weights if need_weights else None, state, aux)


SPECS: dict[str, tuple[AttentionSpec, Any]] = {
    "hard": (
        AttentionSpec(
            name="hard",
            family="stochastic",
            summary="sample one key from softmax(score) (Show, Attend and Tell); REINFORCE or Gumbel-ST",
            paper=XU,
            url=XU_URL,
            differentiable=False,
            aux_keys=("log_prob", "entropy", "probs"),
            notes="the sample is not differentiable: estimator='reinforce' returns log_prob for the "
            "harness's REINFORCE term; estimator='gumbel' is straight-through (no log_prob)",
        ),
        HardAttention,
    ),
}


@hookimpl
def register_attention(register):
    for spec, factory in SPECS.values():
        register(spec, factory)
