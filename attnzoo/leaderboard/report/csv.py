"""The CSV writer: ``leaderboard.csv``, long form, one line per (task label, backbone, variant).

Every number at full precision (the markdown and HTML tables round), so a spreadsheet or pandas can redo any
table of the report; ``results.summary().to_pandas()`` is the same data typed.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

from attnzoo.leaderboard.report.aggregation import Entry
from attnzoo.leaderboard.report.analysis import Report

__all__ = ["FIELDS", "csv_rows", "render"]

#: the columns, in order
FIELDS = ["task", "rank", "variant", "backbone", "status", "reason", "main_metric", "median", "min", "max",
          "per_seed", "solved", "n_seeds", "solve_threshold", "steps_to_solve", "steps_per_seed", "max_steps", "mean",
          "std", "values", "best_lr", "lrs", "val_mean", "length_gen", "length_gen_median", "chance", "params",
          "tokens_per_s", "peak_mem_mb", "train_time_s", "notes"]


def csv_rows(tasks: dict[str, list[Entry]]) -> Iterable[dict[str, Any]]:
    """One dict per entry, keyed by :data:`FIELDS`, tasks in order and entries ranked within each."""
    for task, entries in tasks.items():
        rank = 0
        for e in entries:
            rank += e.has_number
            s = e.summary
            yield {
                "task": task, "rank": rank if e.has_number else "", "variant": e.variant,
                "backbone": e.backbone, "status": e.status, "reason": e.reason or "",
                "main_metric": e.main_metric or "", "median": e.median,
                "min": s.lo if s and e.has_number else None, "max": s.hi if s and e.has_number else None,
                "per_seed": s.per_seed(4) if s else "", "solved": e.solved if s else "",
                "n_seeds": e.n_seeds, "solve_threshold": e.threshold,
                "steps_to_solve": s.median_steps if s else None,
                "steps_per_seed": " ".join("censored" if x is None else str(x) for x in s.steps) if s else "",
                "max_steps": s.max_steps if s else None, "mean": e.mean, "std": e.std,
                "values": " ".join(f"{v:.4f}" for v in e.values), "best_lr": e.best_lr,
                "lrs": " ".join(f"{x:g}" for x in e.lrs), "val_mean": e.val_mean, "length_gen": e.long_mean,
                "length_gen_median": e.long_summary.median if e.long_summary else None, "chance": e.chance,
                "params": e.params, "tokens_per_s": e.tokens_per_s, "peak_mem_mb": e.peak_mem_mb,
                "train_time_s": e.train_time_s, "notes": e.notes,
            }


def render(report: Report) -> str:
    """``leaderboard.csv`` (``csv``'s dialect: ``\\r\\n`` line ends; write it with ``newline=""``)."""
    out = io.StringIO(newline="")
    w = csv.DictWriter(out, fieldnames=FIELDS)
    w.writeheader()
    w.writerows(csv_rows(report.tasks))
    return out.getvalue()
