"""Local attention: a window of 2D+1 keys around an aligned position p_t.

- Luong, Pham, Manning (2015). *Effective Approaches to Attention-based Neural
  Machine Translation.* EMNLP. arXiv:1508.04025, Sec. 3.2, Eq. (9)-(10).

Only keys near the window are scored, so time and memory are O(Tq * window),
not O(Tq * Tk): by default in blocks of queries against contiguous runs of
keys (dense matmuls), with the key-by-key gathered path kept as the reference
(``impl="gather"``). The dense ``[B, Tq, Tk]`` weights are scattered out only
when they are asked for.
"""

from __future__ import annotations

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

IMPLS = ("auto", "blocked", "gather")


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
    Two paths compute the same thing (to float rounding); ``impl`` picks one:

    - ``impl="gather"``, the reference: gather the 2D+1 window keys of every
      query and score them (index arithmetic; memory-bound);
    - ``impl="blocked"``: group the queries by the key block their ``p_t``
      falls in and score each group against one contiguous run of keys with
      dense matmuls ``[NS, blk, blk + 2D]``, masked to each query's exact
      window (about 1.5x the band's arithmetic, all of it in GEMMs; still
      O(Tq * window) time and memory);
    - ``impl="auto"`` (default): blocked, except for one query per call
      (step-by-step decoding) and for queries whose positions are too far
      apart for blocks to pay (the blocks would score more than
      ``max_span_factor`` times 2D+1 keys per query, e.g. Tq << Tk), which gather.

    A NaN in a query row gives a NaN context (and NaN weights) for that row,
    unless the row is fully masked (zeros, as the contract says).

    :param window: D, the half width (>= 0).
    :param score: a registered base score variant (anything with a
        ``.score(q, k)`` method) by name or as a factory: "general" (default, as in Luong), "dot", "scaled-dot", ...
    :param score_kwargs: options for the base score variant.
    :param need_weights: return the dense ``[B, Tq, Tk]`` weights by default.
    :param impl: "auto" (default), "blocked" or "gather" (see above).
    :param block_size: keys per key block of the blocked path, and query slots
        per sub-block (default ``max(16, D)``; each sub-block scores ``block_size + 2D`` keys).
    :param max_span_factor: ``auto`` gathers when a block's key run would exceed
        this many times the window's 2D+1 keys (default 8: a key scored in a
        block costs about a tenth of a gathered one on a CPU).
    """

    #: positions() returns p_t non-decreasing in t, so the blocked path needs no sort.
    monotone_positions: bool = False

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
        impl: str = "auto",
        block_size: int | None = None,
        max_span_factor: float = 8.0,
    ) -> None:
        super().__init__(query_dim, key_dim, value_dim, need_weights=need_weights)
        if not isinstance(window, int) or isinstance(window, bool) or window < 0:
            raise ValueError(f"window: expected an int D >= 0 (the window is [p_t - D, p_t + D]), got {window!r}")
        if impl not in IMPLS:
            raise ValueError(f"impl: expected one of {', '.join(map(repr, IMPLS))}, got {impl!r}")
        if block_size is not None and (
            not isinstance(block_size, int) or isinstance(block_size, bool) or block_size < 1
        ):
            raise ValueError(f"block_size: expected None or an int >= 1 (queries per block), got {block_size!r}")
        if not float(max_span_factor) >= 1:
            raise ValueError(f"max_span_factor: expected a float >= 1, got {max_span_factor!r}")
        self.window = window
        self.impl = impl
        self.block_size = block_size
        self.max_span_factor = float(max_span_factor)
        self.score_name = score
        self.base = build_score(type(self).__name__, score, self.query_dim, self.key_dim, self.value_dim, score_kwargs)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, window={self.window}, score={self.score_name!r}, impl={self.impl!r}"

    def positions(self, query: Tensor, tk: int, mask: Tensor | None, state: Any) -> tuple[Tensor, Any]:
        """Aligned positions ``p_t`` as a float ``[B, Tq]`` tensor, and the state to return."""
        raise NotImplementedError(f"{type(self).__name__} must implement positions()")

    def window_logits(self, scores: Tensor, offsets: Tensor) -> Tensor:
        """Hook for subclasses: adjust window scores ``[..., W]`` given ``s - p_t`` of the same shape.

        Elementwise: the gathered path passes ``[B, Tq, W]``, the blocked one
        ``[B, nb, blk, Wk]`` (keys outside a query's window are masked after).
        """
        return scores

    def window_weights(self, probs: Tensor, offsets: Tensor) -> Tensor:
        """Hook for subclasses: adjust the window softmax ``[..., W]`` given ``s - p_t`` (elementwise)."""
        return probs

    def attend(self, query, key, value, mask, *, state=None, need_weights=True) -> AttentionOutput:
        tk = key.shape[1]
        p, next_state = self.positions(query, tk, mask, state)  # (B, Tq) float
        finite = torch.isfinite(p)
        all_finite = bool(finite.all())
        # A NaN query may give a NaN p_t: lay the window out at 0 instead, and restore the NaN below.
        p_safe = p if all_finite else torch.where(finite, p, torch.zeros_like(p))
        out = None
        if self._pick_impl(query.shape[1]) == "blocked":
            out = self._attend_blocked(query, key, value, mask, p_safe, need_weights)
        if out is None:
            out = self._attend_gather(query, key, value, mask, p_safe, need_weights)
        context, weights = out
        context, weights = _propagate_nan(query, finite if not all_finite else None, mask, context, weights)
        return AttentionOutput(context, weights, next_state)

    def _pick_impl(self, tq: int) -> str:
        if self.impl != "auto":
            return self.impl
        # One query per call (decoding step by step) has no block to share: gather its window.
        return "blocked" if tq > 1 else "gather"

    def _window_softmax(self, scores: Tensor, offsets: Tensor, allowed: Tensor) -> Tensor:
        """Eq. (7) on a window, with the subclass hooks: ``[..., W]`` scores and ``s - p_t`` -> weights."""
        return self.window_weights(masked_softmax(self.window_logits(scores, offsets), allowed), offsets)

    def _attend_gather(self, query, key, value, mask, p, need_weights) -> tuple[Tensor, Tensor | None]:
        """Reference path: gather the 2D+1 window keys of every query (index arithmetic, memory-bound)."""
        b, tq, _ = query.shape
        tk = key.shape[1]
        d = self.window
        w = 2 * d + 1
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
        a = self._window_softmax(scores, offsets, allowed)  # (B, Tq, W)
        context = torch.bmm(a.view(b * tq, 1, w), v_win).view(b, tq, -1)  # (B, Tq, Dv)
        weights = None
        if need_weights:
            weights = a.new_zeros(b, tq, tk).scatter_add(2, idx, a)  # (B, Tq, Tk)
        return context, weights

    def _attend_blocked(self, query, key, value, mask, p, need_weights) -> tuple[Tensor, Tensor | None] | None:
        """Blocked path: blocks of queries against one contiguous run of keys each, in dense matmuls.

        Keys are cut into ``nkb`` blocks of ``kb``; a query belongs to key block
        ``c = floor(p_t / kb)``, and its window ``[p_t - D, p_t + D]`` lies in
        the run of ``Wk = kb + 2D`` keys from ``c * kb - D``. The queries of a
        key block (taken in order of ``p_t``: sorted first unless the variant's
        positions are monotone) fill sub-blocks of ``blk`` slots, so however
        ``p_t`` is spread, every sub-block scores ``[blk, Wk]`` in one matmul
        and at most one sub-block per key block is part-empty. Scores
        ``[NS, blk, Wk]`` are masked to each query's exact window, so the result
        is the gathered path's up to summation order; time and memory are
        O(Tq * Wk). Under ``impl="auto"`` returns None (use the gathered path)
        when the part-empty sub-blocks would cost more than ``max_span_factor``
        times the window's own arithmetic (queries far apart, e.g. Tq << Tk).
        """
        b, tq, _ = query.shape
        tk = key.shape[1]
        d = self.window
        dev = query.device
        kb = self.block_size or max(16, d)
        blk = kb
        nkb = -(-tk // kb)
        wk = min(kb + 2 * d, tk)
        src = None  # (B, Tq) which query each p-ordered entry is, None when already in order
        if not self.monotone_positions:
            p, src = torch.sort(p, dim=1)
        # -- layout: which slot of which sub-block each query fills (all index arithmetic on [B*Tq])
        group = torch.floor(p / kb).clamp(0, nkb - 1).long() + (torch.arange(b, device=dev) * nkb)[:, None]  # (B, Tq)
        group = group.reshape(-1)  # (B*Tq,), non-decreasing
        counts = torch.bincount(group, minlength=b * nkb)  # (B*nkb,) queries per key block
        first = torch.cumsum(counts, 0) - counts  # (B*nkb,) first p-ordered query of each key block
        rank = torch.arange(b * tq, device=dev) - first[group]  # (B*Tq,) place within its key block
        nsub = (counts + blk - 1) // blk  # (B*nkb,) sub-blocks per key block
        ns = int(nsub.sum())
        if self.impl == "auto" and ns * blk * wk > self.max_span_factor * b * tq * (2 * d + 1):
            return None
        dest = ((torch.cumsum(nsub, 0) - nsub)[group] + rank // blk) * blk + rank % blk  # (B*Tq,) slot of each
        sub_group = torch.repeat_interleave(torch.arange(b * nkb, device=dev), nsub)  # (NS,) key block of each
        sub_b = sub_group // nkb  # (NS,) batch item of each sub-block
        start = ((sub_group % nkb) * kb - d).clamp(max=tk - wk).clamp(min=0)  # (NS,) run start, run inside [0, Tk)
        pos = start[:, None] + torch.arange(wk, device=dev)  # (NS, Wk)
        rows = torch.arange(b * tq, device=dev)  # (B*Tq,) flat query rows, p order
        if src is not None:
            rows = (src + (torch.arange(b, device=dev) * tq)[:, None]).reshape(-1)
        # -- gather queries into slots, keys and values into runs
        q_blk = query.new_zeros(ns * blk, query.shape[-1]).index_copy(
            0, dest, query.reshape(b * tq, -1).index_select(0, rows)).view(ns, blk, -1)  # (NS, blk, Dq)
        key_rows = (pos + (sub_b * tk)[:, None]).reshape(-1)  # (NS*Wk,) rows of [B*Tk, .]
        k_blk = key.reshape(b * tk, -1).index_select(0, key_rows).view(ns, wk, -1)  # (NS, Wk, Dk)
        v_blk = value.reshape(b * tk, -1).index_select(0, key_rows).view(ns, wk, -1)  # (NS, Wk, Dv)
        p_slot = p.new_zeros(ns * blk).index_copy(0, dest, p.reshape(-1)).view(ns, blk)  # (NS, blk)
        filled = torch.zeros(ns * blk, dtype=torch.bool, device=dev).index_fill_(0, dest, True).view(ns, blk, 1)
        offsets = pos[:, None, :].to(p.dtype) - p_slot[..., None]  # (NS, blk, Wk) = s - p_t
        allowed = (offsets.abs() <= d) & filled  # (NS, blk, Wk)
        if mask is not None:
            if mask.stride(1) == 0:  # a [B, Tk] key mask viewed as [B, Tq, Tk]: index its one row
                allowed = allowed & mask[:, 0].reshape(-1)[key_rows].view(ns, 1, wk)
            else:
                row_of_slot = rows.new_zeros(ns * blk).index_copy(0, dest, rows).view(ns, blk, 1)  # (NS, blk, 1)
                allowed = allowed & mask[row_of_slot // tq, row_of_slot % tq, pos[:, None, :]]  # (NS, blk, Wk)
        # -- the dense part: Eq. (7) per sub-block
        scores = self.base.score(q_blk, k_blk)  # (NS, blk, Wk)
        a = self._window_softmax(scores, offsets, allowed)  # (NS, blk, Wk)
        ctx_slot = torch.bmm(a, v_blk).view(ns * blk, -1)  # (NS*blk, Dv)
        slot_of_row = dest if src is None else torch.empty_like(dest).scatter_(0, rows, dest)  # (B*Tq,) query order
        context = ctx_slot.index_select(0, slot_of_row).view(b, tq, -1)  # (B, Tq, Dv)
        weights = None
        if need_weights:
            a_rows = a.view(ns * blk, wk).index_select(0, slot_of_row).view(b, tq, wk)  # (B, Tq, Wk)
            pos_rows = pos.index_select(0, slot_of_row // blk).view(b, tq, wk)  # (B, Tq, Wk)
            weights = a_rows.new_zeros(b, tq, tk).scatter_add(2, pos_rows, a_rows)  # (B, Tq, Tk)
        return context, weights


def _propagate_nan(
    query: Tensor, finite_p: Tensor | None, mask: Tensor | None, context: Tensor, weights: Tensor | None
) -> tuple[Tensor, Tensor | None]:
    """NaN in, NaN out: a query row holding a NaN (or a NaN p_t) gets a NaN context and NaN weights.

    Without this a NaN p_t lays its window out nowhere, and a window with no
    allowed key gives a finite zero: a silent wrong answer. A fully masked row
    keeps the contract's zeros whatever its query holds, as in the softmax.
    """
    # A finite sum of the query has no NaN term: one vectorised reduction clears the common case, where the
    # per-row check below is an elementwise pass and a row reduction (2.9 of local-p's 50 ms at B=4, T=4096,
    # width 64). A sum that overflows, or a row holding an inf, falls through to the exact check.
    if finite_p is None and bool(torch.isfinite(query.detach().sum(dtype=torch.float32))):
        return context, weights
    bad = torch.isnan(query).any(dim=-1)  # (B, Tq)
    if finite_p is not None:
        bad = bad | ~finite_p
    if not bool(bad.any()):
        return context, weights
    if mask is not None:
        bad = bad & (mask[:, :1].any(dim=-1) if mask.stride(1) == 0 else mask.any(dim=-1))
    nan = context.new_tensor(float("nan"))
    context = torch.where(bad[..., None], nan, context)
    if weights is not None:
        weights = torch.where(bad[..., None], nan, weights)
    return context, weights


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
    Cost O(Tq * (2D+1)) time and memory (blocked: about (max(16, D) + 2D) keys scored per query).

    :param window: D (default 4); the window has 2D+1 keys.
    :param score: base score name ("general" default, "dot", "scaled-dot", ...).
    :param score_kwargs: options for the base score.
    :param impl: "auto" (default: blocked), "blocked" or "gather" (the reference), see :class:`LocalAttention`.
    """

    monotone_positions = True

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
    Cost O(Tq * (2D+1)) time and memory (blocked: about (max(16, D) + 2D) keys scored per query).

    :param window: D (default 4, >= 1 since sigma = D/2).
    :param score: base score name ("general" default, "dot", "scaled-dot", ...).
    :param score_kwargs: options for the base score.
    :param position_dim: rows of W_p (default ``query_dim``).
    :param renormalize: divide Eq. (10) by its sum (default True, see above).
    :param impl: "auto" (default), "blocked" or "gather" (the reference), see
        :class:`LocalAttention`; the blocked path sorts the queries by their
        predicted ``p_t`` so that each block's window run stays short.
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
        position_dim: int | None = None,
        renormalize: bool = True,
        need_weights: bool = False,
        impl: str = "auto",
        block_size: int | None = None,
        max_span_factor: float = 8.0,
    ) -> None:
        super().__init__(
            query_dim, key_dim, value_dim, window=window, score=score, score_kwargs=score_kwargs,
            need_weights=need_weights, impl=impl, block_size=block_size, max_span_factor=max_span_factor,
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
        if not self.renormalize:
            return scores
        return torch.addcmul(scores, offsets, offsets, value=-1 / (2 * self.sigma**2))  # score - (s - p_t)^2 / (2 sigma^2)

    def window_weights(self, probs, offsets):
        return probs if self.renormalize else probs * torch.exp(self._log_gaussian(offsets))  # Eq. (10)


_COMMON = dict(
    family="local",
    paper=f"{LUONG}, Sec. 3.2",
    url=LUONG_URL,
    complexity="O(Tq*window)",
    notes="impl='auto' (default) scores blocks of queries against runs of keys in dense matmuls; "
    "impl='gather' is the key-by-key reference path (same result to float rounding)",
)

SPECS: dict[str, tuple[AttentionSpec, Any]] = {
    "local-m": (
        AttentionSpec(
            name="local-m",
            summary="Luong local-m: softmax over the 2D+1 keys around p_t = t",
            step_state=0,  # called one decoder step at a time, it must be told t
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
