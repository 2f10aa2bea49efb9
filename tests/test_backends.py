"""``--backend`` is a row of :data:`attnzoo.leaderboard.executors.BACKENDS`: a new backend is one entry."""

from __future__ import annotations

import argparse

import pytest

from attnzoo.leaderboard.backend import DEFAULT_RUN_CELL, Executor
from attnzoo.commands.bench import executor_from_args
from attnzoo.leaderboard.executors import BACKENDS, LocalExecutor
from attnzoo.leaderboard.grouping import GroupPolicy


class _Fake(Executor):
    def __init__(self, jobs: int, run_cell: object, started: bool) -> None:
        self.slots, self.run_cell, self.started = jobs, run_cell, started


def test_a_new_backend_is_one_row(monkeypatch):
    seen = {}

    def fake(args, *, jobs, run_cell, start):
        seen.update(flag=args.fake_flag)
        return _Fake(jobs, run_cell, start)

    monkeypatch.setitem(BACKENDS, "fake", fake)
    ex = executor_from_args(argparse.Namespace(backend="fake", jobs=3, fake_flag="x", group="auto"), start=False)
    assert isinstance(ex, _Fake) and ex.slots == 3 and ex.run_cell == DEFAULT_RUN_CELL and not ex.started
    assert seen == {"flag": "x"} and ex.group == GroupPolicy("auto", None)  # --group applies to every backend


def test_local_is_the_default_and_an_unknown_backend_is_refused():
    assert set(BACKENDS) >= {"local", "ray"}
    ex = executor_from_args(argparse.Namespace(jobs=2))
    assert isinstance(ex, LocalExecutor) and ex.jobs == 2 and ex.group is None
    with pytest.raises(ValueError, match="--backend: expected one of local, ray"):
        executor_from_args(argparse.Namespace(backend="slurm", jobs=1))
