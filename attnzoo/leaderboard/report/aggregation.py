"""Aggregate: the rows of a results directory -> one :class:`Entry` per (task label, backbone, variant).

The first stage of the report (:mod:`attnzoo.leaderboard.report`: aggregate -> analyse -> render). Per
(task label, backbone, backbone kwargs, variant) the learning rate best on validation is chosen (mean over
seeds, a seed that did not finish counting 0), and the seeds at that learning rate are summarized
(:class:`SeedSummary`): median, min–max, every seed, the solved rate against the task's threshold and the
steps to solve.

Its input is typed: :class:`~attnzoo.cell.Row` records as :mod:`attnzoo.results` reads them from the store
(a Row already holds the cell's identity: ``task`` label, ``task_name``, ``backbone``, ``variant``, ``seed``, ``lr``,
``cell``), and every later stage reads their attributes. JSON objects are still accepted at the public entry
points and read as Rows there (:func:`typed_rows`).

**Summaries over seeds.** A seed that diverged, failed or ran out of memory at the
chosen learning rate scored nothing: it counts as 0 in the median and the spread
(so a variant that diverges on two seeds of three cannot rank on its third), is
named in the per-seed list, and is never solved. An entry none of whose seeds
produced a number reads as its status (``diverged``, ``oom``, ``failed: ...``),
never as ``0.000``.

Nothing here imports matplotlib, Lightning or the other report stages; the task registry is read (if it
loads) only for the solve thresholds (:func:`task_spec`).
"""

from __future__ import annotations

import functools
import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from attnzoo.cell import Row, canonical_json
from attnzoo.tasks.base import DEFAULT_SOLVE_THRESHOLD, NO_ATTENTION as BASELINE, TaskSpec

__all__ = ["Entry", "SeedSummary", "aggregate", "typed_rows", "latest", "cell_of", "seed_summary", "solve_threshold",
           "steps_to_solve", "median_steps", "task_spec", "NOT_OK", "PEAK_MEM_NOTE"]


#: statuses of a run that produced no number
NOT_OK = ("diverged", "oom", "failed")

#: printed under a table whose peak-memory column was left empty for CPU rows
PEAK_MEM_NOTE = ("peak MB is left empty for CPU cells: the harness can only see a worker process's resident-set "
                 "growth there, which in a reused worker is not the cell's own peak (it read 0.0 for one cell and "
                 "12.3 for its neighbour); CUDA cells show torch.cuda.max_memory_allocated.")


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


def typed_rows(rows: Iterable[Row | Mapping[str, Any]]) -> list[Row]:
    """The report's input as :class:`~attnzoo.cell.Row` records: the public entry points still take the JSON
    objects of ``results.jsonl`` (tests, ``bench --against``), so they are read here, once, and every stage
    after this reads attributes (a Row passes through as it is)."""
    return [Row.from_json(r) for r in rows]


def latest(rows: Iterable[Row]) -> list[Row]:
    """One row per cell id, a later row replacing an earlier one (a retried cell), in first-seen order:
    :func:`attnzoo.leaderboard.store.latest_rows` on typed rows (a row without an id is its own cell)."""
    by_id: dict[str, Row] = {}
    for row in rows:
        key = row.cell_id or canonical_json(row.to_json())
        by_id.pop(key, None)
        by_id[key] = row
    return list(by_id.values())


def cell_of(row: Row) -> dict[str, Any]:
    """The stored cell of ``row`` (its JSON object), or ``{}`` for a row written without one (schema 1, n/a)."""
    return row.cell if isinstance(row.cell, dict) else {}


@functools.lru_cache(maxsize=None)
def task_spec(name: str | None) -> TaskSpec | None:
    """The registered :class:`TaskSpec` called ``name``, or None (unknown here, or the registry fails to load:
    a report on another machine must still build)."""
    if not name:
        return None
    try:
        from attnzoo.tasks import get_task_class

        return get_task_class(name).spec
    except Exception:  # noqa: BLE001 - an unknown or broken task means "no spec", never a failed report
        return None


