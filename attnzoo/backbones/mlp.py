"""The "straight NN" baseline: an MLP over the flattened, fixed-length input.

Embed each of the S source tokens, concatenate them into one ``S * d_model``
vector, and map it through ``num_layers`` hidden ReLU layers to all ``T x
num_classes`` logits at once. No attention, no recurrence, no access to the
target inputs (nothing is teacher-forced). The model is built for the task's
training S and T, so it cannot run a ``test_long`` split (``spec.fixed_length``).

It can learn fixed permutations (copy, reverse) but not content-addressed
lookup, which is the contrast the leaderboard shows (see DESIGN.md).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from attnzoo.backbones.base import BackboneOutput, BackboneSpec, build, check_batch, factory_of

__all__ = ["SPEC", "MLPBackbone", "build_mlp"]

SPEC = BackboneSpec(
    name="mlp",
    summary="no-attention baseline: MLP over the flattened fixed-length input, all T outputs at once",
    paper="baseline (a plain feed-forward network over a fixed window)",
    attention="none",
    fixed_length=True,
)


class MLPBackbone(nn.Module):
    """``Embed -> flatten -> [Linear -> ReLU] x num_layers -> Linear -> [T, num_classes]``.

    :param src_len: S the model is built for; :param tgt_len: T.
    :param d_model: embedding size per token; :param hidden: hidden width
        (default ``4 * d_model``); :param num_layers: hidden layers.
    """

    attention_key_layout = None
    record_attention = False

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        src_len: int,
        tgt_len: int,
        *,
        d_model: int = 64,
        hidden: int | None = None,
        num_layers: int = 2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers: the MLP needs at least one hidden layer, got {num_layers}")
        self.src_len, self.tgt_len, self.num_classes = src_len, tgt_len, num_classes
        hidden = hidden or 4 * d_model
        self.embed = nn.Embedding(vocab_size, d_model)
        layers: list[nn.Module] = []
        width = src_len * d_model
        for _ in range(num_layers):
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        layers.append(nn.Linear(width, tgt_len * num_classes))
        self.mlp = nn.Sequential(*layers)
        self.record_attention = False

    def forward(self, src: Tensor, tgt: Tensor) -> BackboneOutput:
        check_batch("mlp", src, tgt)
        n, s = src.shape
        t = tgt.shape[1]
        if (s, t) != (self.src_len, self.tgt_len):
            raise ValueError(
                f"mlp: a fixed-length backbone built for S={self.src_len}, T={self.tgt_len}, "
                f"got S={s}, T={t} (it cannot run test_long)"
            )
        x = self.embed(src).reshape(n, -1)  # (N, S*D)
        logits = self.mlp(x).view(n, t, self.num_classes)  # (N, T, C)
        return BackboneOutput(logits, {}, None)


@factory_of(MLPBackbone)
def build_mlp(task: Any, attention: None = None, **options: Any) -> MLPBackbone:
    """Build the MLP baseline for ``task`` (``attention`` must be None; a given ``num_heads`` is not used).

    :param options: :class:`MLPBackbone`'s (``d_model``, ``hidden``, ``num_layers``, ``dropout``).
    """
    return build(MLPBackbone, task.vocab_size, task.num_classes, task.src_len, task.tgt_len, **options)
