"""``attnzoo bench export DIR --format lm-eval``: results in lm-evaluation-harness's layout.

One JSON per (variant, backbone) -- the "model" in lm-eval's terms -- at
``OUT/<model_name_sanitized>/results_<date>.json``, as ``lm_eval --output_path``
writes them, so tools that read lm-eval results (leaderboards, comparison
scripts) read ours::

    {"results": {"copy": {"alias": "copy", "exact_acc,none": 0.97, "exact_acc_stderr,none": 0.005, ...},
                 "copy/test_long": {...}},            # another test split or a slice: a subtask
     "group_subtasks": {"copy": ["copy/test_long"]},
     "configs": {"copy": {task, knobs, backbone, budget, best lr, seeds ...}},
     "versions": {"copy": "<config hash>"}, "n-shot": {"copy": 0},
     "higher_is_better": {"copy": {"exact_acc": true, ...}}, "n-samples": {"copy": {"original": 512, ...}},
     "config": {"model": "attnzoo", "model_args": "backbone=seq2seq,attention=dot", ...},
     "git_hash": "...", "date": 1796400000.0, "model_name": "dot@seq2seq", ...}

Each metric is the mean over the seeds at the best learning rate (chosen on
validation, as the report chooses it) and its ``_stderr`` the standard error of
that mean over seeds (sample std / sqrt(n); ``"N/A"`` with one seed), the
quantities lm-eval reports. The filter is always ``none``. The per-entry
aggregation is :func:`attnzoo.leaderboard.report.aggregation.aggregate`'s, so the export
and the tables cannot disagree on which runs count.
"""

from __future__ import annotations

import calendar
import json
import math
import os
import re
import statistics
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from attnzoo.cell import Row

__all__ = ["FORMATS", "export", "lm_eval_results"]

FORMATS = ("lm-eval",)


def _stderr(values: list[float]) -> float | str:
    return statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else "N/A"


def _subtask(label: str, metric_key: str) -> tuple[str, str] | None:
    """``("copy", "test_long/exact_acc")`` -> ``("copy/test_long", "exact_acc")``; None for non-test metrics."""
    parts = metric_key.split("/")
    if len(parts) < 2 or not parts[0].startswith("test"):
        return None
    where = ([parts[0]] if parts[0] != "test" else []) + parts[1:-1]
    return "/".join([label, *where]), parts[-1]


def _timestamp(rows: Iterable[Row]) -> float | None:
    stamps = [str((r.provenance or {}).get("timestamp") or "") for r in rows]
    stamps = [s for s in stamps if s]
    if not stamps:
        return None
    return float(calendar.timegm(time.strptime(max(stamps), "%Y-%m-%dT%H:%M:%SZ")))


def lm_eval_results(rows: Iterable[Row | dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """``{(variant, backbone): lm-eval results document}`` for every pair with a finished run.

    :param rows: stored rows (``results.jsonl``'s JSON objects or :class:`~attnzoo.cell.Row`), any schema.
    """
    from attnzoo import __version__
    from attnzoo.leaderboard.report.aggregation import aggregate

    docs: dict[tuple[str, str], dict[str, Any]] = {}
    for label, entries in aggregate(rows).items():
        for e in entries:
            ok = [r for r in e.rows if r.status == "ok"]
            if not ok:
                continue  # n/a, or no seed at the best lr finished: lm-eval has no way to say so
            key = (e.variant, e.backbone_name or e.backbone)
            doc = docs.setdefault(key, _document(*key, __version__))
            name = label if e.backbone == key[1] else f"{label} [{e.backbone}]"
            per_task: dict[str, dict[str, list[float]]] = {}
            for r in ok:
                for metric_key, v in (r.metrics or {}).items():
                    where = _subtask(name, metric_key)
                    if where is not None and isinstance(v, (int, float)) and math.isfinite(v):
                        per_task.setdefault(where[0], {}).setdefault(where[1], []).append(float(v))
            cell = ok[0].cell if isinstance(ok[0].cell, dict) else {}
            for task, metrics in per_task.items():
                entry: dict[str, Any] = {"alias": task if task == name else " - " + task[len(name) + 1:]}
                for metric, values in sorted(metrics.items()):
                    entry[f"{metric},none"] = statistics.fmean(values)
                    entry[f"{metric}_stderr,none"] = _stderr(values)
                doc["results"][task] = entry
                doc["versions"][task] = ok[0].config_hash or "unversioned"
                doc["n-shot"][task] = 0
                doc["higher_is_better"][task] = {m: True for m in metrics}
                if cell.get("test_size"):
                    doc["n-samples"][task] = {"original": cell["test_size"], "effective": cell["test_size"]}
            subtasks = sorted(t for t in per_task if t != name)
            if subtasks:
                doc["group_subtasks"][name] = subtasks
            doc["configs"][name] = {
                "task": e.task_name, "task_kwargs": cell.get("task_kwargs", {}), "backbone": key[1],
                "backbone_kwargs": e.backbone_kwargs, "attention": cell.get("attention"),
                "attention_kwargs": cell.get("attention_kwargs", {}), "main_metric": e.main_metric,
                "chance": e.chance, "solve_threshold": e.threshold, "max_steps": cell.get("max_steps"),
                "batch_size": cell.get("batch_size"), "lr": e.best_lr, "lrs": e.lrs,
                "seeds": [r.seed for r in ok], "seeds_not_ok": [r.seed for r in e.rows if r not in ok],
                "preset": ok[0].preset,
            }
            prov = ok[0].provenance or {}
            doc["git_hash"] = doc["git_hash"] or prov.get("git_commit")
            doc["config"]["device"] = doc["config"]["device"] or prov.get("device")
            doc["config"]["random_seed"] = sorted({*doc["config"]["random_seed"], *(r.seed for r in ok)})
            when = _timestamp(ok)
            if when is not None:
                doc["date"] = max(doc["date"] or 0.0, when)
    return docs


def _document(variant: str, backbone: str, version: str) -> dict[str, Any]:
    name = f"{variant}@{backbone}"
    return {
        "results": {}, "group_subtasks": {}, "configs": {}, "versions": {}, "n-shot": {}, "higher_is_better": {},
        "n-samples": {},
        "config": {"model": "attnzoo", "model_args": f"backbone={backbone},attention={variant}",
                   "batch_size": None, "device": None, "random_seed": [], "bootstrap_iters": 0, "limit": None},
        "git_hash": None, "date": None, "model_name": name,
        "model_name_sanitized": re.sub(r"[^A-Za-z0-9_.-]", "__", name), "attnzoo_version": version,
    }


def export(directory: str | os.PathLike[str], fmt: str = "lm-eval",
           out: str | os.PathLike[str] | None = None) -> list[Path]:
    """Write ``directory``'s results in ``fmt``; returns the files written.

    :param out: where (default ``DIR/lm-eval``); each model gets its own folder, as lm-eval's ``--output_path``.
    :raises ValueError: an unknown format. :raises FileNotFoundError: no ``results.jsonl`` in ``directory``.
    """
    from attnzoo.leaderboard.store import RESULTS, read_rows

    if fmt not in FORMATS:
        raise ValueError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    if not (Path(directory) / RESULTS).exists():
        raise FileNotFoundError(f"no {RESULTS} in {directory}")
    target = Path(out) if out is not None else Path(directory) / "lm-eval"
    written = []
    for doc in lm_eval_results(read_rows(directory)).values():
        stamp = time.strftime("%Y-%m-%dT%H-%M-%S", time.gmtime(doc["date"] or 0))
        path = target / doc["model_name_sanitized"] / f"results_{stamp}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
        written.append(path)
    return written
