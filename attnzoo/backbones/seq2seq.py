"""RNN encoder-decoder: the variant as Luong-style cross-attention with input feeding.

- Luong, Pham, Manning (2015). *Effective Approaches to Attention-based Neural
  Machine Translation.* EMNLP. arXiv:1508.04025, Sec. 3 (Eq. 5-6) and
  Sec. 3.3 (input feeding).
- Sutskever, Vinyals, Le (2014). *Sequence to Sequence Learning with Neural
  Networks.* NeurIPS. arXiv:1409.3215 (the no-attention baseline).

A GRU encoder reads the embedded source in one call (cuDNN on GPU); its
outputs ``h_bar_s`` (``[N, S, H]``) are the attention's keys and values. The
decoder is a stack of GRU cells run one target step at a time (teacher
forcing, inputs ``[BOS, tgt[:-1]]``), initialised from the encoder's final
state. At step t, with attention:

    h_t   = GRU([y_{t-1}; h~_{t-1}], h_{t-1})           input feeding (Sec. 3.3)
    c_t   = Attention(query=h_t, keys=values=h_bar, mask=src != PAD)
    h~_t  = tanh(W_c [c_t; h_t])                        Eq. (5)
    p_t   = softmax(W_s h~_t)                           Eq. (6)

Without attention (``attention=None``) this is the Sutskever et al. baseline:
``h_t = GRU(y_{t-1}, h_{t-1})``, ``p_t = softmax(W_s h_t)``, the whole source
squeezed through the encoder's final state. The model has no attention module.

With ``bidirectional=True`` each direction has H/2 units and the two are
concatenated (as OpenNMT's ``brnn``), so keys stay H wide and the decoder's
initial state is ``[h_fwd_S; h_bwd_1]``. The encoder reads padding as tokens;
padded positions are masked out of the attention.
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
    length_kwargs,
    longest_src,
    teacher_inputs,
)
from attnzoo.registry import AttentionEntry, create_from_entry
from attnzoo.tasks.base import PAD

__all__ = ["SPEC", "Seq2SeqBackbone", "build_seq2seq", "step_state"]

SPEC = BackboneSpec(
    name="seq2seq",
    summary="GRU encoder-decoder, the variant as Luong cross-attention with input feeding; None = Sutskever baseline",
    paper="Luong, Pham, Manning 2015, EMNLP (Sec. 3, input feeding 3.3); Sutskever, Vinyals, Le 2014, NeurIPS",
    attention="optional",
    required_capabilities=("cross_attention",),
    excluded_capabilities=("stateful",),
)


def step_state(attention: AttentionEntry | str | None) -> Any:
    """The state to start step-by-step decoding with, as the variant's spec states it
    (``AttentionSpec.step_state``: ``0``, the target step, for Luong's local-m). The returned
    state of each call is fed to the next."""
    entry = attention_entry(attention)
    return None if entry is None else entry.spec.step_state


class Seq2SeqBackbone(nn.Module):
    """GRU encoder-decoder with optional Luong attention and input feeding.

    :param attention: the variant's entry or registered name (cross-attention), or None for the baseline.
    :param vocab_size: source ids; :param num_classes: target ids (BOS = num_classes).
    :param d_model: embedding size and decoder hidden size H.
    :param num_layers: stacked GRU layers in encoder and decoder.
    :param bidirectional: bidirectional encoder (H/2 per direction).
    :param dropout: between stacked layers and on h~_t.
    :param attention_kwargs: variant options.

    ``record_attention = True`` returns the decoder's cross-attention weights
    over the source, stacked over steps: ``[N, T, S]`` (``attention_key_layout = "src"``).
    """

    attention_key_layout = "src"

    def __init__(
        self,
        attention: AttentionEntry | str | None,
        vocab_size: int,
        num_classes: int,
        *,
        d_model: int = 64,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        attention_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if bidirectional and d_model % 2:
            raise ValueError(f"d_model: a bidirectional encoder splits H={d_model} across two directions; use an even d_model")
        h = d_model
        self.hidden, self.num_layers, self.bidirectional = h, num_layers, bidirectional
        self.num_classes = num_classes
        self.bos = num_classes
        self.src_embed = nn.Embedding(vocab_size, d_model)
        self.tgt_embed = nn.Embedding(num_classes + 1, d_model)
        self.encoder = nn.GRU(
            d_model,
            h // 2 if bidirectional else h,
            num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        feed = h if attention is not None else 0  # input feeding: h~_{t-1} joins the input
        self.decoder = nn.ModuleList(nn.GRUCell(d_model + feed if i == 0 else h, h) for i in range(num_layers))
        self.drop = nn.Dropout(dropout)
        entry = attention_entry(attention)
        if entry is not None:
            self.attention = create_from_entry(entry, h, h, h, **(attention_kwargs or {}))
            self.start_state = step_state(entry)
            self.W_c = nn.Linear(2 * h, h, bias=False)  # Eq. (5)
        else:
            self.attention = None
            self.start_state = None
            self.W_c = None
        self.out = nn.Linear(h, num_classes)  # W_s, Eq. (6)
        self.record_attention = False

    def encode(self, src: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Encoder outputs ``[N, S, H]`` and the decoder's initial state per layer (``[N, H]`` each)."""
        enc, h_n = self.encoder(self.src_embed(src))  # (N, S, H), (L*dirs, N, H/dirs)
        n = src.shape[0]
        if self.bidirectional:
            h_n = h_n.view(self.num_layers, 2, n, self.hidden // 2)  # (L, 2, N, H/2)
            h_n = torch.cat([h_n[:, 0], h_n[:, 1]], dim=-1)  # (L, N, H): [forward at S; backward at 1]
        return enc, list(h_n.unbind(0))

    def forward(self, src: Tensor, tgt: Tensor) -> BackboneOutput:
        check_batch("seq2seq", src, tgt)
        n, t_len = tgt.shape
        enc, state = self.encode(src)  # (N, S, H), L x (N, H)
        y_in = self.tgt_embed(teacher_inputs(tgt, self.bos))  # (N, T, E)
        key_mask = src != PAD  # (N, S)
        record = self.record_attention and self.attention is not None
        acc = AuxAccumulator()
        att_state = self.start_state
        feed = enc.new_zeros(n, self.hidden)  # h~_0
        outs: list[Tensor] = []
        maps: list[Tensor] = []
        for t in range(t_len):  # the decoder recurrence: one step per target position
            x = y_in[:, t] if self.attention is None else torch.cat([y_in[:, t], feed], dim=-1)  # (N, E [+ H])
            for i, cell in enumerate(self.decoder):
                state[i] = cell(x, state[i])  # (N, H)
                x = self.drop(state[i]) if i + 1 < self.num_layers else state[i]
            h_t = state[-1]  # (N, H)
            if self.attention is None:
                outs.append(h_t)
                continue
            a = self.attention(h_t[:, None], enc, enc, mask=key_mask, state=att_state, need_weights=record)
            att_state = a.state
            acc.add(a.aux)
            if record:
                maps.append(a.weights[:, 0])  # (N, S)
            feed = torch.tanh(self.W_c(torch.cat([a.context[:, 0], h_t], dim=-1)))  # (N, H) h~_t, Eq. (5)
            outs.append(self.drop(feed))
        logits = self.out(torch.stack(outs, dim=1))  # (N, T, C), Eq. (6)
        attention = torch.stack(maps, dim=1) if record else None  # (N, T, S)
        return BackboneOutput(logits, acc.result(), attention)


@factory_of(Seq2SeqBackbone)
def build_seq2seq(
    task: Any,
    attention: AttentionEntry | str | None,
    *,
    attention_kwargs: dict[str, Any] | None = None,
    **options: Any,
) -> Seq2SeqBackbone:
    """Build the GRU encoder-decoder for ``task``; ``attention=None`` gives the Sutskever baseline.

    Single-head attention, as in the paper (a given ``num_heads`` is not used). Variants taking
    ``max_len`` (location) get ``max_len >= the task's longest S`` unless given.

    :param options: :class:`Seq2SeqBackbone`'s (``d_model``, ``num_layers``, ``bidirectional``, ``dropout``).
    """
    entry = attention_entry(attention)
    if entry is not None:
        attention_kwargs = length_kwargs(entry, attention_kwargs, longest_src(task))
    return build(Seq2SeqBackbone, entry, task.vocab_size, task.num_classes, attention_kwargs=attention_kwargs,
                 **options)
