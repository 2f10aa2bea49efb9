"""Copy and reverse: fixed permutations of the input (Graves et al. 2014)."""

from __future__ import annotations

import torch
from torch import Tensor

from attnzoo.tasks._util import require
from attnzoo.tasks.base import (
    NO_ATTENTION,
    Contrast,
    Task,
    TaskSpec,
    attention_beats_baseline,
    gold_at,
    degrades_with_length,
    fails_long,
    solves,
    variant_beats,
)

__all__ = ["CopyTask", "ReverseTask", "TASKS"]


def _sequence_contrasts(name: str) -> tuple[Contrast, ...]:
    """What copy and reverse exist to show (DESIGN.md, "Measuring honestly")."""
    return (
        solves(NO_ATTENTION, backbone="mlp",
               why=f"{name} at one length is a fixed permutation, which an MLP over the flattened input can learn"),
        fails_long(NO_ATTENTION, backbone="mlp",
                   why="an MLP is built for one input length and has no way to run at another"),
        # token accuracy: Bahdanau et al.'s Fig. 2 is BLEU, which gives partial credit, and exact
        # sequence accuracy at twice the length is near 0 for every variant of a small budget
        degrades_with_length(NO_ATTENTION, backbone="seq2seq", metric="token_acc",
                             why="Bahdanau et al. 2015, Fig. 2: without attention the encoder's fixed-size state "
                                 "must hold the whole sequence, and quality falls as sequences grow"),
        attention_beats_baseline(backbone="seq2seq", baseline_backbone="seq2seq",
                                 why="Bahdanau et al. 2015: attention lets the decoder read the encoder states "
                                     "it needs instead of one summary vector"),
        # hard samples from softmax(general score) (HardAttention's default), so general is its soft twin
        variant_beats("general", "hard", backbone="seq2seq", margin=-0.02,
                      why="Deng et al. 2018: soft attention trains at least as well as hard (sampled) attention "
                          "at small budgets; general is the score hard samples from"),
    )


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
        contrasts=(
            *_sequence_contrasts("copy"),
            # token accuracy: at twice the training length exact copies are rare for every model
            variant_beats("ntm", NO_ATTENTION, backbone="ntm", b_backbone="seq2seq", split="test_long",
                          metric="token_acc", margin=0.1,
                          why="Graves et al. 2014, Fig. 4: the NTM's copy generalizes to longer sequences than "
                              "an LSTM's (the attention-less seq2seq here)"),
        ),
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

    def _source_of(self, n: int, length: int) -> Tensor:
        """long [N, T]: the source position output t copies (t itself)."""
        return torch.arange(length).expand(n, length)

    def gold_alignment(self, batch: dict[str, Tensor]) -> Tensor:
        """Output t reads source position t (reverse: ``S - 1 - t``), the diagonal (anti-diagonal)."""
        n, s = batch["src"].shape
        return gold_at(self._source_of(n, s).to(batch["src"].device), s)

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
        contrasts=_sequence_contrasts("reverse"),
    )

    def _target(self, src: Tensor) -> Tensor:
        return src.flip(1)

    def _source_of(self, n: int, length: int) -> Tensor:
        return (length - 1 - torch.arange(length)).expand(n, length)

    def solve(self, src: list[int]) -> list[int]:
        return list(reversed(src))


TASKS = [CopyTask, ReverseTask]
