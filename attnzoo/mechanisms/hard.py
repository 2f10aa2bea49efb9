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
from torch import Tensor

from attnzoo.contract import Attention, AttentionOutput
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


def _fill_value(dtype: torch.dtype) -> float:
    """Score for masked keys: exp() of it is 0 next to any real score, and it stays finite when the
    backward multiplies it by an entropy gradient (finfo.min would overflow to -inf, and 0 * inf = NaN)."""
    return torch.finfo(dtype).min / 2**30


#: up to this many examples take the expected context by a loop of matmuls on views of alpha (no copy).
_LOOP_MAX = 8


class _Categorical(torch.autograd.Function):
    r"""One categorical distribution per row: ``alpha = softmax(S)``, a draw, ``log alpha_s``, ``H[alpha]``,
    and the expected context ``sum_i alpha_i v_i`` of chosen examples.

    Forward, from scores ``S [N, Tk]`` (``N = B * Tq``; masked keys already at
    :func:`_fill_value`) and one uniform ``u [N]`` per row (None: the argmax instead of a draw):

    - ``alpha = softmax(S)`` (one pass);
    - the draw by inverting the CDF, ``s = min{i : cumsum(alpha)_i > u * sum(alpha)}``
      (one cumsum and a binary search per row; an exact sample of alpha with one
      random number per row instead of Tk Gumbel variates);
    - ``log_prob = log alpha_s`` and ``H = lse - <alpha, S>`` with
      ``lse = S_s - log alpha_s`` (one dot product per row; no log-softmax tensor);
    - for the examples ``sel`` (Xu et al.'s expected context), ``z = alpha V`` per
      example, read straight from alpha's rows (no copy of alpha).

    Backward, in one expression (``c`` a per-row scalar, ``e_s`` the one-hot draw)::

        dS = alpha * (g_alpha + g_z V^T + c - g_H S) + g_lp e_s,
        c  = g_H <alpha, S> - g_lp - <g_alpha, alpha> - <g_z, z>

    which is softmax's backward for ``g_alpha`` and ``g_z V^T``, ``e_s - alpha`` for
    ``log_prob`` and ``-alpha (log alpha + H)`` for the entropy; ``g_z V^T`` is
    accumulated by the matmul into the gradient's own buffer.

    Returns ``alpha [N, Tk]``, ``index [N]`` (not differentiable), ``log_prob [N]``,
    ``entropy [N]`` and ``z [len(sel), Tq, Dv]`` (empty without ``sel``).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, scores: Tensor, u: Tensor | None, value: Tensor | None, sel: list[int] | None
    ):
        alpha = torch.softmax(scores, dim=-1)  # (N, Tk)
        # Fresh [N, Tk] buffers are costly on a CPU (the allocator maps new pages every time), so
        # the CDF's buffer is reused for alpha * S below.
        buf = torch.empty_like(alpha)
        if u is None:
            index = alpha.argmax(dim=-1, keepdim=True)  # (N, 1)
        else:
            cdf = torch.cumsum(alpha, dim=-1, out=buf)  # (N, Tk)
            total = cdf[:, -1:].contiguous()  # (N, 1), 1 up to rounding
            index = torch.searchsorted(cdf, u[:, None] * total, right=True)  # (N, 1)
            # u * total can round up to total: take the last key with mass, never a masked tail.
            index = torch.minimum(index, torch.searchsorted(cdf, total, right=False))
            index.clamp_(max=scores.shape[-1] - 1)  # a NaN row (its CDF is NaN) searches past the end
        picked = alpha.gather(-1, index).squeeze(-1)  # (N,)
        log_prob = picked.log()  # (N,)
        a_dot_s = torch.mul(alpha, scores, out=buf).sum(dim=-1)  # (N,) <alpha, S>; masked: 0 * fill = 0
        entropy = scores.gather(-1, index).squeeze(-1) - log_prob - a_dot_s  # (N,) lse - <alpha, S>
        sel = list(sel or [])
        if sel:
            b, tk, dv = value.shape
            a3 = alpha.view(b, -1, tk)  # (B, Tq, Tk)
            if len(sel) == b:
                z = torch.bmm(a3, value)  # (B, Tq, Dv)
            elif len(sel) <= _LOOP_MAX:
                z = value.new_empty(len(sel), a3.shape[1], dv)
                for i, j in enumerate(sel):
                    torch.mm(a3[j], value[j], out=z[i])  # (Tq, Dv) from a view of alpha, no copy
            else:  # many small examples: one batched matmul on a copy beats a Python loop
                idx = torch.tensor(sel, device=value.device)
                z = torch.bmm(a3.index_select(0, idx), value.index_select(0, idx))  # (n, Tq, Dv)
        else:
            z = alpha.new_empty(0)
            value = alpha.new_empty(0) if value is None else value
        ctx.sel = sel
        ctx.set_materialize_grads(False)  # an unused output's gradient arrives as None, not a zero tensor
        ctx.save_for_backward(alpha, scores, index, a_dot_s, value, z)
        drawn = index.squeeze(-1)  # (N,)
        ctx.mark_non_differentiable(drawn)
        return alpha, drawn, log_prob, entropy, z

    @staticmethod
    def backward(ctx, g_alpha, _g_index, g_lp, g_h, g_z):  # type: ignore[override]
        alpha, scores, index, a_dot_s, value, z = ctx.saved_tensors
        sel = ctx.sel
        n = alpha.shape[0]
        # Outputs the loss did not use come as None (set_materialize_grads(False)): each term is skipped
        # rather than computed from zeros; the REINFORCE surrogate alone (no entropy bonus) never reads S.
        c = alpha.new_zeros(n) if g_lp is None else -g_lp  # (N,)
        if g_h is not None:
            c = c + g_h * a_dot_s
        if g_alpha is not None:
            c = c - torch.linalg.vecdot(g_alpha, alpha)  # - <g_alpha, alpha>
        use_z = bool(sel) and g_z is not None
        if use_z:
            b, tk, _ = value.shape
            gz_z = (g_z * z).sum(dim=-1)  # (len(sel), Tq) <g_z, z>: cheap
            if len(sel) == b:  # no index: a list index is copied to the device, which waits for it
                c = (c.view(b, -1) - gz_z).view(-1)
            else:
                c3 = c.view(b, -1).clone()
                c3[sel] -= gz_z
                c = c3.view(-1)
        if g_h is not None:
            grad = torch.addcmul(c[:, None], scores, g_h[:, None], value=-1)  # (N, Tk): c - g_H S, fresh
            if g_alpha is not None:
                grad.add_(g_alpha)
        elif g_alpha is not None:
            grad = g_alpha + c[:, None]  # (N, Tk), without reading S
        else:
            grad = c[:, None].expand(n, scores.shape[-1]).contiguous()  # (N, Tk), a buffer for g_z V^T
        grad_v = None
        if use_z:
            g3 = grad.view(b, -1, tk)  # (B, Tq, Tk)
            a3 = alpha.view(b, -1, tk)
            if len(sel) == b:
                g3.baddbmm_(g_z, value.transpose(1, 2))  # + g_z V^T, accumulated in place
                grad_v = torch.bmm(a3.transpose(1, 2), g_z)  # (B, Tk, Dv)
            elif len(sel) <= _LOOP_MAX:
                grad_v = torch.zeros_like(value)
                for i, j in enumerate(sel):
                    g3[j].addmm_(g_z[i], value[j].t())
                    torch.mm(a3[j].t(), g_z[i], out=grad_v[j])
            else:
                idx = torch.tensor(sel, device=value.device)
                g3.index_add_(0, idx, torch.bmm(g_z, value.index_select(0, idx).transpose(1, 2)))
                grad_v = torch.zeros_like(value).index_copy_(
                    0, idx, torch.bmm(a3.index_select(0, idx).transpose(1, 2), g_z))
        grad.mul_(alpha)  # alpha * (...)
        if g_lp is not None:
            grad.scatter_add_(-1, index, g_lp[:, None])  # + g_lp e_s
        return grad, None, grad_v, None


class HardAttention(Attention):
    r"""Stochastic "hard" attention of Xu et al. (2015), Sec. 4.1.

    A base score ``e_{t,i} = score(q_t, k_i)`` gives the attention distribution
    ``alpha_t = softmax(e_t)`` over allowed keys. One location is sampled and its
    value is the context (Eq. (8)-(9))::

        p(s_{t,i} = 1 | a) = alpha_{t,i},   s_t ~ Multinoulli(alpha_t),   z_t = sum_i s_{t,i} a_i

    The sample is not differentiable. With ``estimator="reinforce"`` the module
    returns ``aux["log_prob"] = log alpha_{t, s_t}`` and ``aux["entropy"] =
    H[alpha_t]``; the harness adds the REINFORCE term with a moving-average
    baseline and the entropy bonus of Eq. (12). The draw inverts alpha's CDF
    with one uniform per query (an exact sample, one pass over the scores).

    **Xu et al.'s recipe** (Sec. 4.1): in training, with probability
    ``expected_prob`` (default 0.5) per example the sampled location is replaced
    by its expected value, the soft context ``z_t = sum_i alpha_{t,i} a_i``
    (differentiable; gradients reach the score directly). Such an example made
    no random choice, so its ``log_prob`` is 0: the harness's per-example sum of
    ``aux["log_prob"]`` then holds only the sampled choices, and the REINFORCE
    term covers exactly those. "Example" is a row of the batch this module sees:
    under multi-head attention (heads folded into the batch) each head of an
    example tosses its own coin, and each call (a decoder step) tosses anew.
    ``expected_prob=0`` always samples. Eval mode never takes the expected context.

    With ``estimator="gumbel"`` the sample is a straight-through Gumbel-softmax
    (Jang et al. 2017): the forward is the Gumbel-max one-hot sample
    ``argmax(e_t + g)``, the backward that of ``softmax((log alpha + g) /
    temperature)`` with the same noise ``g``, so gradients reach the score's
    parameters directly and only ``aux["entropy"]`` is returned (the expected
    context of ``expected_prob`` applies as well).

    In eval mode (``module.eval()``) the sample is replaced by the argmax of
    ``alpha`` (deterministic). Masked keys are never chosen; a fully masked
    query row gives a zero context, zero weights, ``log_prob`` 0 and entropy 0.
    A NaN score on an allowed key (a NaN in the query, or in a key the row may
    see) gives that row a NaN context, ``log_prob`` and entropy.

    Off the CPU the call reads no value on the host (no device sync): the coin
    tosses stay on the device, every example's expected context is formed and
    each example picks its own; on the CPU, where reading is free, only the
    examples that took it are computed. Both make the same draws from the same
    random numbers and agree to float rounding.

    Shapes: query ``[B, Tq, Dq]``, key ``[B, Tk, Dk]``, value ``[B, Tk, Dv]`` ->
    context ``[B, Tq, Dv]``; weights ``[B, Tq, Tk]`` (the one-hot sample, or alpha
    for an example that took the expected context; only when asked for);
    ``aux["log_prob"]`` ``[B, Tq]`` (reinforce only), ``aux["entropy"]``
    ``[B, Tq]``, ``aux["probs"]`` ``[B, Tq, Tk]`` (alpha).

    :param score: a registered base score variant (anything with a
        ``.score(q, k)`` method) by name or as a factory: "general" (default), "dot", "scaled-dot", "additive", ...
    :param score_kwargs: options for the base score variant.
    :param estimator: "reinforce" (default) or "gumbel".
    :param temperature: Gumbel-softmax temperature (``gumbel`` only), > 0.
    :param expected_prob: probability per example of the expected context in
        training (Xu et al. Sec. 4.1; default 0.5; 0 turns it off), in [0, 1].
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
        expected_prob: float = 0.5,
        need_weights: bool = False,
    ) -> None:
        super().__init__(query_dim, key_dim, value_dim, need_weights=need_weights)
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator: expected one of {', '.join(ESTIMATORS)}, got {estimator!r}")
        if not float(temperature) > 0:
            raise ValueError(f"temperature: expected a positive float, got {temperature!r}")
        if isinstance(expected_prob, bool) or not 0.0 <= float(expected_prob) <= 1.0:
            raise ValueError(
                f"expected_prob: expected a probability in [0, 1] (Xu et al. use 0.5), got {expected_prob!r}"
            )
        self.score_name = score
        self.estimator = estimator
        self.temperature = float(temperature)
        self.expected_prob = float(expected_prob)
        self.base = build_score("HardAttention", score, self.query_dim, self.key_dim, self.value_dim, score_kwargs)

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, score={self.score_name!r}, estimator={self.estimator!r}, "
                f"expected_prob={self.expected_prob:g}")

    def attend(self, query, key, value, mask, *, state=None, need_weights=True) -> AttentionOutput:
        b, tq, _ = query.shape
        tk = key.shape[1]
        scores = self.base.score(query, key)  # (B, Tq, Tk)
        work = scores.float() if scores.dtype in (torch.float16, torch.bfloat16) else scores  # softmax in >= fp32
        work, has_key = _mask_scores(work, mask)
        sampling = self.training
        gumbel = sampling and self.estimator == "gumbel"
        u = torch.rand(b * tq, device=scores.device, dtype=work.dtype) if sampling and not gumbel else None
        take, sel = None, []
        if sampling and self.expected_prob > 0:
            # Xu et al. Sec. 4.1: with probability expected_prob an example takes the expected context.
            take = torch.rand(b, device=scores.device) < self.expected_prob  # (B,)
            # Off the CPU, reading which examples took it would wait for the device: every example's
            # expected context is formed instead, and `take` picks per example below.
            sel = take.nonzero().flatten().tolist() if _host_readable(take) else list(range(b))
        v_work = value if value.dtype == work.dtype else value.to(work.dtype)
        alpha, index, log_prob, entropy, soft_ctx = _Categorical.apply(
            work.reshape(b * tq, tk), u, v_work if sel else None, sel)
        alpha, index = alpha.view(b, tq, tk), index.view(b, tq)
        log_prob, entropy = log_prob.view(b, tq), entropy.view(b, tq)
        noise = None
        if gumbel:
            # Gumbel-max: argmax(e + g) = argmax(log alpha + g) is an exact sample of alpha; the relaxed
            # sample below reuses the same g.
            noise = -torch.empty_like(work).exponential_().log()  # (B, Tq, Tk) g ~ Gumbel(0, 1)
            index = (work.detach() + noise).argmax(dim=-1)  # (B, Tq)
            log_prob = alpha.gather(-1, index[..., None]).squeeze(-1).log()  # (B, Tq), for the NaN check only
        # NaN in, NaN out: a NaN score on an allowed key makes the row's alpha NaN (argmax or the CDF would
        # otherwise pick some key, and its finite value would hide the fault). Off the CPU, torch.where on every
        # call: `if bad.any()` would wait for the device.
        bad = torch.isnan(log_prob)[..., None]  # (B, Tq, 1)
        if scores.dtype != work.dtype:
            alpha, log_prob, entropy = alpha.to(scores.dtype), log_prob.to(scores.dtype), entropy.to(scores.dtype)
        if has_key is not None:
            alpha = alpha * has_key[..., None]  # a fully masked row: zeros, not uniform
            entropy = entropy * has_key
            log_prob = log_prob * has_key

        rows = (index + torch.arange(b, device=index.device)[:, None] * tk).view(-1)  # (B*Tq,) rows of [B*Tk, Dv]
        # index_select of rows: the values gather() would pick, in a fraction of its time (and its backward,
        # index_add, sums each row's gradients in the same order as gather's scatter_add).
        context = value.reshape(b * tk, -1).index_select(0, rows).view(b, tq, -1)  # (B, Tq, Dv) a_{s_t}
        weights = None
        if need_weights:
            weights = alpha.new_zeros(b, tq, tk).scatter_(-1, index[..., None], 1.0)  # (B, Tq, Tk) one-hot
        if gumbel:
            # Straight-through: forward = the one-hot sample, backward = the relaxed sample's.
            soft = torch.softmax((work + noise) / self.temperature, dim=-1).to(value.dtype)  # (B, Tq, Tk)
            st = soft - soft.detach()  # exactly 0 forward
            context = context + torch.bmm(st, value)  # (B, Tq, Dv)
            if weights is not None:
                weights = weights + st
        if sel:
            context, weights = _take_expected(take, sel, soft_ctx.to(value.dtype), alpha, context, weights)
            log_prob = log_prob.masked_fill(take[:, None], 0.0)  # no choice was made: no score-function term
        if has_key is not None:
            context = context * has_key[..., None].to(context.dtype)  # a fully masked row: zero context
            if weights is not None:
                weights = weights * has_key[..., None]
        if not _host_readable(bad) or bool(bad.any()):  # where() with no NaN row changes no number
            context = torch.where(bad, float("nan"), context)
            if weights is not None:
                weights = torch.where(bad, float("nan"), weights)
        aux = {"entropy": entropy, "probs": alpha}
        if self.estimator == "reinforce":
            aux["log_prob"] = log_prob
        return AttentionOutput(context, weights if need_weights else None, state, aux)


