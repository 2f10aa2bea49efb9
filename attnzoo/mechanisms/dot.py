"""Multiplicative scores: Luong's ``dot`` and ``general``, Vaswani's ``scaled-dot``.

- Luong, Pham, Manning (2015). *Effective Approaches to Attention-based Neural
  Machine Translation.* EMNLP. arXiv:1508.04025, Eq. (7)-(8).
- Vaswani et al. (2017). *Attention Is All You Need.* NeurIPS.
  arXiv:1706.03762, Eq. (1).

All three fold into one ``q' . k * s`` product, so when weights are not asked
for they run through a fused kernel, and through a plain softmax(QK^T)V
reference path otherwise. ``impl`` picks the fused path:

- ``"sdpa"``: ``F.scaled_dot_product_attention`` (:func:`attnzoo.contract.sdpa`). On CUDA
  the inputs go in as 4-D views ``(B, 1, T, D)``: PyTorch's fused CUDA kernels (flash, memory-
  efficient, cuDNN) take only 4-D inputs and silently fall back to the math
  kernel for 3-D ones. Without a mask flash is eligible; a boolean mask rules
  flash out but not the memory-efficient kernel. On the CPU the call stays 3-D
  as it always was, so CPU results are unchanged bit for bit.
- ``"flex"``: FlexAttention (``torch.nn.attention.flex_attention``) with a
  block mask built from the boolean mask, so blocks with no allowed key (half
  of a causal mask, all but the band of a window) are skipped. Compiled on
  CUDA; eager elsewhere (the CPU runs it forward only, for equality checks).
- ``"auto"`` (default): ``"sdpa"``, except that on CUDA it takes ``"flex"`` for a per-query
  mask where Flex *measured* faster than SDPA for that dtype and mask kind (``"causal"`` for a
  mask tagged by :func:`attnzoo.contract.mark_causal`, ``"masked"`` for any other per-query mask)
  at that many keys: :data:`attnzoo.autotable.AUTO_MIN_KEYS`, from the GPU results file. The
  one measurement so far (H200, fp32) has Flex 2.3-2.8x slower, and nothing is measured for
  bf16 or the causal kind, so today ``auto`` is SDPA everywhere. A Flex failure (no Triton, a
  shape the kernel refuses) falls back to SDPA with one warning.

A backbone's causal mask without padding (tagged with :func:`attnzoo.contract.mark_causal`)
reaches SDPA as ``is_causal=True`` with no mask tensor, so flash is eligible on CUDA; a padded
mask stays a tensor.
- ``"reference"``: always the softmax(QK^T)V path (weights computed, then dropped).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor, nn

from attnzoo.autotable import auto_takes
from attnzoo.contract import (AttentionOutput, ScoreAttention, compute_dtype, default_scale, is_causal_mask,
                              masked_softmax, sdpa, sdpa_one_head)
from attnzoo.hookspecs import hookimpl
from attnzoo.spec import AttentionSpec

__all__ = ["DotAttention", "ScaledDotAttention", "GeneralAttention", "IMPLS", "FLEX_MIN_KEYS",
           "flex_available", "fused_attention", "mask_kind", "sdpa_4d"]

#: the fused paths ``impl`` may name (see the module docstring)
IMPLS = ("auto", "sdpa", "flex", "reference")
#: the longest key count from which an earlier release's ``impl="auto"`` took FlexAttention on CUDA;
#: kept for callers. ``auto`` now follows :data:`attnzoo.autotable.AUTO_MIN_KEYS` (measured), where
#: Flex has no entry that wins.
FLEX_MIN_KEYS = 1024

_flex_state: dict[str, Any] = {"compiled": None, "warned": False}


def flex_available() -> bool:
    """Whether the installed torch has FlexAttention (torch >= 2.5)."""
    try:
        from torch.nn.attention import flex_attention  # noqa: F401
    except ImportError:
        return False
    return True


def _flex_fn(device: torch.device) -> Any:
    from torch.nn.attention.flex_attention import flex_attention

    if device.type != "cuda":
        return flex_attention  # eager: an unfused reference implementation, forward only on the CPU
    if _flex_state["compiled"] is None:
        _flex_state["compiled"] = torch.compile(flex_attention, dynamic=False)
    return _flex_state["compiled"]


def _flex(query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None, scale: float) -> Tensor:
    """FlexAttention on ``(B, 1, T, D)`` views; the block mask skips blocks with no allowed key.

    :param mask: bool ``[B, Tq, Tk]`` (rows with no allowed key already given every key) or None.
    """
    from torch.nn.attention.flex_attention import create_block_mask

    b, tq, _ = query.shape
    tk = key.shape[1]
    block_mask = None
    if mask is not None:
        dense = mask.contiguous()

        def mask_mod(bi: Tensor, hi: Tensor, qi: Tensor, ki: Tensor) -> Tensor:
            return dense[bi, qi, ki]

        block_mask = create_block_mask(mask_mod, b, None, tq, tk, device=query.device,
                                       _compile=query.device.type == "cuda")
    out = _flex_fn(query.device)(query[:, None], key[:, None], value[:, None], block_mask=block_mask,
                                 scale=scale)  # (B, 1, Tq, Dv)
    return out[:, 0]


def mask_kind(mask: Tensor | None) -> str:
    """The mask kind :data:`attnzoo.autotable.AUTO_MIN_KEYS` keys on: ``"none"``, ``"causal"``
    (tagged by :func:`attnzoo.contract.mark_causal`), ``"keys"`` (one key mask for every query,
    a broadcast ``[B, Tk]``) or ``"masked"`` (any other per-query mask)."""
    if mask is None:
        return "none"
    if is_causal_mask(mask):
        return "causal"
    return "keys" if mask.stride(1) == 0 else "masked"


def _auto_flex(query: Tensor, key: Tensor, mask: Tensor | None) -> bool:
    """``impl="auto"``'s choice: Flex only on CUDA, and only where it measured faster than SDPA."""
    if query.device.type != "cuda" or mask is None:
        return False
    return auto_takes("flex", compute_dtype(query), mask_kind(mask), key.shape[1]) and flex_available()


