"""The grid's live display: cells done / running / failed / n/a and an ETA.

:class:`RichProgress` (a ``rich.progress`` bar, one log line per finished cell)
on a terminal; :class:`LineProgress` (one plain line per finished cell) when
output is piped or rich is missing. Both take the same calls from the driver.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any, TextIO

__all__ = ["LineProgress", "RichProgress", "make_progress", "format_duration", "describe_row"]


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
    if status != "ok" and row.get("error"):
        text += f"  ({str(row['error']).splitlines()[0][:120]})"
    return text


class _Counts:
    def __init__(self) -> None:
        self.total = self.done = self.failed = self.na = self.skipped = 0
        self.slots = 1
        self.walls: list[float] = []
        self.t0 = time.perf_counter()

    def start(self, total: int, skipped: int, na: int, slots: int) -> None:
        self.total, self.skipped, self.na, self.slots = total, skipped, na, slots
        self.done = self.failed = 0
        self.walls = []
        self.t0 = time.perf_counter()

    def record(self, row: dict[str, Any]) -> None:
        self.done += 1
        if row.get("status") != "ok":
            self.failed += 1
        wall = (row.get("provenance") or {}).get("wall_s")
        if isinstance(wall, (int, float)):
            self.walls.append(float(wall))

    @property
    def running(self) -> int:
        return min(self.slots, self.total - self.done)

    def eta(self) -> float | None:
        """Remaining cells x the median cell time / workers (the median ignores the first
        cells' start-up cost in fresh workers)."""
        if not self.done:
            return None
        left = self.total - self.done
        if self.walls:
            return statistics.median(self.walls) * left / max(1, self.slots)
        return (time.perf_counter() - self.t0) / self.done * left

    def summary(self) -> str:
        text = f"done {self.done}/{self.total}, running {self.running}, failed {self.failed}, n/a {self.na}"
        if self.skipped:
            text += f", resumed past {self.skipped}"
        return text


class LineProgress(_Counts):
    """One line per finished cell: ``[3/40] ok  copy / ... | running 2, failed 0, n/a 4, ETA 3m10s``."""

    def __init__(self, stream: TextIO | None = None):
        super().__init__()
        self.stream = stream or sys.stderr

    def start(self, total: int, skipped: int, na: int, slots: int) -> None:
        super().start(total, skipped, na, slots)
        print(f"grid: {total} cell(s) to run on {slots} worker(s), {skipped} already done, {na} n/a",
              file=self.stream, flush=True)

    def advance(self, gc: Any, row: dict[str, Any]) -> None:
        self.record(row)
        print(f"[{self.done}/{self.total}] {describe_row(gc, row)} | running {self.running}, failed {self.failed}, "
              f"n/a {self.na}, ETA {format_duration(self.eta())}", file=self.stream, flush=True)

    def stop(self) -> None:
        print(f"grid: {self.summary()} in {format_duration(time.perf_counter() - self.t0)}",
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

    def start(self, total: int, skipped: int, na: int, slots: int) -> None:
        super().start(total, skipped, na, slots)
        self._progress.start()
        self._task = self._progress.add_task(self._describe(), total=total)

    def advance(self, gc: Any, row: dict[str, Any]) -> None:
        self.record(row)
        style = "green" if row.get("status") == "ok" else "red"
        from rich.text import Text

        self._progress.console.print(Text(describe_row(gc, row), style=style), soft_wrap=True)
        self._progress.update(self._task, advance=1, description=self._describe())

    def stop(self) -> None:
        self._progress.stop()
        self.console.print(f"grid: {self.summary()} in {format_duration(time.perf_counter() - self.t0)}")


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
