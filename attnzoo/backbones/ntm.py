"""Neural Turing Machine: an LSTM controller with the variant as its external memory.

Graves, Wayne, Danihelka (2014). *Neural Turing Machines.* arXiv:1410.5401,
Sec. 3-4 (the feed-forward/LSTM controller and its read feedback).

The controller reads one token per step: the source ``src_1 .. src_S``, then
BOS (which doubles as the delimiter), then the teacher-forced targets
``tgt_1 .. tgt_{T-1}`` (L = S + T steps). At step t::

    h_t      = LSTM([x_t; r_{t-1}], h_{t-1})           controller sees the previous reads
    r_t, M_t = Memory(h_t, state_{t-1})                 write, then read (see attnzoo.mechanisms.ntm)
    y_t      = W_o [h_t; r_t]                            outputs at the last T steps

The memory is any ``stateful`` variant with the NTM interface
(``initial_state(batch, device, dtype)``, ``forward(query [N, 1, H], state=...)``
-> context ``[N, 1, R*W]``, weights ``[N, 1, slots]``). The Python loop over
time is inherent: each step's controller input depends on the previous read.
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
    longest_tgt,
    teacher_inputs,
)
from attnzoo.registry import AttentionEntry, accepted_kwargs, create_from_entry

__all__ = ["SPEC", "NTMBackbone", "build_ntm"]

SPEC = BackboneSpec(
    name="ntm",
    summary="NTM: LSTM controller over [src; BOS tgt[:-1]] with the variant as read/write memory, reads fed back",
    paper="Graves, Wayne, Danihelka 2014. Neural Turing Machines. arXiv:1410.5401",
    attention="required",
    required_capabilities=("stateful",),
)


class NTMBackbone(nn.Module):
    """LSTM controller + stateful memory variant.

    :param attention: a stateful variant (``"ntm"``): its entry or registered name.
    :param vocab_size: source ids; :param num_classes: target ids (BOS = num_classes).
    :param d_model: embedding size and controller hidden size H.
    :param read_dim: the memory's context size (``value_dim``, R read vectors of width W).
    :param attention_kwargs: variant options (``memory_slots``, ``num_read_heads``, ...).

    ``record_attention = True`` returns the read weights over memory slots at
    the T output steps, ``[N, T, slots]`` (``attention_key_layout = "memory"``).
    """

    attention_key_layout = "memory"

    def __init__(
        self,
        attention: AttentionEntry | str,
        vocab_size: int,
        num_classes: int,
        *,
        d_model: int = 64,
        read_dim: int = 20,
        dropout: float = 0.0,
        attention_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        entry = attention_entry(attention)
        assert entry is not None, "NTMBackbone: needs a stateful memory variant"
        self.num_classes = num_classes
        self.bos = num_classes
        self.hidden, self.read_dim = d_model, read_dim
        self.src_embed = nn.Embedding(vocab_size, d_model)
        self.tgt_embed = nn.Embedding(num_classes + 1, d_model)
        self.controller = nn.LSTMCell(d_model + read_dim, d_model)
        self.memory = create_from_entry(entry, d_model, d_model, read_dim, **(attention_kwargs or {}))
        if not callable(getattr(self.memory, "initial_state", None)):
            raise ValueError(f"attention: {entry.name!r} has no initial_state(batch, device, dtype); the NTM backbone needs a stateful memory")
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(d_model + read_dim, num_classes)
        self.record_attention = False

    def forward(self, src: Tensor, tgt: Tensor) -> BackboneOutput:
        check_batch("ntm", src, tgt)
        n, s = src.shape
        x_all = torch.cat([self.src_embed(src), self.tgt_embed(teacher_inputs(tgt, self.bos))], dim=1)  # (N, L, E)
        h = c = x_all.new_zeros(n, self.hidden)  # controller state
        reads = x_all.new_zeros(n, self.read_dim)  # r_0
        state = self.memory.initial_state(n, device=src.device, dtype=x_all.dtype)
        acc = AuxAccumulator()
        outs: list[Tensor] = []
        maps: list[Tensor] = []
        for t in range(x_all.shape[1]):  # the recurrence: input t needs the reads of t-1
            h, c = self.controller(torch.cat([x_all[:, t], reads], dim=-1), (h, c))  # (N, H)
            m = self.memory(h[:, None], state=state, need_weights=self.record_attention)
            state, reads = m.state, m.context[:, 0]  # reads (N, R*W)
            acc.add(m.aux)
            if t >= s:
                outs.append(torch.cat([h, reads], dim=-1))  # (N, H + R*W)
                if self.record_attention:
                    maps.append(m.weights[:, 0])  # (N, slots)
        logits = self.out(self.drop(torch.stack(outs, dim=1)))  # (N, T, C)
        attention = torch.stack(maps, dim=1) if self.record_attention else None  # (N, T, slots)
        return BackboneOutput(logits, acc.result(), attention)


@factory_of(NTMBackbone, derived=("read_dim",))
def build_ntm(
    task: Any,
    attention: AttentionEntry | str | None,
    *,
    num_layers: int = 1,
    memory_width: int = 20,
    attention_kwargs: dict[str, Any] | None = None,
    **options: Any,
) -> NTMBackbone:
    """Build the NTM for ``task`` with a stateful memory variant (a given ``num_heads`` is not used:
    the memory's heads are ``attention_kwargs["num_read_heads"]``).

    :param memory_width: W, the width of a memory row (Graves et al. use 20);
        the memory's context size (``read_dim``) is ``W * num_read_heads``.
    :param num_layers: must be 1 (one LSTM controller layer).
    :param options: :class:`NTMBackbone`'s (``d_model``, ``dropout``).

    A variant taking ``memory_slots`` gets at least the longest S + T of the
    task (the write head may move once per step) unless given.
    """
    entry = attention_entry(attention)
    assert entry is not None
    if num_layers != 1:
        raise ValueError(f"num_layers: the NTM backbone has one LSTM controller layer, got {num_layers}")
    kwargs = length_kwargs(entry, attention_kwargs, longest_src(task) + longest_tgt(task), key="memory_slots")
    heads = kwargs.get("num_read_heads", entry.spec.defaults.get("num_read_heads",
                                                                  (accepted_kwargs(entry.factory) or {}).get("num_read_heads")))
    read_dim = memory_width * (heads if isinstance(heads, int) else 1)
    return build(NTMBackbone, entry, task.vocab_size, task.num_classes, read_dim=read_dim, attention_kwargs=kwargs,
                 **options)
