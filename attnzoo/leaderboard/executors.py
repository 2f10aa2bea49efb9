"""Executors: where the grid's cells run. Each yields ``(grid cell, Row)`` as cells finish.

The boundary is one function, :func:`attnzoo.harness.run.run_cell` (a
:class:`~attnzoo.cell.Cell` in, a :class:`~attnzoo.cell.Row` out):

- :class:`InlineExecutor`: in this process, one cell after another (tests, debugging);
- :class:`LocalExecutor`: ``--jobs N`` worker processes (spawn/forkserver, reused
  between cells, ``torch`` threads = cores / jobs each);
- :class:`attnzoo.leaderboard.ray_backend.RayExecutor`: Ray core tasks (``--backend ray``).

:func:`attnzoo.commands.bench.executor_from_args` is how the CLI picks one. Another backend (SLURM...)
implements the same :class:`Executor` interface.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import importlib
import multiprocessing
import multiprocessing.forkserver
import os
import platform
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from attnzoo.cell import Cell, Row
from attnzoo.errors import is_oom_message

if TYPE_CHECKING:
    from attnzoo.leaderboard.grid import GridCell

__all__ = [
    "DEFAULT_RUN_CELL",
    "RunCell",
    "Executor",
    "InlineExecutor",
    "LocalExecutor",
    "cpu_count",
    "execute_cell",
]

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


# -- executors -----------------------------------------------------------------
class Executor:
    """Runs cells somewhere and yields ``(cell, row)`` as each one finishes (any order).

    Implementations: :class:`InlineExecutor`, :class:`LocalExecutor`; a cluster
    backend implements the same two methods.
    """

    #: cells that can run at once (the progress display's "running")
    slots: int = 1
    #: which cells train together (``--group``; :mod:`attnzoo.leaderboard.grouping`); None: none
    group: Any = None

    def units(self, cells: Sequence[GridCell]) -> list[Any]:
        """The cells as this executor runs them: grid cells, and groups where its policy groups
        (only for the harness's own runner)."""
        if self.group is None or getattr(self, "run_cell", DEFAULT_RUN_CELL) != DEFAULT_RUN_CELL:
            return list(cells)
        from attnzoo.leaderboard.grouping import plan

        return plan(cells, self.group)

    def run(self, cells: Sequence[GridCell]) -> Iterator[tuple[GridCell, Row]]:
        raise NotImplementedError

    def close(self, *, cancel: bool = False) -> None:
        """Release workers; ``cancel`` stops cells still running (after Ctrl-C)."""


class InlineExecutor(Executor):
    """One cell after another in this process."""

    def __init__(self, run_cell: RunCell | str = DEFAULT_RUN_CELL):
        self.run_cell = run_cell

    def run(self, cells: Sequence[GridCell]) -> Iterator[tuple[GridCell, Row]]:
        for unit in self.units(cells):
            yield from _run_unit(unit, self.run_cell)


def _run_unit(unit: Any, run_cell: RunCell | str, threads: int | None = None) -> list[tuple[Any, Row]]:
    """Run a grid cell or a group (:class:`~attnzoo.leaderboard.grouping.GridGroup`) here: ``[(cell, row)]``."""
    members = getattr(unit, "members", None)
    if members is None:
        return [(unit, execute_cell(unit.cell.replace(threads=unit.cell.threads or threads), run_cell))]
    from attnzoo.leaderboard.grouping import execute_group

    rows = execute_group([gc.cell.replace(threads=gc.cell.threads or threads) for gc in members])
    return list(zip(members, rows))


def _alive(pid: int) -> bool:
    if os.path.isdir("/proc/self"):  # Linux: a killed driver its parent has not reaped yet is a zombie
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                return fh.read().rsplit(b")", 1)[-1].split()[0] not in (b"Z", b"X")
        except OSError:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    return True


def _watch_driver(pid: int, every_s: float = 1.0) -> None:
    """Exit this worker when the driver is gone (killed with SIGKILL, a lost session):
    an orphaned worker would otherwise train its cell to the end for nobody."""
    while _alive(pid):
        time.sleep(every_s)
    os._exit(1)


def _init_worker(threads: int | None, driver_pid: int | None = None) -> None:
    # Ctrl-C goes to the whole process group: let the driver decide, quietly.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if driver_pid:
        threading.Thread(target=_watch_driver, args=(driver_pid,), daemon=True, name="watch-driver").start()
    if threads:
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        try:
            import torch

            torch.set_num_threads(threads)
        except ImportError:  # pragma: no cover
            pass


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block is done, then deliver the first one that came.

    ``ProcessPoolExecutor.submit`` may start a worker: interrupted between the fork and the
    pool's record of it, that worker would be missed by :func:`_stop_pool` and, born after
    its driver had gone, die printing a traceback. (Main thread only: elsewhere a no-op.)
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: pending.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        if pending:
            signal.raise_signal(pending[0])


def _start_forkserver_deaf() -> None:
    """Start the forkserver (and Python's resource tracker) with SIGINT ignored from their first instruction.

    They import ``__main__`` and the packages above the boot module before any of our code runs there,
    and a Ctrl-C in that window ends them with a traceback. An ignored disposition survives fork and
    exec (a blocked mask does not: the spawn resets it), and Python keeps an inherited SIG_IGN. In the
    driver SIGINT is blocked while its disposition is SIG_IGN, so a Ctrl-C in that window stays pending
    (Linux never drops a blocked signal) and reaches the restored handler afterwards.
    """
    if threading.current_thread() is not threading.main_thread():  # signal.signal: main thread only
        multiprocessing.forkserver.ensure_running()
        return
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        multiprocessing.forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


class LocalExecutor(Executor):
    """``jobs`` worker processes on this machine, reused between cells.

    :param jobs: worker processes (cells in flight).
    :param run_cell: the cell runner, a callable importable by the workers or
        ``"module:function"`` (default: the harness's).
    :param threads: torch threads per worker (default: cores // jobs, at least 1).
    :param start_method: ``"forkserver"`` (default on Linux) or ``"spawn"``; never
        ``fork`` (a forked torch with threads deadlocks).
    :param max_attempts: a cell that kills its worker (segfault, out-of-memory kill)
        while running alone is recorded as failed after this many crashes.
    """

    def __init__(
        self,
        jobs: int = 1,
        run_cell: RunCell | str = DEFAULT_RUN_CELL,
        *,
        threads: int | None = None,
        start_method: str | None = None,
        max_attempts: int = 2,
    ):
        if jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {jobs}")
        self.slots = self.jobs = jobs
        self.run_cell = run_cell
        self.threads = threads or max(1, cpu_count() // jobs)
        methods = multiprocessing.get_all_start_methods()
        self.start_method = start_method or ("forkserver" if "forkserver" in methods else "spawn")
        self.max_attempts = max_attempts
        self._pool: cf.ProcessPoolExecutor | None = None

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        ctx = multiprocessing.get_context(self.start_method)
        if self.start_method == "forkserver":  # workers born deaf to Ctrl-C (takes effect when it starts)
            ctx.set_forkserver_preload(["__main__", "attnzoo.leaderboard._forkserver_boot"])
            _start_forkserver_deaf()
        return cf.ProcessPoolExecutor(self.jobs, mp_context=ctx, initializer=_init_worker,
                                      initargs=(self.threads, os.getpid()))

    def run(self, cells: Sequence[GridCell]) -> Iterator[tuple[GridCell, Row]]:
        queue = self.units(cells)
        # When a worker dies, every cell in flight is lost with the pool and nothing says
        # which one killed it: those cells run again one at a time ("solo"), and only a
        # cell that kills its worker while running alone counts a crash.
        solo: list[GridCell] = []
        crashes: dict[str, int] = {}
        inflight: dict[cf.Future, tuple[GridCell, bool]] = {}
        self._pool = self._new_pool()

        def submit(gc: GridCell, alone: bool) -> None:
            try:
                with _signals_deferred():  # a worker it starts is in the pool's list before Ctrl-C can act
                    fut = self._pool.submit(_run_unit, gc, self.run_cell, self.threads)
            except cf.process.BrokenProcessPool as exc:
                # A worker died after the last wait returned: the pool refuses new work.
                # Hand the cell to the lost-cells path below like any cell in flight.
                fut = cf.Future()
                fut.set_exception(exc)
            inflight[fut] = (gc, alone)

        def submit_more() -> None:
            if solo:
                if not inflight:
                    submit(solo.pop(0), True)
                return
            # at most `jobs` cells submitted, so a broken pool loses only those
            while queue and len(inflight) < self.jobs:
                submit(queue.pop(0), False)

        submit_more()
        while inflight:
            done, _ = cf.wait(list(inflight), return_when=cf.FIRST_COMPLETED)
            broken = False
            for fut in done:
                gc, alone = inflight.pop(fut)
                try:
                    results = fut.result()
                except cf.process.BrokenProcessPool:
                    broken = True
                    inflight[fut] = (gc, alone)  # handled with the rest of the lost cells below
                    continue
                except Exception as exc:  # pickling errors and the like
                    results = [(m, Row.empty("failed", f"{type(exc).__name__}: {exc}"))
                               for m in getattr(gc, "members", [gc])]
                yield from results
            if broken:
                lost = list(inflight.values())
                inflight.clear()
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new_pool()
                for gc, alone in lost:
                    if not alone:  # a lost group's members run again one by one
                        solo.extend(getattr(gc, "members", [gc]))
                        continue
                    crashes[gc.id] = crashes.get(gc.id, 0) + 1
                    if crashes[gc.id] >= self.max_attempts:
                        yield gc, Row.empty("failed", f"worker process died each time this cell ran "
                                                        f"({crashes[gc.id]} time(s) alone): killed, or out of memory")
                    else:
                        solo.insert(0, gc)
            submit_more()
        self.close()

    def close(self, *, cancel: bool = False) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if not cancel:
            pool.shutdown(wait=True)
            return
        _stop_pool(pool)


def _stop_pool(pool: cf.ProcessPoolExecutor, grace_s: float = 2.0) -> None:
    """Stop a pool now (Ctrl-C, SIGTERM): kill its workers and wait for its manager thread.

    ``SIGKILL``, not ``SIGTERM``: Lightning installs a SIGTERM handler in a worker that
    has trained a cell, so an idle worker would ignore ``terminate()``, and the pool's
    manager thread (joined again at interpreter exit) would wait for it forever. A cell
    in flight is lost either way; it runs again on ``--resume``.
    """
    procs = list((getattr(pool, "_processes", None) or {}).values())
    manager = getattr(pool, "_executor_manager_thread", None)
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        try:
            p.kill()
        except Exception:  # already gone
            pass
    deadline = time.monotonic() + grace_s
    for p in procs:
        p.join(timeout=max(0.0, deadline - time.monotonic()))
    if manager is not None:
        manager.join(timeout=max(0.1, deadline - time.monotonic()))
