"""Pointer network: the variant's distribution over input positions is the output.

Vinyals, Fortunato, Jaitly (2015). *Pointer Networks.* NeurIPS.
arXiv:1506.03134, Sec. 2.3, Eq. (3).

An LSTM (or GRU) encoder reads the embedded source; a decoder of the same
kind, started from the encoder's final state, reads the teacher-forced inputs:
a learned start vector, then at step i the *embedding of the input element
pointed at by step i-1* (``src[tgt[i-1]]``, as in the paper, where the decoder
is fed the chosen input vector). Because nothing is fed back from the
attention, the decoder runs in one RNN call. The ``pointer`` variant (any
variant with ``pointer_logits``) scores decoder states against encoder states;
its ``aux["logits"]`` ``[N, T, S]`` *are* the output logits.

Serves pointer tasks only (``TaskSpec.output == "pointers"``: targets are
positions in ``src``). Classes are positions: the logits are padded with
``finfo.min`` to ``num_classes`` when ``num_classes > S`` and cut to
``num_classes`` when ``S > num_classes``.

``exclude_pointed=True`` (for permutation outputs such as sorting) forbids
step i to point where an earlier *target* pointed (the teacher-forcing form of
not choosing an element twice), via :func:`attnzoo.contract.pointed_mask`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from attnzoo.backbones.base import (
    AuxAccumulator,
    BackboneOutput,
    BackboneSpec,
    attention_entry,
    build,
    check_batch,
    factory_of,
)
from attnzoo.contract import pointed_mask
from attnzoo.registry import AttentionEntry, create_from_entry
from attnzoo.tasks.base import PAD

__all__ = ["SPEC", "PointerBackbone", "build_pointer"]

SPEC = BackboneSpec(
    name="pointer",
    summary="pointer network: RNN encoder-decoder whose output is the variant's distribution over input positions",
    paper="Vinyals, Fortunato, Jaitly 2015. Pointer Networks. NeurIPS, Eq. (3)",
    attention="required",
    required_capabilities=("pointer_logits",),
    outputs=("pointers",),
)

_CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}


class PointerBackbone(nn.Module):
    """RNN encoder, RNN decoder fed the previously pointed input, pointer-logit outputs.

    :param attention: a variant with ``pointer_logits`` (``"pointer"``): its entry or registered name.
    :param vocab_size: source ids; :param num_classes: classes = positions.
    :param d_model: embedding and hidden size; :param num_layers: stacked RNN layers.
    :param cell: ``"lstm"`` (the paper) or ``"gru"``.
    :param exclude_pointed: mask positions earlier targets pointed at.

    ``record_attention = True`` returns the pointer distribution ``softmax(u)``
    ``[N, T, S]`` (``attention_key_layout = "src"``).
    """

    attention_key_layout = "src"

    def __init__(
        self,
        attention: AttentionEntry | str,
        vocab_size: int,
        num_classes: int,
        *,
        d_model: int = 64,
        num_layers: int = 1,
        cell: str = "lstm",
        exclude_pointed: bool = False,
        dropout: float = 0.0,
        attention_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if cell not in _CELLS:
            raise ValueError(f"cell: expected one of {', '.join(_CELLS)}, got {cell!r}")
        entry = attention_entry(attention)
        assert entry is not None, "PointerBackbone: needs a pointer variant"

        self.num_classes = num_classes
        self.exclude_pointed = exclude_pointed
        rnn = _CELLS[cell]
        drop = dropout if num_layers > 1 else 0.0
        self.src_embed = nn.Embedding(vocab_size, d_model)
        self.start = nn.Parameter(torch.randn(d_model) * 0.1)  # the first decoder input
        self.encoder = rnn(d_model, d_model, num_layers, batch_first=True, dropout=drop)
        self.decoder = rnn(d_model, d_model, num_layers, batch_first=True, dropout=drop)
        self.attention = create_from_entry(entry, d_model, d_model, d_model, **(attention_kwargs or {}))
        self.record_attention = False

    def forward(self, src: Tensor, tgt: Tensor) -> BackboneOutput:
        check_batch("pointer", src, tgt)
        n, s = src.shape
        t = tgt.shape[1]
        x = self.src_embed(src)  # (N, S, D)
        enc, final = self.encoder(x)  # (N, S, D), final state
        pointed = tgt[:, :-1].clamp(0, s - 1)  # (N, T-1) positions pointed at by earlier steps
        prev = x.gather(1, pointed[..., None].expand(-1, -1, x.shape[-1]))  # (N, T-1, D) = x_{pointed}
        dec_in = torch.cat([self.start.expand(n, 1, -1), prev], dim=1)  # (N, T, D)
        dec, _ = self.decoder(dec_in, final)  # (N, T, D)
        mask = src != PAD  # (N, S)
        if self.exclude_pointed:
            mask = pointed_mask(tgt.clamp(0, s - 1), s, mask)  # (N, T, S)
        out = self.attention(dec, enc, enc, mask=mask, need_weights=self.record_attention)
        u = out.aux["logits"]  # (N, T, S), Eq. (3)
        c = self.num_classes
        if c > s:
            u = torch.cat([u, u.new_full((n, t, c - s), torch.finfo(u.dtype).min)], dim=-1)  # (N, T, C)
        elif c < s:
            u = u[..., :c]  # positions >= num_classes are not classes
        acc = AuxAccumulator()
        acc.add(out.aux)
        return BackboneOutput(u, acc.result(), out.weights if self.record_attention else None)


@factory_of(PointerBackbone)
def build_pointer(task: Any, attention: AttentionEntry | str | None, **options: Any) -> PointerBackbone:
    """Build the pointer network for a pointer task (a given ``num_heads`` is not used).

    :param options: :class:`PointerBackbone`'s (``d_model``, ``num_layers``, ``cell``, ``exclude_pointed``,
        ``dropout``, ``attention_kwargs``).
    """
    assert attention is not None
    return build(PointerBackbone, attention_entry(attention), task.vocab_size, task.num_classes, **options)
