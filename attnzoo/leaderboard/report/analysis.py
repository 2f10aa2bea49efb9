"""Analyse: one :class:`Report` holding everything the writers print, computed once from the rows.

:func:`analyse` runs the aggregation (:mod:`~attnzoo.leaderboard.report.aggregation`), the tables and rankings
(:mod:`~attnzoo.leaderboard.report.tables`), the findings (:mod:`~attnzoo.leaderboard.report.findings`) and
every suite's score (:mod:`~attnzoo.leaderboard.report.mad`); the figure stage then adds ``figures`` and
``study_md``, and each writer turns the report into one file. Nothing here draws or writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnzoo.cell import Row
from attnzoo.leaderboard.report.aggregation import Entry, typed_rows
from attnzoo.leaderboard.report.alignment import finding_lines
from attnzoo.leaderboard.report.findings import Finding, evaluate
from attnzoo.leaderboard.report.mad import SuiteTable, suite_scores, suite_table, suites
from attnzoo.leaderboard.report.tables import Ranking, lead_summary, overall_table, provenance_summary, rankings

__all__ = ["Report", "analyse"]


@dataclass
class Report:
    """What the writers print, for one results directory.

    :ivar rows: the latest row of every cell, as typed :class:`~attnzoo.cell.Row` records.
    :ivar tasks: ``{task label: [Entry, ...]}``, ranked (:func:`~attnzoo.leaderboard.report.aggregation.aggregate`).
    :ivar overall: :func:`~attnzoo.leaderboard.report.tables.overall_table`'s headers, rows and chosen entries.
    :ivar alignment: per task label, the sentence ``findings.md`` cites from its alignment diagnostics.
    :ivar suites: one score table per task suite in the results (the MAD score for ``suite="mad"``).
    :ivar highlight: variants the HTML page marks (``bench --against``: the new ones).
    :ivar figures: figure key (``heatmap``, ``curves:<task>``, ``study:<stem>``...) -> its PNG, set by the figure stage.
    :ivar study_md: the inductive-bias study's markdown section, set by the figure stage (``[]`` without a study).
    """

    rows: list[Row]
    tasks: dict[str, list[Entry]]
    overall: tuple[list[str], list[list[str]], dict[str, dict[str, Entry]]]
    ranks: dict[str, Ranking]
    lead: str
    provenance: list[tuple[str, str]]
    findings: list[Finding]
    alignment: dict[str, str]
    suites: list[SuiteTable]
    highlight: set[str] = field(default_factory=set)
    figures: dict[str, Path] = field(default_factory=dict)
    study_md: list[str] = field(default_factory=list)

    @property
    def ranked_labels(self) -> list[str]:
        """The overall table's labels in rank order (its foot rows left out)."""
        return [r[0] for r in self.overall[1] if r[1] != ""]


def analyse(rows: Iterable[Row | Mapping[str, Any]], tasks: dict[str, list[Entry]], *,
            highlight: Sequence[str] = ()) -> Report:
    """The :class:`Report` of ``rows`` and their aggregate ``tasks`` (no figures yet).

    :param rows: typed rows (:func:`build_report` passes :mod:`attnzoo.results`'); JSON objects are read as
        Rows here, so every analysis below reads attributes.
    """
    typed = typed_rows(rows)
    overall = overall_table(tasks)
    ranks = rankings(tasks, overall[2])
    tables = [suite_table(scores, s) for s in suites(typed) if (scores := suite_scores(typed, s))]
    return Report(rows=typed, tasks=tasks, overall=overall, ranks=ranks, lead=lead_summary(tasks, ranks, overall[1]),
                  provenance=provenance_summary(typed), findings=evaluate(tasks), alignment=finding_lines(tasks),
                  suites=tables, highlight=set(highlight))
