"""The MAD synthetic suite (Poli et al. 2024, "Mechanistic Design and Scaling of Hybrid Architectures").

Six tasks, each a seeded generator after MAD's own (``mad/data/instances.py`` in
athms/mad-lab, read, not copied), rewritten for attnzoo's ``(src, tgt)`` contract:

========================  =====================================  ==========================================
attnzoo task              MAD task (config)                      what it probes
========================  =====================================  ==========================================
mad-in-context-recall     in-context-recall (multi_query)        recall of a key's value bound in context
mad-fuzzy-recall          fuzzy-in-context-recall                recall with keys/values of 1-3 tokens
mad-noisy-recall          noisy-in-context-recall                recall with noise pairs between the pairs
mad-selective-copy        selective-copying                      copy content tokens scattered among blanks
mad-compression           compression                            reproduce a sequence from one position
mad-memorization          memorization                           a fixed key->value map held in the weights
========================  =====================================  ==========================================

**Where every task differs from MAD** (each class's docstring adds its own):

- *Ids*: MAD's ids start at 0; here every MAD id ``x`` is ``x + 1`` (0 is attnzoo's PAD), and a
  task's special tokens (blank, copy, compression, insert) keep MAD's order after the content ids.
- *Scored positions*: MAD trains a causal LM on every next token and scores the targets it marks
  (``target_ignore_idx`` elsewhere). Here ``src`` is the context and ``tgt`` the marked answers, read
  after the context (the Transformer's ``last_src`` readout: the last source token predicts
  ``tgt_1``, later answers are teacher-forced); the loss is on the scored answers only. In-context
  and noisy recall are scored in place instead (``spec.aligned``: ``tgt`` aligned with ``src``, the
  Transformer's ``aligned`` readout), as MAD's multi-query mode scores them: every value whose key
  appeared before, plus the final probe. Fuzzy recall scores the final probe's value motif only.
- *Training data*: MAD trains 200 epochs on a fixed set of ``num_train_examples`` sequences. Here
  ``num_train_examples=None`` draws a fresh batch every step (attnzoo's default, DESIGN.md); an
  integer fixes a training pool of that many sequences, drawn once from ``pool_seed``, and every
  training batch samples rows of it with replacement (MAD goes through it in epochs). The pool is
  the same for every seed of a cell (seeds vary the initialisation and the batch order).
- *Evaluation*: fixed val/test sets (``test_size`` 1,280 as MAD's ``num_test_examples``) from MAD's
  test-time generator (fuzzy recall: keys at the full motif size); MAD picks the best run of its
  learning-rate x weight-decay sweep on the *test* accuracy, the leaderboard on validation.
- *Sizes*: the knobs' defaults are MAD's baseline settings; :data:`MAD_SETTINGS` lists MAD's
  difficulty settings (the baseline plus one change at a time, as ``make_benchmark_mad_configs``).

Metric: ``token_acc`` over the scored positions, as MAD's accuracy.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from attnzoo.tasks._util import python_rng, require, sample_distinct
from attnzoo.tasks.base import PAD, Task, TaskSpec, attention_beats_baseline, gold_at, gold_in_order

__all__ = [
    "SUITE", "MAD_TASKS", "MAD_SETTINGS", "MAD_LRS", "MAD_WEIGHT_DECAYS", "MADTask", "InContextRecallTask",
    "NoisyRecallTask", "FuzzyRecallTask", "MADSelectiveCopyTask", "CompressionTask", "MemorizationTask", "TASKS",
]  # fmt: skip

#: MAD's sweep (``make_benchmark_mad_configs``): every setting is trained at each lr x weight decay
MAD_LRS = (1e-4, 5e-4, 1e-3)
MAD_WEIGHT_DECAYS = (0.0, 0.1)

#: MAD's task configs (``configs/tasks/*.yml``): the baseline and the values each knob takes, one at a time
MAD_SETTINGS: dict[str, dict[str, Any]] = {
    "mad-in-context-recall": {
        "baseline": {"vocab_size": 16, "seq_len": 128, "num_train_examples": 12800},
        "changes": {"vocab_size": [32, 64, 128], "seq_len": [256, 512, 1024],
                    "num_train_examples": [6400, 3200, 1600, 800]},
    },
    "mad-fuzzy-recall": {
        "baseline": {"vocab_size": 16, "seq_len": 128, "num_train_examples": 12800, "k_motif_size": 3,
                     "v_motif_size": 3},
        "changes": {"vocab_size": [32, 64, 128], "seq_len": [256, 512, 1024],
                    "num_train_examples": [6400, 3200, 1600, 800]},
    },
    "mad-noisy-recall": {
        "baseline": {"vocab_size": 32, "noise_vocab_size": 16, "seq_len": 128, "num_train_examples": 12800,
                     "frac_noise": 0.2},
        "changes": {"vocab_size": [48, 80, 144], "seq_len": [256, 512, 1024],
                    "num_train_examples": [6400, 3200, 1600, 800], "frac_noise": [0.4, 0.6, 0.8]},
    },
    "mad-selective-copy": {
        "baseline": {"vocab_size": 16, "seq_len": 256, "num_tokens_to_copy": 16, "num_train_examples": 12800},
        "changes": {"vocab_size": [32, 64, 128], "seq_len": [512, 1024],
                    "num_train_examples": [6400, 3200, 1600, 800], "num_tokens_to_copy": [32, 64, 96]},
    },
    "mad-compression": {
        "baseline": {"vocab_size": 16, "seq_len": 32, "num_train_examples": 12800},
        "changes": {"vocab_size": [32, 64, 128], "seq_len": [64, 128, 256],
                    "num_train_examples": [6400, 3200, 1600, 800]},
    },
    "mad-memorization": {
        "baseline": {"vocab_size": 256, "seq_len": 32, "num_train_examples": 256},
        "changes": {"vocab_size": [512, 1024, 2048, 4096, 8192]},
    },
}

#: the suite the MAD tasks name (:attr:`TaskSpec.suite`): the report gives it its score table
SUITE = "mad"

#: the registered names of the six MAD tasks, in MAD's order (their registration order: the MAD table's columns)
MAD_TASKS: tuple[str, ...] = tuple(MAD_SETTINGS)

#: the chance level's Monte-Carlo sample (fixed seed: chance() is a number, not a draw)
_CHANCE_ROWS, _CHANCE_SEED = 2048, 20240326


def _why(task: str) -> str:
    return (f"Poli et al. 2024 (MAD), {task}: a mixer that cannot look tokens up by content stays near chance, "
            "and an MLP over the flattened input has no content-based lookup")


class MADTask(Task):
    """Shared machinery of the MAD tasks: the fixed training pool and MAD's test-time generator.

    Subclasses implement :meth:`_sample` (``train`` selects MAD's training or test-time
    generator) and set ``vocab_size``, ``num_classes``, ``src_len``, ``tgt_len``.
    ``generate`` draws training batches (fresh, or rows of the fixed pool when
    ``num_train_examples`` is set); :meth:`fixed_split` draws val/test with the test-time
    generator. No task here has a length split.
    """

    val_size = 512
    test_size = 1280  # MAD's num_test_examples

    def __init__(self, num_train_examples: int | None = None, pool_seed: int = 12345) -> None:
        super().__init__()
        require(num_train_examples is None or (isinstance(num_train_examples, int) and num_train_examples >= 1),
                "num_train_examples", "must be a positive integer or None (fresh data every step)",
                num_train_examples)
        self.num_train_examples = num_train_examples
        self.pool_seed = pool_seed
        self._pool: dict[str, Tensor] | None = None
        self._chance: float | None = None

    # -- to implement -----------------------------------------------------
    def _sample(self, n: int, generator: torch.Generator, *, train: bool) -> dict[str, Tensor]:
        raise NotImplementedError

    # -- provided ---------------------------------------------------------
    def generate(self, n: int, generator: torch.Generator, *, long: bool = False) -> dict[str, Tensor]:
        """``n`` training examples: freshly drawn, or (``num_train_examples`` set) rows of the fixed pool."""
        if long:
            raise ValueError(f"task {self.spec.name!r} has no long split")
        if self.num_train_examples is None:
            return self._sample(n, generator, train=True)
        pool = self.training_pool()
        idx = torch.randint(0, self.num_train_examples, (n,), generator=generator)  # (N,) with replacement
        return {k: v[idx] for k, v in pool.items()}

    def training_pool(self) -> dict[str, Tensor]:
        """The fixed training set of ``num_train_examples`` rows (MAD's training data), drawn once from
        ``pool_seed`` and cached. :raises ValueError: when the task draws fresh data (no pool)."""
        if self.num_train_examples is None:
            raise ValueError(f"task {self.spec.name!r}: num_train_examples is None, so there is no fixed pool")
        if self._pool is None:
            # the offset keeps the pool's stream apart from the val/test seeds (seed + 1_000_003, ...)
            g = torch.Generator().manual_seed(self.pool_seed + 4_000_037)
            self._pool = self._sample(self.num_train_examples, g, train=True)
        return self._pool

    def fixed_split(self, split: str, seed: int) -> dict[str, Tensor]:
        """val/test from MAD's test-time generator (never from the training pool)."""
        offsets = {"val": 1_000_003, "test": 2_000_003}
        if split not in offsets:
            raise ValueError(f"split: expected one of val, test, got {split!r}"
                             + (f" (task {self.spec.name!r} has no 'test_long' split)" if split == "test_long" else ""))
        g = torch.Generator().manual_seed(seed + offsets[split])
        return self._sample(self.val_size if split == "val" else self.test_size, g, train=False)

    def knobs(self) -> dict[str, Any]:
        out = super().knobs()
        out.pop("_pool", None)
        return out

    def _guess(self, src: list[int]) -> list[int] | None:
        """The best answer of a model that cannot look the query up (None: chance is closed-form)."""
        return None

    def _closed_chance(self) -> float:
        raise NotImplementedError

    def chance(self) -> float:
        """Token accuracy of :meth:`_guess` on a fixed test-distribution sample (or a closed form)."""
        if self._chance is None:
            batch = self._sample(_CHANCE_ROWS, torch.Generator().manual_seed(_CHANCE_SEED), train=False)
            if self._guess(batch["src"][0].tolist()) is None:
                self._chance = self._closed_chance()
            else:
                hits = total = 0
                mask = batch.get("tgt_mask", torch.ones_like(batch["tgt"], dtype=torch.bool))
                for src, tgt, m in zip(batch["src"].tolist(), batch["tgt"].tolist(), mask.tolist()):
                    guess = self._guess(src)
                    for t, (want, scored) in enumerate(zip(tgt, m)):
                        if scored:
                            total += 1
                            hits += t < len(guess) and guess[t] == want
                self._chance = hits / total
        return self._chance


# -- in-context recall and noisy recall ------------------------------------------------------
class InContextRecallTask(MADTask):
    """MAD's in-context recall (multi-query): key-value pairs with repeating keys, then a probe key.

    Tests: recall of the value bound to a key earlier in the same sequence (Poli et al. 2024, Sec. 3.1;
    MAD's ``generate_in_context_recall_instance`` with ``multi_query=True``).

    Layout (MAD's generator): ``vocab_size - noise_vocab_size`` content ids split into keys (lower
    half) and values (upper half); ``seq_len // 2 - 1`` context pairs ``k v``, each key drawn
    uniformly *with replacement* and bound to one random value per sequence (a repeated key keeps its
    value), then the probe: a key drawn uniformly from the distinct keys presented. ``src`` = context
    + probe key (S = ``seq_len - 1``, MAD's ``inputs[:-1]``).
    Ids: 0 PAD, keys ``1..K``, values ``K+1..2K'``, noise ids after them, then the ask token.

    Scored as MAD's multi-query mode scores it, in place (``spec.aligned``, T = S): ``tgt`` holds,
    at the position of every key that already appeared in an earlier (real) pair, that key's value
    (the token MAD's causal LM must predict next), and at the probe its value; PAD elsewhere, with
    ``tgt_mask`` marking the scored positions. The first occurrence of a key is not scored: nothing
    before it says its value. In ``src`` the value of a scored pair is replaced by an *ask* token
    (``ask_id``, the last id): a model that reads the whole input at once (the MLP baseline) would
    otherwise read each answer off the next input token. A causal model never sees that token before
    answering; for it the one change from MAD is that a repeated pair's value is not there as more
    evidence for the key's later repeats (its first binding always is).

    Differences from MAD (beyond the module's): MAD draws its "at least one real pair"
    index from all ``seq_len // 2`` pairs, so with probability ``2/seq_len`` none is forced and a
    fully noisy context has no key to probe (MAD's generator then fails); here it is drawn from the
    context pairs.

    Knobs: ``vocab_size`` (16, MAD's baseline), ``seq_len`` (128, even), ``num_train_examples``
    (None: fresh data every step; MAD: 12,800), ``pool_seed`` (12345).

    Metric: ``token_acc`` over the scored positions. Chance: the token accuracy of naming, at each
    scored position, the value bound to the most keys presented so far (a model that sees which values
    occur but cannot bind them to keys), estimated on a fixed sample of 2,048 test sequences; well
    above 1/|values| (see :meth:`chance`).
    """

    spec = TaskSpec(
        name="mad-in-context-recall",
        summary="MAD in-context recall: repeated key-value pairs, each repeated key's value scored in place",
        paper="Poli et al. 2024, Mechanistic Design and Scaling of Hybrid Architectures (MAD)",
        url="https://arxiv.org/abs/2403.17844",
        suite=SUITE,
        metric="token_acc",
        content_addressed=True,
        aligned=True,
        contrasts=(attention_beats_baseline(why=_why("in-context recall")),),
    )

    def __init__(self, vocab_size: int = 16, seq_len: int = 128, num_train_examples: int | None = None,
                 pool_seed: int = 12345) -> None:
        super().__init__(num_train_examples, pool_seed)
        self._setup(vocab_size, seq_len, 0, 0.0)

    def _setup(self, vocab_size: int, seq_len: int, noise_vocab_size: int, frac_noise: float) -> None:
        require(seq_len >= 4 and seq_len % 2 == 0, "seq_len", "must be an even number >= 4 (MAD's pairs)", seq_len)
        require(0 <= noise_vocab_size, "noise_vocab_size", "must be >= 0", noise_vocab_size)
        require(0.0 <= frac_noise < 1.0, "frac_noise", "must be in [0, 1)", frac_noise)
        require(frac_noise == 0 or noise_vocab_size > 0, "noise_vocab_size", "must be > 0 when frac_noise > 0",
                noise_vocab_size)
        content = vocab_size - noise_vocab_size
        require(content >= 4, "vocab_size", f"must leave >= 4 content ids after noise_vocab_size={noise_vocab_size}",
                vocab_size)
        self.vocab_size_knob = vocab_size
        self.seq_len = seq_len
        self.noise_vocab_size = noise_vocab_size
        self.frac_noise = frac_noise
        self.num_keys = content // 2
        self.num_values = content - self.num_keys
        self._content = content
        #: the token that stands in src for the value of a scored (repeated) pair
        self.ask_id = vocab_size + 1
        self.vocab_size = self.num_classes = vocab_size + 2  # PAD, the MAD ids, the ask token
        self.src_len = self.tgt_len = seq_len - 1  # aligned: one (mostly unscored) target per position

    def knobs(self) -> dict[str, Any]:
        out = super().knobs()
        out["vocab_size"] = self.vocab_size_knob
        return out

    def _sample(self, n: int, generator: torch.Generator, *, train: bool) -> dict[str, Tensor]:
        p, k = self.seq_len // 2 - 1, self.num_keys  # context pairs, key alphabet
        keys = torch.randint(0, k, (n, p), generator=generator)  # (N, P) with replacement
        table = torch.randint(0, self.num_values, (n, k), generator=generator)  # (N, K) value of each key
        values = table.gather(1, keys)  # (N, P)
        pairs = torch.stack([keys + 1, values + 1 + k], dim=2)  # (N, P, 2) ids shifted past PAD
        real = torch.ones(n, p, dtype=torch.bool)
        if self.frac_noise > 0:
            real = torch.rand(n, p, generator=generator) >= self.frac_noise
            real[torch.arange(n), torch.randint(0, p, (n,), generator=generator)] = True  # >= 1 real pair
            noise = torch.randint(0, self.noise_vocab_size, (n, p, 2), generator=generator) + 1 + self._content
            pairs = torch.where(real[..., None], pairs, noise)
        presented = torch.zeros(n, k).scatter_add_(1, keys, real.float()) > 0  # (N, K)
        probe = torch.rand(n, k, generator=generator).masked_fill(~presented, -1.0).argmax(1)  # (N,) uniform
        src = torch.cat([pairs.reshape(n, 2 * p), (probe + 1)[:, None]], dim=1)  # (N, S)
        # A key is scored where an earlier real pair already bound it: its first real position, by key.
        pos = torch.arange(p).expand(n, p)  # (N, P)
        first = torch.full((n, k), p).scatter_reduce(1, keys, torch.where(real, pos, p), reduce="amin")  # (N, K)
        repeated = real & (first.gather(1, keys) < pos)  # (N, P)
        src[:, 1 : 2 * p : 2] = torch.where(repeated, self.ask_id, src[:, 1 : 2 * p : 2])  # answers not in the input
        tgt = torch.full_like(src, PAD)  # (N, S)
        tgt[:, 0 : 2 * p : 2] = torch.where(repeated, values + 1 + k, PAD)
        tgt[:, -1] = table.gather(1, probe[:, None]).squeeze(1) + 1 + k  # the probe's value
        return {"src": src, "tgt": tgt, "tgt_mask": tgt != PAD}

    def _scored(self, src: list[int]) -> Iterator[tuple[int, int, dict[int, int]]]:
        """``(position, key, bindings before it)`` for every scored position of ``src``: each real key
        already bound by an earlier pair, and the probe (the last token)."""
        bound: dict[int, int] = {}
        last = len(src) - 1
        for t in range(0, last, 2):
            key, value = src[t], src[t + 1]
            if 1 <= key <= self.num_keys:  # a real pair (noise ids lie above the content ids)
                if key in bound:
                    yield t, key, bound
                else:
                    bound[key] = value
        yield last, src[last], bound

    def solve(self, src: list[int]) -> list[int]:
        out = [PAD] * len(src)
        for t, key, bound in self._scored(src):
            out[t] = bound[key]
        return out

    def gold_alignment(self, batch: dict[str, Tensor]) -> Tensor:
        """At each scored position (a repeated key, the probe), the value position ``p + 1`` of the
        pair ``p`` that first bound that key (the only binding left in ``src``: later values are asks)."""
        src = batch["src"]
        pos = torch.full(src.shape, -1, dtype=torch.long)
        for i, row in enumerate(src.tolist()):
            first: dict[int, int] = {}
            for t in range(0, len(row) - 1, 2):
                if 1 <= row[t] <= self.num_keys:
                    first.setdefault(row[t], t + 1)
            for t, key, _ in self._scored(row):
                pos[i, t] = first[key]
        return gold_at(pos.to(src.device), src.shape[1], batch.get("tgt_mask"))

    def _guess(self, src: list[int]) -> list[int]:
        out = [PAD] * len(src)
        for t, _, bound in self._scored(src):
            counts = Counter(bound.values())
            out[t] = max(sorted(counts), key=lambda v: counts[v])
        return out


class NoisyRecallTask(InContextRecallTask):
    """MAD's noisy in-context recall: in-context recall with noise pairs from their own vocabulary.

    Tests: recall when a fraction of the context is irrelevant tokens that must be ignored (Poli et al.
    2024; MAD's ``generate_noisy_in_context_recall_instance``).

    Layout: as ``mad-in-context-recall``; each context pair is, with probability ``frac_noise``, two
    tokens drawn from the ``noise_vocab_size`` noise ids instead of a key-value pair (at least one pair
    is real). ``vocab_size`` includes the noise ids (MAD's baseline: 32 = 16 content + 16 noise).
    S = T = ``seq_len - 1``, scored in place as ``mad-in-context-recall`` (noise pairs are never scored).

    Differences from MAD: as ``mad-in-context-recall``.

    Knobs: ``vocab_size`` (32), ``seq_len`` (128), ``noise_vocab_size`` (16), ``frac_noise`` (0.2),
    ``num_train_examples`` (None; MAD: 12,800), ``pool_seed``.

    Metric: ``token_acc``. Chance: naming the value bound to the most presented keys (see
    ``mad-in-context-recall``), estimated on a fixed sample.
    """

    spec = TaskSpec(
        name="mad-noisy-recall",
        summary="MAD noisy in-context recall: recall with noise-token pairs between the key-value pairs",
        paper="Poli et al. 2024, Mechanistic Design and Scaling of Hybrid Architectures (MAD)",
        url="https://arxiv.org/abs/2403.17844",
        suite=SUITE,
        metric="token_acc",
        content_addressed=True,
        aligned=True,
        contrasts=(attention_beats_baseline(why=_why("noisy recall")),),
    )

    def __init__(self, vocab_size: int = 32, seq_len: int = 128, noise_vocab_size: int = 16,
                 frac_noise: float = 0.2, num_train_examples: int | None = None, pool_seed: int = 12345) -> None:
        MADTask.__init__(self, num_train_examples, pool_seed)
        self._setup(vocab_size, seq_len, noise_vocab_size, frac_noise)


# -- fuzzy recall ----------------------------------------------------------------------------
class FuzzyRecallTask(MADTask):
    """MAD's fuzzy in-context recall: keys and values are motifs of 1..k (1..v) tokens.

    Tests: recall when a key or value spans several adjacent tokens, so the lookup must match a
    whole motif (Poli et al. 2024; MAD's ``generate_fuzzy_in_context_recall_instance``).

    Layout (MAD's generator): ``vocab_size - 1`` content ids (MAD reserves one for padding; PAD here)
    split into key ids (lower half) and value ids (upper half). A motif of size ``s`` is an ordered
    tuple of ``s`` distinct ids. Pairs ``key value`` with sizes drawn uniformly in ``1..k_motif_size`` /
    ``1..v_motif_size`` (at test time every key has ``k_motif_size`` tokens, as MAD) are appended while
    the sequence is shorter than ``seq_len - probe - k_motif_size - v_motif_size``; a repeated key keeps
    its value; the probe pair is inserted at a random point and its key repeated at the end. ``src`` =
    the sequence up to and including the final probe key, left-padded with PAD to S = ``seq_len - 1``;
    ``tgt`` = the probe's value tokens, padded to T = ``v_motif_size`` (``tgt_mask`` marks them).

    Differences from MAD (beyond the module's): MAD draws the probe's insertion point from
    ``[0, seq_len - 2 * probe)``, which can lie past where the loop stops, so the probe is sometimes
    never inserted and the final key has no answer; here it is drawn from where the loop runs and
    placed at the latest while one more pair cannot end the sequence. Only
    the final probe is scored. Generated in Python per example (variable-length motifs): about 0.3 ms
    a sequence at the baseline, so set ``num_train_examples`` for long sequences.

    Knobs: ``vocab_size`` (16), ``seq_len`` (128), ``k_motif_size`` (3), ``v_motif_size`` (3),
    ``num_train_examples`` (None; MAD: 12,800), ``pool_seed``.

    Metric: ``token_acc`` over the value's tokens. Chance: naming the value motif bound to the most
    presented keys (token accuracy), estimated on a fixed sample.
    """

    spec = TaskSpec(
        name="mad-fuzzy-recall",
        summary="MAD fuzzy recall: keys and values are motifs of several tokens; answer the probe's value",
        paper="Poli et al. 2024, Mechanistic Design and Scaling of Hybrid Architectures (MAD)",
        url="https://arxiv.org/abs/2403.17844",
        suite=SUITE,
        metric="token_acc",
        content_addressed=True,
        contrasts=(attention_beats_baseline(why=_why("fuzzy recall")),),
    )

    def __init__(self, vocab_size: int = 16, seq_len: int = 128, k_motif_size: int = 3, v_motif_size: int = 3,
                 num_train_examples: int | None = None, pool_seed: int = 12345) -> None:
        super().__init__(num_train_examples, pool_seed)
        require(k_motif_size >= 1, "k_motif_size", "must be >= 1", k_motif_size)
        require(v_motif_size >= 1, "v_motif_size", "must be >= 1", v_motif_size)
        content = vocab_size - 1
        require(content // 2 >= k_motif_size and content - content // 2 >= v_motif_size, "vocab_size",
                f"must hold motifs of distinct ids: (vocab_size-1)//2 >= k_motif_size={k_motif_size} and the rest "
                f">= v_motif_size={v_motif_size}", vocab_size)
        require(seq_len >= 3 * (k_motif_size + v_motif_size) + 2, "seq_len",
                f"must be >= 3 * (k_motif_size + v_motif_size) + 2 = {3 * (k_motif_size + v_motif_size) + 2}",
                seq_len)
        self.vocab_size = self.num_classes = vocab_size
        self.seq_len = seq_len
        self.k_motif_size, self.v_motif_size = k_motif_size, v_motif_size
        self.num_keys = content // 2
        self.src_len, self.tgt_len = seq_len - 1, v_motif_size

    def _motif(self, rng: random.Random, size: int, value: bool) -> tuple[int, ...]:
        lo = 1 + self.num_keys if value else 1
        hi = self.vocab_size if value else 1 + self.num_keys
        return tuple(rng.sample(range(lo, hi), size))

    def _row(self, rng: random.Random, train: bool) -> tuple[list[int], list[int]]:
        km, vm = self.k_motif_size, self.v_motif_size
        k_sizes = range(1, km + 1) if train else range(km, km + 1)
        k_probe = self._motif(rng, rng.choice(k_sizes), False)
        v_probe = self._motif(rng, rng.randint(1, vm), True)
        stop = self.seq_len - len(k_probe) - len(v_probe) - (km + vm)
        probe_at = rng.randrange(stop)  # MAD: randrange(seq_len - 2*probe), which may never be reached
        seq: list[int] = []
        bound: dict[tuple[int, ...], tuple[int, ...]] = {k_probe: v_probe}
        placed = False
        while len(seq) < stop:
            k_size, v_size = rng.choice(k_sizes), rng.randint(1, vm)
            # at probe_at, or at the latest while one more pair cannot end the loop (a pair may jump past it)
            if not placed and (len(seq) >= probe_at or len(seq) + km + vm >= stop):
                seq += [*k_probe, *v_probe]
                placed = True
                continue
            key = self._motif(rng, k_size, False)
            placed |= key == k_probe
            value = bound.setdefault(key, self._motif(rng, v_size, True))
            seq += [*key, *value]
        src = seq + list(k_probe)
        src = [PAD] * (self.src_len - len(src)) + src
        return src, list(v_probe) + [PAD] * (vm - len(v_probe))

    def _sample(self, n: int, generator: torch.Generator, *, train: bool) -> dict[str, Tensor]:
        rng = python_rng(generator)
        rows = [self._row(rng, train) for _ in range(n)]
        tgt = torch.tensor([t for _, t in rows], dtype=torch.long).reshape(n, self.tgt_len)
        return {"src": torch.tensor([s for s, _ in rows], dtype=torch.long).reshape(n, self.src_len),
                "tgt": tgt, "tgt_mask": tgt != PAD}

    def _runs(self, src: list[int]) -> list[tuple[bool, tuple[int, ...]]]:
        """``src`` cut into runs of key ids and of value ids: ``[(is_key, motif), ...]``."""
        runs: list[tuple[bool, list[int]]] = []
        for t in src:
            if t == PAD:
                continue
            is_key = t <= self.num_keys
            if runs and runs[-1][0] == is_key:
                runs[-1][1].append(t)
            else:
                runs.append((is_key, [t]))
        return [(k, tuple(m)) for k, m in runs]

    def _bindings(self, runs: list[tuple[bool, tuple[int, ...]]]) -> dict[tuple[int, ...], tuple[int, ...]]:
        out: dict[tuple[int, ...], tuple[int, ...]] = {}
        for (is_key, key), (_, value) in zip(runs[0:-1:2], runs[1:-1:2]):
            assert is_key
            out.setdefault(key, value)
        return out

    def _pad(self, motif: tuple[int, ...]) -> list[int]:
        return list(motif) + [PAD] * (self.v_motif_size - len(motif))

    def solve(self, src: list[int]) -> list[int]:
        runs = self._runs(src)
        return self._pad(self._bindings(runs)[runs[-1][1]])

    def _guess(self, src: list[int]) -> list[int]:
        counts = Counter(self._bindings(self._runs(src)).values())
        return self._pad(max(sorted(counts), key=lambda v: counts[v]))


# -- selective copying ------------------------------------------------------------------------
class MADSelectiveCopyTask(MADTask):
    """MAD's selective copying: content tokens among blanks, then a copy token; copy them in order.

    Tests: content-aware selection (Poli et al. 2024; MAD's ``generate_selective_copying_instance``,
    after Gu & Dao 2023).

    Layout (MAD's generator): ``num_tokens_to_copy`` (M) content tokens drawn with replacement from
    ``vocab_size - 2`` ids; ``seq_len - 2M - 1`` blanks, each inserted before a content token chosen
    uniformly (so the last content token always sits right before the copy token); then the copy
    token. ``src`` = that (S = ``seq_len - M``: MAD's M trailing blanks, where its LM writes the
    answer, are the teacher-forced target positions here), ``tgt`` = the M content tokens.
    Ids: 0 PAD, content ``1..V-2``, blank ``V-1``, copy ``V`` (V = ``vocab_size``).

    Differences from MAD (beyond the module's): MAD's model reads blanks at the answer positions;
    here it reads its previous answer (teacher forcing). MAD places blanks with NumPy's global,
    unseeded generator; here the task's generator.

    How it differs from attnzoo's ``selective-copy`` (Gu & Dao's layout, which could serve at MAD's
    sizes but is not MAD's generator): ``selective-copy`` puts the content at a uniformly random
    subset of positions (blanks may also follow the last content token), has no copy token (the
    readout after ``src`` is the cue), counts ``seq_len`` without answer slots, and has a length
    split; this task follows MAD's blank placement, copy token, sizes and fixed training pool.

    Knobs: ``vocab_size`` (16), ``seq_len`` (256), ``num_tokens_to_copy`` (16), ``num_train_examples``
    (None; MAD: 12,800), ``pool_seed``.

    Metric: ``token_acc``. Chance: ``1 / (vocab_size - 2)``.
    """

    spec = TaskSpec(
        name="mad-selective-copy",
        summary="MAD selective copying: copy the content tokens scattered among blanks after a copy token",
        paper="Poli et al. 2024, Mechanistic Design and Scaling of Hybrid Architectures (MAD); Gu & Dao 2023",
        url="https://arxiv.org/abs/2403.17844",
        suite=SUITE,
        metric="token_acc",
        content_addressed=True,
        contrasts=(attention_beats_baseline(why=_why("selective copying")),),
    )

    def __init__(self, vocab_size: int = 16, seq_len: int = 256, num_tokens_to_copy: int = 16,
                 num_train_examples: int | None = None, pool_seed: int = 12345) -> None:
        super().__init__(num_train_examples, pool_seed)
        require(vocab_size >= 4, "vocab_size", "must be >= 4 (two special ids and >= 2 content ids)", vocab_size)
        require(num_tokens_to_copy >= 1, "num_tokens_to_copy", "must be >= 1", num_tokens_to_copy)
        require(seq_len > 2 * num_tokens_to_copy + 1, "seq_len",
                f"must exceed 2 * num_tokens_to_copy + 1 = {2 * num_tokens_to_copy + 1} (MAD's assertion)", seq_len)
        self.vocab_size_knob = vocab_size
        self.seq_len, self.num_tokens_to_copy = seq_len, num_tokens_to_copy
        self.BLANK, self.COPY = vocab_size - 1, vocab_size
        self.vocab_size = vocab_size + 1
        self.num_classes = vocab_size - 1
        self.src_len, self.tgt_len = seq_len - num_tokens_to_copy, num_tokens_to_copy

    def knobs(self) -> dict[str, Any]:
        out = super().knobs()
        out["vocab_size"] = self.vocab_size_knob
        return out

    def _sample(self, n: int, generator: torch.Generator, *, train: bool) -> dict[str, Tensor]:
        m, blanks = self.num_tokens_to_copy, self.seq_len - 2 * self.num_tokens_to_copy - 1
        tokens = torch.randint(1, self.BLANK, (n, m), generator=generator)  # (N, M)
        before = torch.zeros(n, m, dtype=torch.long)  # blanks inserted before each content token
        before.scatter_add_(1, torch.randint(0, m, (n, blanks), generator=generator), torch.ones(n, blanks, dtype=torch.long))
        positions = torch.arange(m) + before.cumsum(1)  # (N, M) index of content token i
        src = torch.full((n, m + blanks), self.BLANK, dtype=torch.long).scatter_(1, positions, tokens)
        src = torch.cat([src, torch.full((n, 1), self.COPY, dtype=torch.long)], dim=1)
        return {"src": src, "tgt": tokens}

    def solve(self, src: list[int]) -> list[int]:
        return [t for t in src if t < self.BLANK]

    def gold_alignment(self, batch: dict[str, Tensor]) -> Tensor:
        """Output j reads the j-th content token's position (neither blank nor the copy token)."""
        src = batch["src"]
        return gold_at(gold_in_order(src < self.BLANK, self.num_tokens_to_copy), src.shape[1])

    def _closed_chance(self) -> float:
        return 1.0 / (self.vocab_size_knob - 2)


# -- compression ---------------------------------------------------------------------------------
class CompressionTask(MADTask):
    """MAD's compression: reproduce a random sequence from the one position that ends it.

    Tests: how much of a sequence a mixer can fold into one position (Poli et al. 2024; MAD's
    ``generate_compression_instance``, trained there with an encoder-bottleneck autoencoder whose
    decoder sees only the compression token's encoding plus a position embedding).

    Layout (MAD's generator): ``seq_len - 1`` ids drawn with replacement from ``vocab_size - 1``
    content ids, then the compression token. ``src`` = that (S = ``seq_len``), ``tgt`` = the
    ``seq_len - 1`` content ids (T = ``seq_len - 1``; MAD also scores the compression token itself,
    which is always the same).

    Differences from MAD (beyond the module's): the bottleneck is the backbone's job, not the task's.
    On a backbone whose decoder can attend to ``src`` (the Transformer, seq2seq with attention) this
    is a copy task and says nothing about compression; run it on the ``bottleneck`` backbone
    (:mod:`attnzoo.backbones.bottleneck`, MAD's autoencoder: the Transformer's blocks encode, an MLP
    decodes from the compression token's encoding alone), as the ``mad`` presets do.

    Knobs: ``vocab_size`` (16), ``seq_len`` (32), ``num_train_examples`` (None; MAD: 12,800), ``pool_seed``.

    Metric: ``token_acc``. Chance: ``1 / (vocab_size - 1)``.
    """

    spec = TaskSpec(
        name="mad-compression",
        summary="MAD compression: reproduce a random sequence from its final (compression) position",
        paper="Poli et al. 2024, Mechanistic Design and Scaling of Hybrid Architectures (MAD)",
        url="https://arxiv.org/abs/2403.17844",
        suite=SUITE,
        metric="token_acc",
    )

    def __init__(self, vocab_size: int = 16, seq_len: int = 32, num_train_examples: int | None = None,
                 pool_seed: int = 12345) -> None:
        super().__init__(num_train_examples, pool_seed)
        require(vocab_size >= 3, "vocab_size", "must be >= 3 (the compression token and >= 2 content ids)", vocab_size)
        require(seq_len >= 2, "seq_len", "must be >= 2", seq_len)
        self.vocab_size_knob = vocab_size
        self.seq_len = seq_len
        self.COMPRESS = vocab_size
        self.vocab_size, self.num_classes = vocab_size + 1, vocab_size
        self.src_len, self.tgt_len = seq_len, seq_len - 1

    def knobs(self) -> dict[str, Any]:
        out = super().knobs()
        out["vocab_size"] = self.vocab_size_knob
        return out

    def _sample(self, n: int, generator: torch.Generator, *, train: bool) -> dict[str, Tensor]:
        body = torch.randint(1, self.COMPRESS, (n, self.seq_len - 1), generator=generator)  # (N, S-1)
        src = torch.cat([body, torch.full((n, 1), self.COMPRESS, dtype=torch.long)], dim=1)
        return {"src": src, "tgt": body.clone()}

    def solve(self, src: list[int]) -> list[int]:
        return list(src[:-1])

    def _closed_chance(self) -> float:
        return 1.0 / (self.vocab_size_knob - 1)


# -- memorization -------------------------------------------------------------------------------
class MemorizationTask(MADTask):
    """MAD's memorization: a fixed key -> value map that must be learned into the weights.

    Tests: factual recall from the parameters, not the context (Poli et al. 2024; MAD's
    ``generate_memorization_instance``): the values never occur in the input, so nothing can be
    looked up; a model answers only what its weights hold.

    **Fresh data every step, but one fixed map.** DESIGN.md draws every training batch anew; here the
    *map* is the task and is fixed by design (drawn from ``map_seed``, the same in every instance,
    split and seed), so the fresh-batch stream draws fresh key sequences from that one map, and the
    val/test sets ask the same map on other sequences. With ``num_train_examples`` (MAD: 256) the
    training sequences are a fixed pool as well.

    Layout (MAD's generator): ``vocab_size - 1`` content ids split into keys (lower half, K) and values
    (upper half); the map binds the K keys to K distinct values. ``seq_len // 2`` keys drawn uniformly
    with replacement, each followed by the insert token: ``src = k1 INS k2 INS ...`` (S = ``2 *
    (seq_len // 2)``), ``tgt`` = their values in order (T = ``seq_len // 2``). Ids: 0 PAD, keys
    ``1..K``, values after them, INS = ``vocab_size``.

    Differences from MAD (beyond the module's): MAD predicts each value at its insert token; here
    the values are read after the context, in order (answer j belongs to the key at position 2j).
    MAD's 256 training sequences of 16 keys cannot show every key of its larger vocabularies
    (8192: 4,095 keys, ~37 % of them never in training); that ceiling is MAD's and kept.

    Knobs: ``vocab_size`` (256), ``seq_len`` (32), ``num_train_examples`` (None; MAD: 256),
    ``map_seed`` (12345, MAD's seed), ``pool_seed``.

    Metric: ``token_acc``. Chance: ``1 / number of value ids`` (without the map a value is a guess).
    """

    spec = TaskSpec(
        name="mad-memorization",
        summary="MAD memorization: answer each key's value from a fixed map learned into the weights",
        paper="Poli et al. 2024, Mechanistic Design and Scaling of Hybrid Architectures (MAD)",
        url="https://arxiv.org/abs/2403.17844",
        suite=SUITE,
        metric="token_acc",
    )

    def __init__(self, vocab_size: int = 256, seq_len: int = 32, num_train_examples: int | None = None,
                 map_seed: int = 12345, pool_seed: int = 12345) -> None:
        super().__init__(num_train_examples, pool_seed)
        require(vocab_size >= 5, "vocab_size", "must be >= 5 (the insert token, >= 2 keys and values)", vocab_size)
        require(seq_len >= 2, "seq_len", "must be >= 2 (one key and its insert token)", seq_len)
        self.vocab_size_knob = vocab_size
        self.seq_len, self.map_seed = seq_len, map_seed
        content = vocab_size - 1
        self.num_keys, self.num_values = content // 2, content - content // 2
        self.INSERT = vocab_size
        self.vocab_size, self.num_classes = vocab_size + 1, vocab_size
        self.src_len, self.tgt_len = 2 * (seq_len // 2), seq_len // 2
        g = torch.Generator().manual_seed(map_seed)
        # key i+1 -> value id; distinct values (MAD zips shuffled keys with shuffled values)
        self.kv_map: Tensor = torch.randperm(self.num_values, generator=g)[: self.num_keys] + 1 + self.num_keys
        self._map = {i + 1: v for i, v in enumerate(self.kv_map.tolist())}

    def knobs(self) -> dict[str, Any]:
        out = super().knobs()
        out["vocab_size"] = self.vocab_size_knob
        out.pop("kv_map", None)
        return out

    def _sample(self, n: int, generator: torch.Generator, *, train: bool) -> dict[str, Tensor]:
        keys = torch.randint(0, self.num_keys, (n, self.tgt_len), generator=generator)  # (N, T)
        src = torch.stack([keys + 1, torch.full_like(keys, self.INSERT)], dim=2).reshape(n, self.src_len)
        return {"src": src, "tgt": self.kv_map[keys]}

    def solve(self, src: list[int]) -> list[int]:
        return [self._map[k] for k in src[0::2]]

    def _closed_chance(self) -> float:
        return 1.0 / self.num_values


TASKS = [InContextRecallTask, FuzzyRecallTask, NoisyRecallTask, MADSelectiveCopyTask, CompressionTask,
         MemorizationTask]
