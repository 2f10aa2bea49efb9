"""Pointer attention: the attention distribution over inputs is the output.

- Vinyals, Fortunato, Jaitly (2015). *Pointer Networks.* NeurIPS.
  arXiv:1506.03134, Sec. 2.3, Eq. (3).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from attnzoo.contract import AttentionOutput, masked_softmax, pointed_mask
from attnzoo.mechanisms.additive import AdditiveAttention
from attnzoo.hookspecs import hookimpl
from attnzoo.spec import AttentionSpec

__all__ = ["PointerAttention", "pointed_mask"]  # pointed_mask: attnzoo.contract's, re-exported

VINYALS = "Vinyals, Fortunato, Jaitly 2015. Pointer Networks. NeurIPS, Eq. (3)"
VINYALS_URL = "https://arxiv.org/abs/1506.03134"


class PointerAttention(AdditiveAttention):
    r"""Pointer network attention (Vinyals et al. 2015, Eq. (3)).

    .. math:: u^i_j = v^\top \tanh(W_1 e_j + W_2 d_i),\qquad
              p(C_i \mid C_1, \dots, C_{i-1}, \mathcal{P}) = \mathrm{softmax}(u^i)

    ``e_j`` are the encoder states (keys), ``d_i`` the decoder states
    (queries). The softmax over input positions *is* the output distribution:
    ``aux["logits"]`` holds ``u`` ``[B, Tq, Tk]`` with masked positions set to
    ``torch.finfo(dtype).min`` (never -inf or NaN), ready for cross-entropy
    against target indices. ``weights = softmax(u)`` and, so the module also
    works as ordinary attention, ``context = weights @ value``.

    Excluding already-pointed positions (for permutation outputs such as
    sorting; not in Eq. (3)): with ``exclude_pointed=True`` the module keeps a
    ``state``, bool ``[B, Tk]`` of positions already pointed at (None = none
    yet). Query step i may not point at them, nor at the argmax of any earlier
    step of the same call; the returned state adds each step's argmax. Decode
    one step at a time by feeding the returned state back. Under teacher
    forcing exclude the *targets* instead, by passing
    ``mask=pointed_mask(targets, Tk, pad_mask)`` with ``exclude_pointed=False``.

    Shapes: query ``[B, Tq, Dq]``, key ``[B, Tk, Dk]``, value ``[B, Tk, Dv]`` ->
    context ``[B, Tq, Dv]``, weights ``[B, Tq, Tk]``, ``aux["logits"]`` ``[B, Tq, Tk]``.

    :param hidden_dim: size of ``W_1 e_j`` and ``W_2 d_i`` (default ``query_dim``).
    :param exclude_pointed: keep and honour the pointed-positions state (default False).
    :param chunk_size: queries scored at once (see :class:`AdditiveAttention`), so the
        ``[B, Tq, Tk, hidden]`` tensor is never built whole for long inputs.
    :param impl: how the score is computed, as :class:`AdditiveAttention`'s: ``"triton"`` scores
        with the fused kernel (no ``[B, Tq, Tk, hidden]`` tensor at all; the ``[B, Tq, Tk]`` scores
        are this variant's output).
    """

    def __init__(
        self,
        query_dim: int,
        key_dim: int | None = None,
        value_dim: int | None = None,
        *,
        hidden_dim: int | None = None,
        exclude_pointed: bool = False,
        chunk_size: int | None = None,
        need_weights: bool = False,
        impl: str = "auto",
    ) -> None:
        # Eq. (3) is Bahdanau's score with W1 = U_a (on encoder states e_j), W2 = W_a (on
        # the decoder state d_i) and v = v_a, so it reuses AdditiveAttention's chunked scoring.
        super().__init__(query_dim, key_dim, value_dim, hidden_dim=hidden_dim or query_dim,
                         chunk_size=chunk_size, need_weights=need_weights, impl=impl)
        self.exclude_pointed = exclude_pointed

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, exclude_pointed={self.exclude_pointed}"

    def _exclude(self, scores: Tensor, mask: Tensor | None, state: Any) -> tuple[Tensor, Tensor]:
        """Mask each step against what earlier steps (and ``state``) pointed at; return (mask, next state)."""
        b, tq, tk = scores.shape
        if state is None:
            pointed = torch.zeros(b, tk, dtype=torch.bool, device=scores.device)
        elif isinstance(state, Tensor) and state.dtype == torch.bool and tuple(state.shape) == (b, tk):
            pointed = state.clone()
        else:
            got = f"{state.dtype} {tuple(state.shape)}" if isinstance(state, Tensor) else type(state).__name__
            raise ValueError(f"state: expected None or a bool tensor [B, Tk] = [{b}, {tk}] of pointed positions, got {got}")
        base = torch.ones_like(scores, dtype=torch.bool) if mask is None else mask
        rows = []
        detached = scores.detach()
        for i in range(tq):  # only an argmax per step; the scores are computed once
            row = base[:, i] & ~pointed  # (B, Tk)
            rows.append(row)
            choice = detached[:, i].masked_fill(~row, float("-inf")).argmax(dim=-1)  # (B,)
            pointed = pointed | (F.one_hot(choice, tk).bool() & row.any(-1, keepdim=True))
        return torch.stack(rows, dim=1), pointed  # (B, Tq, Tk), (B, Tk)

    def attend(self, query, key, value, mask, *, state=None, need_weights=True) -> AttentionOutput:
        scores = self.score(query, key)  # (B, Tq, Tk)
        if self.exclude_pointed:
            mask, state = self._exclude(scores, mask, state)
        weights = masked_softmax(scores, mask)  # (B, Tq, Tk)
        logits = scores if mask is None else scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        return AttentionOutput(torch.bmm(weights, value), weights, state, {"logits": logits})


SPECS: dict[str, tuple[AttentionSpec, Any]] = {
    "pointer": (
        AttentionSpec(
            name="pointer",
            family="pointer",
            summary="Pointer network: softmax(v^T tanh(W1 e_j + W2 d_i)) over inputs is the output",
            paper=VINYALS,
            url=VINYALS_URL,
            pointer_logits=True,
            aux_keys=("logits",),
        ),
        PointerAttention,
    ),
}


@hookimpl
def register_attention(register):
    for spec, factory in SPECS.values():
        register(spec, factory)