def _host_readable(t: Tensor) -> bool:
    """Whether reading ``t``'s values on the host is free: on the CPU it is, on a GPU it waits for the device."""
    return t.device.type == "cpu"


def _mask_scores(work: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """Masked keys' scores set to :func:`_fill_value`, and which rows have a key.

    :returns: the scores ``[B, Tq, Tk]``, and ``[B, Tq]`` or ``[B, 1]`` bool (a key mask stays one row), or
        None where every row has a key: known for free on the CPU only; elsewhere the caller multiplies by
        the flags (by 1 where a row has a key, which changes no number) rather than wait for the device.
    """
    if mask is None:
        return work, None
    rows = mask[:, :1] if mask.stride(1) == 0 else mask  # a key mask stays [B, 1, Tk]
    work = work.masked_fill(~rows, _fill_value(work.dtype))  # (B, Tq, Tk)
    has_key = rows.any(dim=-1)
    if _host_readable(has_key) and bool(has_key.all()):
        return work, None
    return work, has_key


def _take_expected(
    take: Tensor, sel: list[int], soft_ctx: Tensor, alpha: Tensor, context: Tensor, weights: Tensor | None
) -> tuple[Tensor, Tensor | None]:
    """The expected context ``soft_ctx`` ``[len(sel), Tq, Dv]`` (and alpha as the weights) for the examples
    that took it (``take [B]``); ``sel`` lists them, or every example when ``take`` was not read on the host."""
    if not _host_readable(take):  # soft_ctx holds every example: pick per example on the device
        pick = take[:, None, None]  # (B, 1, 1)
        context = torch.where(pick, soft_ctx, context)
        return context, (torch.where(pick, alpha.to(weights.dtype), weights) if weights is not None else None)
    if len(sel) == context.shape[0]:  # every example took it
        return soft_ctx, (alpha.to(weights.dtype) if weights is not None else None)
    idx = torch.tensor(sel, device=context.device)
    context = context.index_copy(0, idx, soft_ctx)
    if weights is not None:
        weights = weights.index_copy(0, idx, alpha.index_select(0, idx).to(weights.dtype))
    return context, weights


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
            "harness's REINFORCE term; estimator='gumbel' is straight-through (no log_prob). Xu et al.'s "
            "recipe is the default: in training, with probability expected_prob=0.5 per example the "
            "expected (soft) context replaces the sample and that example's log_prob is 0; "
            "expected_prob=0 always samples",
        ),
        HardAttention,
    ),
}


@hookimpl
def register_attention(register):
    for spec, factory in SPECS.values():
        register(spec, factory)
