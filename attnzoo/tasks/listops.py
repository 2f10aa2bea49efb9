"""Short ListOps (Nangia & Bowman 2018; the Long Range Arena version, Tay et al. 2020)."""

from __future__ import annotations

import random
import statistics

import torch
from torch import Tensor

from attnzoo.tasks._util import python_rng, require
from attnzoo.tasks.base import PAD, Task, TaskSpec

__all__ = ["ListOpsTask", "TOKENS", "TASKS"]

#: token strings by id (0 = PAD); digits 0-9 are ids 1-10
TOKENS: tuple[str, ...] = ("<pad>", *map(str, range(10)), "[MIN", "[MAX", "[MED", "[SM", "]")
_MIN, _MAX, _MED, _SM, _END = range(11, 16)
_OPS = (_MIN, _MAX, _MED, _SM)


def _apply(op: int, args: list[int]) -> int:
    """An operator over digit values (LRA's ``to_value``: MED = int(np.median), SM = sum mod 10)."""
    if op == _MIN:
        return min(args)
    if op == _MAX:
        return max(args)
    if op == _SM:
        return sum(args) % 10
    s = sorted(args)
    return (s[(len(s) - 1) // 2] + s[len(s) // 2]) // 2


class _TooLong(Exception):
    """Abandons an expression as soon as it outgrows ``max_length``."""


class ListOpsTask(Task):
    """Evaluate a nested prefix expression of MIN, MAX, MED and SM (sum mod 10) over digits.

    Tests: hierarchical structure; the answer depends on the whole parse. A short
    version of LRA's ListOps (which runs to 2k tokens), so it trains on a CPU.

    Paper: Nangia & Bowman 2018, "ListOps"; the generator follows Tay et al. 2020,
    "Long Range Arena" (``listops.py``): the root (depth 1) is an operator; a node at
    depth ``2 .. max_depth-1`` is an operator with probability ``op_prob`` (LRA: 0.25),
    else a digit; nodes at ``max_depth`` are digits; an operator has 2 to ``max_args``
    arguments (uniform); expressions longer than ``max_length`` tokens or shorter than
    ``min_length`` are rejected. Values as LRA's ``to_value``: MED = ``int(np.median)``
    (the mean of the two middle values, floored), SM = sum mod 10.

    Example: ``[MAX 2 9 [MIN 4 7 ] 0 ]`` -> ``9``. Tokens: 0 PAD, digits ``0``-``9``
    = ids 1-10, ``[MIN`` ``[MAX`` ``[MED`` ``[SM`` ``]`` = ids 11-15 (see ``TOKENS``).

    Knobs: ``max_length`` (S, default 64), ``min_length`` (default 10),
    ``max_depth`` (default 4: up to three nested operator levels), ``max_args``
    (default 5), ``op_prob`` (default 0.3). Defaults give expressions of 12-33
    tokens (10th-90th percentile, median 19), about 60% accepted.

    Splits: train/val/test; src is the expression right-padded with PAD to
    ``max_length``; T = 1, the answer digit's id. ``vocab_size = 16``,
    ``num_classes = 11`` (PAD + ten digits).

    Generated in Python, one recursive sampler per example seeded from the torch
    generator: the trees are small and sparse, and this measured about half the CPU
    time of a vectorised sampler over the full ``max_args``-ary tree, at batch 64
    and at 1024 alike.

    Metric: ``exact_acc``. Chance: the frequency of the most common answer,
    computed once from 20,000 expressions (cached; about 0.12 at the defaults).
    """

    spec = TaskSpec(
        name="listops",
        summary="evaluate nested MIN/MAX/MED/SUM_MOD expressions over digits",
        paper="Nangia & Bowman 2018, ListOps; Tay et al. 2020, Long Range Arena",
        url="https://arxiv.org/abs/2011.04006",
        metric="exact_acc",
        # no contrast declared: in LRA most models land within a few points of each other on ListOps
        # (Tay et al. 2020, Table 1), so there is no gap this task exists to show; findings.md says so
    )

    def __init__(
        self, max_length: int = 64, min_length: int = 10, max_depth: int = 4, max_args: int = 5, op_prob: float = 0.3
    ) -> None:
        super().__init__()
        require(max_args >= 2, "max_args", "must be >= 2", max_args)
        require(max_depth >= 1, "max_depth", "must be >= 1", max_depth)
        require(0.0 <= op_prob < 1.0, "op_prob", "must be in [0, 1)", op_prob)
        require(max_length >= 4, "max_length", "must be >= 4 (an operator, two digits, ']')", max_length)
        require(4 <= min_length <= max_length, "min_length", f"must be in [4, max_length={max_length}]", min_length)
        longest = 1
        for _ in range(max(max_depth, 2) - 1):  # the longest tree: every node an operator with max_args args
            longest = 2 + max_args * longest
        require(
            min_length <= longest,
            "min_length",
            f"exceeds the longest expression ({longest} tokens) with max_depth={max_depth}, max_args={max_args}",
            min_length,
        )
        self.max_length = max_length
        self.min_length = min_length
        self.max_depth = max_depth
        self.max_args = max_args
        self.op_prob = op_prob
        self.vocab_size = len(TOKENS)
        self.num_classes = 11
        self.src_len, self.tgt_len = max_length, 1
        self._chance: float | None = None

    def _example(self, rng: random.Random) -> tuple[list[int], int]:
        """One accepted expression (token ids) and its value, by rejection on length as in LRA."""
        rand, max_depth, op_prob, max_length = rng.random, self.max_depth, self.op_prob, self.max_length
        extra_args = self.max_args - 1  # an operator takes 2 + int(rand() * extra_args) arguments

        def tree(depth: int) -> int:  # appends one subtree to `out`, returns its value
            if depth > 1 and (depth >= max_depth or rand() >= op_prob):
                v = int(rand() * 10)
                out.append(v + 1)
                return v
            op = _OPS[int(rand() * 4)]
            out.append(op)
            args = [tree(depth + 1) for _ in range(2 + int(rand() * extra_args))]
            out.append(_END)
            if len(out) > max_length:
                raise _TooLong
            return _apply(op, args)

        while True:
            out: list[int] = []
            try:
                value = tree(1)
            except _TooLong:
                continue
            if len(out) >= self.min_length:
                return out, value

    def generate(self, n: int, generator: torch.Generator, *, long: bool = False) -> dict[str, Tensor]:
        if long:
            raise ValueError(f"task {self.spec.name!r} has no long split")
        rng, width = python_rng(generator), self.max_length
        rows, answers = [], []
        for _ in range(n):
            tokens, value = self._example(rng)
            rows.append(tokens + [PAD] * (width - len(tokens)))
            answers.append(value + 1)
        src = torch.tensor(rows, dtype=torch.long).view(n, width)
        return {"src": src, "tgt": torch.tensor(answers, dtype=torch.long).view(n, 1)}

    def token_names(self) -> list[str]:
        """:data:`TOKENS` (digits, ``[MIN`` ... ``]``); ListOps has no gold alignment (every token counts)."""
        return ["·", *TOKENS[1:]]

    def solve(self, src: list[int]) -> list[int]:
        ops = {"[MIN": min, "[MAX": max, "[MED": lambda a: int(statistics.median(a)), "[SM": lambda a: sum(a) % 10}
        stack: list[list] = [[]]  # each open operator: [function, operands...]
        for word in (TOKENS[t] for t in src if t != PAD):
            if word in ops:
                stack.append([ops[word]])
            elif word == "]":
                fn, *args = stack.pop()
                stack[-1].append(fn(args))
            else:
                stack[-1].append(int(word))
        return [stack[0][0] + 1]

    def chance(self) -> float:
        if self._chance is None:
            answers = self.generate(20_000, torch.Generator().manual_seed(0))["tgt"][:, 0]
            self._chance = answers.bincount().max().item() / answers.numel()
        return self._chance


TASKS = [ListOpsTask]
