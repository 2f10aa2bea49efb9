"""The MAD score (Poli et al. 2024), of any task suite.

A *suite* is the set of registered tasks whose :attr:`attnzoo.tasks.TaskSpec.suite` names it (the six MAD
tasks say ``suite="mad"``; a plugin's tasks can name their own). Every suite present in the results gets a
score table computed as MAD computes its score: per task *setting* (one set of task knobs) the best run of the
learning-rate x weight-decay sweep, chosen on validation (MAD chooses on test), scores each seed's test main
metric; per task a seed's score is the mean over the settings it ran, and the suite's score of a seed the
mean over tasks. Rows of a backbone that wraps another's blocks (``bottleneck``) count under that backbone
(:func:`mad_backbone`), as MAD scores one architecture on all tasks.

Reads rows and the task registry only (no Lightning, no matplotlib).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from attnzoo.cell import Row
from attnzoo.leaderboard.report.aggregation import (_median, _num, _sibling_metric, cell_of, latest, task_spec,
                                                  typed_rows)
from attnzoo.tasks.base import NO_ATTENTION as BASELINE

__all__ = ["MADScore", "SuiteTable", "suite_of", "suite_tasks", "suites", "suite_scores", "suite_table",
           "mad_backbone", "mad_scores", "mad_table"]

#: how a suite's name is printed where it is not the name itself (MAD is an acronym)
_DISPLAY = {"mad": "MAD"}


def _display(suite: str) -> str:
    return _DISPLAY.get(suite, suite)


def _intro(suite: str) -> str:
    name = _display(suite)
    lead = "The MAD score (Poli et al. 2024)" if suite == "mad" else f"The {name} score, computed as MAD's (Poli et al. 2024)"
    return (lead + ": for each task setting the best run of the learning-rate x "
            "weight-decay sweep (chosen on validation; MAD chooses on test), its test token accuracy per seed; "
            f"per task the mean over settings, and the {name} score the mean over tasks. Each cell: the median over "
            "seeds (min–max over seeds); a seed that did not finish counts as 0.")


@dataclass
class MADScore:
    """One (backbone, variant)'s score on a suite (Poli et al. 2024): per task, the mean over the task's settings
    of the best run per setting; overall, the mean over tasks. Every figure is per seed first.

    :ivar tasks: task of the suite -> {seed: mean over settings of that seed's score at the setting's best config}.
    :ivar settings: task -> number of settings averaged.
    :ivar score: {seed: mean over the tasks this entry has} (the aggregate score per seed).
    :ivar via: task -> the backbone its rows ran on, where that is not ``backbone`` (compression on
        the encoder-bottleneck wrapper of this backbone's blocks, see :func:`mad_backbone`).
    """

    backbone: str
    variant: str
    tasks: dict[str, dict[Any, float]] = field(default_factory=dict)
    settings: dict[str, int] = field(default_factory=dict)
    score: dict[Any, float] = field(default_factory=dict)
    via: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{BASELINE} ({self.backbone})" if self.variant == BASELINE else f"{self.variant} ({self.backbone})"

    @staticmethod
    def summary(per_seed: dict[Any, float]) -> tuple[float | None, float | None, float | None]:
        """``(median, min, max)`` over seeds."""
        vals = list(per_seed.values())
        return (_median(vals), min(vals), max(vals)) if vals else (None, None, None)


@dataclass(frozen=True)
class SuiteTable:
    """A suite's score table, format-neutral: what the markdown and HTML writers print.

    :ivar anchor: the HTML id of its section (``mad`` for MAD, ``suite-<name>`` otherwise).
    """

    suite: str
    title: str
    intro: str
    anchor: str
    headers: list[str]
    rows: list[list[str]]
    notes: list[str]


def _row_task(r: Row) -> str:
    return str(r.task_name or cell_of(r).get("task") or r.task)


def suite_of(task: str | None) -> str:
    """The suite of registered task ``task`` (:attr:`TaskSpec.suite`); ``""`` for none or an unknown task."""
    spec = task_spec(task)
    return getattr(spec, "suite", "") if spec is not None else ""


def suite_tasks(suite: str) -> list[str]:
    """The registered tasks of ``suite``, in registration order (a plugin's tasks in the order it registers them:
    the table's columns)."""
    try:
        from attnzoo.tasks import task_registry

        return [name for name in task_registry.in_order() if suite_of(name) == suite]
    except Exception:  # noqa: BLE001 - a broken registry leaves the tasks the rows name
        return []


def suites(rows: Iterable[Row]) -> list[str]:
    """The suites the rows' tasks belong to, sorted."""
    return sorted({s for s in (suite_of(_row_task(r)) for r in rows) if s})


def _best_config_scores(rows: list[Row]) -> dict[Any, float]:
    """``{seed: score}`` at the (lr, weight decay) whose mean validation metric over seeds is best (a seed
    that did not finish counts 0, as in the tables); MAD takes the best of its sweep per setting."""
    by_cfg: dict[tuple[float, float], list[Row]] = {}
    for r in rows:
        cell = cell_of(r)
        key = (float(r.lr or cell.get("lr") or 0.0), float(cell.get("weight_decay") or 0.0))
        by_cfg.setdefault(key, []).append(r)

    def val(r: Row) -> float:
        if r.status != "ok":
            return 0.0
        key = _sibling_metric(r.main_metric, "val")
        v = _num((r.metrics or {}).get(key)) if key else None
        return v if v is not None else (_num(r.main_value) or 0.0)

    best = max(sorted(by_cfg), key=lambda k: (statistics.fmean(val(r) for r in by_cfg[k]), -k[0], -k[1]))
    return {r.seed: (_num(r.main_value) or 0.0) if r.status == "ok" else 0.0
            for r in by_cfg[best]}


_MAD_BACKBONE: dict[str, str] = {}


def mad_backbone(name: str) -> str:
    """The backbone a MAD row counts under: its spec's ``encoder`` when it has one, else ``name``.

    MAD trains compression with the architecture under test as the encoder of an autoencoder
    (``bottleneck`` wraps the ``transformer``'s blocks), so those rows belong to that architecture's
    MAD score, not to a row of their own. A backbone that is not registered here counts as itself.
    """
    if name not in _MAD_BACKBONE:
        try:
            from attnzoo.backbones import get_backbone

            _MAD_BACKBONE[name] = str(getattr(get_backbone(name)[0], "encoder", None) or name)
        except Exception:  # noqa: BLE001 - rows of a backbone this install lacks still get a table
            return name
    return _MAD_BACKBONE[name]


def _settings(rows: Iterable[Row], members: list[str]) -> tuple[dict[tuple[str, str, str, str], list[Row]],
                                                              dict[tuple[str, str, str], str]]:
    """Rows of the suite's tasks by (architecture, variant, task, setting), and where a row ran on a wrapper."""
    groups: dict[tuple[str, str, str, str], list[Row]] = {}
    ran_on: dict[tuple[str, str, str], str] = {}
    for r in latest(rows):
        task = _row_task(r)
        if task not in members or r.status == "n/a":
            continue
        cell = cell_of(r)
        setting = json.dumps(cell.get("task_kwargs") or {}, sort_keys=True, default=str)
        backbone = str(r.backbone or cell.get("backbone"))
        arch = mad_backbone(backbone)
        if arch != backbone:
            ran_on[(arch, str(r.variant), task)] = backbone
        groups.setdefault((arch, str(r.variant), task, setting), []).append(r)
    return groups, ran_on


def suite_scores(rows: Iterable[Row | Mapping[str, Any]], suite: str) -> list[MADScore]:
    """The score on ``suite`` of every (backbone, variant) with rows of the suite's tasks, best first (see the
    module docstring). n/a pairs are left out."""
    members = suite_tasks(suite)
    groups, ran_on = _settings(typed_rows(rows), members)
    per: dict[tuple[str, str], dict[str, list[dict[Any, float]]]] = {}
    for (backbone, variant, task, _setting), grp in groups.items():
        per.setdefault((backbone, variant), {}).setdefault(task, []).append(_best_config_scores(grp))
    out = []
    for (backbone, variant), tasks in per.items():
        s = MADScore(backbone, variant, via={t: b for (a, v, t), b in ran_on.items() if (a, v) == (backbone, variant)})
        for task in members:
            if task not in tasks:
                continue
            seeds = sorted({seed for setting in tasks[task] for seed in setting}, key=lambda x: (x is None, x))
            s.tasks[task] = {seed: statistics.fmean(st[seed] for st in tasks[task] if seed in st) for seed in seeds}
            s.settings[task] = len(tasks[task])
        seeds = sorted({seed for t in s.tasks.values() for seed in t}, key=lambda x: (x is None, x))
        s.score = {seed: statistics.fmean(t[seed] for t in s.tasks.values() if seed in t) for seed in seeds}
        out.append(s)
    out.sort(key=lambda m: (-(m.summary(m.score)[0] or 0.0), m.label))
    return out


def _cell(per_seed: dict[Any, float]) -> str:
    med, lo, hi = MADScore.summary(per_seed)
    if med is None:
        return "–"
    text = f"{med:.3f}"
    if len(per_seed) > 1:
        text += f" ({lo:.2f}–{hi:.2f})"
    return text


def _notes(scores: list[MADScore], suite: str, present: list[str], members: list[str]) -> list[str]:
    name = _display(suite)
    counts = {t: sorted({s.settings[t] for s in scores if t in s.settings}) for t in present}
    notes = ["settings averaged per task: " + ", ".join(f"{t} {'/'.join(map(str, c))}" for t, c in counts.items())]
    missing = [t for t in members if t not in present]
    if missing:
        notes.append(f"the {name} score is over {len(present)} of {name}'s {len(members)} tasks; not in these "
                     "results: " + ", ".join(missing))
    via = sorted({(t, b, s.backbone) for s in scores for t, b in s.via.items()})
    for task, ran, arch in via:
        notes.append(f"{task} ran on the {ran} backbone ({arch} blocks as the encoder of {name}'s autoencoder) "
                     f"and counts under {arch}")
    partial = [s.label for s in scores if len(s.tasks) < len(present)]
    if partial:
        notes.append("averaged over fewer tasks (some have no rows): " + ", ".join(partial))
    return notes


def suite_table(scores: list[MADScore], suite: str) -> SuiteTable:
    """Variants x the suite's tasks, plus the suite's score, with notes (settings per task, missing tasks).

    Each cell is the median over seeds of the per-seed mean over settings (min–max over seeds); the score
    column is the mean over the tasks present, with every seed's value beside it.
    """
    members = suite_tasks(suite)
    present = [t for t in members if any(t in s.tasks for s in scores)]
    headers = ["#", "variant", *present, f"{_display(suite)} score", "per seed"]
    rows = []
    for i, s in enumerate(scores, 1):
        per_seed = " / ".join(f"{v:.2f}" for _, v in sorted(s.score.items(), key=lambda kv: (kv[0] is None, kv[0])))
        rows.append([str(i), s.label, *[_cell(s.tasks[t]) if t in s.tasks else "–" for t in present],
                     _cell(s.score), per_seed])
    anchor = "mad" if suite == "mad" else "suite-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in suite)
    return SuiteTable(suite, f"{_display(suite)} score", _intro(suite), anchor, headers, rows,
                      _notes(scores, suite, present, members))


def mad_scores(rows: Iterable[Row | Mapping[str, Any]]) -> list[MADScore]:
    """:func:`suite_scores` of the MAD suite (the tasks with ``suite="mad"``: :data:`attnzoo.tasks.mad.MAD_TASKS`)."""
    return suite_scores(rows, "mad")


def mad_table(scores: list[MADScore]) -> tuple[list[str], list[list[str]], list[str]]:
    """:func:`suite_table` of the MAD suite as ``(headers, rows, notes)``."""
    t = suite_table(scores, "mad")
    return t.headers, t.rows, t.notes
