"""Sorting by pointing (Vinyals et al. 2015, Pointer Networks)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from attnzoo.tasks._util import require, sample_distinct
from attnzoo.tasks.base import Task, TaskSpec, attention_beats_baseline, gold_at, solves

__all__ = ["SortTask", "TASKS"]


class SortTask(Task):
    """Sort distinct numbers; answer with pointers to the input positions, smallest first.

    Tests: output classes that are *positions in the input* (the pointer-network
    setting), and length generalization: a pointer model's output layer grows with
    the input, a fixed softmax does not.

    Paper: Vinyals, Fortunato & Jaitly 2015, "Pointer Networks" (sorting real
    numbers there; distinct integer tokens here, so the answer is unique).

    Layout: ``src = [MARK, x1, ..., xn]`` (MARK = id 1 at position 0, like the
    pointer net's start/end symbol: it keeps position 0, which is also PAD's id,
    from ever being a target); ``tgt[j]`` = the position in ``src`` (1..n) of the
    j-th smallest ``x``. Values are ids ``2 .. num_values+1``, distinct within an example.

    Knobs: ``length`` (n, default 10), ``num_values`` (value alphabet, default 48;
    must be >= ``long_length``), ``long_length`` (n of ``test_long``, default ``2 * length``).

    Splits: train/val/test S = n+1, T = n; ``test_long`` S = ``long_length``+1, T =
    ``long_length``. ``spec.output = "pointers"``. **Sizing the output:**
    ``num_classes = long_src_len`` (= max(src_len, long_src_len)): a token-output
    head must cover the positions of the long split too; a pointer head scores the
    S positions of whatever it is given. ``vocab_size = num_values + 2``.

    Metric: ``exact_acc``. Chance: ``1/n!`` (a random permutation).
    """

    spec = TaskSpec(
        name="sort",
        summary="sort distinct numbers, answering with pointers into the input",
        paper="Vinyals et al. 2015, Pointer Networks",
        url="https://arxiv.org/abs/1506.03134",
        metric="exact_acc",
        output="pointers",
        length_generalization=True,
        contrasts=(
            solves("pointer", backbone="pointer",
                   why="Vinyals et al. 2015: a pointer network sorts by pointing at input positions"),
            attention_beats_baseline(why="Vinyals et al. 2015: the answer is a position in the input, which a "
                                         "fixed-window model has to learn as a fixed-size output"),
        ),
    )

    MARK = 1

    def __init__(self, length: int = 10, num_values: int = 48, long_length: int | None = None) -> None:
        super().__init__()
        require(length >= 2, "length", "must be >= 2", length)
        long_length = 2 * length if long_length is None else long_length
        require(long_length > length, "long_length", f"must exceed length={length}", long_length)
        require(num_values >= long_length, "num_values", f"must be >= long_length={long_length} (values are distinct)", num_values)
        self.length = length
        self.num_values = num_values
        self.long_length = long_length
        self.vocab_size = num_values + 2
        self.src_len, self.tgt_len = length + 1, length
        self.long_src_len, self.long_tgt_len = long_length + 1, long_length
        self.num_classes = max(self.src_len, self.long_src_len)

    def generate(self, n: int, generator: torch.Generator, *, long: bool = False) -> dict[str, Tensor]:
        length = self.long_length if long else self.length
        values = sample_distinct(n, length, self.num_values, generator) + 2  # (N, n)
        src = torch.cat([torch.full((n, 1), self.MARK, dtype=torch.long), values], dim=1)  # (N, n+1)
        return {"src": src, "tgt": values.argsort(dim=1) + 1}

    def solve(self, src: list[int]) -> list[int]:
        return sorted(range(1, len(src)), key=src.__getitem__)

    def gold_alignment(self, batch: dict[str, Tensor]) -> Tensor:
        """Output j points at the position of the j-th smallest value: the target itself (a pointer)."""
        src = batch["src"]
        return gold_at(src[:, 1:].argsort(dim=1) + 1, src.shape[1])

    def token_names(self) -> list[str]:
        """``^`` the start mark; values as the numbers they stand for (id - 2)."""
        return ["·", "^", *map(str, range(self.num_values))]

    def chance(self) -> float:
        return math.exp(-math.lgamma(self.length + 1))


TASKS = [SortTask]
