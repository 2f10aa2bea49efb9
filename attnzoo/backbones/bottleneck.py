"""Encoder-bottleneck autoencoder: the variant encodes, one position is all the decoder gets.

MAD's compression setup (Poli et al. 2024, *Mechanistic Design and Scaling of Hybrid
Architectures*, arXiv:2403.17844, Sec. 3 "compression"; athms/mad-lab's ``AutoEncoder``
with ``global_pool="last"``, read, not copied). The architecture under test encodes the
source; only its encoding at the last source position (MAD's compression token) reaches a
small MLP decoder, which adds a fixed position embedding per output position and must
reproduce the target from that one vector::

    src [N, S] -> embed + learned positions -> Transformer blocks (causal, the variant)
               -> h [N, S, D] -> z = h[:, b] [N, D]        b = the last non-PAD source position
    z[:, None] + sincos(T) [T, D] -> LN, Linear, GELU, LN, Linear, GELU -> LN, Linear -> logits [N, T, C]

The encoder is :class:`attnzoo.backbones.transformer.TransformerEncoder` (pre-LN blocks, the
variant as causal multi-head self-attention, GELU FFN), the Transformer backbone's own stack, so every
variant the Transformer takes runs here and nothing else does (``required_capabilities``
are the Transformer's). With a causal encoder the last position is the only one that sees
the whole source, which is why MAD puts the compression token there. The decoder never
reads ``tgt`` (no teacher forcing): every output position is a function of ``z`` and its
index alone, so whatever the logits know about the source went through one ``D``-vector.

Tasks it makes sense for: ``mad-compression`` (what it is for), and any token task whose
target is a function of the whole source (``copy``: a compression test with a longer split,
since the sinusoidal output positions extend to any T). On a one-answer task (recall,
T = 1) it is the Transformer read at the last source token with an MLP head. It refuses
pointer tasks (the decoder names tokens, not source positions) and aligned tasks
(``TaskSpec.aligned``: answers scored in place at each input position, which a
one-position readout does not have).

Differences from MAD's autoencoder:

- the blocks are attnzoo's Transformer blocks (LayerNorm, GELU FFN, learned absolute
  positions in the encoder); MAD interleaves its mixer and MLP layers with RMSNorm, and
  its attention uses rotary embeddings (``rotary_emb_dim: 8``) and no absolute positions;
- LayerNorm instead of RMSNorm in the decoder too (RMSNorm needs torch >= 2.4; the package
  supports 2.2); PyTorch's default initialisation, as the Transformer backbone, instead of
  MAD's normal(0, 0.02);
- the decoder emits the T target positions (``mad-compression``: the ``seq_len - 1``
  content ids); MAD decodes all ``seq_len`` positions and also scores the compression
  token, which is always the same;
- the bottleneck is the last non-PAD source position rather than the last position, so
  right-padded tasks read their last real token (MAD's sequences have no padding, where
  the two are the same); MAD's ``"cls"`` and ``"avg"`` pools are not offered.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from attnzoo.backbones.base import (
    BackboneOutput,
    BackboneSpec,
    attention_entry,
    build,
    check_batch,
    factory_of,
    longest_src,
)
from attnzoo.backbones.transformer import SPEC as TRANSFORMER_SPEC
from attnzoo.backbones.transformer import TransformerEncoder
from attnzoo.registry import AttentionEntry
from attnzoo.tasks.base import PAD

__all__ = ["SPEC", "BottleneckSpec", "BottleneckBackbone", "build_bottleneck", "sincos_positions"]


@dataclass(frozen=True)
class BottleneckSpec(BackboneSpec):
    """A :class:`BackboneSpec` that also refuses aligned tasks and names the backbone it encodes with.

    :param encoder: the registered backbone whose blocks form the encoder; MAD scores
        compression on the architecture under test, so the report's MAD table counts this
        backbone's ``mad-compression`` rows under that backbone's (the same variant, the same blocks).
    """

    encoder: str = "transformer"

    def fits(self, task_spec: Any, attention_spec: Any) -> str | None:
        reason = super().fits(task_spec, attention_spec)
        if reason is None and getattr(task_spec, "aligned", False):
            return "aligned task (answers in place at every input position); the bottleneck decodes from one position"
        return reason

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "encoder": self.encoder}


SPEC = BottleneckSpec(
    name="bottleneck",
    summary="MAD's encoder-bottleneck autoencoder: Transformer blocks encode, an MLP decodes the target "
            "from the last source position alone (for mad-compression)",
    paper="Poli et al. 2024. Mechanistic Design and Scaling of Hybrid Architectures (MAD), compression",
    attention="required",
    required_capabilities=TRANSFORMER_SPEC.required_capabilities,
    outputs=("tokens",),
    encoder=TRANSFORMER_SPEC.name,
)


def sincos_positions(length: int, dim: int, *, device: torch.device | str | None = None) -> Tensor:
    """Fixed sinusoidal position table ``[length, dim]`` (Vaswani et al. 2017, Sec. 3.5), sines then cosines.

    ``PE[t, i] = sin(t * w_i)`` for ``i < dim/2`` and ``cos(t * w_{i - dim/2})`` after, with
    ``w_i = 10000^(-i / (dim/2 - 1))``; an odd ``dim`` gets a zero last column. Fixed, so it
    exists for any output length (MAD's decoder positions are the same kind of table).
    """
    half = dim // 2
    t = torch.arange(length, dtype=torch.float32, device=device)[:, None]  # (L, 1)
    rate = -math.log(10000.0) / max(half - 1, 1)
    freqs = torch.exp(torch.arange(half, dtype=torch.float32, device=device) * rate)  # (D/2,)
    table = torch.cat([torch.sin(t * freqs), torch.cos(t * freqs)], dim=1)  # (L, 2 * (D/2))
    if dim % 2:
        table = torch.cat([table, torch.zeros(length, 1, device=device)], dim=1)
    return table  # (L, D)


class BottleneckBackbone(nn.Module):
    """Encoder (Transformer blocks) -> one position -> MLP decoder with output positions.

    :param attention: the variant's entry (or its registered name), run as causal multi-head self-attention.
    :param vocab_size: source ids; :param num_classes: target ids.
    :param d_model: width of the encoder, the bottleneck and the decoder.
    :param num_layers: encoder blocks; :param num_heads: heads per block.
    :param max_len: rows of the encoder's learned position table (must cover S).
    :param ffn_mult: encoder FFN hidden size = ffn_mult * d_model (the decoder does not expand, as MAD's).
    :param dropout: on the encoder's residual branches and embeddings.
    :param attention_kwargs: variant options.

    ``forward(src [N, S], tgt [N, T]) -> BackboneOutput(logits [N, T, C])``; ``tgt`` sets T only.
    :meth:`encode` and :meth:`decode` are the two halves (``forward = decode(encode(src)...)``).

    Set ``record_attention = True`` to get the recorded block's head-averaged weights of the
    bottleneck query over the S source keys, repeated for each of the T outputs,
    ``[N, T, S]`` (``attention_key_layout = "src"``): every output is decoded from that one row.
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
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers: the encoder needs at least one block, got {num_layers}")
        self.vocab_size, self.num_classes, self.max_len, self.d_model = vocab_size, num_classes, max_len, d_model
        self.src_embed = nn.Embedding(vocab_size, d_model)
        self.pos_embed = nn.Embedding(max_len, d_model)
        self.drop = nn.Dropout(dropout)
        # the Transformer backbone's own stack, so the encoder is the architecture under test, not a copy of it
        self.blocks = TransformerEncoder(attention, d_model, num_layers, num_heads, ffn_mult, dropout, attention_kwargs,
                                         max_len)
        # MAD's "hard-coded non-expanding MLP decoder", then its unembedding (norm + linear)
        self.decoder = nn.Sequential(
            nn.LayerNorm(d_model),
            nn.Linear(d_model, d_model),
            nn.GELU(),
            nn.LayerNorm(d_model),
            nn.Linear(d_model, d_model),
            nn.GELU(),
        )
        self.unembed = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, num_classes))
        self.record_attention = False
        self.record_layer = -1

    @staticmethod
    def bottleneck_index(src: Tensor) -> Tensor:
        """Long ``[N]``: each row's last non-PAD position (0 for an all-PAD row)."""
        pos = torch.arange(src.shape[1], device=src.device).expand_as(src)  # (N, S)
        return torch.where(src != PAD, pos, torch.zeros_like(pos)).amax(dim=1)  # (N,)

    def encode(
        self, src: Tensor, *, need_weights: bool = False
    ) -> tuple[Tensor, Tensor, dict[str, Tensor], Tensor | None]:
        """``(h [N, S, D], b [N], aux, weights)``: every position's encoding and the bottleneck index.

        ``weights`` is the recorded block's head-averaged ``[N, S, S]`` map when ``need_weights``.
        """
        n, s = src.shape
        if s > self.max_len:
            raise ValueError(
                f"bottleneck: source length {s} exceeds max_len={self.max_len}; build with a larger max_len"
            )
        pos = torch.arange(s, device=src.device)
        x = self.drop(self.src_embed(src) + self.pos_embed(pos))  # (N, S, D)
        record = self.record_layer % len(self.blocks) if need_weights else None
        x, aux, weights = self.blocks(x, src != PAD, record)  # (N, S, D), weights (N, S, S)
        return x, self.bottleneck_index(src), aux, weights

    def decode(self, z: Tensor, length: int) -> Tensor:
        """Logits ``[N, T, C]`` for ``T = length`` output positions from the bottleneck ``z [N, D]`` alone."""
        x = z[:, None, :] + sincos_positions(length, self.d_model, device=z.device).to(z.dtype)  # (N, T, D)
        return self.unembed(self.decoder(x))  # (N, T, C)

    def forward(self, src: Tensor, tgt: Tensor) -> BackboneOutput:
        check_batch("bottleneck", src, tgt)
        t = tgt.shape[1]
        h, b, aux, weights = self.encode(src, need_weights=self.record_attention)
        rows = torch.arange(src.shape[0], device=src.device)
        z = h[rows, b]  # (N, D): the one position the decoder sees
        attention = None
        if weights is not None:
            attention = weights[rows, b][:, None, :].expand(-1, t, -1)  # (N, T, S)
        return BackboneOutput(self.decode(z, t), aux, attention)


@factory_of(BottleneckBackbone)
def build_bottleneck(
    task: Any,
    attention: AttentionEntry | str | None,
    *,
    max_len: int | None = None,
    **options: Any,
) -> BottleneckBackbone:
    """Build the encoder-bottleneck autoencoder for ``task`` with variant ``attention``.

    :param max_len: encoder position-table size; default ``max(512, 2 * S)`` over the task's
        training and test_long source lengths (as the Transformer's, positions past the
        training length exist but are untrained).
    :param options: :class:`BottleneckBackbone`'s (``d_model``, ``num_layers``, ``num_heads``, ``ffn_mult``,
        ``dropout``, ``attention_kwargs``).
    """
    assert attention is not None
    if max_len is None:
        max_len = max(512, 2 * longest_src(task))
    return build(BottleneckBackbone, attention_entry(attention), task.vocab_size, task.num_classes, max_len=max_len,
                 **options)
