"""The inductive-bias study (issue 22): how far can a network without attention go?

From the report's aggregated entries (:func:`attnzoo.leaderboard.report.aggregation.aggregate`: the learning rate best on
validation, the median over seeds, steps-to-solve with censoring, all reused), this module joins every
setting of one task at one sequence length, whatever its preset label (``mqar-T64`` for attention and
``mqar-T64-mlp`` for the MLP sweep are one panel), into :class:`StudyPoint` s, and from them draws

- accuracy against parameters (log x), one line per MLP depth and one for attention, one panel per
  sequence length, one row per lookup task (Zoology's Figure 2 layout, with MLP rows);
- steps-to-solve against sequence length, censored points drawn at their budget as open markers;
- the controls: the same MLPs on copy and reverse, and train vs test accuracy on finite training sets;

and states the result in its honest form (:func:`findings`), each claim marked supported or not.
The report calls :func:`render` only; it writes nothing when the results hold no study (:func:`is_study`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attnzoo.leaderboard.grid import BASELINE

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from attnzoo.leaderboard.report.aggregation import Entry

__all__ = ["StudyPoint", "points", "is_study", "accuracy_vs_params_figure", "steps_vs_length_figure",
           "controls_figure", "findings", "render"]

#: the figures' file stems (PNG, in the report's directory)
FIGURES = ("study_acc_vs_params", "study_steps_vs_length", "study_controls")
#: an MLP "passed" a lookup setting when its median test metric reached this (the issue's honest form)
PASS = 0.5


@dataclass(frozen=True)
class StudyPoint:
    """One model at one setting, over its seeds at the learning rate best on validation.

    :ivar form: ``"lookup"`` (content-addressed), ``"name"`` (the induction task's name copy) or ``"control"``.
    :ivar length: the input length S in tokens (the task's ``src_len`` under the row's knobs).
    :ivar model: ``"mlp"`` or the attention variant; ``depth`` its layers, ``width`` the MLP's hidden width.
    :ivar steps: median steps-to-solve; None when censored (not solved by ``max_steps`` on half the seeds).
    :ivar train_median: median ``train/<metric>`` on a finite training set (None: fresh data).
    """

    label: str
    task: str
    form: str
    length: int
    model: str
    depth: int | None
    width: int | None
    params: float | None
    train_size: int | None
    median: float | None
    solved: int
    n_seeds: int
    steps: float | None
    max_steps: int | None
    train_median: float | None
    chance: float | None
    threshold: float

    @property
    def is_mlp(self) -> bool:
        return self.model == "mlp"

    @property
    def name(self) -> str:
        if self.is_mlp:
            return f"MLP depth {self.depth}"
        return f"{self.depth}-layer {self.model}"


def _form_and_length(task: str, knobs: dict[str, Any]) -> tuple[str, int] | None:
    from attnzoo.tasks import create_task

    try:
        t = create_task(task, **knobs)
    except Exception:  # a task no longer registered: the study cannot place it
        return None
    if "name" in t.spec.slices:
        return "name", int(t.src_len)
    return ("lookup" if t.spec.content_addressed else "control"), int(t.src_len)


def _train_metric(e: Entry) -> float | None:
    key = f"train/{e.main_metric.split('/', 1)[1]}" if e.main_metric and "/" in e.main_metric else None
    vals = [float(r.metrics[key]) for r in e.rows if key and isinstance(r.metrics, dict)
            and isinstance(r.metrics.get(key), (int, float))]
    return statistics.median(vals) if vals else None


def points(tasks: dict[str, list[Entry]]) -> list[StudyPoint]:
    """Every finished entry on the MLP or a Transformer, as a :class:`StudyPoint` (others are left out)."""
    out = []
    for label, entries in tasks.items():
        for e in entries:
            if e.status != "ok" or e.summary is None or e.backbone_name not in ("mlp", "transformer") or not e.rows:
                continue
            cell = e.rows[0].cell if isinstance(e.rows[0].cell, dict) else {}
            placed = _form_and_length(str(e.task_name), dict(cell.get("task_kwargs") or {}))
            if placed is None:
                continue
            kw = e.backbone_kwargs
            mlp = e.variant == BASELINE
            if mlp != (e.backbone_name == "mlp"):
                continue
            depth = kw.get("num_layers", 2)
            width = (kw.get("hidden") or 4 * kw.get("d_model", 64)) if mlp else kw.get("d_model", 64)
            out.append(StudyPoint(
                label=label, task=str(e.task_name), form=placed[0], length=placed[1],
                model="mlp" if mlp else e.variant, depth=int(depth), width=int(width), params=e.params,
                train_size=cell.get("train_size"), median=e.median, solved=e.solved, n_seeds=e.n_seeds,
                steps=e.summary.median_steps, max_steps=e.summary.max_steps, train_median=_train_metric(e),
                chance=e.chance, threshold=e.threshold,
            ))
    return out


def is_study(pts: Sequence[StudyPoint]) -> bool:
    """True when some lookup setting has an MLP sweep (two sizes or more) beside an attention model."""
    for task, length in {(p.task, p.length) for p in pts if p.form != "control"}:
        here = [p for p in pts if (p.task, p.length) == (task, length) and p.train_size is None]
        if len({(p.depth, p.width) for p in here if p.is_mlp}) >= 2 and any(not p.is_mlp for p in here):
            return True
    return False


def _fresh(pts: Iterable[StudyPoint]) -> list[StudyPoint]:
    return [p for p in pts if p.train_size is None]


def _lookup_tasks(pts: Sequence[StudyPoint]) -> list[str]:
    return sorted({p.task for p in pts if p.form != "control"})


def _sci(x: float | None) -> str:
    if x is None:
        return "?"
    return f"{x:.1e}".replace("e+0", "e").replace("e+", "e")


# -- figures ------------------------------------------------------------------------------------
def _styles(names: Sequence[str]) -> dict[str, dict[str, Any]]:
    from attnzoo.leaderboard.report.plots import series_styles

    return series_styles(list(names), [n.startswith("MLP") for n in names])


def _params_axis(ax: Any, pts: Sequence[StudyPoint]) -> None:
    """Log x of parameter counts with the report's short labels (``20k``, ``1.5M``), which never overprint."""
    from attnzoo.leaderboard.report.plots import _log_ticks

    ax.set_xscale("log")
    xs = [p.params for p in pts if p.params]
    if xs:
        _log_ticks(ax.xaxis, min(xs), max(xs))
    ax.set_xlabel("parameters (count, log scale)", fontsize=8)


def _title(task: str, form: str) -> str:
    return f"{task} (name slice)" if form == "name" else task


def _chance(ax: Any, pts: Sequence[StudyPoint]) -> None:
    chances = {round(p.chance, 6) for p in pts if p.chance is not None}
    for c in sorted(chances):
        ax.axhline(c, color="0.4", linestyle=":", linewidth=1.0, label="chance")


def _legend(fig: Figure, axes: Sequence[Any]) -> None:
    handles: dict[str, Any] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="upper left", bbox_to_anchor=(1.0, 0.95),
                   frameon=False)


