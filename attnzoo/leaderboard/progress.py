"""The grid's live display: cells done / running / failed / n/a and an ETA.

:class:`RichProgress` (a ``rich.progress`` bar, one log line per finished cell)
on a terminal; :class:`LineProgress` (one plain line per finished cell) when
output is piped or rich is missing. Both take the same calls from the driver.
"""

from __future__ import annotations

import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

__all__ = ["LineProgress", "RichProgress", "make_progress", "format_duration", "describe_row", "error_summary"]


def format_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds:
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def describe_row(gc: Any, row: dict[str, Any]) -> str:
    """``ok   copy / seq2seq / additive / seed 0 / lr 0.003  test/exact_acc=0.981  12.3s``."""
    status = row.get("status", "?")
    text = f"{status:<8} {gc.label()}"
    if row.get("main_value") is not None:
        text += f"  {row.get('main_metric', 'main')}={row['main_value']:.3f}"
    wall = (row.get("provenance") or {}).get("wall_s")
    if wall is not None:
        text += f"  {wall:.1f}s"
    group = (row.get("provenance") or {}).get("group_size")
    if group and group > 1:  # wall_s is this member's share of the group's time
        path = (row.get("execution") or {}).get("path")
        text += (f"  [group of {group}: {gc.task} / {gc.backbone} / {gc.variant}"
                 + ("" if path == "grouped" else ", ran one by one") + "]")
    if status != "ok" and row.get("error"):
        text += f"  ({error_summary(row['error'])[:120]})"
    return text


def error_summary(error: str) -> str:
    """The line of a row's error that names the exception (``RuntimeError: ...``), not a traceback frame.

    Rows put ``Type: message`` first; an older row (or a plugin's) may start with the traceback,
    whose ``File "...", line N`` frames say nothing about what went wrong.
    """
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    if not lines:
        return ""
    frame = lambda ln: ln.startswith(("Traceback", "File ", "^", "~")) or ln.startswith("During handling")  # noqa: E731
    if not frame(lines[0]):
        return lines[0]
    named = [ln for ln in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit|Warning)\b", ln)]
    return named[-1] if named else next((ln for ln in reversed(lines) if not frame(ln)), lines[-1])


def _cell_cost_key(gc: Any) -> tuple[str, str, float | None]:
    """``(task, backbone, steps)`` of a grid cell: what its cost is estimated from. Reads a plain cell
    dict or a typed cell's attributes (``max_steps``), so either layout works."""
    cell = getattr(gc, "cell", None)
    steps = cell.get("max_steps") if isinstance(cell, dict) else getattr(cell, "max_steps", None)
    backbone = getattr(gc, "backbone", None)
    if backbone is None:
        backbone = cell.get("backbone") if isinstance(cell, dict) else getattr(cell, "backbone", None)
    steps = float(steps) if isinstance(steps, (int, float)) and not isinstance(steps, bool) and steps > 0 else None
    return str(getattr(gc, "task", "")), str(backbone), steps


def _ident(gc: Any) -> Any:
    # the cell's id survives an executor that hands back a copy of the cell (Ray)
    return getattr(gc, "id", None) or id(gc)


