"""Cell runners for the fault tests, importable by worker processes as ``tests.fault_cells:NAME``.

Each returns a row that is a pure function of the cell (as
:func:`tests.test_leaderboard.fake_run_cell`, without importing the test module), with
what a real cell does that matters to faults: :func:`lightning_like` installs a SIGTERM
handler that only sets a flag, as Lightning's signal connector does in a worker that has
trained, so a worker told to ``terminate()`` ignores it. ``FAULT_HOLD`` (seconds, default
60) is how long a cell with attention trains; a baseline cell takes ``FAULT_QUICK``
(default 0.05) unless ``FAULT_ALL_SLOW`` is set, so a grid's baselines finish and leave
workers idle.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

received: list[int] = []


def _row(cell: Any) -> dict[str, Any]:
    q = 0.9 if cell["attention"] is not None else 0.2
    steps = cell["max_steps"]
    return {"status": "ok", "error": None, "metrics": {"val/exact_acc": q, "test/exact_acc": q},
            "main_metric": "test/exact_acc", "main_value": q, "chance": 0.125, "params": 1000, "steps": steps,
            "train_time_s": 0.01, "tokens_per_s": 1000.0, "curve": [[s, 2.0 / s, q] for s in range(1, steps + 1, 5)],
            "attention_map": None}


def lightning_like(cell: Any) -> dict[str, Any]:
    signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    slow = cell["attention"] is not None or os.environ.get("FAULT_ALL_SLOW")
    time.sleep(float(os.environ.get("FAULT_HOLD", "60")) if slow else float(os.environ.get("FAULT_QUICK", "0.05")))
    return _row(cell)


def error_text(cell: Any) -> dict[str, Any]:
    """Every cell with attention fails with markup and a `$` in its error text (a plugin's message)."""
    if cell["attention"] is not None:
        raise RuntimeError("<script>alert('x')</script> & $\\bogus$ costs")
    return _row(cell)
