"""Tables and figures from ``results.jsonl`` alone.

:func:`build_report` writes, in the results directory:

- ``findings.md``: for each task, one sentence per contrast the task exists to show
  (:attr:`attnzoo.tasks.TaskSpec.contrasts`), with its numbers, supported or not
  (:mod:`attnzoo.leaderboard.findings`);
- ``leaderboard.md`` / ``leaderboard.csv``: one table per task (variants ranked
  by the median over seeds of the task's main metric at the learning rate that
  was best on validation, the spread that shows every seed, the solved rate
  against the task's :attr:`~attnzoo.tasks.TaskSpec.solve_threshold`, chance,
  params, tokens/s, peak memory, length generalization) and an overall variants x
  tasks table whose cells say ``n/a: reason``, ``diverged``, ``oom`` or
  ``failed: reason`` where a variant has no number;
- ``heatmap.png``, ``acc_vs_speed.png``, ``curves_<task>.png``,
  ``attention_<task>.png`` and, when ``speed.csv`` is present, ``speed.png``
  (:mod:`attnzoo.leaderboard.plots`);
- ``leaderboard.html``: one self-contained page (images inlined as data URIs),
  findings first, with a table of contents;
- whenever rows of MAD tasks are present, a **MAD score** table in both (:func:`mad_scores`,
  :func:`mad_table`): variants x MAD tasks, each the mean over the task's settings of the best run
  per setting, and the MAD score, the mean over tasks, with every seed and the spread.

**Summaries over seeds.** A seed that diverged, failed or ran out of memory at the
chosen learning rate scored nothing: it counts as 0 in the median and the spread
(so a variant that diverges on two seeds of three cannot rank on its third), is
named in the per-seed list, and is never solved. An entry none of whose seeds
produced a number reads as its status (``diverged``, ``oom``, ``failed: ...``),
never as ``0.000``.

Nothing here needs the harness or Lightning; the task registry is read (if it
loads) only for the solve thresholds and contrasts.
"""

from __future__ import annotations

import csv
import html
import json
import math
import re
import statistics
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnzoo.leaderboard.findings import VERDICTS as VERDICT_ORDER
from attnzoo.leaderboard.findings import Finding, evaluate, findings_markdown, task_spec
from attnzoo.leaderboard.grid import BASELINE
from attnzoo.leaderboard import escape
from attnzoo.leaderboard.store import latest_rows, one_config, read_rows
from attnzoo.tasks.base import DEFAULT_SOLVE_THRESHOLD
from attnzoo.tasks.mad import MAD_TASKS

__all__ = ["Entry", "aggregate", "build_report", "overall_table", "task_table", "file_slug", "seed_summary",
           "format_summary", "solve_threshold", "PEAK_MEM_NOTE", "MADScore", "mad_backbone", "mad_scores", "mad_table"]

#: statuses of a run that produced no number
NOT_OK = ("diverged", "oom", "failed")

#: printed under a table whose peak-memory column was left empty for CPU rows
PEAK_MEM_NOTE = ("peak MB is left empty for CPU cells: the harness can only see a worker process's resident-set "
                 "growth there, which in a reused worker is not the cell's own peak (it read 0.0 for one cell and "
                 "12.3 for its neighbour); CUDA cells show torch.cuda.max_memory_allocated.")