class _Counts:
    """Counts and the ETA, shared by both displays.

    **ETA**: each remaining cell costs its steps x a seconds-per-step rate: the median
    rate of finished cells of the same task and backbone, else of the same backbone,
    else of all finished cells (cells differ by 10x in cost, a Transformer step is not
    an MLP step, and the cheap cells tend to run first, so one overall per-cell time
    under-estimates the second half of a grid). The sum is divided by the workers.
    Without the cells (``start(..., cells=None)``) it falls back to remaining cells x
    the median cell time.

    :param clock: seconds, monotonic (tests pass a fake one).
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.total = self.done = self.failed = self.na = self.skipped = 0
        self.slots = 1
        self.walls: list[float] = []
        self.t0 = clock()
        self._pending: dict[Any, tuple[str, str, float | None]] = {}
        self._rates: list[tuple[str, str, float]] = []  # (task, backbone, seconds per step) of finished cells

    def start(self, total: int, skipped: int, na: int, slots: int, cells: Sequence[Any] | None = None) -> None:
        """:param cells: the cells about to run (their steps and backbones drive the ETA)."""
        self.total, self.skipped, self.na, self.slots = total, skipped, na, slots
        self.done = self.failed = 0
        self.walls = []
        self._rates = []
        self._pending = {_ident(gc): _cell_cost_key(gc) for gc in cells} if cells is not None else {}
        self.t0 = self.clock()

    def record(self, row: dict[str, Any], gc: Any = None) -> None:
        self.done += 1
        if row.get("status") != "ok":
            self.failed += 1
        wall = (row.get("provenance") or {}).get("wall_s")
        key = self._pending.pop(_ident(gc), None) if gc is not None else None
        if key is None and gc is not None:
            key = _cell_cost_key(gc)
        if isinstance(wall, (int, float)) and not isinstance(wall, bool) and wall >= 0:
            self.walls.append(float(wall))
            steps = row.get("steps") if row.get("status") == "ok" else None
            steps = steps if isinstance(steps, (int, float)) and steps > 0 else (key[2] if key else None)
            if key is not None and steps:
                self._rates.append((key[0], key[1], float(wall) / float(steps)))

    @property
    def running(self) -> int:
        return min(self.slots, self.total - self.done)

    def _rate(self, task: str, backbone: str) -> float | None:
        for match in (lambda t, b: t == task and b == backbone, lambda t, b: b == backbone, lambda t, b: True):
            rates = [r for t, b, r in self._rates if match(t, b)]
            if rates:
                return statistics.median(rates)
        return None

    def eta(self) -> float | None:
        """Seconds until the grid is done (None before the first cell finishes)."""
        if not self.done:
            return None
        left = self.total - self.done
        if left <= 0:
            return 0.0
        if self._pending and self._rates and len(self._pending) == left:
            cost = 0.0
            median_wall = statistics.median(self.walls) if self.walls else 0.0
            for task, backbone, steps in self._pending.values():
                rate = self._rate(task, backbone)
                cost += rate * steps if (rate is not None and steps) else median_wall
            return cost / max(1, self.slots)
        if self.walls:
            return statistics.median(self.walls) * left / max(1, self.slots)
        return (self.clock() - self.t0) / self.done * left

    def summary(self) -> str:
        text = f"done {self.done}/{self.total}, running {self.running}, failed {self.failed}, n/a {self.na}"
        if self.skipped:
            text += f", resumed past {self.skipped}"
        return text


class LineProgress(_Counts):
    """One line per finished cell: ``[3/40] ok  copy / ... | running 2, failed 0, n/a 4, ETA 3m10s``."""

    def __init__(self, stream: TextIO | None = None, *, clock: Callable[[], float] = time.perf_counter):
        super().__init__(clock)
        self.stream = stream or sys.stderr

    def start(self, total: int, skipped: int, na: int, slots: int, cells: Sequence[Any] | None = None) -> None:
        super().start(total, skipped, na, slots, cells)
        print(f"grid: {total} cell(s) to run on {slots} worker(s), {skipped} already done, {na} n/a",
              file=self.stream, flush=True)

    def advance(self, gc: Any, row: dict[str, Any]) -> None:
        self.record(row, gc)
        print(f"[{self.done}/{self.total}] {describe_row(gc, row)} | running {self.running}, failed {self.failed}, "
              f"n/a {self.na}, ETA {format_duration(self.eta())}", file=self.stream, flush=True)

    def stop(self) -> None:
        print(f"grid: {self.summary()} in {format_duration(self.clock() - self.t0)}",
              file=self.stream, flush=True)


class RichProgress(_Counts):
    """A rich progress bar with the counts in its description and a log line per cell."""

    def __init__(self, console: Any = None):
        super().__init__()
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.console = console or Console(stderr=True)
        self._progress = Progress(
            SpinnerColumn(), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
            TextColumn("elapsed"), TimeElapsedColumn(), console=self.console, transient=False,
        )
        self._task = None

    def _describe(self) -> str:
        return (f"running {self.running} · failed {self.failed} · n/a {self.na}"
                + (f" · resumed {self.skipped}" if self.skipped else "") + f" · ETA {format_duration(self.eta())}")

    def start(self, total: int, skipped: int, na: int, slots: int, cells: Sequence[Any] | None = None) -> None:
        super().start(total, skipped, na, slots, cells)
        self._progress.start()
        self._task = self._progress.add_task(self._describe(), total=total)

    def advance(self, gc: Any, row: dict[str, Any]) -> None:
        self.record(row, gc)
        style = "green" if row.get("status") == "ok" else "red"
        from rich.text import Text

        self._progress.console.print(Text(describe_row(gc, row), style=style), soft_wrap=True)
        self._progress.update(self._task, advance=1, description=self._describe())

    def stop(self) -> None:
        self._progress.stop()
        self.console.print(f"grid: {self.summary()} in {format_duration(self.clock() - self.t0)}")


def make_progress(stream: TextIO | None = None, *, rich: bool | None = None) -> Any:
    """RichProgress on a terminal when rich is installed, else LineProgress."""
    stream = stream or sys.stderr
    if rich is None:
        rich = bool(getattr(stream, "isatty", lambda: False)())
    if rich:
        try:
            return RichProgress()
        except ImportError:
            pass
    return LineProgress(stream)