def solve_threshold(task_name: str | None, rows: Sequence[Row] = ()) -> float:
    """The main-metric level at which a seed counts as solved: a row's own ``solve_threshold``
    (rows written by a harness that records it), else the registered task's
    :attr:`~attnzoo.tasks.TaskSpec.solve_threshold`, else :data:`DEFAULT_SOLVE_THRESHOLD`
    (a plugin task that is not installed where the report is built)."""
    for r in rows:
        t = _num(r.extra.get("solve_threshold"))  # a plugin's column: not a Row field
        if t is not None:
            return t
    spec = task_spec(task_name)
    return float(spec.solve_threshold) if spec is not None else DEFAULT_SOLVE_THRESHOLD


def _peak_mb(row: Row) -> float | None:
    """The cell's own peak memory, or None where the row's figure is not one (CPU rows; see PEAK_MEM_NOTE)."""
    value = _num(row.peak_mem_mb)
    kind = row.peak_mem_kind
    if isinstance(kind, str):
        return value if kind.startswith("cuda") else None
    device = str((row.provenance or {}).get("device") or "")
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


def _row_max_steps(row: Row) -> int | None:
    steps = _num(cell_of(row).get("max_steps")) or _num(row.steps)
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


def seed_summary(rows: Sequence[Row | Mapping[str, Any]], key: str | None,
                 threshold: float | None) -> SeedSummary | None:
    """:class:`SeedSummary` of metric ``key`` (``None``: the row's ``main_value``) over ``rows`` (one per seed).

    :returns: None when no finished seed has the metric at all (e.g. ``test_long`` of a
        fixed-length model, which cannot run at another length).
    """
    typed = typed_rows(rows)  # a Row passes through; a JSON object (a test's) is read once
    seeds, status, values = [], [], []
    for r in typed:
        st = str(r.status)
        seeds.append(r.seed)
        status.append(st)
        if st != "ok":
            values.append(None)
            continue
        v = _num(r.main_value) if key is None else _num((r.metrics or {}).get(key))
        values.append(v)
    if "ok" in status and all(v is None for v in values):
        return None  # the seeds that finished have no such metric; those that did not cannot say either
    scores = [(v if v is not None else 0.0) if s == "ok" else 0.0 for v, s in zip(values, status)]
    # a finished seed without the metric (a split it cannot run) is left out, not scored 0
    counted = [sc for sc, v, s in zip(scores, values, status) if s != "ok" or v is not None]
    solved = sum(1 for v in values if v is not None and threshold is not None and v >= threshold - 1e-12)
    steps: list[int | None] = []
    if key is None and threshold is not None:  # steps-to-solve: the main metric's validation curve
        steps = [steps_to_solve(r.curve or [], threshold) if s == "ok" else None for r, s in zip(typed, status)]
    budgets = [b for b in (_row_max_steps(r) for r in typed) if b is not None]
    return SeedSummary(seeds, status, values, scores, _median(counted), min(counted) if counted else None,
                       max(counted) if counted else None, threshold, solved, steps,
                       max(budgets) if budgets else None)



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
    rows: list[Row] = field(default_factory=list)  # rows at the best lr, by seed

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


def _first_error(rows: Sequence[Row]) -> str:
    first = next((r for r in rows if r.error), rows[0])
    lines = str(first.error or "").strip().splitlines()
    # the last traceback line names the exception; a plain message is one line anyway
    message = (lines[-1] if lines else "")[:160]
    kind = str(first.status)
    return message if kind == "failed" and message else f"{kind}: {message}".rstrip(": ")