def accuracy_vs_params_figure(pts: Sequence[StudyPoint]) -> Figure | None:
    """Median test accuracy against parameters (log x): a row per lookup task, a panel per length."""
    from attnzoo.leaderboard.report.plots import _plt, plain_log

    fresh = [p for p in _fresh(pts) if p.form != "control" and p.params and p.median is not None]
    rows = _lookup_tasks(fresh)
    if not rows:
        return None
    plt = _plt()
    lengths = {t: sorted({p.length for p in fresh if p.task == t}) for t in rows}
    ncol = max(len(v) for v in lengths.values())
    fig, axes = plt.subplots(len(rows), ncol, figsize=(3.2 * ncol + 0.5, 2.9 * len(rows) + 0.4), squeeze=False)
    styles = _styles(sorted({p.name for p in fresh}, key=lambda n: (not n.startswith("MLP"), len(n), n)))
    for i, task in enumerate(rows):
        for j in range(ncol):
            ax = axes[i][j]
            if j >= len(lengths[task]):
                ax.set_visible(False)
                continue
            here = [p for p in fresh if p.task == task and p.length == lengths[task][j]]
            for name in sorted({p.name for p in here}):
                line = sorted((p for p in here if p.name == name), key=lambda p: p.params or 0)
                st = styles[name]
                ax.plot([p.params for p in line], [p.median for p in line], label=name, color=st["color"],
                        linestyle=st["linestyle"], marker="o" if line[0].is_mlp else "*",
                        markersize=4 if line[0].is_mlp else 9)
            _chance(ax, here)
            _params_axis(ax, here)
            ax.set_ylim(-0.02, 1.02)
            ax.set_title(f"{_title(task, here[0].form)}, T={lengths[task][j]} tokens", fontsize=9)
            if j == 0:
                ax.set_ylabel("test accuracy (fraction)", fontsize=8)
            ax.tick_params(labelsize=7)
    fig.suptitle("Accuracy vs parameters: each MLP depth vs attention, per sequence length", y=1.0)
    fig.tight_layout()
    _legend(fig, [a for r in axes for a in r])
    return fig


