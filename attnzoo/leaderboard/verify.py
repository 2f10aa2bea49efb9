"""Do committed results reproduce with today's code? (``attnzoo bench verify DIR...``)

Each chosen row's own recorded cell (``row["cell"]``: every knob, seed and learning
rate the run used) is trained again, in worker processes with the torch thread count
the row records, and what the cell *computed* is compared with the row **exactly**:
the values as stored in JSON, to the bit. Timings, memory and provenance differ from
machine to machine and are not compared (the recorded machine and torch build are
printed beside today's: another CPU's kernels can change the last bits, and training
amplifies them). A cell is ``identical`` or ``different``
(with the fields that differ and both values); any difference is rc 1, so CI fails
when a change alters the numerics until the references are regenerated.
"""

from __future__ import annotations

import json
import random
import re
import sys
from collections.abc import Sequence
from typing import Any

from attnzoo.cell import Cell, Row
from attnzoo.errors import AttnzooError
from attnzoo.leaderboard.store import sanitize

__all__ = ["COMPARED", "VERIFIABLE", "choose", "compare", "verify"]

#: what a cell computes (deterministic on one machine); timings, memory and provenance are not compared
COMPARED = ("status", "main_metric", "main_value", "metrics", "chance", "params", "steps", "curve", "attention_map")
#: rows worth rerunning: a failure or an oom depends on the machine, an n/a row trains nothing
VERIFIABLE = frozenset({"ok", "diverged"})


def _cost(row: dict[str, Any]) -> float:
    prov = row.get("provenance") or {}
    for value in (prov.get("cpu_s"), row.get("train_time_s"), prov.get("wall_s")):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return float("inf")


def choose(rows: Sequence[dict[str, Any]], *, sample: int | None = None, cells: Sequence[str] | None = None,
           cheapest: bool = False) -> list[dict[str, Any]]:
    """The rows to rerun, deterministically.

    :param cells: these cell ids (each must have a verifiable row).
    :param sample: this many rows: with ``cheapest``, the cheapest by recorded CPU (or train)
        time, one per (backbone, variant) before any repeats and cells with attention before the
        baselines; else a fixed pseudo-random sample (seed 0 over the sorted ids).
    :raises AttnzooError: an id without a row, or one that trained nothing.
    """
    candidates = sorted((r for r in rows if r.get("status") in VERIFIABLE and r.get("cell")),
                        key=lambda r: str(r.get("cell_id")))
    if cells:
        by_id = {r.get("cell_id"): r for r in candidates}
        missing = [c for c in cells if c not in by_id]
        if missing:
            raise AttnzooError(f"--cells: no ok or diverged row for {', '.join(missing)}")
        return [by_id[c] for c in cells]
    if sample is None or sample >= len(candidates):
        return candidates
    if cheapest:  # the cheapest of each (backbone, variant) first, attention before baselines: more code checked
        by_cost = sorted(candidates, key=lambda r: (_cost(r), str(r.get("cell_id"))))
        seen: set[tuple[Any, Any]] = set()
        first = [r for r in by_cost if (r.get("backbone"), r.get("variant")) not in seen
                 and not seen.add((r.get("backbone"), r.get("variant")))]
        first.sort(key=lambda r: r.get("variant") in (None, "none"))  # stable: by cost within each
        return (first + [r for r in by_cost if r not in first])[:sample]
    return sorted(random.Random(0).sample(candidates, sample), key=lambda r: str(r.get("cell_id")))


def _threads(row: dict[str, Any]) -> int:
    """The torch threads the row's worker used (its recorded device), else 1."""
    m = re.search(r"(\d+) thread", str((row.get("provenance") or {}).get("device") or ""))
    return int(m.group(1)) if m else 1


def _stored(value: Any) -> Any:
    """A value as results.jsonl stores it (NaN -> null, tuples -> lists, floats as their JSON text)."""
    return json.loads(json.dumps(sanitize(value), allow_nan=False, default=str))


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def compare(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The fields of :data:`COMPARED` that differ, each as ``field: committed X, today Y`` (metrics per key)."""
    out: list[str] = []
    for key in COMPARED:
        a, b = _stored(old.get(key)), _stored(new.get(key))
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b)):
                if a.get(k) != b.get(k):
                    out.append(f"{key}.{k}: committed {_short(a.get(k))}, today {_short(b.get(k))}")
        else:
            out.append(f"{key}: committed {_short(a)}, today {_short(b)}")
    return out


def verify(rows: Sequence[dict[str, Any]], *, jobs: int = 1, run_cell: Any = None,
           stream: Any = None) -> list[tuple[dict[str, Any], dict[str, Any], list[str]]]:
    """Rerun ``rows``' cells (``jobs`` worker processes) and print one line per cell as it finishes.

    :returns: ``(committed row, today's row, differences)`` per cell.
    """
    from attnzoo.leaderboard.backend import DEFAULT_RUN_CELL
    from attnzoo.leaderboard.executors import LocalExecutor
    from attnzoo.leaderboard.grid import GridCell

    stream = stream or sys.stdout
    by_id = {r["cell_id"]: r for r in rows}
    grid = [GridCell(id=r["cell_id"], task=r.get("task") or "?", backbone=r.get("backbone") or "?",
                     variant=r.get("variant") or "?",
                     cell=Cell.from_json(r["cell"]).replace(threads=_threads(r), progress=False))
            for r in rows]
    executor = LocalExecutor(max(1, min(jobs, len(grid) or 1)), run_cell or DEFAULT_RUN_CELL)
    results = []
    try:
        for gc, row in executor.run(grid):
            old, new = by_id[gc.id], Row.from_json(row).to_json()
            diffs = compare(old, new)
            results.append((old, new, diffs))
            main = old.get("main_metric") or "main"
            head = f"{'identical' if not diffs else 'DIFFERENT':<9}  {gc.id}  {gc.label()}"
            if not diffs:
                print(f"{head}  {main}={old.get('main_value')!r}", file=stream, flush=True)
            else:
                print(f"{head}\n" + "\n".join(f"    {d}" for d in diffs), file=stream, flush=True)
    except BaseException:
        executor.close(cancel=True)
        raise
    return results
