"""Selective copying (Gu & Dao 2023): copy the content tokens scattered among blanks."""

from __future__ import annotations

import torch
from torch import Tensor

from attnzoo.tasks._util import require, sample_distinct
from attnzoo.tasks.base import Task, TaskSpec, attention_beats_baseline, gold_at, gold_in_order

__all__ = ["SelectiveCopyTask", "TASKS"]


class SelectiveCopyTask(Task):
    """Content tokens at random positions among blank (noise) tokens; copy them in order.

    Tests: content-aware selection. Unlike ``copy`` the positions to copy vary per
    example, so a time-invariant mixer (or a fixed-window MLP) cannot learn a fixed
    alignment; the model must pick tokens by what they are.

    Paper: Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective State
    Spaces" (arXiv:2312.00752), selective copying (their generator: M tokens at
    sorted random positions among L blanks; here S = ``seq_len`` in all). Mamba
    appends M "recall" markers for its LM setting; here the decoder emits ``tgt``
    directly, so they are left out.

    Ids: 0 PAD, 1 BLANK, content ``2 .. num_symbols+1``.

    Knobs: ``seq_len`` (S, default 48), ``num_tokens`` (M content tokens, default
    8), ``num_symbols`` (content alphabet, default 16), ``long_seq_len`` (S of
    ``test_long``, default ``2 * seq_len``: the same M tokens spread over a longer
    stretch of noise).

    Splits: train/val/test S = ``seq_len``, T = ``num_tokens``; ``test_long`` S =
    ``long_seq_len``, same T. ``vocab_size = num_classes = num_symbols + 2``.

    Metric: ``token_acc``. Chance: ``1/num_symbols``.
    """

    spec = TaskSpec(
        name="selective-copy",
        summary="copy the content tokens scattered among blank tokens, in order",
        paper="Gu & Dao 2023, Mamba: Linear-Time Sequence Modeling with Selective State Spaces",
        url="https://arxiv.org/abs/2312.00752",
        metric="token_acc",
        length_generalization=True,
        content_addressed=True,
        contrasts=(
            attention_beats_baseline(why="Gu & Dao 2023: the positions to copy vary per example, so selection "
                                         "must read content; a fixed window (the MLP) cannot"),
        ),
    )

    BLANK = 1

    def __init__(
        self, seq_len: int = 48, num_tokens: int = 8, num_symbols: int = 16, long_seq_len: int | None = None
    ) -> None:
        super().__init__()
        require(num_tokens >= 1, "num_tokens", "must be >= 1", num_tokens)
        require(seq_len > num_tokens, "seq_len", f"must exceed num_tokens={num_tokens}", seq_len)
        require(num_symbols >= 2, "num_symbols", "must be >= 2", num_symbols)
        long_seq_len = 2 * seq_len if long_seq_len is None else long_seq_len
        require(long_seq_len > seq_len, "long_seq_len", f"must exceed seq_len={seq_len}", long_seq_len)
        self.seq_len = seq_len
        self.num_tokens = num_tokens
        self.num_symbols = num_symbols
        self.long_seq_len = long_seq_len
        self.vocab_size = self.num_classes = num_symbols + 2
        self.src_len, self.tgt_len = seq_len, num_tokens
        self.long_src_len, self.long_tgt_len = long_seq_len, num_tokens

    def generate(self, n: int, generator: torch.Generator, *, long: bool = False) -> dict[str, Tensor]:
        s = self.long_seq_len if long else self.seq_len
        positions = sample_distinct(n, self.num_tokens, s, generator).sort(dim=1).values  # (N, M)
        tokens = torch.randint(2, self.num_symbols + 2, (n, self.num_tokens), generator=generator)  # (N, M)
        src = torch.full((n, s), self.BLANK, dtype=torch.long).scatter_(1, positions, tokens)
        return {"src": src, "tgt": tokens}

    def solve(self, src: list[int]) -> list[int]:
        return [t for t in src if t > self.BLANK]

    def gold_alignment(self, batch: dict[str, Tensor]) -> Tensor:
        """Output j reads the j-th content (non-blank) token's position."""
        src = batch["src"]
        return gold_at(gold_in_order(src > self.BLANK, self.num_tokens), src.shape[1])

    def token_names(self) -> list[str]:
        """``_`` the blank."""
        return ["·", "_", *map(str, range(2, self.vocab_size))]

    def chance(self) -> float:
        return 1.0 / self.num_symbols


TASKS = [SelectiveCopyTask]
