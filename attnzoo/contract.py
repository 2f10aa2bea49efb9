"""The mechanism contract: one call shape for every attention variant.

Every registered variant is an ``nn.Module`` whose forward is::

    forward(query, key=None, value=None, *, mask=None, state=None, need_weights=None)
        query  [B, Tq, Dq]
        key    [B, Tk, Dk]   (None: self-attention, key = query)
        value  [B, Tk, Dv]   (None: value = key)
        mask   bool [B, Tk] or [B, Tq, Tk]; True = may attend (as SDPA's boolean mask)
        state  variant-owned (NTM memory, ...), None when stateless
    -> AttentionOutput(context [B, Tq, Dv], weights [B, Tq, Tk] | None, state, aux)

A fully masked query row gets a zero context and zero weights, never NaN.

:class:`Attention` does the argument checking and mask normalisation once, so a
variant only writes :meth:`Attention.attend` on clean tensors.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "AttentionOutput",
    "Attention",
    "normalize_mask",
    "masked_softmax",
    "masked_log_softmax",
    "sdpa",
    "sdpa_one_head",
    "causal_mask",
    "mark_causal",
    "causal_keep_mask",
    "is_causal_mask",
    "carry_causal",
    "pointed_mask",
    "ScoreAttention",
    "default_scale",
    "compute_dtype",
    "uniform_attention",
]


@dataclass
class AttentionOutput:
    """What every variant returns.

    :ivar context: ``[B, Tq, Dv]`` the attended values.
    :ivar weights: ``[B, Tq, Tk]`` the attention distribution, or None when the
        variant took a fused path and weights were not requested.
    :ivar state: the variant's next state (stateful variants), else None.
    :ivar aux: extra tensors, e.g. ``log_prob``/``entropy`` (hard attention) or
        ``logits`` (pointer networks), as declared in the spec's ``aux_keys``.
    """

    context: Tensor
    weights: Tensor | None = None
    state: Any = None
    aux: dict[str, Tensor] = field(default_factory=dict)


def _shape(t: Tensor) -> str:
    return "[" + ", ".join(str(s) for s in t.shape) + "]"


def normalize_mask(mask: Tensor | None, batch: int, tq: int, tk: int, *, name: str = "mask") -> Tensor | None:
    """Validate a boolean attention mask and view it as ``[B, Tq, Tk]``.

    :param mask: bool ``[B, Tk]`` (the same keys for every query) or ``[B, Tq, Tk]``;
        True means the query may attend to that key. ``None`` passes through.
    :returns: bool ``[B, Tq, Tk]`` (a broadcast view, no copy) or None.
    :raises ValueError: wrong dtype or shape, naming the argument, the expected
        shape and what came.
    """
    if mask is None:
        return None
    if not isinstance(mask, Tensor):
        raise ValueError(f"{name}: expected a bool tensor [B, Tk] or [B, Tq, Tk], got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise ValueError(
            f"{name}: expected dtype torch.bool (True = may attend) with shape [{batch}, {tk}] or "
            f"[{batch}, {tq}, {tk}], got dtype {mask.dtype} shape {_shape(mask)}"
        )
    if mask.dim() == 2 and tuple(mask.shape) == (batch, tk):
        return mask[:, None, :].expand(batch, tq, tk)
    if mask.dim() == 3 and tuple(mask.shape) == (batch, tq, tk):
        return mask  # the same object, so a mark_causal tag stays on it
    raise ValueError(
        f"{name}: expected shape [B, Tk] = [{batch}, {tk}] or [B, Tq, Tk] = [{batch}, {tq}, {tk}], "
        f"got {_shape(mask)}"
    )


def masked_softmax(scores: Tensor, mask: Tensor | None, dim: int = -1) -> Tensor:
    """Softmax of ``scores`` over allowed positions; masked entries are exactly 0.

    A row with no allowed position returns all zeros (not NaN), so a padded
    query contributes a zero context and no gradient.

    :param scores: ``[..., Tk]`` real scores.
    :param mask: bool, broadcastable to ``scores``; True = allowed. None: plain softmax.
    """
    if mask is None:
        return torch.softmax(scores, dim=dim)
    # finfo.min instead of -inf keeps a fully masked row finite (uniform), and
    # multiplying by the mask afterwards turns that row into zeros.
    filled = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(filled, dim=dim) * mask


def masked_log_softmax(scores: Tensor, mask: Tensor | None, dim: int = -1) -> Tensor:
    """Log-softmax over allowed positions; masked entries get ``finfo.min`` (not -inf, not NaN)."""
    if mask is None:
        return torch.log_softmax(scores, dim=dim)
    filled = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    out = torch.log_softmax(filled, dim=dim)
    return out.masked_fill(~mask, torch.finfo(scores.dtype).min)


def causal_mask(tq: int, tk: int | None = None, *, device: torch.device | str | None = None) -> Tensor:
    """Bool ``[Tq, Tk]`` lower-triangular mask: query t may attend to keys <= t.

    When ``Tk > Tq`` the queries are aligned to the *last* Tq keys (as in
    decoding with a cache), so query t sees keys ``<= t + Tk - Tq``.
    """
    tk = tq if tk is None else tk
    return torch.ones(tq, tk, dtype=torch.bool, device=device).tril(diagonal=tk - tq)


_CAUSAL_TAG = "_attnzoo_causal"


def mark_causal(mask: Tensor) -> Tensor:
    """Say that ``mask`` is exactly :func:`causal_mask` for every batch row (causal, no padding).

    A backbone that knows its mask is causal and unpadded tags it, so fused paths may call SDPA
    with ``is_causal=True`` and no mask tensor (flash-eligible on CUDA) while every other path
    reads the same bool tensor as before. The tag lives on the tensor object: views made from it
    (:func:`normalize_mask`'s, the multi-head wrapper's) carry it on with :func:`is_causal_mask`.

    :param mask: bool ``[B, T, T]`` or ``[T, T]``, equal to ``causal_mask(T)`` in every row.
    :returns: ``mask`` itself, tagged.
    :raises ValueError: a mask that is not square bool (the tag promises ``Tq == Tk``).
    """
    if mask.dtype != torch.bool or mask.dim() < 2 or mask.shape[-1] != mask.shape[-2]:
        raise ValueError(f"mask: mark_causal expects a square bool mask [B, T, T], got dtype {mask.dtype} shape {_shape(mask)}")
    setattr(mask, _CAUSAL_TAG, True)
    return mask


def causal_keep_mask(keep: Tensor) -> Tensor:
    """A causal mask that also hides padded keys: ``keep`` bool ``[N, L]`` (True = a real token) ->
    ``causal_mask(L) & keep`` as bool ``[N, L, L]``, tagged with :func:`mark_causal` when nothing is padded.

    Under a ``torch.func`` transform (grouped cells vmap the backbone) whether anything is padded is a
    value that cannot leave the transform, so the mask stays untagged there: the same numbers, by the
    mask tensor path.
    """
    mask = causal_mask(keep.shape[-1], device=keep.device)[None] & keep[:, None, :]  # (N, L, L)
    try:
        unpadded = bool(keep.all())
    except RuntimeError:  # a vmapped tensor: data-dependent control flow is refused
        return mask
    return mark_causal(mask) if unpadded else mask


def is_causal_mask(mask: Tensor | None) -> bool:
    """Whether ``mask`` was tagged by :func:`mark_causal` (a square causal mask without padding)."""
    return mask is not None and getattr(mask, _CAUSAL_TAG, False)


def carry_causal(src: Tensor, view: Tensor) -> Tensor:
    """``view`` (a reshaped ``src``) tagged as causal when ``src`` is."""
    return mark_causal(view) if is_causal_mask(src) and view is not src else view


def pointed_mask(targets: Tensor, num_keys: int, mask: Tensor | None = None) -> Tensor:
    """Teacher forcing's exclusion mask: step i may not point where targets ``< i`` pointed.

    A mask like the causal one, so it lives with them: the pointer variant documents it and the
    pointer backbone builds it (permutation outputs such as sorting choose no element twice).

    :param targets: long ``[B, Tq]``, the target key index of each decoder step.
    :param num_keys: Tk.
    :param mask: optional bool ``[B, Tk]`` or ``[B, Tq, Tk]`` to combine with (True = allowed).
    :returns: bool ``[B, Tq, Tk]``, True = step i may point at key j.
    """
    b, tq = targets.shape
    hit = torch.zeros(b, tq, num_keys, dtype=torch.long, device=targets.device)
    hit.scatter_(2, targets[..., None], 1)  # (B, Tq, Tk) one-hot of each step's target
    before = (hit.cumsum(dim=1) - hit) > 0  # pointed by an earlier step
    allowed = ~before
    if mask is not None:
        allowed = allowed & (mask[:, None, :] if mask.dim() == 2 else mask)
    return allowed


def sdpa(query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None, scale: float | None = None) -> Tensor:
    """``F.scaled_dot_product_attention`` with the zoo's fully-masked-row rule.

    SDPA turns a row with no allowed key into NaN; here such a row gives zeros. 3-D inputs go in as
    ``(B, 1, T, D)`` views on every device: the fused kernels (flash, memory-efficient, cuDNN on CUDA;
    the flash kernel on the CPU) take only 4-D inputs, and SDPA silently runs its math kernel for 3-D
    ones. On the 2-core CPU the 4-D call took 0.36-0.86x of the 3-D call's forward+backward time at
    every shape measured (T 16-256, head width 16-64, no mask, causal and padded; issue 25), so no
    device keeps the 3-D call.

    :param query: ``[B, Tq, D]`` (or ``[B, H, Tq, D]``); key ``[B, Tk, D]``; value ``[B, Tk, Dv]``.
    A mask tagged by :func:`mark_causal` (square, causal, no padding) goes in as ``is_causal=True``
    with no mask tensor: the same numbers (bit for bit on the CPU, where the two calls share a
    kernel; tests/test_causal_flag.py), and on CUDA flash becomes eligible.

    :param mask: bool ``[B, Tq, Tk]`` (``[B, H or 1, Tq, Tk]`` with 4-D inputs) or None.
    :param scale: factor on ``q . k``; None means ``1 / sqrt(D)`` as in SDPA.
    :returns: ``[B, Tq, Dv]``.
    """
    if query.dim() == 3:
        return sdpa_one_head(query, key, value, mask, scale)
    if is_causal_mask(mask) and query.shape[-2] == key.shape[-2]:
        # Every row of a square causal mask has a key (itself), so no empty-row fix-up is needed.
        return F.scaled_dot_product_attention(query, key, value, is_causal=True, scale=scale)
    if mask is None:
        return F.scaled_dot_product_attention(query, key, value, scale=scale)
    has_key = mask.any(dim=-1, keepdim=True)  # (B, Tq, 1)
    # Let empty rows attend everywhere so SDPA stays finite, then zero them.
    safe = mask | ~has_key
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=safe, scale=scale)
    return out * has_key


def sdpa_one_head(query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None, scale: float | None = None) -> Tensor:
    """:func:`sdpa` of 3-D inputs on ``(B, 1, T, D)`` views (:func:`sdpa` takes this path itself for 3-D
    inputs). Shapes as :func:`sdpa`."""
    m = None if mask is None else carry_causal(mask, mask[:, None])  # (B, 1, Tq, Tk)
    return sdpa(query[:, None], key[:, None], value[:, None], m, scale=scale)[:, 0]  # (B, Tq, Dv)


def _check_floating(name: str, t: Tensor) -> None:
    # Integer or bool inputs would fail deep inside a matmul or softmax with a
    # message about "m1"/"self"; name the argument here instead.
    if not t.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor (e.g. torch.float32), got dtype {t.dtype} shape {_shape(t)}")


def _autocast_on(device: torch.device) -> bool:
    try:
        return torch.is_autocast_enabled(device.type)
    except TypeError:  # torch < 2.4 has no device argument
        return torch.is_autocast_enabled() if device.type == "cuda" else torch.is_autocast_cpu_enabled()


def compute_dtype(t: Tensor) -> str:
    """The dtype an op on ``t`` computes in, as a name (``"float32"``, ``"bfloat16"``): autocast's
    dtype where autocast is on for ``t``'s device, else ``t``'s own."""
    dtype = t.dtype
    if _autocast_on(t.device):
        get = getattr(torch, "get_autocast_dtype", None)  # torch >= 2.4
        dtype = get(t.device.type) if get is not None else (
            torch.get_autocast_gpu_dtype() if t.device.type == "cuda" else torch.get_autocast_cpu_dtype())
    return str(dtype).removeprefix("torch.")


def _check_like_query(name: str, t: Tensor, query: Tensor) -> None:
    """``t`` (key or value) must be on query's device and, outside autocast, have query's dtype."""
    if t.device != query.device:
        raise ValueError(f"{name}: expected the device of query ({query.device}), got {t.device}")
    if t.dtype != query.dtype and not _autocast_on(query.device):
        raise ValueError(
            f"{name}: expected the dtype of query ({query.dtype}), got {t.dtype} "
            f"(cast it with .to(query.dtype), or run under torch.autocast for mixed precision)"
        )


#: how many :func:`uniform_attention` blocks are open (module-global: the ablation is a test-time probe
#: run on one thread, and a flag here reaches every variant without a backbone passing anything down)
_UNIFORM_DEPTH = 0


@contextmanager
def uniform_attention() -> Iterator[None]:
    """Within the block, every variant's output is replaced by uniform attention over its allowed keys.

    The uniform-attention ablation of Wiegreffe & Pinter (2019, "Attention is not not Explanation",
    Sec. 3.1): the model runs as trained, but each attention call returns the mean of its values over
    the keys its mask allows (weights ``1 / #allowed``), so a metric measured inside the block, beside
    the same metric outside it, says how much the learned alignment is worth. The variant's own
    :meth:`Attention.attend` still runs (its state, e.g. the NTM's memory writes, evolves as trained);
    :meth:`Attention.uniform_output` decides what replaces its output. Not thread-safe; nestable.
    """
    global _UNIFORM_DEPTH
    _UNIFORM_DEPTH += 1
    try:
        yield
    finally:
        _UNIFORM_DEPTH -= 1


def check_like_parameters(query: Tensor, module: nn.Module) -> None:
    """Outside autocast, ``query`` must have the dtype of the module's own parameters (else a matmul
    deep inside fails with "mat1 and mat2 must have the same dtype", naming no argument)."""
    param = next(module.parameters(), None)
    if param is None or not param.is_floating_point() or param.dtype == query.dtype or _autocast_on(query.device):
        return
    raise ValueError(
        f"query: expected the dtype of {type(module).__name__}'s parameters ({param.dtype}), got {query.dtype} "
        f"shape {_shape(query)} (cast the module with .to({query.dtype}) or the query with .to({param.dtype}), "
        f"or run under torch.autocast for mixed precision)"
    )


class Attention(nn.Module):
    """Base class for variants: checks arguments once, then calls :meth:`attend`.

    Subclasses set ``query_dim``/``key_dim``/``value_dim`` through ``__init__``
    and implement :meth:`attend` on validated tensors. ``need_weights`` (a
    module attribute, overridable per call) asks fast paths to return weights.

    :param query_dim: Dq, feature size of the query.
    :param key_dim: Dk, feature size of the key (default Dq).
    :param value_dim: Dv, feature size of the value (default Dk).
    """

    def __init__(
        self,
        query_dim: int,
        key_dim: int | None = None,
        value_dim: int | None = None,
        *,
        need_weights: bool = False,
    ) -> None:
        super().__init__()
        key_dim = query_dim if key_dim is None else key_dim
        value_dim = key_dim if value_dim is None else value_dim
        for arg, val in (("query_dim", query_dim), ("key_dim", key_dim), ("value_dim", value_dim)):
            if not isinstance(val, int) or isinstance(val, bool) or val <= 0:
                raise ValueError(f"{arg}: expected a positive int, got {val!r}")
        self.query_dim = query_dim
        self.key_dim = key_dim
        self.value_dim = value_dim
        self.need_weights = need_weights

    def extra_repr(self) -> str:
        return f"query_dim={self.query_dim}, key_dim={self.key_dim}, value_dim={self.value_dim}"

    def check_query(self, query: Tensor) -> Tensor:
        """Validate ``query [B, Tq, Dq]`` alone (query-only variants such as the NTM call just this).

        :raises ValueError: naming the expected shape (or a floating dtype) and what came.
        """
        if not isinstance(query, Tensor) or query.dim() != 3:
            got = _shape(query) if isinstance(query, Tensor) else type(query).__name__
            raise ValueError(f"query: expected a 3-D tensor [B, Tq, {self.query_dim}], got {got}")
        if query.shape[-1] != self.query_dim:
            raise ValueError(f"query: expected last dim {self.query_dim} ([B, Tq, {self.query_dim}]), got {_shape(query)}")
        _check_floating("query", query)
        return query

    def check_inputs(
        self, query: Tensor, key: Tensor | None, value: Tensor | None, mask: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """Fill in self-attention defaults, validate shapes, normalise the mask.

        :returns: ``(query [B,Tq,Dq], key [B,Tk,Dk], value [B,Tk,Dv], mask [B,Tq,Tk] | None)``.
        Key and value must be floating tensors on query's device with query's
        dtype; under autocast mixed floating dtypes are allowed, since autocast
        casts them per op (an fp32 key beside a bf16 query is what autocast makes).

        :raises ValueError: naming the argument, the expected shape, dtype or
            device and what came.
        """
        self.check_query(query)
        if key is None:
            key = query
        if value is None:
            value = key
        b, tq, _ = query.shape
        for arg, t, d in (("key", key, self.key_dim), ("value", value, self.value_dim)):
            if not isinstance(t, Tensor) or t.dim() != 3:
                got = _shape(t) if isinstance(t, Tensor) else type(t).__name__
                raise ValueError(f"{arg}: expected a 3-D tensor [B, Tk, {d}], got {got}")
            if t.shape[0] != b:
                raise ValueError(f"{arg}: expected batch size {b} (query's), shape [{b}, Tk, {d}], got {_shape(t)}")
            if t.shape[-1] != d:
                raise ValueError(f"{arg}: expected last dim {d} ([{b}, Tk, {d}]), got {_shape(t)}")
        for arg, t in (("key", key), ("value", value)):
            _check_floating(arg, t)
            _check_like_query(arg, t, query)
        tk = key.shape[1]
        if value.shape[1] != tk:
            raise ValueError(f"value: expected {tk} positions like key ([{b}, {tk}, {self.value_dim}]), got {_shape(value)}")
        if tk == 0:
            raise ValueError(f"key: expected at least one position, got {_shape(key)}")
        check_like_parameters(query, self)
        return query, key, value, normalize_mask(mask, b, tq, tk)

    def forward(
        self,
        query: Tensor,
        key: Tensor | None = None,
        value: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        state: Any = None,
        need_weights: bool | None = None,
    ) -> AttentionOutput:
        query, key, value, mask = self.check_inputs(query, key, value, mask)
        want = self.need_weights if need_weights is None else need_weights
        out = self.attend(query, key, value, mask, state=state, need_weights=want)
        if _UNIFORM_DEPTH and self.ablate_uniformly:
            return self.uniform_output(query, key, value, mask, out)
        return out

    #: whether :func:`uniform_attention` replaces this module's output; a wrapper whose inner variant is
    #: itself an :class:`Attention` (the multi-head combinator) sets False, so only the innermost weights
    #: are replaced and the wrapper's projections still run
    ablate_uniformly: bool = True

    def uniform_output(self, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None,
                       out: AttentionOutput) -> AttentionOutput:
        """What :func:`uniform_attention` returns in place of ``out``: context = mean of ``value`` over the
        allowed keys (zero for a fully masked row), weights ``1 / #allowed`` on them; a pointer's
        ``aux["logits"]`` become uniform too (so its output is chance) and a sampler's ``aux["probs"]``
        the uniform distribution. Shapes as :meth:`attend`; a variant whose context is not a weighted
        sum of ``value`` (the NTM reads its memory) overrides this.
        """
        b, tq, _ = query.shape
        tk = key.shape[1]
        allowed = torch.ones(b, tq, tk, dtype=torch.bool, device=query.device) if mask is None else mask
        weights = allowed.to(value.dtype) / allowed.sum(dim=-1, keepdim=True).clamp_min(1).to(value.dtype)  # (B, Tq, Tk)
        aux = dict(out.aux)
        if "logits" in aux:
            aux["logits"] = torch.zeros_like(aux["logits"]).masked_fill(~allowed, torch.finfo(aux["logits"].dtype).min)
        if "probs" in aux:
            aux["probs"] = weights.to(aux["probs"].dtype)
        context = torch.bmm(weights, value)  # (B, Tq, Dv)
        return AttentionOutput(context, weights if out.weights is not None else None, out.state, aux)

    def attend(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        mask: Tensor | None,
        *,
        state: Any = None,
        need_weights: bool = True,
    ) -> AttentionOutput:
        """Compute attention on validated inputs (mask already ``[B, Tq, Tk]``)."""
        raise NotImplementedError(f"{type(self).__name__} must implement attend()")


class ScoreAttention(Attention):
    """A variant defined by a score function: weights = softmax(score(q, k)), context = weights @ v.

    Subclasses implement :meth:`score` returning ``[B, Tq, Tk]``. This covers
    Luong's dot/general, Bahdanau's additive, Graves' content addressing and
    Vaswani's scaled dot product; hard and local attention reuse ``score``.
    """

    def score(self, query: Tensor, key: Tensor) -> Tensor:
        """Unnormalised scores ``[B, Tq, Tk]`` from query ``[B, Tq, Dq]`` and key ``[B, Tk, Dk]``."""
        raise NotImplementedError(f"{type(self).__name__} must implement score()")

    def attend(self, query, key, value, mask, *, state=None, need_weights=True):
        weights = masked_softmax(self.score(query, key), mask)  # (B, Tq, Tk)
        return AttentionOutput(torch.bmm(weights, value), weights)


def default_scale(dim: int) -> float:
    """Vaswani et al. 2017, Eq. (1): the 1/sqrt(d_k) factor."""
    return 1.0 / math.sqrt(dim)
