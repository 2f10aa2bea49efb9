"""Fused additive (Bahdanau) attention in Triton: the ``[B, Tq, Tk, H]`` tensor never exists.

Bahdanau, Cho, Bengio 2015, Eq. (6): ``e_ij = v_a^T tanh(W_a s_i + U_a h_j)``, ``alpha = softmax_j(e)``,
``c_i = sum_j alpha_ij h_j``. The score is no matrix product, so a library kernel cannot compute it;
every implementation builds ``tanh(W_a s_i + U_a h_j)`` for all pairs. Here a program owns a block
of queries and walks the keys a block at a time, building the ``[BQ, BK, H]`` tile in registers
only, with an online softmax (Milakov & Gimelshein 2018; the flash-attention recurrence):

    m_new = max(m, rowmax(e_blk));  l = l * exp(m - m_new) + rowsum(exp(e_blk - m_new))
    acc = acc * exp(m - m_new) + exp(e_blk - m_new) @ V_blk;  c = acc / l;  lse = m + log(l)

Backward recomputes the tiles from ``lse`` (nothing of size Tq x Tk is stored), in two kernels
that own disjoint outputs, so no atomics: one per key block (dV, d(U_a h), a per-block partial
of dv_a), one per query block (d(W_a s)). With ``p = exp(e - lse)``, ``D_i = dO_i . O_i``:

    dp_ij = dO_i . V_j,  de_ij = p_ij (dp_ij - D_i),  dz_ijh = de_ij v_h (1 - t_ijh^2)
    dV_j = sum_i p_ij dO_i,  dv_h = sum_ij de_ij t_ijh,  d(W s)_ih = sum_j dz_ijh,  d(U h)_jh = sum_i dz_ijh

The same kernels in "scores" mode give the pointer network's ``[B, Tq, Tk]`` scores (its output
distribution needs them) without the ``[B, Tq, Tk, H]`` tensor; backward then reads ``de = dE``.

Masks: a key with mask False gets ``e = -inf``; a query with no allowed key gets a zero context and
zero gradients (``l = 0`` is caught, never a NaN). Arithmetic is float32 inside (bf16/fp16 inputs are
upcast on load); ``tanh(x) = 1 - 2 / (exp(2x) + 1)`` since ``tl`` has no tanh. The hidden size is one
register tile (padded to a power of two), so :data:`MAX_HIDDEN` bounds it.

This module imports Triton; :mod:`attnzoo.mechanisms.additive` imports it only on the fused path.
On the CPU it runs under Triton's interpreter (``TRITON_INTERPRET=1`` set before the first import),
which is how tests/test_additive_triton.py checks it against the reference path.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

__all__ = ["fused_additive_attention", "fused_additive_scores", "MAX_HIDDEN", "supported"]

#: the largest hidden size (after padding to a power of two) the kernels hold in one tile
MAX_HIDDEN = 128
_BQ, _BK = 16, 16  # tl.dot needs at least 16 per side


def supported(hidden: int, value_dim: int) -> bool:
    """Whether the kernels take these sizes (the hidden tile fits; any value size does)."""
    return triton.next_power_of_2(hidden) <= MAX_HIDDEN and value_dim >= 1


@triton.jit
def _tanh(x):
    # tl.exp, not tl.sigmoid: sigmoid is itself a jit function of triton.language, compiled (not
    # interpreted) when triton was imported before TRITON_INTERPRET was set. exp overflows to inf
    # for large x, which gives 1 - 0 = 1 exactly; for very negative x, exp -> 0 gives -1.
    return 1.0 - 2.0 / (tl.exp(2.0 * x) + 1.0)


@triton.jit
def _tile(WSb, UHb, offs_q, offs_k, offs_h, Tq, Tk, H, s_wq, s_uk):
    """t = tanh(W s_i + U h_j) for a [BQ, BK, HP] tile (padding rows/columns/hidden are 0)."""
    hm = offs_h < H
    w = tl.load(WSb + offs_q[:, None] * s_wq + offs_h[None, :], mask=(offs_q[:, None] < Tq) & hm[None, :],
                other=0.0).to(tl.float32)  # (BQ, HP)
    u = tl.load(UHb + offs_k[:, None] * s_uk + offs_h[None, :], mask=(offs_k[:, None] < Tk) & hm[None, :],
                other=0.0).to(tl.float32)  # (BK, HP)
    return _tanh(w[:, None, :] + u[None, :, :])  # (BQ, BK, HP)


@triton.jit
def _hidden(VA, H, HP: tl.constexpr):
    """(offsets over the padded hidden size, v_a as float32 with zeros past H)."""
    offs_h = tl.arange(0, HP)
    return offs_h, tl.load(VA + offs_h, mask=offs_h < H, other=0.0).to(tl.float32)  # (HP,), (HP,)


@triton.jit
def _allowed(Mb, offs_q, offs_k, Tq, Tk, s_mq, s_mk, HAS_MASK: tl.constexpr):
    ok = (offs_q[:, None] < Tq) & (offs_k[None, :] < Tk)  # (BQ, BK)
    if HAS_MASK:
        m = tl.load(Mb + offs_q[:, None] * s_mq + offs_k[None, :] * s_mk, mask=ok, other=0)
        ok = ok & (m != 0)
    return ok


@triton.jit
def _fwd(WS, UH, VA, V, M, O, LSE, Tq, Tk, H, Dv,
         s_wb, s_wq, s_ub, s_uk, s_vb, s_vk, s_mb, s_mq, s_mk, s_ob, s_oq, s_eb, s_eq,
         HAS_MASK: tl.constexpr, SCORES: tl.constexpr, BQ: tl.constexpr, BK: tl.constexpr, HP: tl.constexpr,
         BD: tl.constexpr):
    qb = tl.program_id(0)
    b = tl.program_id(1)
    offs_q = qb * BQ + tl.arange(0, BQ)
    offs_d = tl.arange(0, BD)
    offs_h, va = _hidden(VA, H, HP)
    m_i = tl.full((BQ,), float("-inf"), tl.float32)
    l_i = tl.zeros((BQ,), tl.float32)
    acc = tl.zeros((BQ, BD), tl.float32)
    for k0 in range(0, Tk, BK):
        offs_k = k0 + tl.arange(0, BK)
        t = _tile(WS + b * s_wb, UH + b * s_ub, offs_q, offs_k, offs_h, Tq, Tk, H, s_wq, s_uk)
        e = tl.sum(t * va[None, None, :], axis=2)  # (BQ, BK)
        if SCORES:
            ok = (offs_q[:, None] < Tq) & (offs_k[None, :] < Tk)
            tl.store(O + b * s_ob + offs_q[:, None] * s_oq + offs_k[None, :], e, mask=ok)
        else:
            e = tl.where(_allowed(M + b * s_mb, offs_q, offs_k, Tq, Tk, s_mq, s_mk, HAS_MASK), e, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(e, axis=1))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # a row with nothing allowed yet
            alpha = tl.exp(m_i - m_safe)
            p = tl.exp(e - m_safe[:, None])  # (BQ, BK); 0 where masked
            l_i = l_i * alpha + tl.sum(p, axis=1)
            v = tl.load(V + b * s_vb + offs_k[:, None] * s_vk + offs_d[None, :],
                        mask=(offs_k[:, None] < Tk) & (offs_d[None, :] < Dv), other=0.0).to(tl.float32)  # (BK, BD)
            acc = acc * alpha[:, None] + tl.dot(p, v, input_precision="ieee")
            m_i = m_new
    if not SCORES:
        has = l_i > 0.0
        denom = tl.where(has, l_i, 1.0)
        out = tl.where(has[:, None], acc / denom[:, None], 0.0)  # a fully masked row: zeros, never NaN
        qm = offs_q < Tq
        tl.store(O + b * s_ob + offs_q[:, None] * s_oq + offs_d[None, :], out, mask=qm[:, None] & (offs_d[None, :] < Dv))
        lse = tl.where(has, m_i + tl.log(denom), 0.0)
        tl.store(LSE + b * s_eb + offs_q * s_eq, lse, mask=qm)


@triton.jit
def _de(t, va, offs_q, offs_k, Tq, Tk, Mb, s_mq, s_mk, dOb, s_dq, lse, Di, Vb, s_vk, Dv, DEb, s_deq,
        HAS_MASK: tl.constexpr, SCORES: tl.constexpr, BD: tl.constexpr):
    """(de [BQ, BK], p [BQ, BK]) of one tile: dE read back in scores mode, else through the softmax."""
    ok = (offs_q[:, None] < Tq) & (offs_k[None, :] < Tk)
    if SCORES:
        de = tl.load(DEb + offs_q[:, None] * s_deq + offs_k[None, :], mask=ok, other=0.0).to(tl.float32)
        return de, de
    offs_d = tl.arange(0, BD)
    e = tl.sum(t * va[None, None, :], axis=2)  # (BQ, BK)
    ok = _allowed(Mb, offs_q, offs_k, Tq, Tk, s_mq, s_mk, HAS_MASK)
    p = tl.where(ok, tl.exp(e - lse[:, None]), 0.0)
    do = tl.load(dOb + offs_q[:, None] * s_dq + offs_d[None, :], mask=(offs_q[:, None] < Tq) & (offs_d[None, :] < Dv),
                 other=0.0).to(tl.float32)  # (BQ, BD)
    v = tl.load(Vb + offs_k[:, None] * s_vk + offs_d[None, :], mask=(offs_k[:, None] < Tk) & (offs_d[None, :] < Dv),
                other=0.0).to(tl.float32)  # (BK, BD)
    dp = tl.dot(do, tl.trans(v), input_precision="ieee")  # (BQ, BK)
    return p * (dp - Di[:, None]), p


@triton.jit
def _bwd_keys(WS, UH, VA, V, M, DO, LSE, DI, DE, DV, DUH, DVA, Tq, Tk, H, Dv,
              s_wb, s_wq, s_ub, s_uk, s_vb, s_vk, s_mb, s_mq, s_mk, s_db, s_dq, s_eb, s_eq, s_deb, s_deq, n_kb,
              HAS_MASK: tl.constexpr, SCORES: tl.constexpr, BQ: tl.constexpr, BK: tl.constexpr, HP: tl.constexpr,
              BD: tl.constexpr):
    kb = tl.program_id(0)
    b = tl.program_id(1)
    offs_k = kb * BK + tl.arange(0, BK)
    offs_d = tl.arange(0, BD)
    offs_h, va = _hidden(VA, H, HP)
    dv_acc = tl.zeros((BK, BD), tl.float32)
    duh_acc = tl.zeros((BK, HP), tl.float32)
    dva_acc = tl.zeros((HP,), tl.float32)
    for q0 in range(0, Tq, BQ):
        offs_q = q0 + tl.arange(0, BQ)
        t = _tile(WS + b * s_wb, UH + b * s_ub, offs_q, offs_k, offs_h, Tq, Tk, H, s_wq, s_uk)
        qm = offs_q < Tq
        lse = tl.load(LSE + b * s_eb + offs_q * s_eq, mask=qm, other=0.0)
        di = tl.load(DI + b * s_eb + offs_q * s_eq, mask=qm, other=0.0)
        de, p = _de(t, va, offs_q, offs_k, Tq, Tk, M + b * s_mb, s_mq, s_mk, DO + b * s_db, s_dq, lse, di,
                    V + b * s_vb, s_vk, Dv, DE + b * s_deb, s_deq, HAS_MASK, SCORES, BD)
        if not SCORES:
            do = tl.load(DO + b * s_db + offs_q[:, None] * s_dq + offs_d[None, :],
                         mask=qm[:, None] & (offs_d[None, :] < Dv), other=0.0).to(tl.float32)
            dv_acc += tl.dot(tl.trans(p), do, input_precision="ieee")  # (BK, BD)
        dva_acc += tl.sum(tl.sum(de[:, :, None] * t, axis=0), axis=0)
        dz = de[:, :, None] * va[None, None, :] * (1.0 - t * t)  # (BQ, BK, HP)
        duh_acc += tl.sum(dz, axis=0)
    km = offs_k < Tk
    if not SCORES:
        tl.store(DV + b * s_vb + offs_k[:, None] * s_vk + offs_d[None, :], dv_acc, mask=km[:, None] & (offs_d[None, :] < Dv))
    tl.store(DUH + b * s_ub + offs_k[:, None] * s_uk + offs_h[None, :], duh_acc, mask=km[:, None] & (offs_h[None, :] < H))
    tl.store(DVA + (b * n_kb + kb) * H + offs_h, dva_acc, mask=offs_h < H)


@triton.jit
def _bwd_queries(WS, UH, VA, V, M, DO, LSE, DI, DE, DWS, Tq, Tk, H, Dv,
                 s_wb, s_wq, s_ub, s_uk, s_vb, s_vk, s_mb, s_mq, s_mk, s_db, s_dq, s_eb, s_eq, s_deb, s_deq,
                 HAS_MASK: tl.constexpr, SCORES: tl.constexpr, BQ: tl.constexpr, BK: tl.constexpr,
                 HP: tl.constexpr, BD: tl.constexpr):
    qb = tl.program_id(0)
    b = tl.program_id(1)
    offs_q = qb * BQ + tl.arange(0, BQ)
    offs_h, va = _hidden(VA, H, HP)
    qm = offs_q < Tq
    lse = tl.load(LSE + b * s_eb + offs_q * s_eq, mask=qm, other=0.0)
    di = tl.load(DI + b * s_eb + offs_q * s_eq, mask=qm, other=0.0)
    dws_acc = tl.zeros((BQ, HP), tl.float32)
    for k0 in range(0, Tk, BK):
        offs_k = k0 + tl.arange(0, BK)
        t = _tile(WS + b * s_wb, UH + b * s_ub, offs_q, offs_k, offs_h, Tq, Tk, H, s_wq, s_uk)
        de, p = _de(t, va, offs_q, offs_k, Tq, Tk, M + b * s_mb, s_mq, s_mk, DO + b * s_db, s_dq, lse, di,
                    V + b * s_vb, s_vk, Dv, DE + b * s_deb, s_deq, HAS_MASK, SCORES, BD)
        dws_acc += tl.sum(de[:, :, None] * va[None, None, :] * (1.0 - t * t), axis=1)
    tl.store(DWS + b * s_wb + offs_q[:, None] * s_wq + offs_h[None, :], dws_acc, mask=qm[:, None] & (offs_h[None, :] < H))


def _mask_args(mask: Tensor | None, like: Tensor) -> tuple[Tensor, tuple[int, int, int]]:
    if mask is None:
        return like, (0, 0, 0)
    m = mask.view(torch.uint8)  # the same strides (a broadcast [B, Tk] mask stays a stride-0 view)
    return m, tuple(m.stride())  # type: ignore[return-value]


def _sizes(ws: Tensor, uh: Tensor, value: Tensor | None) -> dict[str, int]:
    dv = 1 if value is None else value.shape[-1]
    hp = max(16, triton.next_power_of_2(ws.shape[-1]))
    # The [BQ, BK, HP] tile lives in registers: more warps share a wide one. A first guess, not tuned on
    # a GPU yet (gpu_check.sh's auto-table-additive step measures it).
    return {"HP": hp, "BD": max(16, triton.next_power_of_2(dv)), "num_warps": 8 if hp >= 64 else 4}


class _Fused(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ws: Tensor, uh: Tensor, va: Tensor, value: Tensor | None, mask: Tensor | None) -> Tensor:
        ws, uh, va = ws.contiguous(), uh.contiguous(), va.contiguous()
        scores = value is None
        b, tq, h = ws.shape
        tk = uh.shape[1]
        v = uh if scores else value.contiguous()
        dv = 1 if scores else v.shape[-1]
        out = torch.empty((b, tq, tk) if scores else (b, tq, dv), device=ws.device, dtype=torch.float32)
        lse = torch.empty((b, tq), device=ws.device, dtype=torch.float32)
        m, (smb, smq, smk) = _mask_args(mask, ws)
        _fwd[(triton.cdiv(tq, _BQ), b)](
            ws, uh, va, v, m, out, lse, tq, tk, h, dv,
            ws.stride(0), ws.stride(1), uh.stride(0), uh.stride(1), v.stride(0), v.stride(1), smb, smq, smk,
            out.stride(0), out.stride(1), lse.stride(0), lse.stride(1),
            HAS_MASK=mask is not None, SCORES=scores, BQ=_BQ, BK=_BK, **_sizes(ws, uh, value))
        out = out.to(ws.dtype)
        ctx.save_for_backward(ws, uh, va, v, mask if mask is not None else None, out, lse)
        ctx.scores = scores
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        ws, uh, va, v, mask, out, lse = ctx.saved_tensors
        scores = ctx.scores
        b, tq, h = ws.shape
        tk = uh.shape[1]
        grad = grad.contiguous().float()
        dv_size = 1 if scores else v.shape[-1]
        di = lse if scores else (grad * out.float()).sum(-1).contiguous()  # D_i = dO_i . O_i (unused for scores)
        dws = torch.empty(ws.shape, device=ws.device, dtype=torch.float32)
        duh = torch.empty(uh.shape, device=ws.device, dtype=torch.float32)
        dval = torch.empty(v.shape, device=ws.device, dtype=torch.float32)
        n_kb = triton.cdiv(tk, _BK)
        dva = torch.empty((b, n_kb, h), device=ws.device, dtype=torch.float32)
        m, (smb, smq, smk) = _mask_args(mask, ws)
        do, de = (ws, grad) if scores else (grad, ws)  # the one the mode does not read is a placeholder
        common = (ws.stride(0), ws.stride(1), uh.stride(0), uh.stride(1), v.stride(0), v.stride(1), smb, smq, smk,
                  do.stride(0), do.stride(1), lse.stride(0), lse.stride(1), de.stride(0), de.stride(1))
        meta = dict(HAS_MASK=mask is not None, SCORES=scores, BQ=_BQ, BK=_BK,
                    **_sizes(ws, uh, None if scores else v))
        _bwd_keys[(n_kb, b)](ws, uh, va, v, m, do, lse, di, de, dval, duh, dva, tq, tk, h, dv_size, *common, n_kb,
                             **meta)
        _bwd_queries[(triton.cdiv(tq, _BQ), b)](ws, uh, va, v, m, do, lse, di, de, dws, tq, tk, h, dv_size, *common,
                                                **meta)
        return (dws.to(ws.dtype), duh.to(uh.dtype), dva.sum((0, 1)).to(va.dtype),
                None if scores else dval.to(v.dtype), None)


def fused_additive_attention(ws: Tensor, uh: Tensor, va: Tensor, value: Tensor, mask: Tensor | None) -> Tensor:
    """``softmax_j(v_a^T tanh(ws_i + uh_j)) @ value`` without the ``[B, Tq, Tk, H]`` tensor, differentiable.

    :param ws: ``[B, Tq, H]`` = ``W_a s_i``; uh ``[B, Tk, H]`` = ``U_a h_j`` (+ ``b_a``); va ``[H]``.
    :param value: ``[B, Tk, Dv]``.
    :param mask: bool ``[B, Tq, Tk]`` (broadcast views welcome), True = may attend, or None.
    :returns: context ``[B, Tq, Dv]`` in ws' dtype; a row with no allowed key gives zeros.
    """
    return _Fused.apply(ws, uh, va, value, mask)


def fused_additive_scores(ws: Tensor, uh: Tensor, va: Tensor) -> Tensor:
    """``e_ij = v_a^T tanh(ws_i + uh_j)`` ``[B, Tq, Tk]`` without the ``[B, Tq, Tk, H]`` tensor, differentiable.

    Shapes as :func:`fused_additive_attention`.
    """
    return _Fused.apply(ws, uh, va, None, None)
