"""Fake cell runners for the Ray backend tests, importable by Ray workers as ``tests.ray_cells:NAME``.

Each is a pure stand-in for :func:`attnzoo.harness.run.run_cell` (a cell dict
in, a row dict out). Test knobs travel inside the cell's ``task_kwargs``, so
nothing depends on the worker's environment beyond ``PYTHONPATH`` = repo root.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


def _row(cell: dict[str, Any], **extra: Any) -> dict[str, Any]:
    seed = cell.get("seed") or 0
    q = 0.5 + 0.01 * seed
    row = {
        "status": "ok", "error": None,
        "metrics": {"val/exact_acc": q, "test/exact_acc": q, "test/token_acc": q},
        "main_metric": "test/exact_acc", "main_value": q, "chance": 0.125, "params": 10,
        "steps": cell.get("max_steps", 1), "train_time_s": 0.0, "tokens_per_s": 1.0, "peak_mem_mb": 1.0,
        "curve": [], "attention_map": None,
    }
    row.update(extra)
    return row


def noop_cell(cell: dict[str, Any]) -> dict[str, Any]:
    """Returns at once: measures a backend's per-cell overhead."""
    return _row(cell, pid=os.getpid())


def slow_cell(cell: dict[str, Any]) -> dict[str, Any]:
    """Sleeps ``task_kwargs["sleep"]`` seconds (default 1), then records when and where it ran."""
    t0 = time.time()
    time.sleep(float((cell.get("task_kwargs") or {}).get("sleep", 1.0)))
    return _row(cell, pid=os.getpid(), t0=t0, t1=time.time())


def gate_cell(cell: dict[str, Any]) -> dict[str, Any]:
    """Marks its start in ``task_kwargs["gate_dir"]``, waits until ``gate`` cells have started

    (or ``timeout`` seconds), holds ``hold`` seconds, then records its start and end
    times: cells that may run together do, so a test can count the overlap.
    """
    kw = cell.get("task_kwargs") or {}
    gate_dir = Path(kw["gate_dir"])
    t0 = time.time()
    (gate_dir / f"{os.getpid()}-{t0:.6f}-{cell.get('seed')}").touch()
    deadline = t0 + float(kw.get("timeout", 30.0))
    while len(list(gate_dir.iterdir())) < int(kw.get("gate", 1)) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(float(kw.get("hold", 0.5)))
    gpu_ids: list[str] = []
    try:
        import ray

        gpu_ids = [str(g) for g in ray.get_runtime_context().get_accelerator_ids().get("GPU") or []]
    except Exception:
        pass
    return _row(cell, pid=os.getpid(), t0=t0, t1=time.time(), gpu_ids=gpu_ids,
                cuda_visible=os.environ.get("CUDA_VISIBLE_DEVICES"))
