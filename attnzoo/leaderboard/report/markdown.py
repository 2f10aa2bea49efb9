"""The markdown writer: ``leaderboard.md`` and ``findings.md`` from a :class:`~attnzoo.leaderboard.report.analysis.Report`.

``leaderboard.md`` reads in this order: the answer (counts, the lead paragraph, the summary figure), provenance,
the findings, the overall table and its figures, each suite's score, then one section per task (its table,
curves, attention maps and alignment table), and the speed figure.
"""

from __future__ import annotations

from attnzoo.leaderboard import escape
from attnzoo.leaderboard.report.aggregation import PEAK_MEM_NOTE, Entry
from attnzoo.leaderboard.report.alignment import ALIGNMENT_NOTE, alignment_table
from attnzoo.leaderboard.report.analysis import Report
from attnzoo.leaderboard.report.findings import findings_markdown
from attnzoo.leaderboard.report.tables import IQM_NOTE, counts_line, fmt, is_baseline, task_table

__all__ = ["md_table", "render", "render_findings"]

_OVERALL_NOTE = ("Each cell: the task's main test metric at the learning rate that was best on "
                 "validation, for the variant's best backbone on that task (in parentheses): the median over seeds, "
                 "the min–max over seeds, and how many seeds reached the task's solve threshold. A seed that diverged "
                 "or failed counts as 0 and is named. `none (...)` rows are the baselines without attention. Cells "
                 "without a number say why (`n/a: reason`, `diverged`, `oom`, `failed: reason`).")


def md_table(headers: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured markdown table; cells escaped, ``|`` and newlines kept out of the layout."""
    esc = lambda s: escape.md(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    out = ["| " + " | ".join(esc(h) for h in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def render_findings(report: Report) -> str:
    """``findings.md``: every task's claims checked, the alignment sentences, then the study's section."""
    return (findings_markdown(report.findings, n_rows=len(report.rows), alignment=report.alignment)
            + "".join(f"\n{x}" for x in report.study_md))


def _head(report: Report) -> list[str]:
    md = ["# attnzoo leaderboard", "", f"*{escape.md(counts_line(report.tasks))}*", "", escape.md(report.lead), ""]
    if "summary" in report.figures:
        md += ["![best attention variant vs best baseline without attention, per task](summary.png)", ""]
    md += [f"- **{k}**: {escape.md(v)}" for k, v in report.provenance]
    md += ["", "## Findings", "", "From [findings.md](findings.md): each task's claims checked against these "
           "results.", ""]
    md += [f"- {escape.md(f.sentence)}" for f in report.findings]  # the claim opens with its task
    return md + ["", *report.study_md]


def _overall(report: Report) -> list[str]:
    o_headers, o_rows, _ = report.overall
    md = ["", "## Overall", "", _OVERALL_NOTE, "", f"IQM [95% CI]: {IQM_NOTE}", ""]
    md_rows = list(o_rows)
    first_base = next((i for i, r in enumerate(md_rows) if is_baseline(r[0])), None)
    if first_base is not None:
        md_rows.insert(first_base, ["**baselines without attention**"] + [""] * (len(o_headers) - 1))
    md += [md_table(o_headers, md_rows), "", "![heatmap](heatmap.png)", ""]
    md += ["![performance profiles](profile.png)", ""] if "profile" in report.figures else []
    md += ["![accuracy vs throughput](acc_vs_speed.png)", ""]
    for t in report.suites:
        md += [f"## {t.title}", "", t.intro, "", md_table(t.headers, t.rows), ""]
        md += [f"*{n}*" for n in t.notes] + [""]
    return md


def _task(report: Report, task: str, entries: list[Entry]) -> list[str]:
    headers, trows = task_table(entries)
    chance = next((e.chance for e in entries if e.chance is not None), None)
    metric = next((e.main_metric for e in entries if e.main_metric), "the main metric")
    md = [f"## {escape.md(task)}", "", f"Chance level: {fmt(chance)}. Ranked by the median of {metric} over "
          f"seeds; solved: a seed at ≥ {entries[0].threshold:g}.", "", md_table(headers, trows), ""]
    md += [f"*{PEAK_MEM_NOTE}*", ""] if any(e.peak_mem_hidden for e in entries) else []
    for kind in ("curves", "attention"):
        if f"{kind}:{task}" in report.figures:
            md += [f"![{kind} {escape.md(task)}]({report.figures[f'{kind}:{task}'].name})", ""]
    table = alignment_table(entries)
    if table is not None:
        md += [f"### {task}: alignment", "", md_table(*table), "", f"*{ALIGNMENT_NOTE}*", ""]
    return md


def render(report: Report) -> str:
    """``leaderboard.md``."""
    md = _head(report) + _overall(report)
    for task, entries in report.tasks.items():
        md += _task(report, task, entries)
    if "speed" in report.figures:
        md += ["## Speed", "", "![speed](speed.png)", ""]
    return "\n".join(md)
