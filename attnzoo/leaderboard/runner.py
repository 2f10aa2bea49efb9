"""Run the grid: executors that yield ``(cell, row)`` as cells finish, and the driver loop.

The boundary is one pure function, :func:`attnzoo.harness.run.run_cell`
(JSON-able cell in, JSON-able row out). An executor decides where it runs:

- :class:`InlineExecutor`: in this process, one cell after another (tests, ``--jobs 1`` debugging);
- :class:`LocalExecutor`: ``--jobs N`` worker processes (spawn/forkserver, reused
  between cells, ``torch`` threads = cores / jobs each).

Another backend (Ray, SLURM) implements the same :class:`Executor` interface.
Only the driver (:func:`run_grid`) appends rows to results.jsonl.
"""

from __future__ import annotations

import concurrent.futures as cf
import importlib
import multiprocessing
import os
import platform
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnzoo.leaderboard.grid import GridCell, Preset, empty_row
from attnzoo.leaderboard.store import ResultStore, finished_ids, sanitize

__all__ = [
    "DEFAULT_RUN_CELL",
    "Executor",
    "InlineExecutor",
    "LocalExecutor",
    "GridSummary",
    "execute_cell",
    "run_grid",
    "driver_provenance",
    "cpu_count",
]

#: the harness's cell runner, imported lazily in the worker (it imports Lightning)
DEFAULT_RUN_CELL = "attnzoo.harness.run:run_cell"

RunCell = Callable[[dict[str, Any]], dict[str, Any]]


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


def _device(cell: dict[str, Any]) -> str:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return platform.machine()
    accel = str((cell.get("trainer") or {}).get("accelerator", "cpu"))
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


def execute_cell(cell: dict[str, Any], run_cell: RunCell | str = DEFAULT_RUN_CELL) -> dict[str, Any]:
    """Run one cell where we are (a worker) and add the worker's provenance. Never raises."""
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        row = dict(_resolve(run_cell)(cell))
    except MemoryError as exc:
        row = empty_row("oom", f"MemoryError: {exc}")
    except Exception as exc:  # run_cell promises not to raise; a fake or a plugin might
        status = "oom" if "out of memory" in str(exc).lower() else "failed"
        row = empty_row(status, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}")
    prov = dict(row.get("provenance") or {})
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:  # pragma: no cover
        torch_version = None
    prov.update(
        hostname=socket.gethostname(),
        pid=os.getpid(),
        torch_version=torch_version,
        python=platform.python_version(),
        device=_device(cell),
        wall_s=round(time.perf_counter() - t0, 3),
        # CPU seconds of this worker for the cell: on a shared machine wall_s grows with the
        # load, cpu_s does not (with one torch thread per worker it is the cell's time on an idle core)
        cpu_s=round(time.process_time() - c0, 3),
    )
    row["provenance"] = prov
    return row


# -- executors -----------------------------------------------------------------
class Executor:
    """Runs cells somewhere and yields ``(cell, row)`` as each one finishes (any order).

    Implementations: :class:`InlineExecutor`, :class:`LocalExecutor`; a cluster
    backend implements the same two methods.
    """

    #: cells that can run at once (the progress display's "running")
    slots: int = 1

    def run(self, cells: Sequence[GridCell]) -> Iterator[tuple[GridCell, dict[str, Any]]]:
        raise NotImplementedError

    def close(self, *, cancel: bool = False) -> None:
        """Release workers; ``cancel`` stops cells still running (after Ctrl-C)."""


class InlineExecutor(Executor):
    """One cell after another in this process."""

    def __init__(self, run_cell: RunCell | str = DEFAULT_RUN_CELL):
        self.run_cell = run_cell

    def run(self, cells: Sequence[GridCell]) -> Iterator[tuple[GridCell, dict[str, Any]]]:
        for gc in cells:
            yield gc, execute_cell(gc.cell, self.run_cell)


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
        return cf.ProcessPoolExecutor(self.jobs, mp_context=ctx, initializer=_init_worker,
                                      initargs=(self.threads, os.getpid()))

    def run(self, cells: Sequence[GridCell]) -> Iterator[tuple[GridCell, dict[str, Any]]]:
        queue = list(cells)
        # When a worker dies, every cell in flight is lost with the pool and nothing says
        # which one killed it: those cells run again one at a time ("solo"), and only a
        # cell that kills its worker while running alone counts a crash.
        solo: list[GridCell] = []
        crashes: dict[str, int] = {}
        inflight: dict[cf.Future, tuple[GridCell, bool]] = {}
        self._pool = self._new_pool()

        def submit(gc: GridCell, alone: bool) -> None:
            cell = {**gc.cell, "threads": gc.cell.get("threads") or self.threads}
            try:
                fut = self._pool.submit(execute_cell, cell, self.run_cell)
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
                    row = fut.result()
                except cf.process.BrokenProcessPool:
                    broken = True
                    inflight[fut] = (gc, alone)  # handled with the rest of the lost cells below
                    continue
                except Exception as exc:  # pickling errors and the like
                    row = empty_row("failed", f"{type(exc).__name__}: {exc}")
                yield gc, row
            if broken:
                lost = list(inflight.values())
                inflight.clear()
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new_pool()
                for gc, alone in lost:
                    if not alone:
                        solo.append(gc)
                        continue
                    crashes[gc.id] = crashes.get(gc.id, 0) + 1
                    if crashes[gc.id] >= self.max_attempts:
                        yield gc, empty_row("failed", f"worker process died each time this cell ran "
                                                        f"({crashes[gc.id]} time(s) alone): killed, or out of memory")
                    else:
                        solo.insert(0, gc)
            submit_more()
        self.close()

    def close(self, *, cancel: bool = False) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if cancel:
            procs = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for p in procs:  # stop cells in flight now rather than after they finish
                try:
                    p.terminate()
                except Exception:  # already gone
                    pass
            for p in procs:
                p.join(timeout=5)
        else:
            pool.shutdown(wait=True)


