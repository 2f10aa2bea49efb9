"""Decoder-only Transformer: the variant as causal multi-head self-attention.

Vaswani et al. (2017), *Attention Is All You Need*, NeurIPS (arXiv:1706.03762),
with pre-LayerNorm blocks as in GPT-2 (Radford et al. 2019) and Xiong et al.
(2020), *On Layer Normalization in the Transformer Architecture*.

The source and the teacher-forced target inputs form one sequence, read out
language-model style (``readout="last_src"``, the default, as Zoology reads MQAR)::

    [ src_1 .. src_S | tgt_1 .. tgt_{T-1} ]      length L = S + T - 1
    position S - 1 + t predicts tgt_t  (the last source token predicts tgt_1)

or with a BOS separator (``readout="bos"``)::

    [ src_1 .. src_S | BOS  tgt_1 .. tgt_{T-1} ]  length L = S + T
    position S + t predicts tgt_t

or, for a task whose targets are aligned with its input (``TaskSpec.aligned``, T = S:
MQAR as Zoology scores it), in place (``readout="aligned"``, the default for such tasks)::

    [ src_1 .. src_S ]                            length L = S
    position t predicts tgt_t  (a causal LM's answer at the query token itself)

The readout position matters: on associative recall the answer's lookup key is
the last source token, and reading at an appended BOS adds one more hop the
model must learn first (a 2-layer model solved 4-pair recall by step 1,500 when
reading at the key and stayed at chance reading at BOS). Target inputs use
their own embedding (``num_classes + 1`` ids, BOS = ``num_classes``). Every
position gets a learned position embedding; each block is ``x + MHA(LN(x))``
then ``x + FFN(LN(x))`` with a causal mask (query t sees keys <= t) and padded
source positions masked out as keys.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from attnzoo.contract import causal_keep_mask
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
from attnzoo.registry import AttentionEntry, create_from_entry
from attnzoo.tasks.base import PAD

__all__ = ["SPEC", "Block", "TransformerEncoder", "TransformerBackbone", "build_transformer"]

SPEC = BackboneSpec(
    name="transformer",
    summary="decoder-only pre-LN Transformer over [src; tgt[:-1]], the variant as causal multi-head self-attention",
    paper="Vaswani et al. 2017. Attention Is All You Need. NeurIPS (pre-LN: Xiong et al. 2020)",
    attention="required",
    required_capabilities=("self_attention", "causal_safe", "multihead"),
)


class Block(nn.Module):
    """Pre-LN block: ``x + Attn(LN(x))``, then ``x + FFN(LN(x))``."""

    def __init__(self, attention: AttentionEntry | str, d_model: int, num_heads: int, ffn_mult: int, dropout: float,
                 attention_kwargs: dict[str, Any]) -> None:
        super().__init__()
        entry = attention_entry(attention)
        assert entry is not None, "Block: a Transformer block needs a variant"
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = create_from_entry(entry, d_model, num_heads=num_heads, **attention_kwargs)
        self.ln2 = nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(
            nn.Linear(d_model, ffn_mult * d_model),
            nn.GELU(),
            nn.Linear(ffn_mult * d_model, d_model),
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor, need_weights: bool) -> tuple[Tensor, Any]:
        out = self.attn(self.ln1(x), mask=mask, need_weights=need_weights)  # context (N, L, D)
        x = x + self.drop(out.context)
        x = x + self.drop(self.ffn(self.ln2(x)))  # (N, L, D)
        return x, out


class TransformerEncoder(nn.ModuleList):
    """``num_layers`` pre-LN :class:`Block` s over one sequence, causal: the Transformer's stack and the
    bottleneck's encoder (one loop, so the bottleneck encodes with the architecture under test).

    A ``ModuleList`` of the blocks, so a model that holds it as ``blocks`` keeps the parameter
    names ``blocks.<i>.*`` (and checkpoints load) whichever model it is in.

    :param attention: the variant's entry (a name is looked up once), run as multi-head self-attention.
    :param max_len: the longest sequence; a variant with position-indexed parameters is sized to it.
    """

    def __init__(self, attention: AttentionEntry | str, d_model: int, num_layers: int, num_heads: int,
                 ffn_mult: int, dropout: float, attention_kwargs: dict[str, Any] | None, max_len: int) -> None:
        entry = attention_entry(attention)
        assert entry is not None, "TransformerEncoder: needs a variant"
        kwargs = length_kwargs(entry, attention_kwargs, max_len)
        super().__init__(Block(entry, d_model, num_heads, ffn_mult, dropout, kwargs) for _ in range(num_layers))

    def forward(self, x: Tensor, keep: Tensor, record: int | None = None
                ) -> tuple[Tensor, dict[str, Tensor], Tensor | None]:
        """``(x [N, L, D], aux, weights)``: every block over ``x`` ``[N, L, D]``; ``keep`` bool ``[N, L]``
        marks real tokens. ``weights``: block ``record``'s head-averaged ``[N, L, L]`` map (None unless asked)."""
        # causal, and tagged when nothing is padded: scaled-dot/dot/general then call SDPA with
        # is_causal=True (flash-eligible on CUDA); every other path reads the same tensor
        mask = causal_keep_mask(keep)  # (N, L, L)
        acc = AuxAccumulator()
        weights = None
        for i, block in enumerate(self):
            x, out = block(x, mask, need_weights=i == record)
            acc.add(out.aux)
            if i == record:
                weights = out.weights  # (N, L, L)
        return x, acc.result(), weights


