"""The leaderboard: ``attnzoo bench`` (grid runner, results store, tables, figures, report).

- :mod:`~attnzoo.leaderboard.grid`: presets (YAML) -> validated presets -> cells, n/a pairs with reasons, shards;
- :mod:`~attnzoo.leaderboard.store`: results.jsonl, appended atomically; resume; merge;
- :mod:`~attnzoo.leaderboard.executors`: where cells run (local processes, Ray), yielding ``(cell, row)``;
- :mod:`~attnzoo.leaderboard.runner`: the driver loop;
- :mod:`~attnzoo.leaderboard.report`: leaderboard.md/.csv/.html and the figures, from results.jsonl alone
  (aggregate -> analyse -> render);
- the command line is :mod:`attnzoo.commands.bench`.

Nothing here imports Lightning: cells run through :func:`attnzoo.harness.run.run_cell`
in worker processes, which import it lazily.
"""

from attnzoo.leaderboard.backend import Executor
from attnzoo.leaderboard.executors import InlineExecutor, LocalExecutor
from attnzoo.leaderboard.grid import GridCell, Preset, PresetError, expand, load_preset, shard
from attnzoo.leaderboard.runner import run_grid
from attnzoo.leaderboard.store import ResultStore, merge, read_rows

__all__ = [
    "Executor",
    "GridCell",
    "InlineExecutor",
    "LocalExecutor",
    "Preset",
    "PresetError",
    "ResultStore",
    "build_report",
    "expand",
    "load_preset",
    "merge",
    "read_rows",
    "run_grid",
    "shard",
]


def build_report(directory, **kwargs):
    """See :func:`attnzoo.leaderboard.report.build_report` (imported lazily: it pulls matplotlib)."""
    from attnzoo.leaderboard.report import build_report as _build

    return _build(directory, **kwargs)
