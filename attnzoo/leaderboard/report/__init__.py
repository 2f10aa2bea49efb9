"""Tables, figures and findings from ``results.jsonl`` alone: aggregate -> analyse -> render.

:func:`build_report` (:mod:`~attnzoo.leaderboard.report.build`) writes, in the results directory:

- ``findings.md``: for each task, one sentence per contrast the task exists to show
  (:attr:`attnzoo.tasks.TaskSpec.contrasts`), with its numbers, supported or not (:mod:`.findings`);
- ``leaderboard.md`` / ``leaderboard.csv``: one table per task (variants ranked by the median over seeds of
  the task's main metric at the learning rate that was best on validation, the spread that shows every seed,
  the solved rate against the task's :attr:`~attnzoo.tasks.TaskSpec.solve_threshold`, chance, params,
  tokens/s, peak memory, length generalization) and an overall variants x tasks table whose cells say
  ``n/a: reason``, ``diverged``, ``oom`` or ``failed: reason`` where a variant has no number;
- ``heatmap.png``, ``acc_vs_speed.png``, ``curves_<task>.png``, ``attention_<task>.png`` and, when
  ``speed.csv`` is present, ``speed.png`` (:mod:`.plots`; the inductive-bias study's in :mod:`.study`);
- ``leaderboard.html``: one self-contained page (images inlined as data URIs), findings first;
- for every task suite in the results (:attr:`attnzoo.tasks.TaskSpec.suite`; the MAD tasks are ``"mad"``), a
  score table computed as MAD's (:mod:`.mad`).

The stages, one module each:

- :mod:`.aggregation`: typed rows (:class:`~attnzoo.cell.Row`, as :mod:`attnzoo.results` reads them) -> :class:`Entry`
  per (task label, backbone, variant), summarized over seeds; no stage after it reads a row as a dict;
- :mod:`.tables`, :mod:`.findings`, :mod:`.mad`, :mod:`.alignment`: analyses, format-neutral;
  :mod:`.analysis` bundles them into one :class:`~.analysis.Report`;
- :mod:`.plots`, :mod:`.study`: the figures; :mod:`.markdown`, :mod:`.csv`, :mod:`.html`: one writer per format.

Nothing here needs the harness or Lightning; matplotlib loads only when a figure is drawn.
"""

from __future__ import annotations

from attnzoo.leaderboard.report.aggregation import (NOT_OK, PEAK_MEM_NOTE, Entry, SeedSummary, aggregate, median_steps,
                                                  seed_summary, solve_threshold, steps_to_solve, task_spec)
from attnzoo.leaderboard.report.analysis import Report, analyse
from attnzoo.leaderboard.report.build import WRITERS, build_report, file_slug
from attnzoo.leaderboard.report.mad import (MADScore, SuiteTable, mad_backbone, mad_scores, mad_table, suite_scores,
                                            suite_table)
from attnzoo.leaderboard.report.tables import (AT_CHANCE, Ranking, at_chance, counts_line, format_summary, is_baseline,
                                               lead_summary, normalized, overall_table, pair_labels, rankings,
                                               task_table)

__all__ = ["Entry", "SeedSummary", "aggregate", "build_report", "overall_table", "task_table", "file_slug",
           "seed_summary", "format_summary", "solve_threshold", "steps_to_solve", "median_steps", "task_spec",
           "PEAK_MEM_NOTE", "NOT_OK", "MADScore", "SuiteTable", "mad_backbone", "mad_scores", "mad_table",
           "suite_scores", "suite_table", "Report", "analyse", "WRITERS", "Ranking", "rankings", "normalized",
           "at_chance", "is_baseline", "AT_CHANCE", "counts_line", "lead_summary", "pair_labels"]