def _entry(task: str, backbone: str, variant: str, rows: list[Row]) -> Entry:
    e = Entry(task, backbone, variant)
    first = rows[0]
    cell = cell_of(first)
    e.task_name = str(first.task_name or cell.get("task") or task)
    e.backbone_name = str(cell.get("backbone") or first.backbone or backbone)
    e.backbone_kwargs = dict(cell.get("backbone_kwargs") or {})
    e.threshold = solve_threshold(e.task_name, rows)
    na = [r for r in rows if r.status == "n/a"]
    runs = [r for r in rows if r.status != "n/a"]
    e.chance = _median(_num(r.chance) for r in rows)
    if not runs:
        e.status, e.reason = "n/a", (na[0].error if na else None) or "does not fit"
        return e
    e.main_metric = next((r.main_metric for r in runs if r.main_metric), None)
    val_key = _sibling_metric(e.main_metric, "val")
    by_lr: dict[float, list[Row]] = {}
    for r in runs:
        by_lr.setdefault(float(r.lr or 0.0), []).append(r)
    e.lrs = sorted(by_lr)

    def score(lr: float) -> tuple[float, float]:
        # mean validation metric over seeds; a failed or diverged seed counts as 0
        vals = []
        for r in by_lr[lr]:
            v = _num((r.metrics or {}).get(val_key)) if val_key else None
            if v is None:
                v = _num(r.main_value) if val_key is None else None
            vals.append(v if (r.status == "ok" and v is not None) else 0.0)
        ok = sum(r.status == "ok" for r in by_lr[lr])
        return (statistics.fmean(vals) if vals else 0.0, ok)

    best = max(e.lrs, key=lambda lr: (score(lr), -lr))
    chosen = sorted(by_lr[best], key=lambda r: (r.seed is None, r.seed))
    ok_rows = [r for r in chosen if r.status == "ok"]
    e.best_lr = best
    e.rows = chosen
    e.summary = seed_summary(chosen, None, e.threshold)
    if not ok_rows:
        statuses = {str(r.status) for r in chosen}
        e.status = statuses.pop() if len(statuses) == 1 and statuses <= {"diverged", "oom"} else "failed"
        e.reason = _first_error(chosen)
    if e.summary is not None:
        e.values = list(e.summary.scores)
        e.median = e.summary.median if ok_rows else None
    e.mean, e.std = _mean_std(e.values)
    if not ok_rows:
        e.mean = e.std = None  # nothing finished: no number to show, the status says what happened
    if val_key:
        e.val_mean = _median(_num((r.metrics or {}).get(val_key)) for r in ok_rows)
    long_key = _sibling_metric(e.main_metric, "test_long")
    if long_key and ok_rows:
        e.long_summary = seed_summary(chosen, long_key, e.threshold)
        longs = [v for v in (_num((r.metrics or {}).get(long_key)) for r in ok_rows) if v is not None]
        e.long_mean = statistics.fmean(longs) if longs else None
    e.params = _median(_num(r.params) for r in runs)
    e.tokens_per_s = _median(_num(r.tokens_per_s) for r in ok_rows)
    e.peak_mem_mb = _median(_peak_mb(r) for r in ok_rows)
    e.peak_mem_hidden = any(_peak_mb(r) is None for r in ok_rows)
    e.train_time_s = _median(_num(r.train_time_s) for r in ok_rows)
    notes = []
    for lr in e.lrs:
        bad: dict[str, int] = {}
        for r in by_lr[lr]:
            if r.status != "ok":
                bad[str(r.status)] = bad.get(str(r.status), 0) + 1
        if bad:
            notes.append(f"lr {lr:g}: " + ", ".join(f"{n} {s}" for s, n in sorted(bad.items())))
    e.notes = "; ".join(notes)
    return e


def _kwargs_key(row: Row) -> str:
    return json.dumps(cell_of(row).get("backbone_kwargs") or {}, sort_keys=True, default=str)


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


def aggregate(rows: Iterable[Row | Mapping[str, Any]]) -> dict[str, list[Entry]]:
    """``{task: [Entry, ...]}`` ranked by the median (n/a and unfinished last), tasks in first-seen order.

    :param rows: typed :class:`~attnzoo.cell.Row` records (as :mod:`attnzoo.results` gives them), or their
        JSON objects (read as Rows here, once: every stage after this reads attributes).
    """
    groups: dict[tuple[str, str, str, str], list[Row]] = {}
    task_order: list[str] = []
    for r in latest(typed_rows(rows)):
        key = (str(r.task), str(r.backbone), str(r.variant), _kwargs_key(r))
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