# -- aggregation -------------------------------------------------------------------
def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def _median(xs: Iterable[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return statistics.median(vals) if vals else None


def _mean_std(xs: Sequence[float]) -> tuple[float | None, float | None]:
    if not xs:
        return None, None
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def _sibling_metric(main_metric: str | None, split: str) -> str | None:
    """``test/exact_acc`` -> ``val/exact_acc`` (split="val") or ``test_long/exact_acc``."""
    if not main_metric or "/" not in main_metric:
        return None
    return f"{split}/{main_metric.split('/', 1)[1]}"


def solve_threshold(task_name: str | None, rows: Sequence[dict[str, Any]] = ()) -> float:
    """The main-metric level at which a seed counts as solved: a row's own ``solve_threshold``
    (rows written by a harness that records it), else the registered task's
    :attr:`~attnzoo.tasks.TaskSpec.solve_threshold`, else :data:`DEFAULT_SOLVE_THRESHOLD`
    (a plugin task that is not installed where the report is built)."""
    for r in rows:
        t = _num(r.get("solve_threshold"))
        if t is not None:
            return t
    spec = task_spec(task_name)
    return float(spec.solve_threshold) if spec is not None else DEFAULT_SOLVE_THRESHOLD


def _peak_mb(row: dict[str, Any]) -> float | None:
    """The cell's own peak memory, or None where the row's figure is not one (CPU rows; see PEAK_MEM_NOTE)."""
    value = _num(row.get("peak_mem_mb"))
    kind = row.get("peak_mem_kind")
    if isinstance(kind, str):
        return value if kind.startswith("cuda") else None
    device = str((row.get("provenance") or {}).get("device") or "")
    return value if device.startswith("cuda") else None


def steps_to_solve(curve: Sequence[Any], threshold: float) -> int | None:
    """The first step of ``curve`` (a row's ``[[step, train loss, val main metric], ...]``) at which the
    validation main metric reached ``threshold``; None when it never did (censored: "not by max_steps")."""
    for point in curve or ():
        if isinstance(point, (list, tuple)) and len(point) >= 3:
            step, value = _num(point[0]), _num(point[2])
            if step is not None and value is not None and value >= threshold - 1e-12:
                return int(step)
    return None


def _row_max_steps(row: dict[str, Any]) -> int | None:
    cell = row.get("cell") if isinstance(row.get("cell"), dict) else {}
    steps = _num(cell.get("max_steps")) or _num(row.get("steps"))
    return int(steps) if steps else None


def median_steps(steps: Sequence[int | None]) -> float | None:
    """The median of steps-to-solve where a censored seed (None: never solved) counts as later than any
    step: None when the median itself is censored (half or more of the seeds never solved)."""
    if not steps:
        return None
    inf = math.inf
    m = statistics.median(sorted(inf if s is None else float(s) for s in steps))
    return None if m == inf else m


@dataclass
class SeedSummary:
    """One metric over the seeds of an entry at its chosen learning rate.

    ``scores[i]`` is seed ``i``'s value, 0.0 for a seed that did not finish (``status[i]``
    says why); median, ``lo``/``hi`` (min/max) are over ``scores``; ``solved`` counts the
    seeds whose value reached ``threshold`` (None: no threshold for this metric).
    """

    seeds: list[Any]
    status: list[str]
    values: list[float | None]       # None where the seed has no value (did not finish, or no such split)
    scores: list[float]              # values with 0.0 for seeds that did not finish
    median: float | None
    lo: float | None
    hi: float | None
    threshold: float | None
    solved: int
    #: per seed, the first step whose validation main metric reached the threshold (None: never; censored)
    steps: list[int | None] = field(default_factory=list)
    #: the budget the steps are censored at (the cells' ``max_steps``)
    max_steps: int | None = None

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def bad(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.status:
            if s != "ok":
                out[s] = out.get(s, 0) + 1
        return out

    @property
    def finished(self) -> int:
        return sum(s == "ok" for s in self.status)

    def per_seed(self, digits: int = 2) -> str:
        """``0.25 / 1.00 / diverged``: every seed, in seed order."""
        return " / ".join(s if s != "ok" else ("–" if v is None else f"{v:.{digits}f}")
                          for s, v in zip(self.status, self.values))

    def solved_text(self) -> str:
        return "–" if self.threshold is None else f"{self.solved}/{self.n} solved"

    @property
    def median_steps(self) -> float | None:
        """Median steps-to-solve over seeds (:func:`median_steps`); None when censored or not computed."""
        return median_steps(self.steps)

    def steps_text(self) -> str:
        """``by step 350`` (the median over seeds of the first validation step at the threshold), or
        ``not by step 400`` when half or more of the seeds never got there (censored at the budget); empty when no
        seed ever did (the solved rate says so) or nothing was computed."""
        if all(s is None for s in self.steps):
            return ""
        m = self.median_steps
        if m is not None:
            return f"by step {m:.0f}"
        return f"not by step {self.max_steps}" if self.max_steps else "never"


def seed_summary(rows: Sequence[dict[str, Any]], key: str | None, threshold: float | None) -> SeedSummary | None:
    """:class:`SeedSummary` of metric ``key`` (``None``: the row's ``main_value``) over ``rows`` (one per seed).

    :returns: None when no finished seed has the metric at all (e.g. ``test_long`` of a
        fixed-length model, which cannot run at another length).
    """
    seeds, status, values = [], [], []
    for r in rows:
        st = str(r.get("status"))
        seeds.append(r.get("seed"))
        status.append(st)
        if st != "ok":
            values.append(None)
            continue
        v = _num(r.get("main_value")) if key is None else _num((r.get("metrics") or {}).get(key))
        values.append(v)
    if "ok" in status and all(v is None for v in values):
        return None  # the seeds that finished have no such metric; those that did not cannot say either
    scores = [(v if v is not None else 0.0) if s == "ok" else 0.0 for v, s in zip(values, status)]
    # a finished seed without the metric (a split it cannot run) is left out, not scored 0
    counted = [sc for sc, v, s in zip(scores, values, status) if s != "ok" or v is not None]
    solved = sum(1 for v in values if v is not None and threshold is not None and v >= threshold - 1e-12)
    steps: list[int | None] = []
    if key is None and threshold is not None:  # steps-to-solve: the main metric's validation curve
        steps = [steps_to_solve(r.get("curve") or [], threshold) if s == "ok" else None for r, s in zip(rows, status)]
    budgets = [b for b in (_row_max_steps(r) for r in rows) if b is not None]
    return SeedSummary(seeds, status, values, scores, _median(counted), min(counted) if counted else None,
                       max(counted) if counted else None, threshold, solved, steps,
                       max(budgets) if budgets else None)


def format_summary(s: SeedSummary | None, digits: int = 3) -> str:
    """``0.905 (0.90–0.91), 2/2 solved`` (spread only with more than one seed; ``, 1 diverged`` when one did)."""
    if s is None or s.median is None:
        return "–"
    text = f"{s.median:.{digits}f}"
    if s.n > 1:
        text += f" ({s.lo:.2f}–{s.hi:.2f})"
    if s.threshold is not None:
        text += f", {s.solved}/{s.n} solved"
        text += f" ({s.steps_text()})" if s.steps_text() else ""
    if s.bad:
        text += ", " + ", ".join(f"{n} {st}" for st, n in sorted(s.bad.items()))
    return text


@dataclass
class Entry:
    """One (task, backbone, variant) of the leaderboard, over its seeds at the best learning rate."""

    task: str
    backbone: str                      # the backbone label: its name, plus the kwargs that tell apart two
    variant: str                       # entries of one backbone on one task (``transformer (num_layers=1)``)
    status: str = "ok"                 # ok | n/a | diverged | oom | failed (no seed at the best lr finished)
    reason: str | None = None          # n/a reason or the first error
    main_metric: str | None = None
    task_name: str | None = None       # the registered task (a preset label may differ)
    backbone_name: str | None = None   # the registered backbone
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    threshold: float = DEFAULT_SOLVE_THRESHOLD
    summary: SeedSummary | None = None        # main test metric over seeds
    long_summary: SeedSummary | None = None   # the same metric on test_long (None: no such split)
    values: list[float] = field(default_factory=list)   # main metric per seed at the best lr (0 if unfinished)
    mean: float | None = None
    std: float | None = None
    median: float | None = None
    val_mean: float | None = None
    best_lr: float | None = None
    lrs: list[float] = field(default_factory=list)
    long_mean: float | None = None
    chance: float | None = None
    params: float | None = None
    tokens_per_s: float | None = None
    peak_mem_mb: float | None = None
    peak_mem_hidden: bool = False      # a CPU figure was left out (see PEAK_MEM_NOTE)
    train_time_s: float | None = None
    notes: str = ""
    rows: list[dict[str, Any]] = field(default_factory=list)  # rows at the best lr, by seed

    @property
    def label(self) -> str:
        """Row label in the overall table: the variant, or ``none (backbone)`` for baselines."""
        return f"{BASELINE} ({self.backbone})" if self.variant == BASELINE else self.variant

    @property
    def name(self) -> str:
        return f"{self.variant} [{self.backbone}]"

    @property
    def solved(self) -> int:
        return self.summary.solved if self.summary else 0

    @property
    def n_seeds(self) -> int:
        return self.summary.n if self.summary else 0

    @property
    def has_number(self) -> bool:
        return self.status == "ok" and self.median is not None

    def sort_key(self) -> tuple[Any, ...]:
        """Rank: entries with a number first, by median, then solved rate, then mean."""
        order = {"ok": 0, "n/a": 2}.get(self.status, 1)
        frac = self.solved / self.n_seeds if self.n_seeds else 0.0
        return (order, -(self.median if self.median is not None else -1.0), -frac,
                -(self.mean if self.mean is not None else -1.0), self.variant, self.backbone)

    def status_text(self) -> str:
        """What a cell without a number says: ``n/a: reason``, ``diverged (3/3 seeds)``, ``failed: reason``."""
        if self.status == "n/a":
            return f"n/a: {self.reason}"
        if self.status in ("diverged", "oom"):
            n = self.summary.n if self.summary else 0
            return f"{self.status} ({n}/{n} seeds)" if n else self.status
        return f"failed: {self.reason}" if self.reason else "failed"


def _first_error(rows: Sequence[dict[str, Any]]) -> str:
    first = next((r for r in rows if r.get("error")), rows[0])
    lines = str(first.get("error") or "").strip().splitlines()
    # the last traceback line names the exception; a plain message is one line anyway
    message = (lines[-1] if lines else "")[:160]
    kind = str(first.get("status"))
    return message if kind == "failed" and message else f"{kind}: {message}".rstrip(": ")


def _entry(task: str, backbone: str, variant: str, rows: list[dict[str, Any]]) -> Entry:
    e = Entry(task, backbone, variant)
    first = rows[0]
    cell = first.get("cell") if isinstance(first.get("cell"), dict) else {}
    e.task_name = str(first.get("task_name") or cell.get("task") or task)
    e.backbone_name = str(cell.get("backbone") or first.get("backbone") or backbone)
    e.backbone_kwargs = dict(cell.get("backbone_kwargs") or {})
    e.threshold = solve_threshold(e.task_name, rows)
    na = [r for r in rows if r.get("status") == "n/a"]
    runs = [r for r in rows if r.get("status") != "n/a"]
    e.chance = _median(_num(r.get("chance")) for r in rows)
    if not runs:
        e.status, e.reason = "n/a", (na[0].get("error") if na else None) or "does not fit"
        return e
    e.main_metric = next((r.get("main_metric") for r in runs if r.get("main_metric")), None)
    val_key = _sibling_metric(e.main_metric, "val")
    by_lr: dict[float, list[dict[str, Any]]] = {}
    for r in runs:
        by_lr.setdefault(float(r.get("lr") or 0.0), []).append(r)
    e.lrs = sorted(by_lr)

    def score(lr: float) -> tuple[float, float]:
        # mean validation metric over seeds; a failed or diverged seed counts as 0
        vals = []
        for r in by_lr[lr]:
            v = _num((r.get("metrics") or {}).get(val_key)) if val_key else None
            if v is None:
                v = _num(r.get("main_value")) if val_key is None else None
            vals.append(v if (r.get("status") == "ok" and v is not None) else 0.0)
        ok = sum(r.get("status") == "ok" for r in by_lr[lr])
        return (statistics.fmean(vals) if vals else 0.0, ok)

    best = max(e.lrs, key=lambda lr: (score(lr), -lr))
    chosen = sorted(by_lr[best], key=lambda r: (r.get("seed") is None, r.get("seed")))
    ok_rows = [r for r in chosen if r.get("status") == "ok"]
    e.best_lr = best
    e.rows = chosen
    e.summary = seed_summary(chosen, None, e.threshold)
    if not ok_rows:
        statuses = {str(r.get("status")) for r in chosen}
        e.status = statuses.pop() if len(statuses) == 1 and statuses <= {"diverged", "oom"} else "failed"
        e.reason = _first_error(chosen)
    if e.summary is not None:
        e.values = list(e.summary.scores)
        e.median = e.summary.median if ok_rows else None
    e.mean, e.std = _mean_std(e.values)
    if not ok_rows:
        e.mean = e.std = None  # nothing finished: no number to show, the status says what happened
    if val_key:
        e.val_mean = _median(_num((r.get("metrics") or {}).get(val_key)) for r in ok_rows)
    long_key = _sibling_metric(e.main_metric, "test_long")
    if long_key and ok_rows:
        e.long_summary = seed_summary(chosen, long_key, e.threshold)
        longs = [v for v in (_num((r.get("metrics") or {}).get(long_key)) for r in ok_rows) if v is not None]
        e.long_mean = statistics.fmean(longs) if longs else None
    e.params = _median(_num(r.get("params")) for r in runs)
    e.tokens_per_s = _median(_num(r.get("tokens_per_s")) for r in ok_rows)
    e.peak_mem_mb = _median(_peak_mb(r) for r in ok_rows)
    e.peak_mem_hidden = any(_peak_mb(r) is None for r in ok_rows)
    e.train_time_s = _median(_num(r.get("train_time_s")) for r in ok_rows)
    notes = []
    for lr in e.lrs:
        bad: dict[str, int] = {}
        for r in by_lr[lr]:
            if r.get("status") != "ok":
                bad[str(r.get("status"))] = bad.get(str(r.get("status")), 0) + 1
        if bad:
            notes.append(f"lr {lr:g}: " + ", ".join(f"{n} {s}" for s, n in sorted(bad.items())))
    e.notes = "; ".join(notes)
    return e


def _kwargs_key(row: dict[str, Any]) -> str:
    cell = row.get("cell") if isinstance(row.get("cell"), dict) else {}
    return json.dumps(cell.get("backbone_kwargs") or {}, sort_keys=True, default=str)


def _backbone_labels(keys: Iterable[tuple[str, str, str]]) -> dict[tuple[str, str, str], str]:
    """``(task, backbone, kwargs-json) -> label``: the backbone's name, plus the kwargs that differ where one
    task runs one backbone with several settings (a 1- and a 2-layer Transformer)."""
    by_pair: dict[tuple[str, str], list[str]] = {}
    for task, backbone, kw in keys:
        by_pair.setdefault((task, backbone), [])
        if kw not in by_pair[(task, backbone)]:
            by_pair[(task, backbone)].append(kw)
    labels = {}
    for (task, backbone), kws in by_pair.items():
        if len(kws) == 1:
            labels[(task, backbone, kws[0])] = backbone
            continue
        dicts = [json.loads(k) for k in kws]
        differ = sorted({k for d in dicts for k in d if any(d.get(k) != o.get(k) for o in dicts)})
        for kw, d in zip(kws, dicts):
            labels[(task, backbone, kw)] = f"{backbone} ({', '.join(f'{k}={d.get(k)}' for k in differ)})"
    return labels


def aggregate(rows: Iterable[dict[str, Any]]) -> dict[str, list[Entry]]:
    """``{task: [Entry, ...]}`` ranked by the median (n/a and unfinished last), tasks in first-seen order."""
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    task_order: list[str] = []
    for r in latest_rows(rows):
        key = (str(r.get("task")), str(r.get("backbone")), str(r.get("variant")), _kwargs_key(r))
        groups.setdefault(key, []).append(r)
        if key[0] not in task_order:
            task_order.append(key[0])
    labels = _backbone_labels((t, b, kw) for t, b, _, kw in groups)
    out: dict[str, list[Entry]] = {t: [] for t in task_order}
    for (task, backbone, variant, kw), grp in groups.items():
        out[task].append(_entry(task, labels[(task, backbone, kw)], variant, grp))
    for entries in out.values():
        entries.sort(key=Entry.sort_key)
    return out


# -- the MAD score ----------------------------------------------------------------------------
@dataclass
class MADScore:
    """One (backbone, variant)'s MAD score (Poli et al. 2024): per task, the mean over the task's settings
    of the best run per setting; overall, the mean over tasks. Every figure is per seed first.

    :ivar tasks: MAD task -> {seed: mean over settings of that seed's score at the setting's best config}.
    :ivar settings: MAD task -> number of settings averaged.
    :ivar score: {seed: mean over the tasks this entry has} (the aggregate MAD score per seed).
    :ivar via: MAD task -> the backbone its rows ran on, where that is not ``backbone`` (compression on
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


def _row_task(r: dict[str, Any]) -> str:
    cell = r.get("cell") if isinstance(r.get("cell"), dict) else {}
    return str(r.get("task_name") or cell.get("task") or r.get("task"))


def _best_config_scores(rows: list[dict[str, Any]]) -> dict[Any, float]:
    """``{seed: score}`` at the (lr, weight decay) whose mean validation metric over seeds is best (a seed
    that did not finish counts 0, as in the tables); MAD takes the best of its sweep per setting."""
    by_cfg: dict[tuple[float, float], list[dict[str, Any]]] = {}
    for r in rows:
        cell = r.get("cell") if isinstance(r.get("cell"), dict) else {}
        key = (float(r.get("lr") or cell.get("lr") or 0.0), float(cell.get("weight_decay") or 0.0))
        by_cfg.setdefault(key, []).append(r)

    def val(r: dict[str, Any]) -> float:
        if r.get("status") != "ok":
            return 0.0
        key = _sibling_metric(r.get("main_metric"), "val")
        v = _num((r.get("metrics") or {}).get(key)) if key else None
        return v if v is not None else (_num(r.get("main_value")) or 0.0)

    best = max(sorted(by_cfg), key=lambda k: (statistics.fmean(val(r) for r in by_cfg[k]), -k[0], -k[1]))
    return {r.get("seed"): (_num(r.get("main_value")) or 0.0) if r.get("status") == "ok" else 0.0
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


def mad_scores(rows: Iterable[dict[str, Any]]) -> list[MADScore]:
    """The MAD score of every (backbone, variant) with rows of MAD tasks (:data:`attnzoo.tasks.mad.MAD_TASKS`),
    best first.

    A *setting* is one set of task knobs (whatever the preset calls its label); within it the best
    (lr, weight decay) is chosen on validation (MAD chooses on test), and each seed scores its test
    main metric there. Per task, a seed's score is the mean over the settings it ran; the MAD score of a
    seed is the mean over tasks. n/a pairs are left out. Rows of a backbone that wraps another's blocks
    (``bottleneck``) count under that backbone (:func:`mad_backbone`), as MAD scores one architecture on all tasks.
    """
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    ran_on: dict[tuple[str, str, str], str] = {}
    for r in latest_rows(rows):
        task = _row_task(r)
        if task not in MAD_TASKS or r.get("status") == "n/a":
            continue
        cell = r.get("cell") if isinstance(r.get("cell"), dict) else {}
        setting = json.dumps(cell.get("task_kwargs") or {}, sort_keys=True, default=str)
        backbone = str(r.get("backbone") or cell.get("backbone"))
        arch = mad_backbone(backbone)
        if arch != backbone:
            ran_on[(arch, str(r.get("variant")), task)] = backbone
        key = (arch, str(r.get("variant")), task, setting)
        groups.setdefault(key, []).append(r)
    per: dict[tuple[str, str], dict[str, list[dict[Any, float]]]] = {}
    for (backbone, variant, task, _setting), grp in groups.items():
        per.setdefault((backbone, variant), {}).setdefault(task, []).append(_best_config_scores(grp))
    out = []
    for (backbone, variant), tasks in per.items():
        s = MADScore(backbone, variant, via={t: b for (a, v, t), b in ran_on.items() if (a, v) == (backbone, variant)})
        for task in MAD_TASKS:
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


def _mad_cell(per_seed: dict[Any, float]) -> str:
    med, lo, hi = MADScore.summary(per_seed)
    if med is None:
        return "–"
    text = f"{med:.3f}"
    if len(per_seed) > 1:
        text += f" ({lo:.2f}–{hi:.2f})"
    return text


def mad_table(scores: list[MADScore]) -> tuple[list[str], list[list[str]], list[str]]:
    """Variants x MAD tasks, plus the MAD score: headers, rows and notes (settings per task, missing tasks).

    Each cell is the median over seeds of the per-seed mean over settings (min–max over seeds); the last
    column is the MAD score (mean over the tasks present), with every seed's value.
    """
    present = [t for t in MAD_TASKS if any(t in s.tasks for s in scores)]
    headers = ["#", "variant", *present, "MAD score", "per seed"]
    rows = []
    for i, s in enumerate(scores, 1):
        per_seed = " / ".join(f"{v:.2f}" for _, v in sorted(s.score.items(), key=lambda kv: (kv[0] is None, kv[0])))
        rows.append([str(i), s.label, *[_mad_cell(s.tasks[t]) if t in s.tasks else "–" for t in present],
                     _mad_cell(s.score), per_seed])
    notes = []
    counts = {t: sorted({s.settings[t] for s in scores if t in s.settings}) for t in present}
    notes.append("settings averaged per task: " + ", ".join(f"{t} {'/'.join(map(str, c))}" for t, c in counts.items()))
    missing = [t for t in MAD_TASKS if t not in present]
    if missing:
        notes.append(f"the MAD score is over {len(present)} of MAD's {len(MAD_TASKS)} tasks; not in these results: "
                     + ", ".join(missing))
    via = sorted({(t, b, s.backbone) for s in scores for t, b in s.via.items()})
    for task, ran, arch in via:
        notes.append(f"{task} ran on the {ran} backbone ({arch} blocks as the encoder of MAD's autoencoder) "
                     f"and counts under {arch}")
    partial = [s.label for s in scores if len(s.tasks) < len(present)]
    if partial:
        notes.append("averaged over fewer tasks (some have no rows): " + ", ".join(partial))
    return headers, rows, notes


_MAD_INTRO = ("The MAD score (Poli et al. 2024): for each task setting the best run of the learning-rate x "
              "weight-decay sweep (chosen on validation; MAD chooses on test), its test token accuracy per seed; "
              "per task the mean over settings, and the MAD score the mean over tasks. Each cell: the median over "
              "seeds (min–max over seeds); a seed that did not finish counts as 0.")


# -- tables ------------------------------------------------------------------------------
def _fmt(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _fmt_int(x: float | None) -> str:
    if x is None:
        return "–"
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e4:
        return f"{x / 1e3:.1f}k"
    return f"{x:.0f}"


def _spread(e: Entry) -> str:
    s = e.summary
    if s is None or s.lo is None:
        return "–"
    return f"{s.lo:.2f}–{s.hi:.2f}"


def _steps_cell(s: SeedSummary | None) -> str:
    """``350 (300 / 350 / >400)``: the median steps-to-solve over seeds, then every seed's (``>N``: censored)."""
    if s is None or not s.steps:
        return "–"
    per = " / ".join(f">{s.max_steps}" if x is None else str(x) for x in s.steps)
    m = s.median_steps
    return f"{m:.0f} ({per})" if m is not None else f">{s.max_steps} ({per})"


def task_table(entries: list[Entry]) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of one task's table, ranked by the median over seeds; an entry whose median is at chance
    level (:func:`at_chance`) reads ``at chance`` in the rank column, as its place among the others is noise.

    Columns: rank, variant, backbone, median, min–max, every seed's value (in seed
    order; ``diverged`` / ``oom`` / ``failed`` for a seed that did not finish), the
    solved rate at the task's threshold, steps to solve (median and per seed, ``>N``
    censored at the budget), best lr, [test_long median], chance, params,
    tokens/s, peak MB (empty for CPU rows: :data:`PEAK_MEM_NOTE`), train s, notes.
    """
    metric = next((e.main_metric for e in entries if e.main_metric), "main")
    threshold = next((e.threshold for e in entries), DEFAULT_SOLVE_THRESHOLD)
    has_long = any(e.long_summary is not None for e in entries)
    headers = ["#", "variant", "backbone", f"{metric} median", "min–max", "per seed", f"solved (≥ {threshold:g})",
               "steps to solve", "best lr"]
    headers += ["test_long median"] if has_long else []
    headers += ["chance", "params", "tokens/s", "peak MB", "train s", "notes"]
    rows = []
    rank = 0
    for e in entries:
        if e.has_number:
            rank += 1
            s = e.summary
            r = ["at chance" if at_chance(e) else str(rank), e.variant, e.backbone, _fmt(e.median), _spread(e),
                 s.per_seed() if s else "–",
                 s.solved_text() if s else "–", _steps_cell(s), f"{e.best_lr:g}" if e.best_lr is not None else "–"]
            r += [format_summary(e.long_summary, 2) if e.long_summary else "–"] if has_long else []
            r += [_fmt(e.chance), _fmt_int(e.params), _fmt_int(e.tokens_per_s), _fmt(e.peak_mem_mb, 1),
                  _fmt(e.train_time_s, 1), e.notes]
        else:
            s = e.summary
            r = ["–", e.variant, e.backbone, e.status_text(), "–", s.per_seed() if s else "–",
                 s.solved_text() if s else "–", "–", f"{e.best_lr:g}" if e.best_lr is not None else "–"]
            r += ["–"] if has_long else []
            r += [_fmt(e.chance), _fmt_int(e.params), "–", "–", "–", e.notes]
        rows.append(r)
    return headers, rows


def _cell_text(e: Entry) -> str:
    """An overall-table cell: ``1.000 (0.25–1.00), 2/3 solved (seq2seq)``, or the status of an entry without a
    number."""
    if not e.has_number:
        return e.status_text() + (f" ({e.backbone})" if e.variant != BASELINE else "")
    return format_summary(e.summary) + (f" ({e.backbone})" if e.variant != BASELINE else "")


#: a normalized median ``(median - chance) / (1 - chance)`` below this reads "at chance", not as a rank: within
#: a tenth of the way from chance to a perfect score, where the order among entries is the seeds' noise
AT_CHANCE = 0.1


def normalized(e: Entry, value: float | None = None) -> float | None:
    """``(value - chance) / (1 - chance)`` of the entry (default its median); the value itself when the task's
    chance level is unknown."""
    from attnzoo.leaderboard.stats import normalize

    v = e.median if value is None else value
    if v is None:
        return None
    chance = e.chance if e.chance is not None and 0.0 <= e.chance < 1.0 else None
    return normalize(v, chance)


def at_chance(e: Entry) -> bool:
    """Whether the entry's median is at chance level (:data:`AT_CHANCE`): it ranks as "at chance"."""
    n = normalized(e)
    return n is not None and n < AT_CHANCE


def is_baseline(label: str) -> bool:
    """Whether an overall-table label is a baseline without attention (``none (mlp)``)."""
    return label == BASELINE or label.startswith(f"{BASELINE} (")


@dataclass
class Ranking:
    """One overall-table label's standing across tasks (Agarwal et al. 2021): the interquartile mean of its
    normalized per-seed scores over every task it has a number on, with a 95% stratified bootstrap interval.

    :ivar runs: task label -> the normalized score of each seed of the label's best backbone there (a seed that
        did not finish counts as a raw 0).
    """

    label: str
    runs: dict[str, list[float]]
    iqm: Any = None  # stats.Interval, or None without runs

    @property
    def baseline(self) -> bool:
        return is_baseline(self.label)

    def text(self) -> str:
        """``0.83 [0.71, 0.92]`` or ``–``."""
        return self.iqm.text() if self.iqm is not None else "–"


def rankings(tasks: dict[str, list[Entry]], chosen: dict[str, dict[str, Entry]]) -> dict[str, Ranking]:
    """:class:`Ranking` per label of ``chosen`` (:func:`overall_table`'s best backbone per task), the bootstrap
    seeded (:data:`attnzoo.leaderboard.stats.BOOTSTRAP_SEED`) so two reports agree to the digit."""
    from attnzoo.leaderboard.stats import stratified_bootstrap_ci

    out = {}
    for lab, by_task in chosen.items():
        runs = {t: [x for x in (normalized(e, v) for v in e.values) if x is not None]
                for t, e in by_task.items() if e.values}
        runs = {t: r for t, r in runs.items() if r}
        out[lab] = Ranking(lab, runs, stratified_bootstrap_ci(list(runs.values())) if runs else None)
    return out


def overall_table(tasks: dict[str, list[Entry]]) -> tuple[list[str], list[list[str]], dict[str, dict[str, Entry]]]:
    """Variants x tasks: each cell the variant's best backbone on that task (by median), or why there is no number.

    Rows: the attention variants ranked by the IQM of their normalized scores over tasks and seeds (with its 95%
    stratified bootstrap interval, :func:`rankings`; ties: tasks solved), then the baselines without attention
    (``none (...)``) ranked the same way in a band of their own, so "what attention buys" reads at a glance.
    The IQM is over the tasks a label has a number on (the "tasks solved" column says how many); a variant with
    a number on fewer than half as many labels as the widest (a specialist backbone's only variant) ranks after
    those measured across the board.

    :returns: headers, rows, and the chosen :class:`Entry` per (label, task).
    """
    chosen: dict[str, dict[str, Entry]] = {}
    others: dict[str, dict[str, list[Entry]]] = {}
    for task, entries in tasks.items():
        for e in entries:
            if not e.has_number:
                others.setdefault(e.label, {}).setdefault(task, []).append(e)
                continue
            cur = chosen.setdefault(e.label, {}).get(task)
            if cur is None or e.sort_key() < cur.sort_key():
                chosen[e.label][task] = e
    ranks = rankings(tasks, chosen)

    def n_solved(lab: str) -> int:
        return sum(1 for e in chosen.get(lab, {}).values() if e.median is not None and e.median >= e.threshold)

    widest = max((len(r.runs) for r in ranks.values() if not r.baseline), default=0)

    def rank(lab: str) -> tuple[Any, ...]:
        r = ranks.get(lab)
        # a specialist that fits fewer than half the labels (the pointer network, the NTM) would top an IQM over
        # its one task; it ranks after the variants measured across the board
        specialist = r is None or 2 * len(r.runs) < widest
        return (is_baseline(lab), specialist, -(r.iqm.value if r is not None and r.iqm is not None else -math.inf),
                -n_solved(lab), lab)

    labels = sorted(set(chosen) | set(others), key=rank)
    headers = ["variant", "IQM [95% CI]", "tasks solved", *tasks]
    rows = []
    for lab in labels:
        mine = list(chosen.get(lab, {}).values())
        r = [lab, ranks[lab].text() if lab in ranks else "–", f"{n_solved(lab)} of {len(mine)}" if mine else "–"]
        for task in tasks:
            e = chosen.get(lab, {}).get(task)
            if e is not None:
                r.append(_cell_text(e))
            elif task in others.get(lab, {}):
                r.append(_why_not(others[lab][task]))
            else:
                r.append("–")
        rows.append(r)
    rows.append(["chance", "", ""] + [_fmt(next((e.chance for e in tasks[t] if e.chance is not None), None))
                                      for t in tasks])
    rows.append(["solved at ≥", "", ""] + [f"{next((e.threshold for e in tasks[t]), DEFAULT_SOLVE_THRESHOLD):g}"
                                           for t in tasks])
    return headers, rows, chosen


def _why_not(entries: list[Entry]) -> str:
    """Why a variant has no number on a task: its runs' status (diverged / oom / failed: reason) if any ran,
    else ``n/a: reason``, grouped by reason with the backbones."""
    ran = [e for e in entries if e.status != "n/a"]
    shown = ran or entries
    by_text: dict[str, list[str]] = {}
    for e in shown:
        by_text.setdefault(e.status_text(), []).append(e.backbone)
    parts = []
    for text, backbones in by_text.items():
        where = f" ({', '.join(sorted(backbones))})" if shown[0].variant != BASELINE else ""
        parts.append(f"{text}{where}")
    return "; ".join(parts)


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    esc = lambda s: escape.md(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    out = ["| " + " | ".join(esc(h) for h in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


_STATUS_PREFIXES = ("n/a", "failed", "diverged", "oom")


def _html_table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = []
    for r in rows:
        cells = []
        for c in r:
            text = str(c)
            cls = ""
            if text.startswith(_STATUS_PREFIXES):
                cls = f' class="na {text.split(":")[0].split(" ")[0].replace("/", "")}"'
            cells.append(f"<td{cls}>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def file_slug(name: str) -> str:
    """A task label as a file-name piece: ``associative-recall`` stays, odd characters become ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "task"


# -- the report -----------------------------------------------------------------------------
_CSV_FIELDS = ["task", "rank", "variant", "backbone", "status", "reason", "main_metric", "median", "min", "max",
               "per_seed", "solved", "n_seeds", "solve_threshold", "steps_to_solve", "steps_per_seed", "max_steps", "mean", "std", "values", "best_lr", "lrs",
               "val_mean", "length_gen", "length_gen_median", "chance", "params", "tokens_per_s", "peak_mem_mb",
               "train_time_s", "notes"]


def _provenance_summary(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    ran = [r for r in rows if r.get("status") != "n/a"]
    prov = [r.get("provenance") or {} for r in ran]

    def values(key: str, src: list[dict[str, Any]]) -> str:
        vals = sorted({str(p.get(key)) for p in src if p.get(key) is not None})
        return ", ".join(vals) if vals else "–"

    statuses: dict[str, int] = {}
    for r in rows:
        statuses[str(r.get("status"))] = statuses.get(str(r.get("status")), 0) + 1
    total_train = sum(_num(r.get("train_time_s")) or 0.0 for r in ran)
    total_cpu = sum(_num(p.get("cpu_s")) or 0.0 for p in prov)
    stamps = sorted(p.get("timestamp") for p in prov if p.get("timestamp"))
    return [
        ("preset", values("preset", rows)),
        ("config hash", values("config_hash", rows)),
        ("rows", ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())) or "0"),
        ("attnzoo", values("attnzoo_version", prov)),
        ("git commit", values("git_commit", prov)),
        ("torch", values("torch_version", prov)),
        ("device", values("device", prov)),
        ("host", values("hostname", prov)),
        ("summed train time", f"{total_train / 60:.1f} min (cells' CPU time {total_cpu / 60:.1f} min)"),
        ("first / last row", f"{stamps[0]} / {stamps[-1]}" if stamps else "–"),
    ]


def _anchors(tasks: Iterable[str]) -> dict[str, str]:
    """A unique, valid HTML id per task label (``task-associative-recall``)."""
    out: dict[str, str] = {}
    used = {"findings", "overall", "mad", "speed", "provenance", "answer", "throughput", "summary-figure",
            "heatmap-figure", "overall-table", "filter-task", "filter-backbone"}
    for t in tasks:
        base = "task-" + (re.sub(r"[^A-Za-z0-9_-]+", "-", t).strip("-") or "x")
        aid, i = base, 2
        while aid in used:
            aid, i = f"{base}-{i}", i + 1
        used.add(aid)
        out[t] = aid
    return out


def _csv_rows(tasks: dict[str, list[Entry]]) -> Iterable[dict[str, Any]]:
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


def _html_findings(findings: list[Finding], *, heading: bool = True) -> list[str]:
    parts: list[str] = []
    by_task: dict[str, list[Finding]] = {}
    for f in findings:
        by_task.setdefault(f.task, []).append(f)
    for task, fs in by_task.items():
        if heading:
            parts.append(f"<h3>{html.escape(task)}</h3>")
        if fs[0].context:
            parts.append(f'<p class="note">{html.escape(fs[0].context)}</p>')
        parts.append('<ul class="findings">')
        for f in fs:
            cls = "verdict-" + f.verdict.replace(" ", "-")
            parts.append(f'<li>{html.escape(f.claim)}: <span class="{cls}">{html.escape(f.verdict_text)}</span>'
                         + "</li>")
            if f.why:
                parts.append(f'<p class="why">Why expected: {html.escape(f.why)}</p>')
        parts.append("</ul>")
    return parts


# -- the page: the answer first ---------------------------------------------------------------------------
_IQM_NOTE = ("the interquartile mean of the label's normalized scores, (score - chance) / (1 - chance), over every "
             "task and seed of its best backbone per task, with a 95% stratified bootstrap interval (Agarwal et al. "
             "2021; 2000 draws, seed 0); baselines without attention are ranked in their own band below.")


def counts_line(tasks: dict[str, list[Entry]]) -> str:
    """``11 labels from 9 tasks (a label is a task run under one setting: induction-heads-1l, copy-ntm)``."""
    names = {label: next((e.task_name for e in entries if e.task_name), label) for label, entries in tasks.items()}
    n_tasks = len(set(names.values()))
    extra = [lab for lab, name in names.items() if lab != name]
    text = f"{len(tasks)} label{'s' * (len(tasks) != 1)} from {n_tasks} task{'s' * (n_tasks != 1)}"
    if extra:
        text += (" (a label is a task run under one setting of the preset: "
                 + ", ".join(f"{lab} is {names[lab]}" for lab in extra[:3]) + ("…" if len(extra) > 3 else "") + ")")
    return text


def _best_pair(entries: list[Entry]) -> tuple[Entry | None, Entry | None]:
    """The best attention entry and the best baseline of a task (highest median, then solved rate)."""
    scored = [e for e in entries if e.has_number]
    key = lambda e: (e.median, e.solved)  # noqa: E731
    att = max((e for e in scored if e.variant != BASELINE), key=key, default=None)
    base = max((e for e in scored if e.variant == BASELINE), key=key, default=None)
    return att, base


def lead_summary(tasks: dict[str, list[Entry]], ranks: dict[str, Ranking], overall_rows: list[list[str]],
                 margin: float = 0.1) -> str:
    """The page's opening paragraph, from the data: on how many labels the best attention variant beats the
    best network without attention by ``margin`` or more (and which tie or go the other way), which labels
    nothing solves, and the top of the IQM ranking with the variants whose intervals overlap it."""
    wins, ties, losses, unsolved, alone = [], [], [], [], []
    for task, entries in tasks.items():
        att, base = _best_pair(entries)
        if not any(e.has_number and e.median >= e.threshold for e in entries):
            unsolved.append(task)
        if att is None or base is None:
            alone.append(task)
            continue
        gap = att.median - base.median
        (wins if gap >= margin - 1e-12 else losses if gap <= -margin + 1e-12 else ties).append(
            f"{task} {att.median:.2f} vs {base.median:.2f}")
    n = len(tasks)
    parts = [f"On {len(wins)} of {n} labels the best attention variant beats the best network without attention "
             f"by at least {margin:.2f} (median over seeds: {'; '.join(wins) or 'none'})."]
    if ties:
        parts.append(f"They are within {margin:.2f} on {len(ties)} ({'; '.join(ties)}).")
    if losses:
        parts.append(f"The baseline is ahead on {len(losses)} ({'; '.join(losses)}).")
    if alone:
        parts.append(f"No pair to compare on {', '.join(alone)}.")
    if unsolved:
        parts.append(f"Nothing reaches the solve threshold on {', '.join(unsolved)} at this budget.")
    order = [r[0] for r in overall_rows if r[1] not in ("", "–") and not is_baseline(r[0])]
    if order and order[0] in ranks and ranks[order[0]].iqm is not None:
        top = ranks[order[0]]
        close = [lab for lab in order[1:] if lab in ranks and ranks[lab].iqm is not None
                 and ranks[lab].iqm.hi >= top.iqm.lo]
        parts.append(f"Across labels {top.label} ranks first by IQM of normalized scores, {top.text()}"
                     + (f"; the intervals of {', '.join(close)} overlap it, so their order is not settled." if close
                        else ", its interval clear of the next."))
    return " ".join(parts)


def _abbreviations(labels: Sequence[str], width: int = 8) -> dict[str, str]:
    """A short column header per task label (``associative-recall`` -> ``AR``, ``induction-heads-1l`` ->
    ``IH-1l``; labels of up to ``width`` characters stay), unique."""
    out: dict[str, str] = {}
    for lab in labels:
        short = lab
        if len(lab) > width:
            parts = [p for p in re.split(r"[-_ ]+", lab) if p]
            short = "".join(p[0].upper() for p in parts if not any(c.isdigit() for c in p))
            digits = [p for p in parts if any(c.isdigit() for c in p)]
            short += ("-" + "-".join(digits)) if digits else ""
        base, i = short, 2
        while short in out.values():
            short, i = f"{base}{i}", i + 1
        out[lab] = short
    return out


def _sort_value(text: str) -> str:
    m = re.match(r"\s*(-?\d+(?:\.\d+)?)", text)
    return m.group(1) if m else ""


def _html_overall(tasks: dict[str, list[Entry]], headers: list[str], rows: list[list[str]],
                  chosen: dict[str, dict[str, Entry]], ranks: dict[str, Ranking], anchors: dict[str, str],
                  highlight: set[str]) -> str:
    """The overall table for a 1400 px screen: abbreviated task headers (full name on hover, a key below),
    cells ``1.00 3/3`` linking to the task's findings (the full text on hover), attention variants ranked by
    IQM and the baselines in a band of their own; sortable and filterable."""
    task_names = list(tasks)
    abbr = _abbreviations(task_names)
    head = ['<th data-type="num" title="rank by IQM">#</th>', "<th>variant</th>",
            f'<th data-type="num" title="{html.escape(_IQM_NOTE)}">IQM [95% CI]</th>',
            '<th data-type="num" title="tasks where its median reaches the threshold, of those it has a number on">'
            "solved</th>"]
    head += [f'<th data-type="num" data-col="{html.escape(t)}" title="{html.escape(t)}">{html.escape(abbr[t])}</th>'
             for t in task_names]
    bodies: dict[bool, list[str]] = {False: [], True: []}
    place = 0
    for r in rows:
        lab = r[0]
        if r[1] == "":  # chance / threshold rows: the foot
            continue
        base = is_baseline(lab)
        rk = ranks.get(lab)
        if not base:
            place += 1
        rank_text = ("at chance" if rk is not None and rk.iqm is not None and rk.iqm.hi < AT_CHANCE
                     else ("" if base else str(place)))
        mine = lab in highlight or lab.split(" (")[0] in highlight
        backbones = sorted({e.backbone_name or e.backbone for es in tasks.values() for e in es if e.label == lab})
        cls = " ".join(c for c in ("baseline" if base else "", "mine" if mine else "") if c)
        cells = [f'<td data-sort="{place if not base else ""}">{html.escape(rank_text)}</td>',
                 f"<td>{html.escape(lab)}</td>",
                 f'<td data-sort="{rk.iqm.value if rk is not None and rk.iqm is not None else ""}">'
                 f"{html.escape(r[1])}</td>",
                 f'<td data-sort="{_sort_value(r[2])}">{html.escape(r[2].replace(" of ", "/"))}</td>']
        for t, full in zip(task_names, r[3:]):
            e = chosen.get(lab, {}).get(t)
            link = f'href="#{anchors[t]}"'
            if e is not None:
                at = at_chance(e)
                short = f"{e.median:.2f} {e.solved}/{e.n_seeds}"
                tip = full + (" — at chance" if at else "")
                cells.append(f'<td data-col="{html.escape(t)}" data-sort="{e.median}" class="{"chance" if at else ""}"'
                             f' title="{html.escape(tip)}"><a {link}>{html.escape(short)}</a></td>')
            elif full == "–":
                cells.append(f'<td data-col="{html.escape(t)}" data-sort="">–</td>')
            else:
                short = full.split(":")[0].split(" (")[0]
                cells.append(f'<td data-col="{html.escape(t)}" data-sort="" class="na" title="{html.escape(full)}">'
                             f"<a {link}>{html.escape(short)}</a></td>")
        bodies[base].append(f'<tr class="{cls}" data-backbones="{html.escape(" ".join(backbones))}">'
                            + "".join(cells) + "</tr>")
    foot = []
    for r in rows:
        if r[1] == "":
            foot.append(f'<tr><td></td><td>{html.escape(r[0])}</td><td></td><td></td>'
                        + "".join(f'<td data-col="{html.escape(t)}">{html.escape(c)}</td>'
                                  for t, c in zip(task_names, r[3:])) + "</tr>")
    n_cols = len(head)
    band = (f'<tbody class="band"><tr class="separator"><td colspan="{n_cols}">baselines without attention'
            "</td></tr></tbody>") if bodies[True] else ""
    key = "; ".join(f"<b>{html.escape(abbr[t])}</b> {html.escape(t)}" for t in task_names if abbr[t] != t)
    return (f'<table id="overall-table" class="sortable overall"><thead><tr>{"".join(head)}</tr></thead>'
            f'<tbody>{"".join(bodies[False])}</tbody>{band}<tbody class="baselines">{"".join(bodies[True])}</tbody>'
            f'<tfoot>{"".join(foot)}</tfoot></table>'
            + (f'<p class="note key">Columns: {key}.</p>' if key else ""))


def _html_task_table(entries: list[Entry], highlight: set[str]) -> str:
    """One task's table: sortable, each row tagged with its backbone (for the filter), baselines in a grey
    band, the highlighted variants marked."""
    headers, trows = task_table(entries)
    head = "".join(f'<th data-type="{"num" if i in (0, 3) else "text"}">{html.escape(h)}</th>'
                   for i, h in enumerate(headers))
    body = []
    for e, r in zip(entries, trows):
        cls = " ".join(c for c in ("baseline" if e.variant == BASELINE else "",
                                   "mine" if e.variant in highlight else "") if c)
        cells = []
        for i, c in enumerate(r):
            text = str(c)
            sort = f' data-sort="{_sort_value(text)}"' if i in (0, 3) else ""
            na = (f' class="na {text.split(":")[0].split(" ")[0].replace("/", "")}"'
                  if text.startswith(_STATUS_PREFIXES) else "")
            cells.append(f"<td{sort}{na}>{html.escape(text)}</td>")
        body.append(f'<tr class="{cls}" data-backbones="{html.escape(e.backbone_name or e.backbone)}">'
                    + "".join(cells) + "</tr>")
    return f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


_JS = """
(function(){
function val(td,type){var s=td.getAttribute('data-sort');if(s===null)s=td.textContent.trim();
 if(type==='num'){var f=parseFloat(s);return isNaN(f)?null:f;}return s.toLowerCase();}
document.querySelectorAll('table.sortable').forEach(function(table){
 table.querySelectorAll('thead th').forEach(function(th,col){
  th.classList.add('sort');th.tabIndex=0;
  function go(){var type=th.getAttribute('data-type')||'text';
   var dir=th.getAttribute('aria-sort')==='ascending'?-1:1;
   table.querySelectorAll('thead th').forEach(function(o){o.removeAttribute('aria-sort');});
   th.setAttribute('aria-sort',dir===1?'ascending':'descending');
   table.querySelectorAll('tbody').forEach(function(tb){
    var rows=Array.prototype.slice.call(tb.rows).filter(function(r){return !r.classList.contains('separator');});
    rows.sort(function(a,b){var x=val(a.cells[col],type),y=val(b.cells[col],type);
     if(x===null&&y===null)return 0;if(x===null)return 1;if(y===null)return -1;
     return (x<y?-1:x>y?1:0)*dir;});
    rows.forEach(function(r){tb.appendChild(r);});});}
  th.addEventListener('click',go);
  th.addEventListener('keydown',function(ev){if(ev.key==='Enter')go();});});});
var ft=document.getElementById('filter-task'),fb=document.getElementById('filter-backbone');
function filter(){var t=ft?ft.value:'',b=fb?fb.value:'';
 document.querySelectorAll('[data-col]').forEach(function(c){c.classList.toggle('hidden',!!t&&c.getAttribute('data-col')!==t);});
 document.querySelectorAll('details.task').forEach(function(d){d.classList.toggle('hidden',!!t&&d.getAttribute('data-task')!==t);
  if(t&&d.getAttribute('data-task')===t)d.open=true;});
 document.querySelectorAll('tr[data-backbones]').forEach(function(r){
  r.classList.toggle('hidden',!!b&&r.getAttribute('data-backbones').split(' ').indexOf(b)<0);});}
if(ft)ft.addEventListener('change',filter);if(fb)fb.addEventListener('change',filter);
function openHash(){var id=location.hash.slice(1);if(!id)return;var el=document.getElementById(id);
 if(el&&el.tagName==='DETAILS'){el.open=true;el.scrollIntoView();}}
window.addEventListener('hashchange',openHash);openHash();
})();
"""

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:.8em auto;max-width:1380px;
padding:0 10px;color:#222}
h1{font-size:1.4em;margin:.2em 0}h2{margin-top:1.6em;border-bottom:1px solid #ddd}h3{margin-top:1.2em}
p.counts{margin:.1em 0 .5em;color:#444;font-size:14px}
nav.toc{font-size:13px;margin:.2em 0 .6em}nav.toc a{margin-right:.8em}
.lead{display:grid;grid-template-columns:minmax(0,5fr) minmax(0,7fr);gap:14px;align-items:start}
.lead figure{margin:0}.lead img{max-height:60vh;width:auto;max-width:100%;display:block}
p.summary{font-size:14px;line-height:1.4;margin:.4em 0}
table{border-collapse:collapse;font-size:13px;margin:1em 0}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:left;white-space:nowrap}
th{background:#f3f3f3}th.sort{cursor:pointer}th[aria-sort=ascending]::after{content:' \\25B2'}
th[aria-sort=descending]::after{content:' \\25BC'}
table.overall td,table.overall th{padding:3px 5px;font-size:12.5px}
table.overall td a{color:inherit;text-decoration:none}table.overall td a:hover{text-decoration:underline}
tr.baseline td{background:#eeeeee;color:#444}tbody.baselines td:nth-child(2){font-style:italic}
tr.separator td{background:#555;color:#fff;font-size:11px;padding:1px 6px;letter-spacing:.04em}
tr.mine td{background:#fff3b0 !important;font-weight:600}
td.chance{color:#999}
td.na{color:#888;font-style:italic;white-space:normal;max-width:28em}
td.diverged,td.oom,td.failed{color:#a33}
table.overall td.na{white-space:nowrap}
details table{display:block;overflow-x:auto;max-width:100%}
tfoot td{color:#666;font-size:12px;background:#fafafa}
.hidden{display:none !important}
.filters{font-size:13px;margin:.6em 0;display:flex;gap:1.2em;align-items:center}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}
img.zoom{cursor:zoom-in}
img.zoom:focus{position:fixed;inset:0;margin:0;width:100vw;height:100vh;max-width:none;max-height:none;
object-fit:contain;background:rgba(255,255,255,.97);z-index:10;cursor:zoom-out;outline:none}
p.note{font-size:12px;color:#555}
details.task{border:1px solid #ddd;border-radius:4px;margin:.4em 0;padding:.2em .8em}
details.task>summary{cursor:pointer;font-weight:600;font-size:15px;padding:.3em 0}
details.task>summary span{font-weight:400;font-size:13px;color:#555;margin-left:.6em}
ul.findings li{margin:.35em 0}
.verdict-supported{color:#176b1f;font-weight:600}.verdict-not-supported{color:#a33;font-weight:600}
.verdict-missing,.verdict-unknown{color:#8a6d00;font-weight:600}
p.why{font-size:12px;color:#666;margin:.1em 0 .4em 1.5em}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 12px;font-size:13px}dt{font-weight:600}
"""


def _html_page(tasks: dict[str, list[Entry]], findings: list[Finding], figures: dict[str, Path],
               ranks: dict[str, Ranking], o_headers: list[str], o_rows: list[list[str]],
               prov: list[tuple[str, str]], lead: str, mad: tuple[list[str], list[list[str]], list[str]] | None,
               *, highlight: set[str], study_findings: Sequence[str] = ()) -> str:
    """The leaderboard page, in reading order: the answer (summary figure and paragraph beside the heatmap),
    the overall table, then per task (collapsed) its findings, table, curves and attention maps; MAD, speed,
    provenance last. One file: styles, script and images inline."""
    from attnzoo.leaderboard import alignment, plots

    anchors = _anchors(tasks)
    _, _, chosen = overall_table(tasks)

    def img(key: str, alt: str, id_: str = "") -> str:
        if key not in figures:
            return ""
        ident = f' id="{id_}"' if id_ else ""
        return (f'<img{ident} class="zoom" tabindex="0" title="click to enlarge" alt="{html.escape(alt)}" '
                f'src="{plots.data_uri(figures[key])}">')

    toc = [("answer", "Answer"), ("overall", "Overall"), ("findings", "Findings by task")]
    toc += [("mad", "MAD score")] if mad else []
    toc += [("speed", "Speed")] if "speed" in figures else []
    toc += [("provenance", "Provenance")]
    mine = sorted(highlight)
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             "<title>attnzoo leaderboard</title>", f"<style>{_CSS}</style></head><body>",
             "<h1>attnzoo leaderboard</h1>",
             f'<p class="counts">{html.escape(counts_line(tasks))}; preset {html.escape(dict(prov).get("preset", "–"))}'
             + (f"; highlighted: <b>{html.escape(', '.join(mine))}</b> (from --against)" if mine else "") + "</p>",
             '<nav class="toc">' + "".join(f'<a href="#{a}">{html.escape(t)}</a>' for a, t in toc) + "</nav>",
             '<section id="answer" class="lead"><div>',
             img("summary", "best attention variant vs best baseline without attention, per task, chance marked",
                 "summary-figure"),
             f'<p class="summary">{html.escape(lead)}</p></div>',
             f'<figure>{img("heatmap", "median per variant and task", "heatmap-figure")}</figure></section>']
    backbones = sorted({e.backbone_name or e.backbone for es in tasks.values() for e in es})
    parts += ['<div class="filters"><label>task <select id="filter-task"><option value="">all</option>'
              + "".join(f'<option value="{html.escape(t)}">{html.escape(t)}</option>' for t in tasks)
              + '</select></label><label>backbone <select id="filter-backbone"><option value="">all</option>'
              + "".join(f'<option value="{html.escape(b)}">{html.escape(b)}</option>' for b in backbones)
              + "</select></label><span class=\"note\">click a column header to sort</span></div>"]
    parts += ['<h2 id="overall">Overall</h2>',
              "<p>Each cell: the variant's best backbone on the label (main test metric at the learning rate best on "
              "validation): median over seeds and seeds solved; hover for the spread, steps to solve and backbone; "
              "click for the task's findings. Grey: at chance. IQM: " + html.escape(_IQM_NOTE) + "</p>",
              _html_overall(tasks, o_headers, o_rows, chosen, ranks, anchors, highlight)]
    parts.append(img("profile", "performance profiles"))
    parts += ['<h2 id="findings">Findings by task</h2>',
              '<p class="note">Each task\'s claims (the contrasts it exists to show), checked against these results; a '
              "claim the data do not support is shown as not supported, with its numbers. The same text is in "
              "findings.md. Click a task to open it.</p>"]
    by_task: dict[str, list[Finding]] = {}
    for f in findings:
        by_task.setdefault(f.task, []).append(f)
    for task, entries in tasks.items():
        fs = by_task.get(task, [])
        verdicts = ", ".join(f"{n} {v}" for v in VERDICT_ORDER if (n := sum(f.verdict == v for f in fs)))
        att, base = _best_pair(entries)
        head = (f"best attention {att.median:.2f} ({att.variant})" if att else "no attention result")
        head += f", best baseline {base.median:.2f}" if base else ""
        chance = next((e.chance for e in entries if e.chance is not None), None)
        parts += [f'<details class="task" id="{anchors[task]}" data-task="{html.escape(task)}">',
                  f"<summary>{html.escape(task)}<span>{html.escape(head)}; chance {_fmt(chance)}"
                  + (f"; claims: {html.escape(verdicts)}" if verdicts else "") + "</span></summary>"]
        parts += _html_findings(fs, heading=False)
        parts += [f"<p>Chance level: {_fmt(chance)}. Solved: a seed at ≥ {entries[0].threshold:g}. Steps to solve: "
                  "the first validation step at that level, median over seeds (&gt;N: not within the budget).</p>",
                  _html_task_table(entries, highlight)]
        if any(e.peak_mem_hidden for e in entries):
            parts.append(f'<p class="note">{html.escape(PEAK_MEM_NOTE)}</p>')
        parts += [img(f"curves:{task}", f"learning curves, {task}"), *alignment.html_parts(task, entries),
                  img(f"attention:{task}", f"attention maps, {task}"), "</details>"]
    parts += ["<h2 id=\"throughput\">Accuracy vs throughput</h2>", img("acc_vs_speed", "accuracy vs throughput")]
    if mad:
        m_headers, m_rows, m_notes = mad
        parts += ['<h2 id="mad">MAD score</h2>', f"<p>{html.escape(_MAD_INTRO)}</p>", _html_table(m_headers, m_rows)]
        parts += [f'<p class="note">{html.escape(n)}</p>' for n in m_notes]
    study_keys = [k for k in figures if k.startswith("study:")]
    if study_keys:  # the inductive-bias study (attnzoo.leaderboard.study): its figures, then its findings
        parts += ['<h2 id="study">How far can a network without attention go?</h2>']
        parts += [img(k, k.split(":", 1)[1].replace("_", " ")) for k in study_keys]
        parts += ["<ul>"] + [f"<li>{html.escape(f)}</li>" for f in study_findings] + ["</ul>"]
    if "speed" in figures:
        parts += ['<h2 id="speed">Speed</h2>', img("speed", "speed benchmark")]
    parts += ['<h2 id="provenance">Provenance</h2>', "<dl>"]
    parts += [f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in prov]
    parts += ["</dl>", f"<script>{_JS}</script>", "</body></html>"]
    return "\n".join(p for p in parts if p)


def build_report(directory: str | Path, *, rows: list[dict[str, Any]] | None = None,
                 highlight: Sequence[str] = ()) -> list[Path]:
    """Write every table, figure and finding of ``directory`` from its ``results.jsonl``; returns the paths written.

    :param highlight: variants whose rows the page highlights (``bench --against``: the new variants).
    """
    from attnzoo import results
    from attnzoo.leaderboard import alignment, plots, study

    d = Path(directory)
    res = results.from_rows(one_config(read_rows(d) if rows is None else rows, where=str(d / "results.jsonl")))  # the results API: one aggregation
    rows = [r.to_json() for r in res]
    if not rows:
        raise FileNotFoundError(f"no results in {d / 'results.jsonl'}: nothing to report")
    tasks = res.entries()
    written: list[Path] = []
    figures: dict[str, Path] = {}

    _, o_rows_for_plot, chosen = overall_table(tasks)
    ranked_labels = [r[0] for r in o_rows_for_plot if r[1] != ""]
    ranks = rankings(tasks, chosen)
    p = d / "summary.png"
    if plots.summary(tasks, p):
        figures["summary"] = p
    p = d / "heatmap.png"
    plots.heatmap(tasks, ranked_labels, chosen, p)
    figures["heatmap"] = p
    p = d / "profile.png"
    if plots.profile({lab: [x for r in ranks[lab].runs.values() for x in r] for lab in ranked_labels
                      if lab in ranks}, p):
        figures["profile"] = p
    p = d / "acc_vs_speed.png"
    plots.acc_vs_speed(tasks, p)
    figures["acc_vs_speed"] = p
    for task, entries in tasks.items():
        p = d / f"curves_{file_slug(task)}.png"
        if plots.curves(task, entries, p):
            figures[f"curves:{task}"] = p
        p = d / f"attention_{file_slug(task)}.png"
        if plots.attention(task, entries, p):
            figures[f"attention:{task}"] = p
    speed_csv, speed_png = d / "speed.csv", d / "speed.png"
    if speed_png.exists() and speed_csv.exists():  # `attnzoo speed --out DIR` drew it: show that one
        figures["speed"] = speed_png
    elif speed_csv.exists():
        try:
            if plots.speed(speed_csv, speed_png):
                figures["speed"] = speed_png
                written.append(speed_png)
        except Exception as exc:  # a CSV from another tool must not stop the report
            print(f"warning: could not plot {speed_csv}: {type(exc).__name__}: {exc}", file=sys.stderr)
    written += [p for k, p in figures.items() if k != "speed"]

    # findings first: what the data say about each task's claims
    findings = evaluate(tasks)
    study_md = study.render(tasks, d)  # the inductive-bias study's figures and findings; [] without a study
    if study_md:  # the page shows them too
        figures.update({f"study:{stem}": d / f"{stem}.png" for stem in study.FIGURES if (d / f"{stem}.png").exists()})
    written += [d / f"{stem}.png" for stem in study.FIGURES if (d / f"{stem}.png").exists()] if study_md else []
    p = d / "findings.md"
    p.write_text(findings_markdown(findings, n_rows=len(rows), alignment=alignment.finding_lines(tasks))
                 + "".join(f"\n{x}" for x in study_md),
                 encoding="utf-8")
    written.append(p)

    def mem_note(entries: Iterable[Entry]) -> list[str]:
        return [f"*{PEAK_MEM_NOTE}*", ""] if any(e.peak_mem_hidden for e in entries) else []

    # markdown
    prov = _provenance_summary(rows)
    o_headers, o_rows, _ = overall_table(tasks)
    lead = lead_summary(tasks, ranks, o_rows)
    md = ["# attnzoo leaderboard", "", f"*{escape.md(counts_line(tasks))}*", "", escape.md(lead), ""]
    if "summary" in figures:
        md += ["![best attention variant vs best baseline without attention, per task](summary.png)", ""]
    md += [f"- **{k}**: {escape.md(v)}" for k, v in prov]
    md += ["", "## Findings", "", "From [findings.md](findings.md): each task's claims checked against these "
           "results.", ""]
    md += [f"- {escape.md(f.task)}: {escape.md(f.sentence)}" for f in findings]
    md += ["", *study_md]
    md += ["", "## Overall", "", "Each cell: the task's main test metric at the learning rate that was best on "
           "validation, for the variant's best backbone on that task (in parentheses): the median over seeds, "
           "the min–max over seeds, and how many seeds reached the task's solve threshold. A seed that diverged "
           "or failed counts as 0 and is named. `none (...)` rows are the baselines without attention. Cells "
           "without a number say why (`n/a: reason`, `diverged`, `oom`, `failed: reason`).", ""]
    md += [f"IQM [95% CI]: {_IQM_NOTE}", ""]
    md_rows = list(o_rows)
    first_base = next((i for i, r in enumerate(md_rows) if is_baseline(r[0])), None)
    if first_base is not None:
        md_rows.insert(first_base, ["**baselines without attention**"] + [""] * (len(o_headers) - 1))
    md += [_md_table(o_headers, md_rows), "", "![heatmap](heatmap.png)", ""]
    md += ["![performance profiles](profile.png)", ""] if "profile" in figures else []
    md += ["![accuracy vs throughput](acc_vs_speed.png)", ""]
    mad = mad_scores(rows)
    if mad:
        m_headers, m_rows, m_notes = mad_table(mad)
        md += ["## MAD score", "", _MAD_INTRO, "", _md_table(m_headers, m_rows), ""]
        md += [f"*{n}*" for n in m_notes] + [""]
    for task, entries in tasks.items():
        headers, trows = task_table(entries)
        chance = next((e.chance for e in entries if e.chance is not None), None)
        metric = next((e.main_metric for e in entries if e.main_metric), "the main metric")
        md += [f"## {escape.md(task)}", "", f"Chance level: {_fmt(chance)}. Ranked by the median of {metric} over "
               f"seeds; "
               f"solved: a seed at ≥ {entries[0].threshold:g}.", "", _md_table(headers, trows), ""]
        md += mem_note(entries)
        if f"curves:{task}" in figures:
            md += [f"![curves {escape.md(task)}]({figures[f'curves:{task}'].name})", ""]
        if f"attention:{task}" in figures:
            md += [f"![attention {escape.md(task)}]({figures[f'attention:{task}'].name})", ""]
        md += alignment.markdown(task, entries)
    if "speed" in figures:
        md += ["## Speed", "", "![speed](speed.png)", ""]
    p = d / "leaderboard.md"
    p.write_text("\n".join(md), encoding="utf-8")
    written.append(p)

    # csv (long form: one line per task x backbone x variant)
    p = d / "leaderboard.csv"
    with open(p, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=_CSV_FIELDS)
        w.writeheader()
        w.writerows(_csv_rows(tasks))
    written.append(p)

    # html (self-contained: styles and scripts inline, images as data URIs; click an image to enlarge it)
    mad_parts = (m_headers, m_rows, m_notes) if mad else None
    page = _html_page(tasks, findings, figures, ranks, o_headers, o_rows, prov, lead, mad_parts,
                      highlight=set(highlight), study_findings=[x[2:] for x in study_md if x.startswith("- ")])
    p = d / "leaderboard.html"
    p.write_text(page, encoding="utf-8")
    written.append(p)
    return written
