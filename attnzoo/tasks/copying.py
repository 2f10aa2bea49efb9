"""Copy and reverse: fixed permutations of the input (Graves et al. 2014)."""

from __future__ import annotations

import torch
from torch import Tensor

from attnzoo.tasks._util import require
from attnzoo.tasks.base import Task, TaskSpec

__all__ = ["CopyTask", "ReverseTask", "TASKS"]


class CopyTask(Task):
    """Reproduce a random token sequence (the NTM copy task).

    Tests: carrying a whole sequence from encoder to decoder, position by position.
    A fixed-length MLP can learn it (a fixed permutation); attention-less seq2seq
    degrades as ``length`` grows; ``test_long`` tests length generalization.

    Paper: Graves, Wayne & Danihelka 2014, "Neural Turing Machines" (copy task,
    with random binary vectors there; tokens here).

    Knobs: ``length`` (training length, default 10), ``num_symbols`` (content
    alphabet, ids ``1..num_symbols``; default 16), ``long_length`` (length of
    ``test_long``, default ``2 * length``; must exceed ``length``).

    Splits: train/val/test have S = T = ``length``; ``test_long`` has S = T =
    ``long_length``. ``vocab_size = num_classes = num_symbols + 1`` (0 = PAD, never used).

    Metric: ``exact_acc``. Chance: ``num_symbols ** -length`` (per token ``1/num_symbols``).
    """

    spec = TaskSpec(
        name="copy",
        summary="reproduce a random token sequence",
        paper="Graves et al. 2014, Neural Turing Machines",
        url="https://arxiv.org/abs/1410.5401",
        metric="exact_acc",
        length_generalization=True,
    )

    def __init__(self, length: int = 10, num_symbols: int = 16, long_length: int | None = None) -> None:
        super().__init__()
        require(length >= 1, "length", "must be >= 1", length)
        require(num_symbols >= 2, "num_symbols", "must be >= 2", num_symbols)
        long_length = 2 * length if long_length is None else long_length
        require(long_length > length, "long_length", f"must exceed length={length}", long_length)
        self.length = length
        self.num_symbols = num_symbols
        self.long_length = long_length
        self.vocab_size = self.num_classes = num_symbols + 1
        self.src_len = self.tgt_len = length
        self.long_src_len = self.long_tgt_len = long_length

    def _target(self, src: Tensor) -> Tensor:
        return src.clone()

    def generate(self, n: int, generator: torch.Generator, *, long: bool = False) -> dict[str, Tensor]:
        length = self.long_length if long else self.length
        src = torch.randint(1, self.num_symbols + 1, (n, length), generator=generator)  # (N, L)
        return {"src": src, "tgt": self._target(src)}

    def solve(self, src: list[int]) -> list[int]:
        return list(src)

    def chance(self) -> float:
        return float(self.num_symbols) ** -self.length


class ReverseTask(CopyTask):
    """Output the input sequence reversed.

    Tests: the same as ``copy`` but the alignment runs backwards, so the first
    output depends on the last input (hard for attention-less seq2seq; Sutskever
    et al. 2014 reversed the source for this reason).

    Paper: a standard seq2seq probe (e.g. Grefenstette et al. 2015, "Learning to
    Transduce with Unbounded Memory").

    Knobs: ``length`` (10), ``num_symbols`` (16), ``long_length`` (``2 * length``), as ``copy``.
    Splits and sizes: as ``copy`` (S = T = ``length``; ``test_long`` S = T = ``long_length``).

    Metric: ``exact_acc``. Chance: ``num_symbols ** -length``.
    """

    spec = TaskSpec(
        name="reverse",
        summary="output the input sequence reversed",
        paper="Grefenstette et al. 2015, Learning to Transduce with Unbounded Memory",
        url="https://arxiv.org/abs/1506.02516",
        metric="exact_acc",
        length_generalization=True,
    )

    def _target(self, src: Tensor) -> Tensor:
        return src.flip(1)

    def solve(self, src: list[int]) -> list[int]:
        return list(reversed(src))


TASKS = [CopyTask, ReverseTask]