#: where the Transformer reads its answers (see the module docstring)
READOUTS = ("last_src", "bos", "aligned")


class TransformerBackbone(nn.Module):
    """Decoder-only Transformer classifier over ``[src; BOS tgt[:-1]]``.

    :param attention: the variant's entry (or its registered name), run as multi-head self-attention.
    :param vocab_size: source ids.
    :param num_classes: target ids (the target-input embedding has one more, BOS).
    :param d_model: width; :param num_layers: blocks; :param num_heads: heads per block.
    :param max_len: rows of the learned position table (must cover S + T).
    :param ffn_mult: FFN hidden size = ffn_mult * d_model.
    :param dropout: on the residual branches and embeddings.
    :param attention_kwargs: variant options.

    :param readout: ``"last_src"`` (LM layout, default), ``"bos"`` or ``"aligned"`` (see the module docstring).

    Set ``record_attention = True`` to get the last block's head-averaged
    weights of the T predicting positions over the S source keys, ``[N, T, S]``
    (``attention_key_layout = "src"``; the mass on earlier target inputs is left
    out, so a row may sum to less than 1).
    """

    attention_key_layout = "src"

    def __init__(
        self,
        attention: AttentionEntry | str,
        vocab_size: int,
        num_classes: int,
        *,
        d_model: int = 64,
        num_layers: int = 2,
        num_heads: int = 4,
        max_len: int = 512,
        ffn_mult: int = 4,
        dropout: float = 0.0,
        attention_kwargs: dict[str, Any] | None = None,
        readout: str = "last_src",
    ) -> None:
        super().__init__()
        if readout not in READOUTS:
            raise ValueError(f"readout: expected one of {', '.join(map(repr, READOUTS))}, got {readout!r}")
        self.readout = readout
        self.vocab_size, self.num_classes, self.max_len = vocab_size, num_classes, max_len
        self.bos = num_classes
        self.src_embed = nn.Embedding(vocab_size, d_model)
        self.tgt_embed = nn.Embedding(num_classes + 1, d_model)
        self.pos_embed = nn.Embedding(max_len, d_model)
        self.drop = nn.Dropout(dropout)
        self.blocks = TransformerEncoder(attention, d_model, num_layers, num_heads, ffn_mult, dropout, attention_kwargs,
                                         max_len)
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes)
        self.record_attention = False
        self.record_layer = -1

    def readout_start(self, src_len: int) -> int:
        """The sequence position that predicts ``tgt_1`` (the next T positions predict the rest)."""
        return {"aligned": 0, "bos": src_len, "last_src": src_len - 1}[self.readout]

    def forward(self, src: Tensor, tgt: Tensor) -> BackboneOutput:
        check_batch("transformer", src, tgt)
        n, s = src.shape
        t = tgt.shape[1]
        if self.readout == "aligned":
            if t != s:
                raise ValueError(f"transformer: readout='aligned' needs tgt as long as src (T == S), got S={s}, T={t}")
            tgt_in = tgt[:, :0]  # (N, 0): the answers are read in place, nothing is appended
        elif self.readout == "bos":
            tgt_in = teacher_inputs(tgt, self.bos)  # (N, T): BOS tgt_1 .. tgt_{T-1}
        else:
            tgt_in = tgt[:, :-1]  # (N, T-1)
        first = self.readout_start(s)
        length = s + tgt_in.shape[1]
        if length > self.max_len:
            raise ValueError(f"transformer: sequence length {length} exceeds max_len={self.max_len}; build with a larger max_len")
        x = torch.cat([self.src_embed(src), self.tgt_embed(tgt_in)], dim=1)  # (N, L, D)
        pos = torch.arange(length, device=src.device)
        x = self.drop(x + self.pos_embed(pos))  # (N, L, D)
        keep = torch.cat([src != PAD, torch.ones_like(tgt_in, dtype=torch.bool)], dim=1)  # (N, L)
        record = self.record_layer % len(self.blocks) if self.record_attention else None
        x, aux, weights = self.blocks(x, keep, record)  # (N, L, D)
        attention = None if weights is None else weights[:, first : first + t, :s]  # (N, T, S)
        logits = self.head(self.ln_f(x[:, first : first + t]))  # (N, T, C)
        return BackboneOutput(logits, aux, attention)


@factory_of(TransformerBackbone)
def build_transformer(
    task: Any,
    attention: AttentionEntry | str | None,
    *,
    max_len: int | None = None,
    readout: str | None = None,
    **options: Any,
) -> TransformerBackbone:
    """Build the decoder-only Transformer for ``task`` with variant ``attention``.

    :param readout: None picks ``"aligned"`` for a task whose spec says ``aligned``, else ``"last_src"``.
    :param max_len: position-table size; default ``max(512, 2 * (S + T))`` over
        the task's training and test_long lengths (positions past the training
        length exist but are untrained: learned positions do not extrapolate).
    :param options: :class:`TransformerBackbone`'s (``d_model``, ``num_layers``, ``num_heads``, ``ffn_mult``,
        ``dropout``, ``attention_kwargs``).
    """
    assert attention is not None
    if max_len is None:
        max_len = max(512, 2 * (longest_src(task) + longest_tgt(task)))
    readout = readout or ("aligned" if getattr(task.spec, "aligned", False) else "last_src")
    return build(TransformerBackbone, attention_entry(attention), task.vocab_size, task.num_classes, max_len=max_len,
                 readout=readout, **options)