def _best_steps(pts: Sequence[StudyPoint]) -> tuple[float, bool] | None:
    """(steps, censored) of the fastest point: the fewest steps-to-solve, else the largest budget censored."""
    solved = [p.steps for p in pts if p.steps is not None]
    if solved:
        return min(solved), False
    budgets = [p.max_steps for p in pts if p.max_steps]
    return (max(budgets), True) if budgets else None


def steps_vs_length_figure(pts: Sequence[StudyPoint]) -> Figure | None:
    """Steps-to-solve of the fastest MLP and the fastest attention model against the sequence length, one panel
    per lookup task; a setting never solved is an open marker at its budget (censored)."""
    from attnzoo.leaderboard.report.plots import _plt, plain_log

    fresh = [p for p in _fresh(pts) if p.form != "control"]
    tasks = _lookup_tasks(fresh)
    if not tasks:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.0 * len(tasks) + 0.5, 3.3), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for kind, color, marker in (("MLP (fastest size)", "tab:red", "o"), ("attention", "tab:blue", "*")):
            xs, ys, open_x, open_y = [], [], [], []
            for length in sorted({p.length for p in fresh if p.task == task}):
                here = [p for p in fresh if p.task == task and p.length == length and p.is_mlp == (kind[0] == "M")]
                best = _best_steps(here)
                if best is None:
                    continue
                (open_x if best[1] else xs).append(length)
                (open_y if best[1] else ys).append(best[0])
            if xs:
                ax.plot(xs, ys, color=color, marker=marker, label=f"{kind}: solved")
            if open_x:
                ax.plot(open_x, open_y, color=color, marker=marker, linestyle="none", markerfacecolor="none",
                        markersize=9, label=f"{kind}: not solved by its budget")
        plain_log(ax, "x", base=2)
        plain_log(ax, "y")
        ax.set_title(_title(task, next(p.form for p in fresh if p.task == task)), fontsize=9)
        ax.set_xlabel("sequence length (tokens, log scale)", fontsize=8)
        ax.set_ylabel("steps to solve (optimizer steps)", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle("Steps to solve vs sequence length", y=1.0)
    fig.tight_layout()
    _legend(fig, axes[0])
    return fig


def controls_figure(pts: Sequence[StudyPoint]) -> Figure | None:
    """The MLPs on the controls (accuracy vs parameters per depth) and, beside them, train vs test accuracy of
    every finite-training-set row (memorization)."""
    from attnzoo.leaderboard.report.plots import _plt, plain_log

    controls = [p for p in _fresh(pts) if p.form == "control" and p.is_mlp and p.params and p.median is not None]
    finite = [p for p in pts if p.train_size is not None and p.median is not None]
    tasks = sorted({p.task for p in controls})
    panels = len(tasks) + (1 if finite else 0)
    if not panels:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, panels, figsize=(3.6 * panels + 0.5, 3.3), squeeze=False)
    styles = _styles(sorted({p.name for p in controls}))
    for ax, task in zip(axes[0], tasks):
        here = [p for p in controls if p.task == task]
        for name in sorted({p.name for p in here}):
            line = sorted((p for p in here if p.name == name), key=lambda p: p.params or 0)
            ax.plot([p.params for p in line], [p.median for p in line], marker="o", markersize=4, label=name,
                    color=styles[name]["color"], linestyle=styles[name]["linestyle"])
        _chance(ax, here)
        _params_axis(ax, here)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"control: {task}, T={here[0].length} tokens", fontsize=9)
        ax.set_ylabel("test accuracy (fraction)", fontsize=8)
        ax.tick_params(labelsize=7)
    if finite:
        ax = axes[0][-1]
        finite = sorted(finite, key=lambda p: (p.task, p.length, p.train_size or 0, p.params or 0))
        xs = range(len(finite))
        ax.bar([x - 0.2 for x in xs], [p.train_median or 0.0 for p in finite], width=0.4, color="tab:gray",
               label="train accuracy (the fixed set)")
        ax.bar([x + 0.2 for x in xs], [p.median or 0.0 for p in finite], width=0.4, color="tab:red",
               label="test accuracy (fresh data)")
        _chance(ax, finite)
        ax.set_xticks(list(xs))
        ax.set_xticklabels([f"T={p.length}\nN={p.train_size}\n{_sci(p.params)}" for p in finite], fontsize=6)
        ax.set_ylim(0, 1.05)
        ax.set_title("MLP on a finite training set", fontsize=9)
        ax.set_xlabel("setting (length, examples, parameters)", fontsize=8)
        ax.set_ylabel("accuracy (fraction)", fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
    fig.suptitle("Controls: the same MLPs where they must succeed", y=1.0)
    fig.tight_layout()
    _legend(fig, axes[0])
    return fig


# -- findings -----------------------------------------------------------------------------------
def _seeds(p: StudyPoint) -> str:
    return f"{p.solved}/{p.n_seeds} seeds"


def _attention_sentence(att: Sequence[StudyPoint]) -> tuple[str, bool]:
    solved = [p for p in att if p.steps is not None]
    if solved:
        best = min(solved, key=lambda p: (p.params or math.inf, p.steps))
        return (f"{best.name} at {_sci(best.params)} parameters solved it by step {best.steps:,.0f} on "
                f"{_seeds(best)}"), True
    if att:
        best = max(att, key=lambda p: p.median or 0.0)
        return (f"attention did not solve it either ({best.name}: {best.median:.2f} after "
                f"{best.max_steps or 0:,} steps)"), False
    return "no attention model ran here", False


def findings(pts: Sequence[StudyPoint]) -> list[str]:
    """The study's result in its honest form, computed from ``pts``: one sentence per lookup setting, the
    length-scaling claim (supported or not), memorization and the controls."""
    out: list[str] = []
    fresh = _fresh(pts)
    mlp_solved_lengths: dict[str, list[tuple[int, bool]]] = {}
    att_all_solved: dict[str, bool] = {}
    for task in _lookup_tasks(fresh):
        for length in sorted({p.length for p in fresh if p.task == task}):
            here = [p for p in fresh if p.task == task and p.length == length]
            mlps = [p for p in here if p.is_mlp and p.median is not None]
            att = [p for p in here if not p.is_mlp]
            if not mlps:
                continue
            chance = mlps[0].chance
            top = max(mlps, key=lambda p: p.median or 0.0)
            biggest = max(p.params or 0 for p in mlps)
            steps = max(p.max_steps or 0 for p in mlps)
            att_text, att_ok = _attention_sentence(att)
            att_all_solved[task] = att_all_solved.get(task, True) and att_ok
            passed = (top.median or 0.0) >= PASS
            mlp_solved_lengths.setdefault(task, []).append((length, passed))
            if passed:
                mlp = (f"the MLP did pass {PASS:g}: {top.name}, width {top.width}, {_sci(top.params)} parameters "
                       f"reached {top.median:.2f}" + (f" (solved by step {top.steps:,.0f})" if top.steps else ""))
            else:
                mlp = (f"no MLP up to {_sci(biggest)} parameters and {steps:,} steps passed {PASS:g} "
                       f"(best {top.median:.2f}, {top.name} width {top.width})")
            out.append(f"{_title(task, mlps[0].form)} at T={length} (chance {chance:.2f}): {mlp}, while {att_text}.")
    for task, seq in mlp_solved_lengths.items():
        lengths = [n for n, _ in seq]
        passed = [ok for _, ok in seq]
        prefix = passed == sorted(passed, reverse=True)  # passes only at the shortest lengths, if any
        claim = (f"Claim ({task}): an MLP's reach shrinks with the length while attention solves every length "
                 f"(T={', '.join(map(str, lengths))})")
        if att_all_solved.get(task) and not passed[-1] and prefix and len(seq) >= 2:
            where = [n for n, ok in seq if ok]
            out.append(f"{claim}: supported" + (f"; the MLP passed only at T<={max(where)}" if where else
                                                 "; the MLP passed at no length") + ".")
        else:
            why = ("attention did not solve every length" if not att_all_solved.get(task) else
                   "the MLP passed at the longest length" if passed[-1] else
                   "fewer than two lengths" if len(seq) < 2 else "the MLP passed at a longer length but not a shorter one")
            out.append(f"{claim}: not supported ({why}).")
    for p in sorted((p for p in pts if p.train_size is not None and p.median is not None),
                    key=lambda p: (p.task, p.length, p.train_size or 0)):
        memorized = (p.train_median or 0.0) >= 0.9 and p.median < p.threshold
        verdict = "memorized it" if memorized else "did not memorize it" if (p.train_median or 0) < 0.9 else "generalized"
        out.append(f"{p.task} at T={p.length} on {p.train_size:,} fixed examples: {p.name} width {p.width} "
                   f"({_sci(p.params)} parameters) {verdict}: train accuracy "
                   f"{'?' if p.train_median is None else f'{p.train_median:.2f}'}, test {p.median:.2f} "
                   f"(chance {p.chance or 0:.2f}).")
    for task in sorted({p.task for p in fresh if p.form == "control" and p.is_mlp}):
        here = [p for p in fresh if p.task == task and p.is_mlp and p.median is not None]
        if not here:
            continue
        top = max(here, key=lambda p: p.median or 0.0)
        ok = (top.median or 0.0) >= top.threshold
        out.append(f"Control {task} at T={top.length}: the MLP " + (
            f"solved it ({top.name} width {top.width}, {_sci(top.params)} parameters: {top.median:.2f}), so the "
            f"MLPs are not broken." if ok else
            f"did not solve it (best {top.median:.2f}): not supported that the MLPs work, so a lookup failure "
            f"here may be a training problem, not a missing prior."))
    return out


def render(tasks: dict[str, list[Entry]], directory: Path) -> list[str]:
    """Draw the study's figures into ``directory`` and return the markdown section (figures and findings);
    ``[]`` (and no file) when the results hold no study."""
    from attnzoo.leaderboard.report.plots import _save_optional

    pts = points(tasks)
    if not is_study(pts):
        return []
    md = ["## How far can a network without attention go?", "",
          "The inductive-bias study (issue 22): the MLP over depth x width against the fewest attention layers "
          "that solve each form, per sequence length. Each point is the median over seeds at the learning rate "
          "best on validation.", ""]
    figures = (accuracy_vs_params_figure, steps_vs_length_figure, controls_figure)
    alts = ("accuracy vs parameters", "steps to solve vs length", "controls")
    for stem, draw, alt in zip(FIGURES, figures, alts):
        fig = draw(pts)
        if _save_optional(fig, directory / f"{stem}.png"):
            md += [f"![{alt}]({stem}.png)", ""]
    md += ["### Findings", ""] + [f"- {s}" for s in findings(pts)] + [""]
    return md
