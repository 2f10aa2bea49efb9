"""Induction heads (Olsson et al. 2022): ... A B ... A -> B, and multi-token names."""

from __future__ import annotations

import torch
from torch import Tensor

from attnzoo.tasks._util import require, sample_distinct
from attnzoo.tasks.base import PAD, Task, TaskSpec, attention_beats_baseline, depth_helps, gold_at

__all__ = ["InductionHeadsTask", "TASKS"]


class InductionHeadsTask(Task):
    """Complete the pattern ``... A B ... A -> B``; names: ``... A N1 N2 N3 ... A -> N1 N2 N3``.

    Tests: the induction mechanism: find the earlier occurrence of the last token
    and copy what followed it. Two slices (``batch["slice"]``):

    - ``"single"``: after the trigger came one ordinary token B; tgt = ``[B]``
      (the remaining target positions are PAD and unscored, ``tgt_mask`` False).
    - ``"name"``: after the trigger came a "name" of ``name_len`` distinct
      sub-tokens (from their own alphabet); tgt is the whole name, so after the
      first piece the decoder must find the piece it just emitted and copy the next
      one (Olsson et al.'s name-copying example, "Mr. D|urs|ley ... Mr. D" -> "urs").

    The trigger occurs exactly twice (at a random position and last) and is never
    filler. Both slices also scatter ``distractors`` other name pieces, each once,
    over the filler, so every name piece in ``src`` occurs once and only the
    lookup tells the name from the distractors (without them, "copy the name-alphabet
    tokens" would solve the name slice with no induction at all).

    Paper: Olsson et al. 2022, "In-context Learning and Induction Heads"; the
    synthetic form as in Gu & Dao 2023 (Mamba), whose length-extrapolation test
    ``test_long`` mirrors.

    Ids: 0 PAD, ordinary tokens ``1 .. num_symbols``, name pieces after them.

    Knobs: ``seq_len`` (S, default 16), ``num_symbols`` (ordinary alphabet, 16),
    ``name_len`` (pieces per name = T, 3), ``num_name_pieces`` (name alphabet, 16),
    ``name_frac`` (probability of the name slice, 0.5), ``distractors`` (other
    name pieces scattered in the filler; default ``min(num_name_pieces - name_len,
    (seq_len - name_len - 2) // 2)`` = 5), ``long_seq_len`` (``test_long`` S,
    default ``2 * seq_len``).

    Splits: train/val/test S = ``seq_len``, ``test_long`` S = ``long_seq_len``;
    T = ``name_len`` everywhere. ``vocab_size = num_classes = 1 + num_symbols + num_name_pieces``.

    Metric: ``token_acc`` over scored positions. Chance (a model that cannot look
    the trigger up): B is uniform over ``num_symbols - 1`` tokens, and name piece j
    over the ``name_len + distractors - j`` pieces in ``src`` not yet emitted;
    pooled over scored positions with the slice mix.
    """

    spec = TaskSpec(
        name="induction-heads",
        summary="... A B ... A -> B, and multi-token names copied piece by piece",
        paper="Olsson et al. 2022, In-context Learning and Induction Heads",
        url="https://arxiv.org/abs/2209.11895",
        metric="token_acc",
        length_generalization=True,
        content_addressed=True,
        slices=("single", "name"),
        contrasts=(
            attention_beats_baseline(why="Olsson et al. 2022: an induction head looks up the earlier occurrence "
                                         "of the current token by content; a fixed window cannot"),
            depth_helps(backbone="transformer", deeper=2, shallower=1,
                        why="Olsson et al. 2022: an induction head is two heads in sequence (a previous-token "
                            "head, then the lookup), so it needs two layers of attention"),
        ),
    )

    def __init__(
        self,
        seq_len: int = 16,
        num_symbols: int = 16,
        name_len: int = 3,
        num_name_pieces: int = 16,
        name_frac: float = 0.5,
        distractors: int | None = None,
        long_seq_len: int | None = None,
    ) -> None:
        super().__init__()
        require(num_symbols >= 3, "num_symbols", "must be >= 3", num_symbols)
        require(name_len >= 1, "name_len", "must be >= 1", name_len)
        require(num_name_pieces >= name_len, "num_name_pieces", f"must be >= name_len={name_len}", num_name_pieces)
        require(seq_len >= name_len + 3, "seq_len", f"must be >= name_len + 3 = {name_len + 3}", seq_len)
        require(0.0 <= name_frac <= 1.0, "name_frac", "must be in [0, 1]", name_frac)
        long_seq_len = 2 * seq_len if long_seq_len is None else long_seq_len
        require(long_seq_len > seq_len, "long_seq_len", f"must exceed seq_len={seq_len}", long_seq_len)
        self.seq_len = seq_len
        self.num_symbols = num_symbols
        self.name_len = name_len
        self.num_name_pieces = num_name_pieces
        self.name_frac = name_frac
        free = seq_len - name_len - 2  # filler positions of a training example
        distractors = min(num_name_pieces - name_len, free // 2) if distractors is None else distractors
        require(
            0 <= distractors <= min(num_name_pieces - name_len, free),
            "distractors",
            f"must be in [0, min(num_name_pieces - name_len, seq_len - name_len - 2) = "
            f"{min(num_name_pieces - name_len, free)}]",
            distractors,
        )
        self.distractors = distractors
        self.long_seq_len = long_seq_len
        self.vocab_size = self.num_classes = 1 + num_symbols + num_name_pieces
        self.src_len, self.tgt_len = seq_len, name_len
        self.long_src_len, self.long_tgt_len = long_seq_len, name_len

    def generate(self, n: int, generator: torch.Generator, *, long: bool = False) -> dict[str, Tensor]:
        s, k, f = (self.long_seq_len if long else self.seq_len), self.name_len, self.num_symbols
        rows, steps = torch.arange(n), torch.arange(k)
        trigger = torch.randint(1, f + 1, (n, 1), generator=generator)  # (N, 1)
        src = torch.randint(1, f, (n, s), generator=generator)  # (N, S) filler, one value short...
        src += (src >= trigger).long()  # ...skipping the trigger's id
        is_name = torch.rand(n, generator=generator) < self.name_frac  # (N,)
        first = torch.randint(0, s - 1 - k, (n,), generator=generator)  # trigger, then k slots before the end
        slots = first[:, None] + 1 + steps  # (N, K) positions after the first trigger
        pieces = sample_distinct(n, k + self.distractors, self.num_name_pieces, generator) + f + 1
        src[rows, first] = trigger[:, 0]
        src[:, -1] = trigger[:, 0]
        src.scatter_(1, slots, torch.where(is_name[:, None], pieces[:, :k], src.gather(1, slots)))
        # the other name pieces, each once, at random free positions (in both slices)
        free = torch.rand(n, s, generator=generator)
        free[rows, first] = -1.0
        free[:, -1] = -1.0
        free.scatter_(1, slots, -1.0)
        src.scatter_(1, free.topk(self.distractors, dim=1).indices, pieces[:, k:])
        tgt_mask = is_name[:, None] | (steps == 0)  # (N, K)
        tgt = torch.where(tgt_mask, src.gather(1, slots), PAD)
        return {"src": src, "tgt": tgt, "tgt_mask": tgt_mask, "slice": is_name.long()}

    def gold_alignment(self, batch: dict[str, Tensor]) -> Tensor:
        """Output j reads position ``first + 1 + j``: the token after the trigger's earlier occurrence
        ``first`` (and, for a name, the pieces after it), scored positions only."""
        src = batch["src"]
        first = (src == src[:, -1:]).long().argmax(dim=1)  # (N,) the trigger's first occurrence
        pos = first[:, None] + 1 + torch.arange(self.name_len, device=src.device)  # (N, T)
        return gold_at(pos, src.shape[1], batch.get("tgt_mask"))

    def token_names(self) -> list[str]:
        """Ordinary tokens by id, name pieces as ``n<i>``."""
        return ["·", *map(str, range(1, self.num_symbols + 1)), *(f"n{i}" for i in range(self.num_name_pieces))]

    def solve(self, src: list[int]) -> list[int]:
        at = src.index(src[-1]) + 1
        if src[at] > self.num_symbols:  # a name: copy it piece by piece
            return src[at : at + self.name_len]
        return [src[at]] + [PAD] * (self.name_len - 1)

    def chance(self) -> float:
        single = 1.0 - self.name_frac
        hits = single / (self.num_symbols - 1) + self.name_frac * sum(
            1.0 / (self.name_len + self.distractors - j) for j in range(self.name_len)
        )
        return hits / (single + self.name_frac * self.name_len)


TASKS = [InductionHeadsTask]
