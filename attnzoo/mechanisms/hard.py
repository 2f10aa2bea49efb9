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

from attnzoo.contract import Attention, AttentionOutput, _autocast_on
from attnzoo.hookspecs import hookimpl
from attnzoo.mechanisms.dot import _Multiplicative
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
            index = _search(cdf, u[:, None] * total, total)  # (N, 1)
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
        c = _row_term(a_dot_s, alpha, g_lp, g_h, g_alpha)  # (N,)
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


#: elements of one [rows, Tk] block of scores the fused path holds at once on the CPU (1 MiB of float32, in a
#: core's L2 cache): each pass over a block (softmax, <alpha, S>, the backward's dS) then reads cache, not
#: memory, and no [B, Tq, Tk] buffer but alpha (returned as aux["probs"]) is ever allocated.
_BLOCK = 2**18

#: the draw searches a row's CDF in two levels (sums of _CDF_STEP keys, then one group) above this many keys:
#: a full cumsum is a sequential pass over the row, the group sums a vectorised one.
_CDF_DIRECT = 512
_CDF_STEP = 64


#: the one block of a small call: every example and row, taken without indexing (a Python index costs ~2 us)
_ALL = slice(None)


def _blocks(b: int, tq: int, tk: int, device: torch.device) -> list[tuple[slice, slice]]:
    """``(examples, query rows)`` of each block the fused path works on: one block off the CPU (a GPU's memory
    is fast and every launch counts), whole examples up to :data:`_BLOCK` scores, else rows of one example."""
    if device.type != "cpu" or b * tq * tk <= _BLOCK:
        return [(_ALL, _ALL)]
    if tq * tk <= _BLOCK:
        n = _BLOCK // (tq * tk)
        return [(slice(i, min(i + n, b)), slice(0, tq)) for i in range(0, b, n)]
    n = max(1, _BLOCK // tk)
    return [(slice(i, i + 1), slice(r, min(r + n, tq))) for i in range(b) for r in range(0, tq, n)]


def _draw(alpha: Tensor, u: Tensor) -> Tensor:
    """Inverse-CDF draws ``s = min{i : cumsum(alpha)_i > u * sum(alpha)}`` from rows ``alpha [..., Tk]`` with
    ``u [..., 1]``: an exact sample of each row. Returns ``[..., 1]`` (int64).

    Above :data:`_CDF_DIRECT` keys (a multiple of :data:`_CDF_STEP`) it searches the cumulative sums of groups
    of keys, then the one group that holds ``u * total`` (the same rule, in other rounding). ``u * total`` can
    round up to the total: the first index reaching the total is then taken, the last key with mass, never a
    masked tail; a NaN row searches past the end and is clamped."""
    tk = alpha.shape[-1]
    if tk <= _CDF_DIRECT or tk % _CDF_STEP:
        cdf = torch.cumsum(alpha, dim=-1)  # (..., Tk)
        total = cdf[..., -1:].contiguous()  # (..., 1), 1 up to rounding
        return _search(cdf, u * total, total)
    groups = alpha.view(*alpha.shape[:-1], -1, _CDF_STEP)  # (..., G, STEP)
    sums = groups.sum(dim=-1)  # (..., G)
    cum = torch.cumsum(sums, dim=-1)  # (..., G)
    total = cum[..., -1:].contiguous()
    target = u * total  # (..., 1)
    g = _search(cum, target, total)  # (..., 1) the group
    one = groups.gather(-2, g[..., None].expand(*g.shape, _CDF_STEP)).squeeze(-2)  # (..., STEP) its keys
    local = torch.cumsum(one, dim=-1)  # (..., STEP)
    before = cum.gather(-1, g) - sums.gather(-1, g)  # (..., 1) mass before the group
    return g * _CDF_STEP + _search(local, target - before, local[..., -1:].contiguous())


def _search(cdf: Tensor, target: Tensor, total: Tensor) -> Tensor:
    """``min{i : cdf_i > target}`` per row of ``cdf [..., n]`` (``target``, ``total = cdf[..., -1:]`` ``[..., 1]``),
    ``[..., 1]`` int64. ``target`` can round up to the total: the first index reaching the total is taken then,
    the last entry with mass, never a masked tail; a NaN row (its CDF is NaN) searches past the end, clamped."""
    index = torch.searchsorted(cdf, target, right=True)
    return torch.minimum(index, torch.searchsorted(cdf, total, right=False)).clamp_(max=cdf.shape[-1] - 1)


def _row_term(a_dot_s: Tensor, alpha: Tensor, g_lp: Tensor | None, g_h: Tensor | None,
              g_alpha: Tensor | None) -> Tensor:
    """``c = g_H <alpha, S> - g_lp - <g_alpha, alpha>``, one scalar per row shaped like ``a_dot_s`` (``[N]`` or
    ``[..., 1]``; ``alpha`` ``[..., Tk]``): the per-row part of the backward ``dS = alpha * (g_alpha + c - g_H S)
    + g_lp e_s`` that :class:`_Categorical` and :class:`_FusedHard` share (each then subtracts ``<g_z, z>``)."""
    c = torch.zeros_like(a_dot_s) if g_lp is None else -g_lp
    if g_h is not None:
        c = c + g_h * a_dot_s
    if g_alpha is not None:
        c = c - torch.linalg.vecdot(g_alpha, alpha).view_as(a_dot_s)  # - <g_alpha, alpha>
    return c


class _FusedHard(torch.autograd.Function):
    r"""Hard attention's training step on a multiplicative score ``S = scale * q k^T``, block by block.

    Forward, per block of query rows (:func:`_blocks`; ``q [B, Tq, D]``, ``k [B, Tk, D]``, ``v [B, Tk, Dv]``,
    ``allowed`` bool ``[B, Tq or 1, Tk]`` or None, ``u [B, Tq, 1]`` one uniform per row, ``take`` bool ``[B]``
    or None, ``took`` the host's copy of ``take`` as a tuple or None where it was not read):

    - ``S = scale * q k^T`` with masked keys at :func:`_fill_value`, ``alpha = softmax(S)`` (Eq. (8));
    - the draw ``s ~ alpha`` (:func:`_draw`), ``log_prob = log alpha_s``, ``H = S_s - log alpha_s - <alpha, S>``;
    - Xu et al.'s expected context ``z = alpha V`` (Sec. 4.1) for the examples that take it.

    The context is ``v_s`` (Eq. (9)) or ``z`` per example; ``log_prob`` is 0 where no choice was made; a row
    without an allowed key gives zeros. Backward, per block, with ``e_s`` the one-hot draw and ``g_z`` the
    context's gradient on the examples that took ``z`` (0 elsewhere)::

        dS = alpha * (g_alpha + g_z V^T + c - g_H S) + g_lp e_s,
        c  = g_H <alpha, S> - g_lp - <g_alpha, alpha> - <g_z, z>

    (softmax's backward, ``e_s - alpha`` for ``log_prob``, ``-alpha (log alpha + H)`` for the entropy), then
    ``dq = scale dS k``, ``dk = scale dS^T q``, ``dv = alpha^T g_z`` plus each sampled row's gradient at ``v_s``.
    ``S`` is recomputed (one matmul per block) only when the entropy is in the loss.

    Returns context ``[B, Tq, Dv]``, ``log_prob [B, Tq]``, entropy ``[B, Tq]``, alpha ``[B, Tq, Tk]``.
    """

    @staticmethod
    def forward(ctx, q, k, v, scale, blocked, has_key, u, take, took):  # type: ignore[override]
        b, tq, _ = q.shape
        tk = k.shape[1]
        blocks = _blocks(b, tq, tk, q.device)
        alpha = q.new_empty(b, tq, tk)
        picks = [_pick(take, took, e) for e, _ in blocks]
        parts = [_forward_block(_at(q, e, r), _at(k, e), _at(v, e), scale, _rows(blocked, e, r), _at(u, e, r),
                                _at(alpha, e, r), pick)
                 for (e, r), pick in zip(blocks, picks)]
        index, lp, a_dot_s, s_at, z = (_join(blocks, [p[i] for p in parts], b, tq) for i in range(5))
        ent = s_at - lp - a_dot_s  # (B, Tq, 1) lse - <alpha, S>, with lse = S_s - log alpha_s
        bad = torch.isnan(lp)  # (B, Tq, 1) NaN in, NaN out: a NaN score on an allowed key
        if take is not None:
            lp = lp.masked_fill(take[:, None, None], 0.0)  # no choice was made: no score-function term
        rows = None
        if took is not None and all(took):
            context = z  # (B, Tq, Dv) every example took the expected context
        else:
            context, rows = _drawn_values(v, index)  # (B, Tq, Dv) v_s, Eq. (9)
            if z is not None:  # some example took it (off the CPU: every example formed it)
                context = torch.where(take[:, None, None], z, context)
        if has_key is not None:  # a row with no allowed key: zeros, not the uniform alpha's draw
            keep = has_key[..., None]  # (B, Tq or 1, 1)
            alpha.mul_(keep)
            context, lp, ent = context * keep, lp * keep, ent * keep
        ctx.any_bad = not _host_readable(bad) or bool(bad.any())
        if ctx.any_bad:  # where() with no NaN row changes no number
            context = torch.where(bad, float("nan"), context)
        ctx.scale, ctx.took, ctx.blocks, ctx.picks = scale, took, blocks, picks
        ctx.set_materialize_grads(False)  # an unused output's gradient arrives as None, not a zero tensor
        ctx.save_for_backward(q, k, v, blocked, has_key, take, alpha, index, a_dot_s, z, bad, rows)
        return context, lp.squeeze(-1), ent.squeeze(-1), alpha

    @staticmethod
    def backward(ctx, g_ctx, g_lp, g_h, g_alpha):  # type: ignore[override]
        q, k, v, blocked, has_key, take, alpha, index, a_dot_s, z, bad, rows = ctx.saved_tensors
        g_z, g_s, g_lp, g_h = _row_grads(ctx.took, has_key, take, bad if ctx.any_bad else None, g_ctx, g_lp, g_h)
        # c = g_H <alpha, S> - g_lp - <g_alpha, alpha> - <g_z, z>, one scalar per row (B, Tq, 1)
        c = _row_term(a_dot_s, alpha, g_lp, g_h, g_alpha)
        if g_z is not None:
            c = c - (g_z * z).sum(dim=-1, keepdim=True)
        need_q, need_k, need_v = ctx.needs_input_grad[:3]
        dq, dk, dv = _Grads(q, need_q), _Grads(k, need_k), _Grads(v, need_v and g_z is not None)
        single = len(ctx.blocks) == 1
        for (e, r), pick in zip(ctx.blocks, ctx.picks):
            pick = pick if g_z is not None else ()
            a = _at(alpha, e, r)
            ds = _backward_block(_at(q, e, r), _at(k, e), _at(v, e), ctx.scale, _rows(blocked, e, r), a,
                                 _at(index, e, r), _at(c, e, r), _at(g_lp, e, r), _at(g_h, e, r), _at(g_alpha, e, r),
                                 _at(g_z, e, r), pick)
            dq.put(e, r, ds, _at(k, e), single)  # dS k
            dk.add(e, ds.transpose(1, 2), _at(q, e, r), single)  # dS^T q
            if pick != ():
                dv.add(e, a.transpose(1, 2), _at(g_z, e, r), single, pick)  # alpha^T g_z
        dq, dk = dq.result(ctx.scale), dk.result(ctx.scale)
        dv = dv.result(1.0)
        if need_v and g_s is not None:  # each sampled row's context gradient, at its drawn value v_s
            b, tk, d = v.shape
            dv = (v.new_zeros(v.shape) if dv is None else dv).view(b * tk, d).index_add_(
                0, rows, g_s.reshape(-1, d)).view(b, tk, d)
        return dq, dk, dv, None, None, None, None, None, None


def _drawn_values(value: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
    """Each row's sampled value ``v_s`` (Eq. (9)): ``value [B, Tk, Dv]``, ``index [B, Tq]`` or ``[B, Tq, 1]`` ->
    ``[B, Tq, Dv]`` and the rows of ``value`` as ``[B*Tk, Dv]`` it read, ``[B*Tq]``. An index_select of rows:
    the values gather() would pick, in a fraction of its time (and its backward, index_add, sums each row's
    gradients in the same order as gather's scatter_add)."""
    b, tk, _ = value.shape
    offset = torch.arange(b, device=index.device).view(b, *(1,) * (index.dim() - 1)) * tk  # (B, 1[, 1])
    rows = (index + offset).view(-1)  # (B*Tq,)
    return value.reshape(b * tk, -1).index_select(0, rows).view(b, index.shape[1], -1), rows


def _rows(t: Tensor | None, e: slice, r: slice) -> Tensor | None:
    """``t [B, Tq or 1, ...]`` at a block's examples and rows (a row of 1, a key mask, serves every row)."""
    return _at(t, e, r if t is not None and t.shape[1] > 1 else _ALL)


def _at(t: Tensor | None, e: slice, r: slice = _ALL) -> Tensor | None:
    """``t`` at a block's examples ``e`` and rows ``r`` (itself for :data:`_ALL`)."""
    if t is None or (e is _ALL and r is _ALL):
        return t
    return t[e] if r is _ALL else t[e, r]


def _join(blocks: list[tuple[slice, slice]], parts: list[Tensor | None], b: int, tq: int) -> Tensor | None:
    """Per-block results ``[n, rows, d]`` as one ``[B, Tq, d]`` (zeros where a block made none)."""
    if len(parts) == 1:
        return parts[0]
    first = next((p for p in parts if p is not None), None)
    if first is None:
        return None
    out = first.new_zeros(b, tq, first.shape[-1])
    for (e, r), p in zip(blocks, parts):
        if p is not None:
            out[e, r] = p
    return out


def _pick(take: Tensor | None, took: tuple[bool, ...] | None, e: slice) -> tuple[int, ...] | None:
    """Which examples of a block form the expected context: ``()`` none, None every one (off the CPU, where
    the flags are not read; or too many for a loop of matmuls), else their indices in the block."""
    if take is None:
        return ()
    if took is None:
        return None
    local = tuple(j for j, t in enumerate(took[e]) if t)
    return None if len(local) == len(took[e]) or len(local) > _LOOP_MAX else local


def _bmm_some(a: Tensor, b: Tensor, pick: tuple[int, ...] | None) -> Tensor:
    """``a @ b`` ``[n, r, m]`` for the examples ``pick`` (None: all), zeros for the others; a matmul on views
    per picked example, with no copy of ``a``."""
    if pick is None:
        return torch.bmm(a, b)
    out = a.new_zeros(a.shape[0], a.shape[1], b.shape[2])
    for j in pick:
        torch.mm(a[j], b[j], out=out[j])
    return out


def _forward_block(q: Tensor, k: Tensor, v: Tensor, scale: float, blocked: Tensor | None, u: Tensor,
                   alpha: Tensor, pick: tuple[int, ...] | None) -> tuple[Tensor, ...]:
    """One block of :class:`_FusedHard`'s forward: ``q [n, r, D]``, ``k [n, Tk, D]``, ``v [n, Tk, Dv]``,
    ``u [n, r, 1]``; alpha ``[n, r, Tk]`` is written in place (a view of the whole alpha).

    :returns: the draw, ``log alpha_s``, ``<alpha, S>``, ``S_s`` (each ``[n, r, 1]``) and ``z = alpha V``
        ``[n, r, Dv]`` for the examples ``pick`` (:func:`_pick`; None where none forms it)."""
    s = _scores(q, k, scale, blocked)  # (n, r, Tk)
    torch._softmax(s, -1, False, out=alpha)  # alpha = softmax(S), Eq. (8), straight into its place
    index = _draw(alpha, u)  # (n, r, 1)
    log_prob = alpha.gather(-1, index).log_()
    s_at = s.gather(-1, index)  # (n, r, 1) S_s
    # <alpha, S> in S's own buffer (S is not needed after): a third of vecdot's time, which writes a fresh
    # product; masked keys give 0 * fill = 0.
    a_dot_s = s.mul_(alpha).sum(dim=-1, keepdim=True)  # (n, r, 1)
    z = None if pick == () else _bmm_some(alpha, v, pick)  # (n, r, Dv) Xu et al.'s expected context
    return index, log_prob, a_dot_s, s_at, z


def _scores(q: Tensor, k: Tensor, scale: float, blocked: Tensor | None) -> Tensor:
    """``S = scale * q k^T`` ``[n, r, Tk]``, masked keys at :func:`_fill_value` (as the base score computes it:
    ``x * 1.0 == x``, so a scale of 1 is skipped)."""
    s = torch.bmm(q, k.transpose(1, 2))
    if scale != 1.0:
        s.mul_(scale)
    if blocked is not None:
        s.masked_fill_(blocked, _fill_value(s.dtype))
    return s


def _row_grads(took: tuple[bool, ...] | None, has_key: Tensor | None, take: Tensor | None, bad: Tensor | None,
               g_ctx: Tensor | None, g_lp: Tensor | None, g_h: Tensor | None) -> tuple[Tensor | None, ...]:
    """The outputs' gradients where the forward used them: a row without a key gave zeros, an example that
    took ``z`` made no choice (its ``log_prob`` is 0), a NaN row's context was replaced.

    :returns: ``g_z`` (the context's gradient on examples that took ``z``, 0 elsewhere), ``g_s`` (on sampled
        examples), ``g_lp`` and ``g_H``, each ``[B, Tq, 1 or Dv]`` or None."""
    keep = None if has_key is None else has_key[..., None]
    if g_lp is not None:
        g_lp = g_lp[..., None] if keep is None else g_lp[..., None] * keep
        if take is not None:
            g_lp = g_lp.masked_fill(take[:, None, None], 0.0)
    if g_h is not None:
        g_h = g_h[..., None] if keep is None else g_h[..., None] * keep
    if g_ctx is None:
        return None, None, g_lp, g_h
    if keep is not None:
        g_ctx = g_ctx * keep
    if bad is not None:  # a NaN row's context was replaced: nothing reaches v or z from it
        g_ctx = g_ctx.masked_fill(bad, 0.0)
    if take is None or (took is not None and not any(took)):
        return None, g_ctx, g_lp, g_h
    if took is not None and all(took):
        return g_ctx, None, g_lp, g_h
    pick = take[:, None, None]  # (B, 1, 1)
    return g_ctx.masked_fill(~pick, 0.0), g_ctx.masked_fill(pick, 0.0), g_lp, g_h


def _backward_block(q: Tensor, k: Tensor, v: Tensor, scale: float, blocked: Tensor | None, alpha: Tensor,
                    index: Tensor, c: Tensor, g_lp: Tensor | None, g_h: Tensor | None, g_alpha: Tensor | None,
                    g_z: Tensor | None, pick: tuple[int, ...] | None) -> Tensor:
    """``dS = alpha * (g_alpha + g_z V^T + c - g_H S) + g_lp e_s`` ``[n, r, Tk]`` for one block (shapes as
    :func:`_forward_block`; the row terms ``[n, r, 1]``); a fresh block buffer, each term added in place."""
    grad = None if pick == () else _bmm_some(g_z, v.transpose(1, 2), pick)  # (n, r, Tk) g_z V^T
    if g_h is not None:  # - g_H S: S recomputed, never kept
        s = _scores(q, k, scale, blocked).mul_(-g_h)
        grad = s if grad is None else grad.add_(s)
    if g_alpha is not None:
        grad = g_alpha + c if grad is None else grad.add_(g_alpha).add_(c)
    elif grad is not None:
        grad.add_(c)
    grad = alpha * c if grad is None else grad.mul_(alpha)
    if g_lp is not None:
        grad.scatter_add_(-1, index, g_lp)  # + g_lp e_s
    return grad


class _Grads:
    """One input's gradient, gathered block by block (a single block's product is the gradient itself)."""

    def __init__(self, like: Tensor, needed: bool) -> None:
        self.like, self.needed, self.value = like, needed, None

    def put(self, e: slice, r: slice, a: Tensor, b: Tensor, single: bool) -> None:
        """Rows ``r`` of examples ``e`` are ``a @ b``."""
        if not self.needed:
            return
        if single:
            self.value = torch.bmm(a, b)
            return
        if self.value is None:
            self.value = self.like.new_empty(self.like.shape)  # contiguous, whatever the input's strides
        torch.bmm(a, b, out=self.value[e, r])

    def add(self, e: slice, a: Tensor, b: Tensor, single: bool, pick: tuple[int, ...] | None = None) -> None:
        """Examples ``e`` gain ``a @ b`` (only the block's examples ``pick``; None: all)."""
        if not self.needed:
            return
        if single:
            self.value = _bmm_some(a, b, pick)
            return
        if self.value is None:
            self.value = self.like.new_zeros(self.like.shape)
        if pick is None:
            self.value[e].baddbmm_(a, b)
        for j in pick or ():
            self.value[e][j].addmm_(a[j], b[j])

    def result(self, scale: float) -> Tensor | None:
        if self.value is not None and scale != 1.0:
            self.value.mul_(scale)
        return self.value


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

    A REINFORCE training call without weights on a multiplicative score (dot, scaled-dot, the default
    general) in float32/64 takes a fused path (:class:`_FusedHard`): one autograd node from ``q``, ``k``
    and ``v``, block by block on the CPU (no ``[B, Tq, Tk]`` buffer but alpha). From the same random numbers
    it makes the reference path's draws (above ``_CDF_DIRECT`` keys its CDF is summed in another order, so a
    ``u`` within rounding of a boundary may pick the neighbouring key) and its numbers to rounding.
    There the context's gradient on the score is an exact zero rather than no path.

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
        if self._fusable(query, key, value, need_weights):
            return self._attend_fused(query, key, value, mask, state)
        return self._attend_reference(query, key, value, mask, state, need_weights)

    def _fusable(self, query: Tensor, key: Tensor, value: Tensor, need_weights: bool) -> bool:
        """Whether the call takes :class:`_FusedHard`: a REINFORCE training call without weights, on a
        multiplicative score (dot, scaled-dot, general: ``S = scale * project(q) k^T``) in float32/64."""
        return (self.training and self.estimator == "reinforce" and not need_weights
                and isinstance(self.base, _Multiplicative) and type(self.base).score is _Multiplicative.score
                and query.dtype in (torch.float32, torch.float64) and key.dtype == value.dtype == query.dtype
                and not _autocast_on(query.device))

    def _coin_tosses(self, b: int, device: torch.device) -> Tensor | None:
        """Xu et al. Sec. 4.1: with probability ``expected_prob`` an example takes the expected context; bool
        ``[B]`` (None when ``expected_prob`` is 0, and no random number is drawn)."""
        return torch.rand(b, device=device) < self.expected_prob if self.expected_prob > 0 else None

    def _attend_fused(self, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None,
                      state: Any) -> AttentionOutput:
        """:meth:`attend` through :class:`_FusedHard` (the same draws from the same random numbers as
        :meth:`_attend_reference`, and its numbers to float rounding)."""
        b, tq, _ = query.shape
        u = torch.rand(b * tq, device=query.device, dtype=query.dtype).view(b, tq, 1)  # one uniform per row
        take = self._coin_tosses(b, query.device)
        # Off the CPU the flags stay on the device (reading them would wait for it) and every example forms z.
        took = tuple(take.tolist()) if take is not None and _host_readable(take) else None
        blocked, has_key = None, None
        if mask is not None:
            rows = mask[:, :1] if mask.stride(1) == 0 else mask  # a key mask stays [B, 1, Tk]
            blocked, has_key = ~rows, rows.any(dim=-1)
            if _host_readable(has_key) and bool(has_key.all()):
                has_key = None
        context, log_prob, entropy, alpha = _FusedHard.apply(
            self.base.project_query(query), key, value, self.base.scale, blocked, has_key, u, take, took)
        return AttentionOutput(context, None, state, {"entropy": entropy, "probs": alpha, "log_prob": log_prob})

    def _attend_reference(self, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None, state: Any,
                          need_weights: bool) -> AttentionOutput:
        """Every call :meth:`_fusable` turns away (weights, eval, Gumbel, other scores, half precision), and the
        reference the fused path is tested against: the scores as one tensor, then :class:`_Categorical`."""
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
            take = self._coin_tosses(b, scores.device)
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

        context, _ = _drawn_values(value, index)  # (B, Tq, Dv) a_{s_t}
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
