"""Associative recall and multi-query associative recall (content-addressed lookup)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from attnzoo.tasks._util import require, sample_distinct, sample_weighted_distinct
from attnzoo.tasks.base import PAD, Task, TaskSpec, attention_beats_baseline, gold_at, variant_beats

__all__ = ["AssociativeRecallTask", "MQARTask", "TASKS"]


class AssociativeRecallTask(Task):
    """Key-value pairs, then a query key: answer its value.

    Tests: lookup by content. A model that cannot bind keys to values can at best
    name one of the values it saw, so it lands near ``1/num_pairs``; a fixed-window
    MLP is expected to stay there.

    Paper: Graves et al. 2014 (NTM associative recall); the token form follows
    Ba et al. 2016, "Using Fast Weights to Attend to the Recent Past" (``c9k8j3f1??c`` -> ``8``).

    Layout: ``src = k1 v1 k2 v2 ... kn vn QUERY q`` (S = ``2 * num_pairs + 2``),
    ``tgt = [value of q]`` (T = 1). Ids: 0 PAD, 1 QUERY, keys ``2 .. num_keys+1``,
    values after them. Keys are distinct within an example, and so are values (so
    the no-lookup level is exactly ``1/num_pairs``).

    Knobs: ``num_pairs`` (default 8), ``num_keys`` (key alphabet, default 26 as
    letters in Ba et al.), ``num_values`` (value alphabet, default 10 as digits).

    Splits: train/val/test of the same size; no length split.
    ``vocab_size = num_classes = 2 + num_keys + num_values``.

    Metric: ``exact_acc`` (= token accuracy, T = 1). Chance: ``1/num_pairs``.
    """

    spec = TaskSpec(
        name="associative-recall",
        summary="key-value pairs, then a query key: answer its value",
        paper="Graves et al. 2014 (NTM); Ba et al. 2016, Using Fast Weights to Attend to the Recent Past",
        url="https://arxiv.org/abs/1610.06258",
        metric="exact_acc",
        content_addressed=True,
        contrasts=(
            attention_beats_baseline(why="lookup by content: a model that cannot bind keys to values names one "
                                         "of the values it saw, 1/num_pairs (Ba et al. 2016)"),
            variant_beats("general", "hard", backbone="seq2seq", margin=-0.02,
                          why="Deng et al. 2018: soft attention trains at least as well as hard (sampled) "
                              "attention at small budgets; general is the score hard samples from"),
        ),
    )

    QUERY = 1

    def __init__(self, num_pairs: int = 8, num_keys: int = 26, num_values: int = 10) -> None:
        super().__init__()
        require(num_pairs >= 2, "num_pairs", "must be >= 2", num_pairs)
        require(num_keys >= num_pairs, "num_keys", f"must be >= num_pairs={num_pairs} (keys are distinct)", num_keys)
        require(num_values >= num_pairs, "num_values", f"must be >= num_pairs={num_pairs} (values are distinct)", num_values)
        self.num_pairs = num_pairs
        self.num_keys = num_keys
        self.num_values = num_values
        self.vocab_size = self.num_classes = 2 + num_keys + num_values
        self.src_len = 2 * num_pairs + 2
        self.tgt_len = 1

    def generate(self, n: int, generator: torch.Generator, *, long: bool = False) -> dict[str, Tensor]:
        if long:
            raise ValueError(f"task {self.spec.name!r} has no long split")
        p = self.num_pairs
        keys = sample_distinct(n, p, self.num_keys, generator) + 2  # (N, P)
        values = sample_distinct(n, p, self.num_values, generator) + 2 + self.num_keys  # (N, P)
        which = torch.randint(0, p, (n, 1), generator=generator)  # (N, 1)
        src = torch.cat(
            [
                torch.stack([keys, values], dim=2).reshape(n, 2 * p),  # k1 v1 k2 v2 ...
                torch.full((n, 1), self.QUERY, dtype=torch.long),
                keys.gather(1, which),
            ],
            dim=1,
        )
        return {"src": src, "tgt": values.gather(1, which)}

    def solve(self, src: list[int]) -> list[int]:
        pairs = dict(zip(src[0:-2:2], src[1:-2:2]))
        return [pairs[src[-1]]]

    def gold_alignment(self, batch: dict[str, Tensor]) -> Tensor:
        """The answer reads the *value* of the pair whose key is the query, position ``2j + 1`` (its key
        sits at ``2j``, the position before)."""
        src = batch["src"]
        match = src[:, 0:-2:2] == src[:, -1:]  # (N, P): which pair's key is the query
        return gold_at((2 * match.long().argmax(dim=1) + 1)[:, None], src.shape[1])

    def token_names(self) -> list[str]:
        """``?`` the query marker; keys as letters and values as digits (Ba et al.'s ``c9k8j3f1??c``) where
        the alphabets are that small, else ``k<i>`` / ``v<i>``."""
        keys = [chr(ord("a") + i) if self.num_keys <= 26 else f"k{i}" for i in range(self.num_keys)]
        values = [str(i) if self.num_values <= 10 else f"v{i}" for i in range(self.num_values)]
        return ["·", "?", *keys, *values]

    def chance(self) -> float:
        return 1.0 / self.num_pairs


class MQARTask(Task):
    """Multi-query associative recall (MQAR), with Zoology's generator.

    Tests: many lookups per sequence; the gap between attention and efficient
    recurrent/convolutional mixers in Zoology. A model that cannot look up keys by
    content guesses one of the context's values: ``1/num_kv_pairs``.

    Paper: Arora et al. 2023, "Zoology: Measuring and Improving Recall in Efficient
    Language Models" (arXiv:2312.04927), ``multiquery_ar``.

    Layout (as Zoology): keys are drawn without replacement from ``[1, vocab_size//2)``,
    values without replacement from ``[vocab_size//2, vocab_size)``; the kv section
    ``k1 v1 ... kn vn`` is followed by a query section of ``input_seq_len - 2n``
    tokens in which each queried key sits at an even offset ``2*gap``, the gaps drawn
    without replacement from ``[0, space)`` (``space = (input_seq_len - 2n) // 2``)
    with ``p(gap = i) ∝ power_a * (i+1) ** (power_a - 1)`` (``placement="power"``,
    queries crowd near the start) or uniformly (``placement="uniform"``). The other
    query-section tokens are filler: random tokens (``random_non_queries=True``) or PAD.

    As a (src, tgt) task it is scored as Zoology scores it, in place: ``src`` is the
    whole ``input_seq_len``-token sequence and ``tgt`` is aligned with it (T = S):
    at each query position the queried key's value, PAD elsewhere, with ``tgt_mask``
    marking the ``num_queries`` scored positions (``spec.aligned``; a Transformer
    answers at the query token itself, a causal language model reading its own
    prefix). Answering the queries in order after the whole sequence instead would
    add a second problem, finding the i-th query, that Zoology's MQAR does not pose.
    One deviation from Zoology: filler is drawn from the *value* half of the
    vocabulary only, never from the key half, so that which tokens are queries is
    determined by ``src`` alone.

    Knobs: ``vocab_size`` (64), ``input_seq_len`` (64), ``num_kv_pairs`` (8),
    ``num_queries`` (``None`` = ``num_kv_pairs``, every key queried once as in
    Zoology; fewer queries a random subset), ``power_a`` (0.01, Zoology's default),
    ``placement`` (``"power"`` | ``"uniform"``), ``random_non_queries`` (True).

    Splits: train/val/test, S = T = ``input_seq_len`` (``num_queries`` scored positions);
    ``num_classes = vocab_size``. Metric: ``token_acc``. Chance: ``1/num_kv_pairs``.
    """

    spec = TaskSpec(
        name="mqar",
        summary="multi-query associative recall (Zoology): answer the value of every queried key",
        paper="Arora et al. 2023, Zoology: Measuring and Improving Recall in Efficient Language Models",
        url="https://arxiv.org/abs/2312.04927",
        metric="token_acc",
        content_addressed=True,
        aligned=True,
        contrasts=(
            attention_beats_baseline(why="Arora et al. 2023 (Zoology): attention solves MQAR where mixers "
                                         "without content-based lookup stay near 1/num_kv_pairs"),
        ),
    )

    def __init__(
        self,
        vocab_size: int = 64,
        input_seq_len: int = 64,
        num_kv_pairs: int = 8,
        num_queries: int | None = None,
        power_a: float = 0.01,
        placement: str = "power",
        random_non_queries: bool = True,
    ) -> None:
        super().__init__()
        num_queries = num_kv_pairs if num_queries is None else num_queries
        require(num_kv_pairs >= 2, "num_kv_pairs", "must be >= 2", num_kv_pairs)
        require(
            vocab_size // 2 - 1 >= num_kv_pairs,
            "vocab_size",
            f"the key half [1, vocab_size//2) must hold num_kv_pairs={num_kv_pairs} keys",
            vocab_size,
        )
        require(1 <= num_queries <= num_kv_pairs, "num_queries", f"must be in [1, num_kv_pairs={num_kv_pairs}]", num_queries)
        space = (input_seq_len - 2 * num_kv_pairs) // 2
        require(
            space >= num_queries,
            "input_seq_len",
            f"the query section must have (input_seq_len - 2*num_kv_pairs)//2 >= num_queries={num_queries} slots",
            input_seq_len,
        )
        require(placement in ("power", "uniform"), "placement", "must be 'power' or 'uniform'", placement)
        require(0 < power_a <= 1, "power_a", "must be in (0, 1]", power_a)
        self.vocab_size = vocab_size
        self.input_seq_len = input_seq_len
        self.num_kv_pairs = num_kv_pairs
        self.num_queries = num_queries
        self.power_a = power_a
        self.placement = placement
        self.random_non_queries = random_non_queries
        self.num_classes = vocab_size
        self.src_len = input_seq_len
        self.tgt_len = input_seq_len  # aligned: one (mostly unscored) target per input position
        gaps = torch.arange(1, space + 1, dtype=torch.float64)
        if placement == "power":  # Zoology: p = a * i**(a-1), normalised
            self._gap_log_weights = (math.log(power_a) + (power_a - 1) * gaps.log()).float()
        else:
            self._gap_log_weights = torch.zeros(space)

    def generate(self, n: int, generator: torch.Generator, *, long: bool = False) -> dict[str, Tensor]:
        if long:
            raise ValueError(f"task {self.spec.name!r} has no long split")
        m, q, half = self.num_kv_pairs, self.num_queries, self.vocab_size // 2
        keys = sample_distinct(n, m, half - 1, generator) + 1  # (N, M) in [1, V/2)
        values = sample_distinct(n, m, self.vocab_size - half, generator) + half  # (N, M) in [V/2, V)
        kv = torch.stack([keys, values], dim=2).reshape(n, 2 * m)  # k1 v1 k2 v2 ...
        gaps = sample_weighted_distinct(n, q, self._gap_log_weights, generator)  # (N, Q) query slots
        section = self.input_seq_len - 2 * m
        if self.random_non_queries:
            queries = torch.randint(half, self.vocab_size, (n, section), generator=generator)
        else:
            queries = torch.full((n, section), PAD, dtype=torch.long)
        queries.scatter_(1, 2 * gaps, keys[:, :q])  # key j asked at offset 2*gaps[j]
        answers = torch.full((n, section), PAD, dtype=torch.long)
        answers.scatter_(1, 2 * gaps, values[:, :q])  # (N, section): the value, at its key's query slot
        tgt = torch.cat([torch.full_like(kv, PAD), answers], dim=1)  # (N, S)
        return {"src": torch.cat([kv, queries], dim=1), "tgt": tgt, "tgt_mask": tgt != PAD}

    def gold_alignment(self, batch: dict[str, Tensor]) -> Tensor:
        """At each scored query position, the *value* position ``2j + 1`` of the kv pair whose key ``2j``
        is the queried key (the causal model reads it from the query token itself)."""
        src, m = batch["src"], self.num_kv_pairs
        match = src[:, None, 0 : 2 * m : 2] == src[:, :, None]  # (N, S, M): query position x pair
        pos = torch.where(match.any(dim=2), 2 * match.long().argmax(dim=2) + 1, -1)  # (N, S)
        return gold_at(pos, src.shape[1], batch.get("tgt_mask"))

    def solve(self, src: list[int]) -> list[int]:
        m, half = self.num_kv_pairs, self.vocab_size // 2
        table = dict(zip(src[0 : 2 * m : 2], src[1 : 2 * m : 2]))
        return [PAD] * (2 * m) + [table[t] if 0 < t < half else PAD for t in src[2 * m :]]

    def chance(self) -> float:
        return 1.0 / self.num_kv_pairs


TASKS = [AssociativeRecallTask, MQARTask]
