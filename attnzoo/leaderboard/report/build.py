"""The report as a pipeline: rows -> aggregate -> analyse -> figures -> one writer per file.

:func:`build_report` reads ``results.jsonl`` (one configuration), aggregates it into entries
(:mod:`~attnzoo.leaderboard.report.aggregation`), analyses them into a
:class:`~attnzoo.leaderboard.report.analysis.Report`, draws the figures into the report
(:func:`draw_figures`), then runs each of :data:`WRITERS`. A new output format is one writer module and one
row of that table.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from attnzoo import results
from attnzoo.leaderboard.report import csv, html, markdown, plots, study
from attnzoo.leaderboard.report.tables import pair_labels
from attnzoo.leaderboard.report.analysis import Report, analyse
from attnzoo.leaderboard.store import one_config, read_rows

__all__ = ["WRITERS", "build_report", "draw_figures", "file_slug"]

#: file name -> the writer that renders it from a :class:`Report`, in the order they are written
WRITERS: dict[str, Callable[[Report], str]] = {
    "findings.md": markdown.render_findings,
    "leaderboard.md": markdown.render,
    "leaderboard.csv": csv.render,
    "leaderboard.html": html.render,
}


def file_slug(name: str) -> str:
    """A task label as a file-name piece: ``associative-recall`` stays, odd characters become ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "task"


def _speed_figure(d: Path, figures: dict[str, Path]) -> list[Path]:
    """``speed.png`` beside a ``speed.csv``: the one ``attnzoo speed --out DIR`` drew, or drawn now (returned)."""
    speed_csv, speed_png = d / "speed.csv", d / "speed.png"
    if speed_png.exists() and speed_csv.exists():  # `attnzoo speed --out DIR` drew it: show that one
        figures["speed"] = speed_png
    elif speed_csv.exists():
        try:
            if plots.speed(speed_csv, speed_png):
                figures["speed"] = speed_png
                return [speed_png]
        except Exception as exc:  # a CSV from another tool must not stop the report
            print(f"warning: could not plot {speed_csv}: {type(exc).__name__}: {exc}", file=sys.stderr)
    return []


def draw_figures(report: Report, d: Path) -> list[Path]:
    """Draw every figure of ``report`` into ``d``, recording them in ``report.figures`` (and the study's section
    in ``report.study_md``); returns the files drawn."""
    tasks, figures, labels = report.tasks, report.figures, report.ranked_labels
    if plots.summary(pair_labels(tasks), d / "summary.png"):
        figures["summary"] = d / "summary.png"
    plots.heatmap(tasks, labels, report.overall[2], d / "heatmap.png")
    figures["heatmap"] = d / "heatmap.png"
    runs = {lab: [x for r in report.ranks[lab].runs.values() for x in r] for lab in labels if lab in report.ranks}
    if plots.profile(runs, d / "profile.png"):
        figures["profile"] = d / "profile.png"
    plots.acc_vs_speed(tasks, d / "acc_vs_speed.png")
    figures["acc_vs_speed"] = d / "acc_vs_speed.png"
    for task, entries in tasks.items():
        for kind, draw in (("curves", plots.curves), ("attention", plots.attention)):
            p = d / f"{kind}_{file_slug(task)}.png"
            if draw(task, entries, p):
                figures[f"{kind}:{task}"] = p
    written = _speed_figure(d, figures)
    written += [p for k, p in figures.items() if k != "speed"]
    report.study_md = study.render(tasks, d)  # the inductive-bias study's figures and findings; [] without a study
    if report.study_md:  # the page shows them too
        drawn = [d / f"{stem}.png" for stem in study.FIGURES if (d / f"{stem}.png").exists()]
        figures.update({f"study:{p.stem}": p for p in drawn})
        written += drawn
    return written


def build_report(directory: str | Path, *, rows: list[dict[str, Any]] | None = None,
                 highlight: Sequence[str] = ()) -> list[Path]:
    """Write every table, figure and finding of ``directory`` from its ``results.jsonl``; returns the paths written.

    :param rows: the rows to report instead of the directory's ``results.jsonl`` (its JSON objects).
    :param highlight: variants whose rows the page highlights (``bench --against``: the new variants).
    :raises FileNotFoundError: no rows.
    """
    d = Path(directory)
    # The one place JSON objects become Rows: the store (and a caller's ``rows``) speak JSON, one_config
    # checks their config hashes, and from here on every stage reads the typed Rows of attnzoo.results.
    res = results.from_rows(one_config(read_rows(d) if rows is None else rows, where=str(d / "results.jsonl")))
    if not res:
        raise FileNotFoundError(f"no results in {d / 'results.jsonl'}: nothing to report")
    report = analyse(list(res), res.entries(), highlight=highlight)
    written = draw_figures(report, d)
    for name, render in WRITERS.items():
        p = d / name
        with open(p, "w", newline="", encoding="utf-8") as fh:  # newline="": the CSV writer's \r\n stays as is
            fh.write(render(report))
        written.append(p)
    return written
