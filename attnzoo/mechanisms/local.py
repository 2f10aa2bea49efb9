"""Local attention: a window of 2D+1 keys around an aligned position p_t.

- Luong, Pham, Manning (2015). *Effective Approaches to Attention-based Neural
  Machine Translation.* EMNLP. arXiv:1508.04025, Sec. 3.2, Eq. (9)-(10).

Only the keys inside the window are gathered and scored (index arithmetic), so
time and memory are O(Tq * window), not O(Tq * Tk). The dense ``[B, Tq, Tk]``
weights are scattered out only when they are asked for.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from attnzoo.contract import Attention, AttentionOutput, masked_softmax
from attnzoo.hookspecs import hookimpl
from attnzoo.mechanisms.scoring import build_score
from attnzoo.spec import AttentionSpec

__all__ = ["LocalAttention", "LocalMonotonicAttention", "LocalPredictiveAttention"]

LUONG = "Luong, Pham, Manning 2015. Effective Approaches to Attention-based Neural Machine Translation. EMNLP"
LUONG_URL = "https://arxiv.org/abs/1508.04025"


def _per_row(x: int | Tensor, b: int, tq: int, device: torch.device, dtype: torch.dtype, name: str) -> Tensor:
    """An int, a ``[B]`` or a ``[B, Tq]`` tensor as a ``[B, Tq]`` tensor."""
    t = torch.as_tensor(x, device=device, dtype=dtype)
    if t.dim() == 0:
        return t.expand(b, tq)
    if t.dim() == 1 and t.shape[0] == b:
        return t[:, None].expand(b, tq)
    if t.dim() == 2 and tuple(t.shape) == (b, tq):
        return t
    raise ValueError(f"state: {name} must be an int, a tensor [B] = [{b}] or [B, Tq] = [{b}, {tq}], got {tuple(t.shape)}")


class LocalAttention(Attention):
    r"""Base of Luong's local attention (Sec. 3.2): attend to ``[p_t - D, p_t + D]`` only.

    Subclasses give the aligned position ``p_t`` (:meth:`positions`, a float
    ``[B, Tq]``) and whether a Gaussian centred at ``p_t`` shapes the weights.
    Key positions are 0-based. The window holds the integer positions ``s``
    with ``|s - p_t| <= D`` (2D+1 of them when ``p_t`` is an integer, 2D
    otherwise); positions outside ``[0, Tk)`` or masked count as masked, and a
    query with no allowed key in its window gets a zero context and zero weights.

    Within the window, ``a_t(s) = softmax_s(score(h_t, h_s))`` (Eq. 7) with a
    base score from the registry; the base score must depend on (q_t, k_s)
    pairs only, since it is called on the gathered window keys.

    :param window: D, the half width (>= 0).
    :param score: a registered base score variant (anything with a
        ``.score(q, k)`` method) by name or as a factory: "general" (default, as in Luong), "dot", "scaled-dot", ...
    :param score_kwargs: options for the base score variant.
    :param need_weights: return the dense ``[B, Tq, Tk]`` weights by default.
    """

    def __init__(
        self,
        query_dim: int,
        key_dim: int | None = None,
        value_dim: int | None = None,
        *,
        window: int = 4,
        score: str | Callable[..., Any] = "general",
        score_kwargs: dict[str, Any] | None = None,
        need_weights: bool = False,
    ) -> None:
        super().__init__(query_dim, key_dim, value_dim, need_weights=need_weights)
        if not isinstance(window, int) or isinstance(window, bool) or window < 0:
            raise ValueError(f"window: expected an int D >= 0 (the window is [p_t - D, p_t + D]), got {window!r}")
        self.window = window
        self.score_name = score
        self.base = build_score(type(self).__name__, score, self.query_dim, self.key_dim, self.value_dim, score_kwargs)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, window={self.window}, score={self.score_name!r}"

    def positions(self, query: Tensor, tk: int, mask: Tensor | None, state: Any) -> tuple[Tensor, Any]:
        """Aligned positions ``p_t`` as a float ``[B, Tq]`` tensor, and the state to return."""
        raise NotImplementedError(f"{type(self).__name__} must implement positions()")

    def window_logits(self, scores: Tensor, offsets: Tensor) -> Tensor:
        """Hook for subclasses: adjust the window scores ``[B, Tq, W]`` given ``s - p_t`` ``[B, Tq, W]``."""
        return scores

    def window_weights(self, probs: Tensor, offsets: Tensor) -> Tensor:
        """Hook for subclasses: adjust the window softmax ``[B, Tq, W]`` given ``s - p_t``."""
        return probs

    def attend(self, query, key, value, mask, *, state=None, need_weights=True) -> AttentionOutput:
        b, tq, _ = query.shape
        tk = key.shape[1]
        d = self.window
        w = 2 * d + 1
        p, next_state = self.positions(query, tk, mask, state)  # (B, Tq) float
        start = torch.ceil(p - d).long()  # (B, Tq)
        pos = start[..., None] + torch.arange(w, device=query.device)  # (B, Tq, W)
        offsets = pos.to(p.dtype) - p[..., None]  # (B, Tq, W) = s - p_t
        allowed = (pos >= 0) & (pos < tk) & (offsets.abs() <= d)  # (B, Tq, W)
        idx = pos.clamp(0, tk - 1)  # (B, Tq, W), out-of-range entries are masked below
        flat = idx + torch.arange(b, device=idx.device)[:, None, None] * tk  # (B, Tq, W) rows of [B*Tk, .]
        if mask is not None:
            # A [B, Tk] key mask arrives as a stride-0 view [B, Tq, Tk]: index its one row.
            allowed = allowed & (mask[:, 0].reshape(-1)[flat] if mask.stride(1) == 0 else mask.gather(2, idx))
        flat = flat.view(b * tq, w)
        k_win = key.reshape(b * tk, -1)[flat]  # (B*Tq, W, Dk)
        v_win = value.reshape(b * tk, -1)[flat]  # (B*Tq, W, Dv)
        scores = self.base.score(query.reshape(b * tq, 1, -1), k_win).view(b, tq, w)  # (B, Tq, W)
        probs = masked_softmax(self.window_logits(scores, offsets), allowed)  # (B, Tq, W)
        a = self.window_weights(probs, offsets)  # (B, Tq, W)
        context = torch.bmm(a.view(b * tq, 1, w), v_win).view(b, tq, -1)  # (B, Tq, Dv)
        weights = None
        if need_weights:
            weights = a.new_zeros(b, tq, tk).scatter_add(2, idx, a)  # (B, Tq, Tk)
        return AttentionOutput(context, weights, next_state)


class LocalMonotonicAttention(LocalAttention):
    r"""Luong's *local-m* (monotonic alignment), Sec. 3.2.

    .. math:: p_t = t,\quad a_t(s) = \mathrm{softmax}_{s \in [p_t - D, p_t + D]}\big(\mathrm{score}(h_t, \bar h_s)\big),
              \quad c_t = \sum_s a_t(s)\, \bar h_s

    When Tq != Tk the target step is scaled to the source:
    ``p_t = round(t * (Tk - 1) / (Tq - 1))`` (``p_0 = 0`` when Tq = 1), so the
    first and last queries align with the first and last keys.

    ``state`` (optional) is the target step of the first query, an int or a
    long ``[B]`` tensor, for decoding one step at a time: then
    ``p_t = state + t`` with no scaling, and the returned state is
    ``state + Tq`` as a long ``[B]`` tensor (feed it to the next call). Without it the returned state is None.

    Shapes: query ``[B, Tq, Dq]``, key ``[B, Tk, Dk]``, value ``[B, Tk, Dv]`` ->
    context ``[B, Tq, Dv]``, weights ``[B, Tq, Tk]`` (zero outside the window).
    Cost O(Tq * (2D+1)) time and memory.

    :param window: D (default 4); the window has 2D+1 keys.
    :param score: base score name ("general" default, "dot", "scaled-dot", ...).
    :param score_kwargs: options for the base score.
    """

    def positions(self, query, tk, mask, state):
        b, tq, _ = query.shape
        t = torch.arange(tq, device=query.device)
        if state is not None:
            step = _per_row(state, b, tq, query.device, torch.long, "the first query's target step")
            return (step + t).to(query.dtype), step[:, 0] + tq
        if tq != tk:
            t = torch.round(t * ((tk - 1) / (tq - 1))) if tq > 1 else torch.zeros_like(t)
        return t.to(query.dtype).expand(b, tq), None


class LocalPredictiveAttention(LocalAttention):
    r"""Luong's *local-p* (predictive alignment), Sec. 3.2, Eq. (9)-(10).

    .. math:: p_t = S \cdot \mathrm{sigmoid}\big(v_p^\top \tanh(W_p h_t)\big) \quad (9)

    .. math:: a_t(s) = \mathrm{align}(h_t, \bar h_s)\,\exp\!\Big(-\frac{(s - p_t)^2}{2\sigma^2}\Big),
              \quad \sigma = D/2 \quad (10)

    where ``align`` is the softmax of the base score over the window
    ``[p_t - D, p_t + D]``. S is the source length: ``Tk``, or per query row
    ``1 + the index of the last allowed key`` when a mask is given (the true
    length under right padding; ``t + 1`` under a causal mask), or ``state``
    (an int or a ``[B]`` / ``[B, Tq]`` tensor of lengths) when given; state
    is returned unchanged. Positions are 0-based.

    Luong multiplies the already *normalised* softmax by the Gaussian, so the
    paper's weights sum to less than 1. The zoo's contract asks weights to sum
    to 1 over allowed keys, so by default (``renormalize=True``) the Gaussian
    is applied before normalising: ``a_t = softmax_s(score - (s - p_t)^2 /
    (2 sigma^2))``, i.e. Eq. (10) divided by its sum. ``renormalize=False``
    gives Eq. (10) exactly.

    Shapes: query ``[B, Tq, Dq]``, key ``[B, Tk, Dk]``, value ``[B, Tk, Dv]`` ->
    context ``[B, Tq, Dv]``, weights ``[B, Tq, Tk]`` (zero outside the window).
    Cost O(Tq * (2D+1)) time and memory.

    :param window: D (default 4, >= 1 since sigma = D/2).
    :param score: base score name ("general" default, "dot", "scaled-dot", ...).
    :param score_kwargs: options for the base score.
    :param position_dim: rows of W_p (default ``query_dim``).
    :param renormalize: divide Eq. (10) by its sum (default True, see above).
    """

    def __init__(
        self,
        query_dim: int,
        key_dim: int | None = None,
        value_dim: int | None = None,
        *,
        window: int = 4,
        score: str = "general",
        score_kwargs: dict[str, Any] | None = None,
        position_dim: int | None = None,
        renormalize: bool = True,
        need_weights: bool = False,
    ) -> None:
        super().__init__(
            query_dim, key_dim, value_dim, window=window, score=score, score_kwargs=score_kwargs, need_weights=need_weights
        )
        if window < 1:
            raise ValueError(f"window: local-p needs D >= 1 (sigma = D/2 must be positive), got {window!r}")
        self.position_dim = position_dim or self.query_dim
        self.W_p = nn.Linear(self.query_dim, self.position_dim, bias=False)
        self.v_p = nn.Linear(self.position_dim, 1, bias=False)
        self.sigma = window / 2
        self.renormalize = renormalize

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, renormalize={self.renormalize}"

    def source_length(self, query: Tensor, tk: int, mask: Tensor | None, state: Any) -> Tensor:
        """S per query row, ``[B, Tq]`` (see the class docstring)."""
        b, tq, _ = query.shape
        if state is not None:
            return _per_row(state, b, tq, query.device, query.dtype, "the source length S")
        if mask is None:
            return query.new_full((b, tq), float(tk))
        rows = mask[:, :1] if mask.stride(1) == 0 else mask  # (B, 1 or Tq, Tk)
        last = (rows * torch.arange(1, tk + 1, device=mask.device)).amax(dim=-1)  # (B, 1 or Tq), 0 if none allowed
        return last.to(query.dtype).expand(b, tq)

    def positions(self, query, tk, mask, state):
        s = self.source_length(query, tk, mask, state)  # (B, Tq)
        return s * torch.sigmoid(self.v_p(torch.tanh(self.W_p(query)))).squeeze(-1), state  # (B, Tq), Eq. (9)

    def _log_gaussian(self, offsets: Tensor) -> Tensor:
        return -offsets.square() / (2 * self.sigma**2)

    def window_logits(self, scores, offsets):
        return scores + self._log_gaussian(offsets) if self.renormalize else scores

    def window_weights(self, probs, offsets):
        return probs if self.renormalize else probs * torch.exp(self._log_gaussian(offsets))  # Eq. (10)


_COMMON = dict(family="local", paper=f"{LUONG}, Sec. 3.2", url=LUONG_URL, complexity="O(Tq*window)")

SPECS: dict[str, tuple[AttentionSpec, Any]] = {
    "local-m": (
        AttentionSpec(
            name="local-m",
            summary="Luong local-m: softmax over the 2D+1 keys around p_t = t",
            **_COMMON,
        ),
        LocalMonotonicAttention,
    ),
    "local-p": (
        AttentionSpec(
            name="local-p",
            summary="Luong local-p: window around a predicted p_t = S sigmoid(v^T tanh(W h_t)), Gaussian-weighted",
            **_COMMON,
        ),
        LocalPredictiveAttention,
    ),
}


@hookimpl
def register_attention(register):
    for spec, factory in SPECS.values():
        register(spec, factory)
