"""What every backend shares: the :class:`Executor` interface, and running one cell in a worker.

A backend (:mod:`attnzoo.leaderboard.executors`' local processes, :mod:`attnzoo.leaderboard.ray_backend`'s Ray
tasks, the next one) subclasses :class:`Executor` and, wherever its workers live, calls :func:`execute_cell`:
the harness's :func:`attnzoo.harness.run.run_cell` (a :class:`~attnzoo.cell.Cell` in, a
:class:`~attnzoo.cell.Row` out) with the worker's provenance added and every exception turned into a row.
Nothing here imports Lightning, Ray or the grouping (a policy plans its own groups).
"""

from __future__ import annotations

import importlib
import os
import platform
import socket
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from attnzoo.cell import Cell, Row
from attnzoo.errors import is_oom_message

if TYPE_CHECKING:
    from attnzoo.leaderboard.grid import GridCell

__all__ = ["DEFAULT_RUN_CELL", "RunCell", "Executor", "cpu_count", "execute_cell", "worker_provenance"]

#: the harness's cell runner, imported lazily in the worker (it imports Lightning)
DEFAULT_RUN_CELL = "attnzoo.harness.run:run_cell"

#: a cell runner: a Cell in, a Row (or its JSON dict, from fakes and older backends) out
RunCell = Callable[[Cell], "Row | dict[str, Any]"]


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _resolve(run_cell: RunCell | str) -> RunCell:
    if callable(run_cell):
        return run_cell
    module, _, attr = run_cell.partition(":")
    return getattr(importlib.import_module(module), attr or "run_cell")


def _device(cell: Cell) -> str:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return platform.machine()
    accel = str(cell.trainer.get("accelerator", "cpu"))
    if accel in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    if accel == "mps" and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return f"cpu: {_cpu_model()}, {torch.get_num_threads()} thread(s)"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def execute_cell(cell: Cell, run_cell: RunCell | str = DEFAULT_RUN_CELL) -> Row:
    """Run one cell where we are (a worker) and add the worker's provenance. Never raises."""
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        row = Row.from_json(_resolve(run_cell)(cell))
    except MemoryError as exc:
        row = Row.empty("oom", f"MemoryError: {exc}")
    except Exception as exc:  # run_cell promises not to raise; a fake or a plugin might
        status = "oom" if is_oom_message(str(exc)) else "failed"
        row = Row.empty(status, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}")
    return row.replace(provenance=worker_provenance(row, cell, time.perf_counter() - t0, time.process_time() - c0))


def worker_provenance(row: Row, cell: Cell, wall_s: float, cpu_s: float) -> dict[str, Any]:
    """The row's provenance plus this worker's: host, pid, versions, device, the cell's wall and CPU seconds."""
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:  # pragma: no cover
        torch_version = None
    return {
        **row.provenance,
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "torch_version": torch_version,
        "python": platform.python_version(),
        "device": _device(cell),
        "wall_s": round(wall_s, 3),
        # CPU seconds of this worker for the cell: on a shared machine wall_s grows with the
        # load, cpu_s does not (with one torch thread per worker it is the cell's time on an idle core)
        "cpu_s": round(cpu_s, 3),
    }



class Executor:
    """Runs cells somewhere and yields ``(cell, row)`` as each one finishes (any order).

    Implementations: :class:`~attnzoo.leaderboard.executors.InlineExecutor`,
    :class:`~attnzoo.leaderboard.executors.LocalExecutor`,
    :class:`~attnzoo.leaderboard.ray_backend.RayExecutor`; a cluster backend implements the same two methods
    and adds a row to :data:`attnzoo.leaderboard.executors.BACKENDS`.
    """

    #: cells that can run at once (the progress display's "running")
    slots: int = 1
    #: which cells train together (``--group``: a :class:`~attnzoo.leaderboard.grouping.GroupPolicy`); None: none
    group: Any = None

    def units(self, cells: Sequence[GridCell]) -> list[Any]:
        """The cells as this executor runs them: grid cells, and groups where its policy groups
        (only for the harness's own runner)."""
        if self.group is None or getattr(self, "run_cell", DEFAULT_RUN_CELL) != DEFAULT_RUN_CELL:
            return list(cells)
        return self.group.plan(cells)

    def run(self, cells: Sequence[GridCell]) -> Iterator[tuple[GridCell, Row]]:
        raise NotImplementedError

    def close(self, *, cancel: bool = False) -> None:
        """Release workers; ``cancel`` stops cells still running (after Ctrl-C)."""
