"""Multi-head wrapper: any per-head variant as Transformer-style attention.

A combinator of the core, beside the contract it implements, not a paper's variant: the
registry builds it around any variant whose spec allows ``multihead`` (``create_attention(name,
D, num_heads=H)``), and the conformance kit runs every such variant through it.

Vaswani et al. (2017), Sec. 3.2.2:
``MultiHead(Q, K, V) = Concat(head_1..head_H) W^O``, ``head_i = Attn(Q W_i^Q, K W_i^K, V W_i^V)``.

The inner variant is built once for the head size and applied to all heads at
once by folding heads into the batch (``[B*H, T, d]``), so heads share the
variant's own parameters (e.g. ``general``'s W_a) and differ through the
projections. That keeps one batched call instead of a Python loop over heads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from attnzoo.contract import Attention, AttentionOutput, carry_causal

__all__ = ["MultiHeadAttention"]


class MultiHeadAttention(Attention):
    """H heads of ``variant`` with Q/K/V/output projections.

    Shapes: query ``[B, Tq, Dq]``, key ``[B, Tk, Dk]``, value ``[B, Tk, Dv]``
    -> context ``[B, Tq, out_dim]`` (default ``out_dim = Dv``), weights
    ``[B, Tq, Tk]`` averaged over heads (per head in ``aux["head_weights"]``,
    ``[B, H, Tq, Tk]``). Per-head aux tensors come back as ``[B, H, ...]``.

    :param variant: the per-head factory ``f(d, d, dv, **kwargs) -> nn.Module`` (a variant's
        class); :func:`attnzoo.create_attention` ``(name, D, num_heads=H)`` wraps a registered
        variant by name, so this module never looks names up (the registry sits above it).
    :param name: how the variant is shown in ``repr`` (default: the factory's ``__name__``).
    :param num_heads: H.
    :param head_dim: per-head query/key size (default ``query_dim // H``).
    :param value_head_dim: per-head value size (default ``value_dim // H``).
    :param out_dim: output size (default ``value_dim``).
    :param bias: bias in the four projections.
    :param variant_kwargs: passed to the variant.
    """

    def __init__(
        self,
        variant: Callable[..., nn.Module],
        query_dim: int,
        key_dim: int | None = None,
        value_dim: int | None = None,
        *,
        num_heads: int,
        head_dim: int | None = None,
        value_head_dim: int | None = None,
        out_dim: int | None = None,
        bias: bool = True,
        need_weights: bool = False,
        name: str | None = None,
        **variant_kwargs: Any,
    ) -> None:
        super().__init__(query_dim, key_dim, value_dim, need_weights=need_weights)
        if not isinstance(num_heads, int) or num_heads <= 0:
            raise ValueError(f"num_heads: expected a positive int, got {num_heads!r}")
        for arg, dim in (("query_dim", self.query_dim), ("value_dim", self.value_dim)):
            if (head_dim if arg == "query_dim" else value_head_dim) is None and dim % num_heads:
                raise ValueError(
                    f"{arg}: {dim} is not divisible by num_heads={num_heads}; "
                    f"pass {'head_dim' if arg == 'query_dim' else 'value_head_dim'} explicitly"
                )
        self.num_heads = num_heads
        self.head_dim = head_dim or self.query_dim // num_heads
        self.value_head_dim = value_head_dim or self.value_dim // num_heads
        self.out_dim = out_dim or self.value_dim
        h, d, dv = num_heads, self.head_dim, self.value_head_dim
        self.q_proj = nn.Linear(self.query_dim, h * d, bias=bias)
        self.k_proj = nn.Linear(self.key_dim, h * d, bias=bias)
        self.v_proj = nn.Linear(self.value_dim, h * dv, bias=bias)
        self.out_proj = nn.Linear(h * dv, self.out_dim, bias=bias)
        if isinstance(variant, str) or not callable(variant):
            raise TypeError(
                f"variant: expected the per-head factory (a variant class), got {variant!r}; "
                f"to wrap a registered variant by name use attnzoo.create_attention({variant!r}, "
                f"query_dim, num_heads={num_heads})"
            )
        self.variant_name = name or getattr(variant, "__name__", type(variant).__name__)
        self.inner = variant(d, d, dv, **variant_kwargs)

    ablate_uniformly = False  # the inner variant's weights are replaced; the projections still run

    def _split(self, x: Tensor, d: int) -> Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, d).transpose(1, 2).reshape(b * self.num_heads, t, d)  # (B*H, T, d)

    def attend(self, query, key, value, mask, *, state=None, need_weights=True) -> AttentionOutput:
        b, tq, _ = query.shape
        h = self.num_heads
        q = self._split(self.q_proj(query), self.head_dim)  # (B*H, Tq, d)
        k = self._split(self.k_proj(key), self.head_dim)  # (B*H, Tk, d)
        v = self._split(self.v_proj(value), self.value_head_dim)  # (B*H, Tk, dv)
        if mask is not None:
            tk = mask.shape[-1]
            if mask.stride(1) == 0 or tq == 1:
                # A key mask broadcast over queries stays [B*H, Tk]: windowed variants then
                # never see a dense Tq x Tk tensor.
                mask = mask[:, 0].repeat_interleave(h, dim=0)  # (B*H, Tk)
            else:
                mask = carry_causal(mask, mask[:, None].expand(b, h, tq, tk).reshape(b * h, tq, tk))  # (B*H, Tq, Tk)
        out = self.inner(q, k, v, mask=mask, state=state, need_weights=need_weights)
        ctx = out.context.view(b, h, tq, self.value_head_dim).transpose(1, 2).reshape(b, tq, h * self.value_head_dim)
        aux = {name: t.reshape(b, h, *t.shape[1:]) for name, t in out.aux.items()}
        weights = None
        if out.weights is not None:
            per_head = out.weights.view(b, h, tq, -1)  # (B, H, Tq, Tk)
            aux["head_weights"] = per_head
            weights = per_head.mean(dim=1)
        context = self.out_proj(ctx)
        if mask is not None:
            # out_proj's bias would give a fully masked query a non-zero context; the contract says zeros.
            has_key = mask.view(b, h, -1, mask.shape[-1])[:, 0].any(dim=-1, keepdim=True)  # (B, Tq or 1, 1)
            context = context * has_key
        return AttentionOutput(context, weights, out.state, aux)

    def extra_repr(self) -> str:
        return f"{self.variant_name!r}, num_heads={self.num_heads}, head_dim={self.head_dim}, out_dim={self.out_dim}"
