"""Any :class:`~attnzoo.tasks.Task` as a ``LightningDataModule``.

- **train**: an infinite ``IterableDataset`` that asks the task for a *fresh*
  batch every step, from a ``torch.Generator`` seeded by ``(seed, rank,
  worker id)``. Nothing is ever repeated, so a model cannot memorise its way
  to a good score (see "Measuring honestly" in the design notes); the number of
  optimizer steps is the budget.
- **finite training data** (``train_size=N``, the study of what a model without attention needs):
  the stream samples, with replacement, N examples drawn once from :func:`pool_seed` ``(seed)``
  (the same N for every rank and worker); a ``"train"`` test split scores the model on (up to the
  test size of) those N, so a memorized training set reads as ``train`` near 1 and ``test`` at chance.
- **val / test / test_long**: fixed sets from :meth:`Task.fixed_split` with the
  same ``seed`` (each split has its own offset, so they never overlap with the
  training stream's seeds), cut into batches once.

The task generates whole vectorised batches, so the loaders use
``batch_size=None`` (no collation). Under DDP each rank draws its own stream
(the rank is part of the seed): the effective batch is ``batch_size * world``.
Evaluation batches are split across ranks by Lightning's distributed sampler
(which may repeat a batch to even them out) and the metrics are synced by
torchmetrics.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from attnzoo.tasks import Task

__all__ = ["TaskDataModule", "FreshBatches", "FixedBatches", "stream_seed", "pool_seed", "training_pool",
           "default_test_splits"]

Batch = dict[str, Tensor]


def stream_seed(seed: int, rank: int = 0, worker: int = 0) -> int:
    """A 63-bit generator seed for one training stream, mixed from ``(seed, rank, worker)``.

    Hashing (rather than ``seed + rank``) keeps the streams of neighbouring
    seeds from sharing a generator (seed 1 rank 1 vs seed 2 rank 0).
    """
    digest = hashlib.blake2b(f"attnzoo-train/{seed}/{rank}/{worker}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def pool_seed(seed: int) -> int:
    """The 63-bit generator seed of a cell's finite training set (its own hash tag: it never equals a stream's)."""
    digest = hashlib.blake2b(f"attnzoo-pool/{seed}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def training_pool(task: Task, size: int, seed: int) -> Batch:
    """The finite training set of ``size`` examples for ``seed``: the same tensors on every call."""
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"train_size: expected a positive int or None, got {size!r}")
    return task.generate(size, torch.Generator().manual_seed(pool_seed(seed)))


def default_test_splits(task: Task) -> tuple[str, ...]:
    """``("test", "test_long")`` for tasks with a length split, else ``("test",)``."""
    if task.spec.length_generalization:
        return ("test", "test_long")
    return ("test",)


class FreshBatches(IterableDataset):
    """Infinite stream of freshly generated batches of ``batch_size`` examples.

    :param task: the task to draw from.
    :param batch_size: examples per batch (per rank).
    :param seed: base seed; the stream's generator is seeded with
        :func:`stream_seed` ``(seed, rank, worker id)``.
    :param rank: global rank (set by :class:`TaskDataModule` in ``setup``).
    :param per_item: batches per item: 1 yields each batch (a dict), K > 1 a list of the next K
        batches of the same stream (the harness runs one optimizer step on each, in order), so the
        stream is the same for every K.
    :param pool: a finite training set (:func:`training_pool`): each batch samples ``batch_size`` of its
        rows with replacement instead of drawing new examples. None: fresh data.
    """

    def __init__(self, task: Task, batch_size: int, seed: int, rank: int = 0, per_item: int = 1,
                 pool: Batch | None = None) -> None:
        super().__init__()
        if per_item < 1:
            raise ValueError(f"per_item: expected a positive int, got {per_item!r}")
        self.task = task
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.per_item = per_item
        self.pool = pool

    def _from_pool(self, n: int, g: torch.Generator) -> Batch:
        assert self.pool is not None
        size = next(iter(self.pool.values())).shape[0]
        idx = torch.randint(0, size, (n,), generator=g)  # (N,) rows of the finite set
        return {k: v[idx] for k, v in self.pool.items()}

    def __iter__(self) -> Iterator[Batch | list[Batch]]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        g = torch.Generator().manual_seed(stream_seed(self.seed, self.rank, worker))
        k, n = self.per_item, self.batch_size
        generate = self.task.generate if self.pool is None else self._from_pool
        if k == 1:
            while True:
                yield generate(n, g)
        while True:
            yield [generate(n, g) for _ in range(k)]


class FixedBatches(Dataset):
    """A fixed evaluation set, pre-cut into batches (item ``i`` is batch ``i``)."""

    def __init__(self, data: Batch, batch_size: int) -> None:
        n = next(iter(data.values())).shape[0]
        self.batches = [{k: v[i : i + batch_size] for k, v in data.items()} for i in range(0, n, batch_size)]

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> Batch:
        return self.batches[i]


def first_examples(batches: list[Batch], n: int) -> Batch:
    """The first ``n`` examples of a list of fixed batches, as one batch (``[n, ...]`` per key)."""
    out, got = [], 0
    for b in batches:
        if got >= n:
            break
        out.append(b)
        got += next(iter(b.values())).shape[0]
    return {k: torch.cat([b[k] for b in out])[:n] for k in out[0]}


class TaskDataModule(L.LightningDataModule):
    """Train/val/test loaders for a task.

    :param task: a built task (``create_task(name, **knobs)``).
    :param batch_size: training examples per step (per rank).
    :param seed: seeds the training streams and the fixed evaluation splits.
    :param eval_batch_size: batch size of the evaluation loaders (default: ``max(batch_size, 256)``).
    :param test_splits: which test loaders to serve, in order (dataloader index
        = position): default ``("test", "test_long")`` when the task has a
        length split, else ``("test",)``.
    :param num_workers: worker processes for the training stream (each has its own seed).
    :param train_per_item: training batches per loader item (:class:`FreshBatches`' ``per_item``).
    :param train_size: None: fresh training data; N: a finite training set of N examples
        (:func:`training_pool`), served as the ``"train"`` test split too when ``test_splits`` names it.
    """

    def __init__(
        self,
        task: Task,
        batch_size: int = 64,
        seed: int = 0,
        *,
        eval_batch_size: int | None = None,
        test_splits: Sequence[str] | None = None,
        num_workers: int = 0,
        train_per_item: int = 1,
        train_size: int | None = None,
    ) -> None:
        super().__init__()
        if batch_size <= 0:
            raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
        self.task = task
        self.batch_size = batch_size
        self.seed = seed
        self.eval_batch_size = eval_batch_size or max(batch_size, 256)
        self.test_splits = tuple(test_splits) if test_splits is not None else default_test_splits(task)
        self.num_workers = num_workers
        self.train_per_item = train_per_item
        if "train" in self.test_splits and train_size is None:
            raise ValueError("test_splits: a 'train' split needs a finite training set (train_size), got None")
        self.train_size = train_size
        self._pool: Batch | None = None
        self._fixed: dict[str, FixedBatches] = {}

    def pool(self) -> Batch | None:
        """The finite training set (drawn once), or None for fresh data."""
        if self.train_size is not None and self._pool is None:
            self._pool = training_pool(self.task, self.train_size, self.seed)
        return self._pool

    def setup(self, stage: str | None = None) -> None:
        needed = {"fit": ["val"], "validate": ["val"], "test": list(self.test_splits)}.get(
            stage or "", ["val", *self.test_splits]
        )
        for split in needed:
            if split in self._fixed:
                continue
            if split == "train":  # the finite training set itself, capped at the test split's size
                cap = self.task.test_size
                data = {k: v[:cap] for k, v in (self.pool() or {}).items()}
            else:
                data = self.task.fixed_split(split, self.seed)
            self._fixed[split] = FixedBatches(data, self.eval_batch_size)

    def held_out(self, split: str, n: int) -> Batch:
        """The first ``n`` examples of the fixed ``split`` (the alignment diagnostics' batch)."""
        if split not in self._fixed:
            self.setup(None)
        return first_examples(self._fixed[split].batches, n)

    def _rank(self) -> int:
        trainer = getattr(self, "trainer", None)
        return int(trainer.global_rank) if trainer is not None else 0

    def train_dataloader(self) -> DataLoader:
        ds = FreshBatches(self.task, self.batch_size, self.seed, rank=self._rank(), per_item=self.train_per_item,
                          pool=self.pool())
        return DataLoader(ds, batch_size=None, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def _fixed_loader(self, split: str) -> DataLoader:
        if split not in self._fixed:
            self.setup(None)
        return DataLoader(self._fixed[split], batch_size=None, shuffle=False)

    def val_dataloader(self) -> DataLoader:
        return self._fixed_loader("val")

    def test_dataloader(self) -> list[DataLoader]:
        return [self._fixed_loader(s) for s in self.test_splits]
