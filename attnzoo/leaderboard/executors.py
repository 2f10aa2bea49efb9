"""Executors: where the grid's cells run. Each yields ``(grid cell, Row)`` as cells finish.

The boundary is one function, :func:`attnzoo.harness.run.run_cell` (a
:class:`~attnzoo.cell.Cell` in, a :class:`~attnzoo.cell.Row` out):

- :class:`InlineExecutor`: in this process, one cell after another (tests, debugging);
- :class:`LocalExecutor`: ``--jobs N`` worker processes (spawn/forkserver, reused
  between cells, ``torch`` threads = cores / jobs each);
- :class:`attnzoo.leaderboard.ray_backend.RayExecutor`: Ray core tasks (``--backend ray``).

:data:`BACKENDS` is the table of ``--backend`` names; :func:`attnzoo.commands.bench.executor_from_args` picks a row.
Another backend (SLURM...) implements the :class:`~attnzoo.leaderboard.backend.Executor` interface and is one
more row.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import multiprocessing.forkserver
import multiprocessing.resource_tracker
import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from attnzoo.cell import Row
from attnzoo.leaderboard.backend import DEFAULT_RUN_CELL, Executor, RunCell, cpu_count, execute_cell
from attnzoo.leaderboard.grouping import GroupPolicy, execute_group
from attnzoo.leaderboard.signals import deferred

if TYPE_CHECKING:
    from attnzoo.leaderboard.grid import GridCell

__all__ = ["InlineExecutor", "LocalExecutor", "BackendFactory", "BACKENDS"]


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


def _start_forkserver_deaf() -> None:
    """Start the forkserver (and Python's resource tracker) with Ctrl-C held off from their first instruction.

    They import ``__main__`` and the packages above the boot module before any of our code runs there,
    and a Ctrl-C in that window ended them with a traceback. A blocked signal mask survives fork and exec
    (CPython starts its resource tracker the same way, bpo-33613), so the forkserver is spawned with SIGINT
    and SIGTERM blocked; :mod:`~attnzoo.leaderboard._forkserver_boot` sets SIGINT to ignored there and
    unblocks both. The driver's own handlers stay as they are: a Ctrl-C in the window stays pending and
    reaches them when the mask is restored. (It used to set SIG_IGN in the driver for the window too; a
    Ctrl-C delivered to another thread, or pending when CPython's start of the resource tracker unblocked
    SIGINT, met that SIG_IGN and vanished, and the grid ran on: 7 hangs in 30 interrupts at start-up.)
    """
    if threading.current_thread() is not threading.main_thread():  # the mask is per thread: main only
        multiprocessing.forkserver.ensure_running()
        return
    # the tracker's start unblocks both signals when it is done: it must not run inside the window
    multiprocessing.resource_tracker.ensure_running()
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        multiprocessing.forkserver.ensure_running()
    finally:
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
                # a worker it starts is in the pool's list before Ctrl-C can act: interrupted between the fork
                # and the pool's record of it, _stop_pool would miss it, and born after its driver had gone it
                # would die printing a traceback
                with deferred():
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


class BackendFactory(Protocol):
    """A row of :data:`BACKENDS`: the executor of one ``--backend``, from the parsed options it reads (its own
    flags included), the resolved worker count and cell runner; ``start`` connects at once where that can fail."""

    def __call__(self, args: argparse.Namespace, *, jobs: int, run_cell: RunCell | str, start: bool) -> Executor: ...


def _local(args: argparse.Namespace, *, jobs: int, run_cell: RunCell | str, start: bool) -> Executor:
    return LocalExecutor(jobs, run_cell)


def _ray(args: argparse.Namespace, *, jobs: int, run_cell: RunCell | str, start: bool) -> Executor:
    from attnzoo.leaderboard.ray_backend import ray_executor_from_args  # loads its module (never ray) only now

    return ray_executor_from_args(args, jobs=jobs, run_cell=run_cell, start=start)


#: ``--backend`` name -> the factory of its executor; another backend (SLURM...) is one more row
BACKENDS: dict[str, BackendFactory] = {"local": _local, "ray": _ray}