# -- provenance ------------------------------------------------------------------
def _git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out + ("-dirty" if dirty else "") if out else None
    except Exception:  # no git, not a checkout: provenance without a commit
        return None


def driver_provenance() -> dict[str, Any]:
    """What the driver knows about the code that ran: attnzoo version and git commit."""
    from attnzoo import __version__

    return {"attnzoo_version": __version__, "git_commit": _git_commit()}


# -- the driver -----------------------------------------------------------------
@dataclass
class GridSummary:
    total: int = 0
    skipped: int = 0          # finished in an earlier run (--resume)
    ran: int = 0
    ok: int = 0
    failed: int = 0           # failed, oom, diverged
    na: int = 0
    interrupted: bool = False
    wall_s: float = 0.0
    cpu_s: float = 0.0        # summed CPU seconds of the cells that ran (the work, whatever the machine's load)
    statuses: dict[str, int] = field(default_factory=dict)


def _extend_row(row: dict[str, Any], cell: dict[str, Any]) -> None:
    """Columns from plugins' ``extend_result_row`` hooks; a failing hook is recorded, not raised."""
    try:
        from attnzoo.plugins import get_host

        host = get_host()
        impls = host.implementations("extend_result_row")
    except Exception:
        return
    for info, impl in impls:
        try:
            extra = host.call_impl(impl, row=row, cell=cell)
        except Exception as exc:
            row.setdefault("extension_errors", []).append(f"{info.label}: {type(exc).__name__}: {exc}")
            continue
        if isinstance(extra, dict):
            row.update({k: v for k, v in extra.items() if k not in ("cell_id", "status", "task", "variant")})


def finish_row(gc: GridCell, row: dict[str, Any], preset: Preset, base_prov: dict[str, Any]) -> dict[str, Any]:
    """The stored row: the harness's row, the cell's identity and the provenance."""
    out = dict(row)
    out.update(
        cell_id=gc.id,
        task=gc.task,
        task_name=gc.cell.get("task"),
        backbone=gc.backbone,
        variant=gc.variant,
        seed=gc.seed,
        lr=gc.lr,
        preset=preset.name,
        config_hash=preset.config_hash(),
        cell={k: v for k, v in gc.cell.items() if k != "threads"},
    )
    if gc.status == "n/a":
        out["status"], out["error"] = "n/a", gc.reason
    prov = {**base_prov, **dict(row.get("provenance") or {})}
    prov["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out["provenance"] = prov
    _extend_row(out, gc.cell)
    return sanitize(out)


def run_grid(
    cells: Sequence[GridCell],
    store: ResultStore,
    executor: Executor,
    preset: Preset,
    *,
    retry_failed: bool = False,
    progress: Any = None,
    max_cells: int | None = None,
) -> GridSummary:
    """Run every cell of ``cells`` not already in ``store``; append each row as it finishes.

    n/a pairs are recorded first (one row each, with the reason). A cell that
    fails is a row with its status; the grid goes on. On Ctrl-C the finished
    rows are already on disk; :attr:`GridSummary.interrupted` is set.

    :param max_cells: stop after this many rows (tests simulate a kill with it).
    """
    t0 = time.perf_counter()
    store.open()
    done = finished_ids(store.rows(), retry_failed=retry_failed)
    base_prov = driver_provenance()
    summary = GridSummary(total=len(cells))
    na = [gc for gc in cells if not gc.runnable]
    todo = [gc for gc in cells if gc.runnable and gc.id not in done]
    summary.skipped = sum(1 for gc in cells if gc.runnable and gc.id in done)
    summary.na = len(na)
    for gc in na:
        if gc.id not in done:
            store.append(finish_row(gc, gc.na_row(), preset, base_prov))
    if progress is not None:
        progress.start(total=len(todo), skipped=summary.skipped, na=len(na), slots=executor.slots)
    try:
        for gc, row in executor.run(todo):
            final = finish_row(gc, row, preset, base_prov)
            store.append(final)
            summary.ran += 1
            summary.cpu_s += float((final.get("provenance") or {}).get("cpu_s") or 0.0)
            status = final.get("status", "failed")
            summary.statuses[status] = summary.statuses.get(status, 0) + 1
            if status == "ok":
                summary.ok += 1
            else:
                summary.failed += 1
            if progress is not None:
                progress.advance(gc, final)
            if max_cells is not None and summary.ran >= max_cells:
                executor.close(cancel=True)
                summary.interrupted = True
                break
    except KeyboardInterrupt:
        summary.interrupted = True
        executor.close(cancel=True)
    finally:
        if progress is not None:
            progress.stop()
        summary.wall_s = time.perf_counter() - t0
    return summary


def resume_hint(argv: Sequence[str] | None = None) -> str:
    """The command that resumes this run (the same arguments plus ``--resume``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--resume" not in args:
        args.append("--resume")
    return shlex.join(["attnzoo", *args])
