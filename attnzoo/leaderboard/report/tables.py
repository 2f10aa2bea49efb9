"""Analyse: aggregated entries -> the report's tables and sentences, format-neutral.

The second stage of the report (:mod:`attnzoo.leaderboard.report`: aggregate -> analyse -> render). Every
table here is ``(headers, rows)`` of strings, which each writer (:mod:`~attnzoo.leaderboard.report.markdown`,
:mod:`~attnzoo.leaderboard.report.html`) lays out in its format:

- :func:`task_table`: one task's entries ranked by the median over seeds;
- :func:`overall_table`: variants x tasks, ranked by the IQM of normalized scores (:func:`rankings`);
- :func:`lead_summary`, :func:`counts_line`, :func:`provenance_summary`: the sentences the pages open with.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from attnzoo.cell import Row
from attnzoo.leaderboard.report.aggregation import Entry, SeedSummary, _num
from attnzoo.leaderboard.stats import normalize, stratified_bootstrap_ci
from attnzoo.tasks.base import DEFAULT_SOLVE_THRESHOLD, NO_ATTENTION as BASELINE

__all__ = ["task_table", "overall_table", "rankings", "Ranking", "normalized", "at_chance", "is_baseline",
           "AT_CHANCE", "format_summary", "counts_line", "lead_summary", "best_pair", "pair_labels", "provenance_summary",
           "IQM_NOTE", "fmt"]

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


def fmt(x: float | None, digits: int = 3) -> str:
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
            r = ["at chance" if at_chance(e) else str(rank), e.variant, e.backbone, fmt(e.median), _spread(e),
                 s.per_seed() if s else "–",
                 s.solved_text() if s else "–", _steps_cell(s), f"{e.best_lr:g}" if e.best_lr is not None else "–"]
            r += [format_summary(e.long_summary, 2) if e.long_summary else "–"] if has_long else []
            r += [fmt(e.chance), _fmt_int(e.params), _fmt_int(e.tokens_per_s), fmt(e.peak_mem_mb, 1),
                  fmt(e.train_time_s, 1), e.notes]
        else:
            s = e.summary
            r = ["–", e.variant, e.backbone, e.status_text(), "–", s.per_seed() if s else "–",
                 s.solved_text() if s else "–", "–", f"{e.best_lr:g}" if e.best_lr is not None else "–"]
            r += ["–"] if has_long else []
            r += [fmt(e.chance), _fmt_int(e.params), "–", "–", "–", e.notes]
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
    rows.append(["chance", "", ""] + [fmt(next((e.chance for e in tasks[t] if e.chance is not None), None))
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


IQM_NOTE = ("the interquartile mean of the label's normalized scores, (score - chance) / (1 - chance), over every "
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


def best_pair(entries: list[Entry]) -> tuple[Entry | None, Entry | None]:
    """The best attention entry and the best baseline of a task (highest median, then solved rate)."""
    scored = [e for e in entries if e.has_number]
    key = lambda e: (e.median, e.solved)  # noqa: E731
    att = max((e for e in scored if e.variant != BASELINE), key=key, default=None)
    base = max((e for e in scored if e.variant == BASELINE), key=key, default=None)
    return att, base


def _setting(entries: list[Entry]) -> tuple[Any, ...] | None:
    """What a label trains on: its task, the task's knobs and the training-set size (None: no rows)."""
    cell = next((r.cell for e in entries for r in e.rows if r.cell), None)
    if cell is None:
        return None
    knobs = tuple(sorted((cell.get("task_kwargs") or {}).items()))
    return cell.get("task"), repr(knobs), cell.get("train_size")


def pair_labels(tasks: dict[str, list[Entry]]) -> dict[str, list[Entry]]:
    """Labels compared as one where a preset split one setting by model family.

    A study gives its MLP a label of its own (``mqar-T16-mlp``: more steps, a width sweep) beside the
    attention label (``mqar-T16``), so neither has a pair to compare. A label with only attention entries
    and labels with only baseline entries on the same task, knobs and training-set size are merged into one,
    named ``mqar-T16 + mqar-T16-mlp``, in the first one's place; every other label stays as it is.
    """
    kinds = {lab: {e.variant == BASELINE for e in entries if e.has_number} for lab, entries in tasks.items()}
    settings = {lab: _setting(entries) for lab, entries in tasks.items()}
    merged: dict[str, list[str]] = {}
    taken: set[str] = set()
    for lab in tasks:
        if kinds[lab] != {False} or settings[lab] is None:
            continue
        partners = [other for other in tasks if other not in taken and kinds[other] == {True}
                    and settings[other] == settings[lab]]
        if partners:
            merged[lab] = [lab, *partners]
            taken.update(merged[lab])
    out: dict[str, list[Entry]] = {}
    for lab, entries in tasks.items():
        if lab in merged:
            out[" + ".join(merged[lab])] = [e for member in merged[lab] for e in tasks[member]]
        elif lab not in taken:
            out[lab] = entries
    return out


def lead_summary(tasks: dict[str, list[Entry]], ranks: dict[str, Ranking], overall_rows: list[list[str]],
                 margin: float = 0.1) -> str:
    """The page's opening paragraph, from the data: on how many labels the best attention variant beats the
    best network without attention by ``margin`` or more (and which tie or go the other way), which labels
    nothing solves, and the top of the IQM ranking with the variants whose intervals overlap it."""
    wins, ties, losses, alone = [], [], [], []
    unsolved = [task for task, entries in tasks.items()
                if not any(e.has_number and e.median >= e.threshold for e in entries)]
    paired = pair_labels(tasks)
    for task, entries in paired.items():
        att, base = best_pair(entries)
        if att is None or base is None:
            alone.append(task)
            continue
        gap = att.median - base.median
        (wins if gap >= margin - 1e-12 else losses if gap <= -margin + 1e-12 else ties).append(
            f"{task} {att.median:.2f} vs {base.median:.2f}")
    n = len(paired)
    joined = [lab for lab in paired if lab not in tasks]
    what = f"{n} labels" if not joined else (
        f"{n} comparisons (labels of one task and setting split by model family compared as one: "
        f"{', '.join(joined)})")
    parts = [f"On {len(wins)} of {what} the best attention variant beats the best network without attention "
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


def provenance_summary(rows: list[Row]) -> list[tuple[str, str]]:
    ran = [r for r in rows if r.status != "n/a"]
    prov = [r.provenance or {} for r in ran]

    def values(src: Iterable[Any]) -> str:
        vals = sorted({str(v) for v in src if v is not None})
        return ", ".join(vals) if vals else "–"

    statuses: dict[str, int] = {}
    for r in rows:
        statuses[str(r.status)] = statuses.get(str(r.status), 0) + 1
    total_train = sum(_num(r.train_time_s) or 0.0 for r in ran)
    total_cpu = sum(_num(p.get("cpu_s")) or 0.0 for p in prov)
    stamps = sorted(p.get("timestamp") for p in prov if p.get("timestamp"))
    return [
        ("preset", values(r.preset for r in rows)),
        ("config hash", values(r.config_hash for r in rows)),
        ("rows", ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())) or "0"),
        ("attnzoo", values(p.get("attnzoo_version") for p in prov)),
        ("git commit", values(p.get("git_commit") for p in prov)),
        ("torch", values(p.get("torch_version") for p in prov)),
        ("device", values(p.get("device") for p in prov)),
        ("host", values(p.get("hostname") for p in prov)),
        ("summed train time", f"{total_train / 60:.1f} min (cells' CPU time {total_cpu / 60:.1f} min)"),
        ("first / last row", f"{stamps[0]} / {stamps[-1]}" if stamps else "–"),
    ]
