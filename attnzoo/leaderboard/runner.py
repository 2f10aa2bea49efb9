"""The driver loop: run a grid's cells on an executor and append each finished row to results.jsonl.

Executors (where cells run) live in :mod:`attnzoo.leaderboard.executors` (their interface in
:mod:`attnzoo.leaderboard.backend`). Only the driver
(:func:`run_grid`) writes rows.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnzoo.cell import Row
from attnzoo.leaderboard.backend import Executor
from attnzoo.leaderboard.grid import GridCell, Preset
from attnzoo.leaderboard.store import ResultStore, StoreWriteError, finished_ids, sanitize

__all__ = ["GridSummary", "finish_row", "run_grid", "driver_provenance", "resume_hint"]


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
    write_error: str | None = None  # a row could not be stored (disk full): the grid stopped there


def _extensions(row: dict[str, Any], cell: dict[str, Any]) -> dict[str, Any]:
    """Columns from plugins' ``extend_result_row`` hooks; a failing hook is recorded, not raised."""
    try:
        from attnzoo.plugins import get_host

        host = get_host()
        impls = host.implementations("extend_result_row")
    except Exception:
        return {}
    extra: dict[str, Any] = {}
    for info, impl in impls:
        try:
            more = host.call_impl(impl, row={**row, **extra}, cell=cell)
        except Exception as exc:
            extra.setdefault("extension_errors", []).append(f"{info.label}: {type(exc).__name__}: {exc}")
            continue
        if isinstance(more, dict):
            extra.update({k: v for k, v in more.items() if k not in ("cell_id", "status", "task", "variant")})
    return extra


def finish_row(gc: GridCell, row: Row, preset: Preset, base_prov: dict[str, Any]) -> Row:
    """The stored row: the harness's row, the cell's identity and the provenance."""
    cell = gc.cell.to_json()
    for key in ("threads", "loggers", "log_dir"):  # how this machine ran it, not what it computed
        cell.pop(key, None)
    if not gc.runnable:  # an n/a pair has no seed or learning rate of its own
        cell.update(seed=None, lr=None)
    prov = {**base_prov, **row.provenance, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    out = row.replace(
        cell_id=gc.id, task=gc.task, task_name=gc.cell.task, backbone=gc.backbone, variant=gc.variant,
        seed=gc.seed, lr=gc.lr, preset=preset.name, config_hash=preset.config_hash(), cell=cell, provenance=prov,
    )
    if not gc.runnable:
        out = out.replace(status="n/a", error=gc.reason)
    extra = _extensions(out.to_json(), cell)
    if extra:
        out = out.replace(**extra)
    return Row.from_json(sanitize(out.to_json()))


def run_grid(
    cells: Sequence[GridCell],
    store: ResultStore,
    executor: Executor,
    preset: Preset,
    *,
    retry_failed: bool = False,
    retry_diverged: bool = False,
    progress: Any = None,
    max_cells: int | None = None,
) -> GridSummary:
    """Run every cell of ``cells`` not already in ``store``; append each row as it finishes.

    n/a pairs are recorded first (one row each, with the reason). A cell that
    fails is a row with its status; the grid goes on. On Ctrl-C the finished
    rows are already on disk; :attr:`GridSummary.interrupted` is set. When a row
    cannot be stored (disk full), the grid stops with the store intact and
    :attr:`GridSummary.write_error` says why.

    :param max_cells: stop after this many rows (tests simulate a kill with it).
    """
    t0 = time.perf_counter()
    store.open()
    done = finished_ids(store.rows(), retry_failed=retry_failed, retry_diverged=retry_diverged)
    base_prov = driver_provenance()
    summary = GridSummary(total=len(cells))
    na = [gc for gc in cells if not gc.runnable]
    todo = [gc for gc in cells if gc.runnable and gc.id not in done]
    summary.skipped = sum(1 for gc in cells if gc.runnable and gc.id in done)
    summary.na = len(na)
    try:
        for gc in na:
            if gc.id not in done:
                store.append(finish_row(gc, gc.na_row(), preset, base_prov).to_json())
    except StoreWriteError as exc:
        summary.write_error = str(exc)
        summary.wall_s = time.perf_counter() - t0
        return summary
    if progress is not None:
        progress.start(total=len(todo), skipped=summary.skipped, na=len(na), slots=executor.slots, cells=todo)
    try:
        for gc, row in executor.run(todo):
            final = finish_row(gc, Row.from_json(row), preset, base_prov)
            store.append(final.to_json())
            summary.ran += 1
            summary.cpu_s += float(final.provenance.get("cpu_s") or 0.0)
            status = final.status
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
    except StoreWriteError as exc:  # finished rows are safe; the cells in flight would be lost anyway
        summary.write_error = str(exc)
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