def fused_attention(query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None, scale: float,
                    impl: str = "auto") -> Tensor:
    """softmax(scale * q k^T) v through a fused kernel, with the zoo's fully-masked-row rule.

    :param query: ``[B, Tq, D]``; key ``[B, Tk, D]``; value ``[B, Tk, Dv]``.
    :param mask: bool ``[B, Tq, Tk]`` (True = may attend), or None.
    :param impl: ``"auto"``, ``"sdpa"`` or ``"flex"`` (the module docstring says which kernel each takes).
    :returns: context ``[B, Tq, Dv]``; a query with no allowed key gets zeros.
    """
    use_flex = impl == "flex" or (impl == "auto" and _auto_flex(query, key, mask))
    if use_flex:
        has_key = None
        safe = mask
        if mask is not None:
            has_key = mask.any(dim=-1, keepdim=True)  # (B, Tq, 1)
            safe = mask | ~has_key  # an empty row attends everywhere, then is zeroed
        try:
            out = _flex(query, key, value, safe, scale)
            return out if has_key is None else out * has_key
        except Exception as exc:  # noqa: BLE001 - "auto" must not take a training run down
            if impl == "flex":
                raise
            if not _flex_state["warned"]:
                _flex_state["warned"] = True
                warnings.warn(f"FlexAttention failed ({type(exc).__name__}: {exc}); using SDPA instead",
                              RuntimeWarning, stacklevel=2)
    return sdpa(query, key, value, mask, scale=scale)  # 4-D views on every device (contract.sdpa)


def sdpa_4d(query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None, scale: float) -> Tensor:
    """:func:`attnzoo.contract.sdpa` on ``(B, 1, T, D)`` views, what ``contract.sdpa`` itself now does for
    3-D inputs on every device; kept as a name for callers and tests.

    Shapes as :func:`fused_attention`; the same numbers as the 3-D call up to the kernel's rounding.
    """
    return sdpa_one_head(query, key, value, mask, scale)

LUONG = "Luong, Pham, Manning 2015. Effective Approaches to Attention-based Neural Machine Translation. EMNLP"
LUONG_URL = "https://arxiv.org/abs/1508.04025"


class _Multiplicative(ScoreAttention):
    """score(q, k) = s * (project(q) . k); a fused path (``impl``) when weights are not needed."""

    scale: float
    impl: str = "auto"

    def _set_impl(self, impl: str) -> None:
        if impl not in IMPLS:
            raise ValueError(f"impl: expected one of {', '.join(map(repr, IMPLS))}, got {impl!r}")
        self.impl = impl

    def project_query(self, query: Tensor) -> Tensor:
        return query

    def score(self, query: Tensor, key: Tensor) -> Tensor:
        q = self.project_query(query)  # (B, Tq, Dk)
        scores = torch.bmm(q, key.transpose(1, 2))  # (B, Tq, Tk)
        # x * 1.0 == x exactly, so skipping it changes no number; it saves a [B, Tq, Tk] pass each way.
        return scores if self.scale == 1.0 else scores * self.scale

    def attend(self, query, key, value, mask, *, state=None, need_weights=True) -> AttentionOutput:
        if need_weights or self.impl == "reference":
            weights = masked_softmax(self.score(query, key), mask)  # (B, Tq, Tk)
            return AttentionOutput(torch.bmm(weights, value), weights if need_weights else None)
        q = self.project_query(query)  # (B, Tq, Dk)
        return AttentionOutput(fused_attention(q, key, value, mask, self.scale, self.impl))

    def extra_repr(self) -> str:
        return super().extra_repr() + ("" if self.impl == "auto" else f", impl={self.impl!r}")


class DotAttention(_Multiplicative):
    r"""Luong's *dot* score (Luong et al. 2015, Eq. 8):

    .. math:: \mathrm{score}(h_t, \bar h_s) = h_t^\top \bar h_s,\quad
              a_t = \mathrm{softmax}(\mathrm{score}),\quad c_t = \sum_s a_t(s)\,\bar h_s

    No parameters. Requires ``query_dim == key_dim``.

    Shapes: query ``[B, Tq, D]``, key ``[B, Tk, D]``, value ``[B, Tk, Dv]`` ->
    context ``[B, Tq, Dv]``, weights ``[B, Tq, Tk]``.

    :param need_weights: return weights by default (takes the reference path).
    :param impl: the fused path without weights: "auto" (default), "sdpa", "flex" or "reference"
        (see :mod:`attnzoo.mechanisms.dot`).
    """

    def __init__(self, query_dim: int, key_dim: int | None = None, value_dim: int | None = None, *,
                 need_weights: bool = False, impl: str = "auto") -> None:
        super().__init__(query_dim, key_dim, value_dim, need_weights=need_weights)
        self._set_impl(impl)
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
    to ``F.scaled_dot_product_attention`` (4-D on CUDA, so the flash and memory-efficient
    kernels are eligible) or, with ``impl="flex"`` or a long masked input on CUDA, FlexAttention.

    :param scale: the factor on ``q . k``; default ``1 / sqrt(key_dim)``.
    :param impl: as :class:`DotAttention`.
    """

    def __init__(
        self,
        query_dim: int,
        key_dim: int | None = None,
        value_dim: int | None = None,
        *,
        scale: float | None = None,
        need_weights: bool = False,
        impl: str = "auto",
    ) -> None:
        super().__init__(query_dim, key_dim, value_dim, need_weights=need_weights, impl=impl)
        self.scale = default_scale(self.key_dim) if scale is None else float(scale)


class GeneralAttention(_Multiplicative):
    r"""Luong's *general* score (Luong et al. 2015, Eq. 8):

    .. math:: \mathrm{score}(h_t, \bar h_s) = h_t^\top W_a \bar h_s

    ``W_a`` is ``[Dq, Dk]`` (stored as ``W_a.weight`` ``[Dk, Dq]``, an
    ``nn.Linear`` without bias), so query and key sizes may differ. The fused
    path folds ``W_a`` into the query: ``(h_t^T W_a) . h_s``.

    Shapes: query ``[B, Tq, Dq]``, key ``[B, Tk, Dk]``, value ``[B, Tk, Dv]``.

    :param impl: as :class:`DotAttention`.
    """

    def __init__(self, query_dim: int, key_dim: int | None = None, value_dim: int | None = None, *,
                 need_weights: bool = False, impl: str = "auto") -> None:
        super().__init__(query_dim, key_dim, value_dim, need_weights=need_weights)
        self._set_impl(impl)
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
