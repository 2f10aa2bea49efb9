"""A validated :class:`~attnzoo.leaderboard.grid.presets.Preset` -> :class:`GridCell` entries, each holding a
:class:`~attnzoo.cell.Cell`.

:func:`expand` turns a preset into cells, one per task x backbone x variant x seed x learning rate (x weight
decay), plus one ``"n/a"`` entry per task x backbone x variant pair that does not fit, carrying the reason;
:func:`shard` splits them by id. Nothing here imports Lightning.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from attnzoo.cell import Cell, Row, cell_default, digest
from attnzoo.errors import AttnzooError, close_matches, fit_reason
from attnzoo.leaderboard.grid.presets import Preset
from attnzoo.resolve import Catalog

__all__ = ["BASELINE", "FilterError", "GridCell", "cell_id", "check_filters", "expand", "shard", "parse_shard"]

#: the variant label of cells that run a backbone without attention
BASELINE = "none"


class FilterError(AttnzooError, ValueError):
    """A ``--variants`` / ``--tasks`` / ``--backbones`` pattern that matches nothing (``problems`` says which)."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


# -- ids -------------------------------------------------------------------------
def cell_id(cell: Mapping[str, Any] | Cell, label: str | None = None) -> str:
    """Stable id of a cell: a hash of what it computes (see :meth:`Cell.identity`)."""
    if not isinstance(cell, Cell):
        data = dict(cell)
        label = label or data.pop("task_label", None)
        cell = Cell.from_json(data)
    return cell.id(label)


@dataclass
class GridCell:
    """One entry of the grid: a runnable :class:`~attnzoo.cell.Cell`, or an ``n/a`` pair with its reason.

    ``cell`` is exactly what :func:`attnzoo.harness.run.run_cell` takes; an n/a
    entry keeps its cell (seed 0, the first learning rate) only to show its config.
    """

    id: str
    task: str              # the preset's label (usually the task name)
    backbone: str
    variant: str           # attention name, or "none" for baselines
    cell: Cell
    status: str = "pending"  # "pending" or "n/a"
    reason: str | None = None
    swept: tuple[str, ...] = ()  # backbone kwargs a `backbone_sweep` set: the label shows their values

    @property
    def runnable(self) -> bool:
        return self.status != "n/a"

    @property
    def seed(self) -> int | None:
        return self.cell.seed if self.runnable else None

    @property
    def lr(self) -> float | None:
        return self.cell.lr if self.runnable else None

    def label(self) -> str:
        # a sweep's cells differ only in these kwargs; without them 18 progress lines would read alike
        setting = ", ".join(f"{k}={self.cell.backbone_kwargs.get(k)}" for k in self.swept)
        base = f"{self.task} / {self.backbone}{f' ({setting})' if setting else ''} / {self.variant}"
        if not self.runnable:
            return base
        wd = "" if self.cell.weight_decay == cell_default("weight_decay") else f" / wd {self.cell.weight_decay:g}"
        return f"{base} / seed {self.seed} / lr {self.lr:g}{wd}"

    def na_row(self) -> Row:
        """The results row an ``n/a`` pair leaves behind (the report prints its reason)."""
        return Row.empty("n/a", self.reason)


def _matches(name: str, patterns: Iterable[str] | None) -> bool:
    if patterns is None:
        return True
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def check_filters(
    preset: Preset,
    *,
    variants: Iterable[str] | None = None,
    tasks: Iterable[str] | None = None,
    backbones: Iterable[str] | None = None,
    catalog: Catalog | None = None,
) -> None:
    """Raise :class:`FilterError` for every filter pattern that matches nothing, with close matches.

    A typo never narrows the grid silently, even when the other names in the list match.
    """
    catalog = catalog or Catalog()
    entries = preset.tasks
    pools = {
        "variant": ("--variants", [*catalog.variant_names(), BASELINE], variants, "registered variants ('none' = "
                    "the baselines)"),
        "task": ("--tasks", sorted({e.label for e in entries} | {e.task for e in entries}), tasks,
                 f"the tasks of preset {preset.name!r}"),
        "backbone": ("--backbones", list(preset.backbones), backbones, f"the backbones of preset {preset.name!r}"),
    }
    problems = []
    for kind, (flag, pool, patterns, where) in pools.items():
        for pat in patterns or ():
            if not fnmatch.filter(pool, pat):
                hint = close_matches(pat, pool)
                problems.append(f"{flag}: {pat!r} matches none of {where}"
                                + (f"; did you mean {', '.join(map(repr, hint))}?" if hint else "")
                                + f" (known: {', '.join(sorted(pool))})")
    if problems:
        raise FilterError(problems)


def expand(
    preset: Preset,
    *,
    variants: Iterable[str] | None = None,
    tasks: Iterable[str] | None = None,
    backbones: Iterable[str] | None = None,
    catalog: Catalog | None = None,
) -> list[GridCell]:
    """Every cell of the preset, n/a pairs included, in a stable order.

    Order: seed-major (a grid stopped half-way still has whole seeds), then
    task, backbone, variant, learning rate, as the preset lists them. Whether a
    pair fits is decided here, once, by :func:`attnzoo.errors.fit_reason`.

    :param variants, tasks, backbones: extra fnmatch filters (the CLI's
        ``--variants`` etc.); ``"none"`` selects the baselines.
    :raises FilterError: a filter pattern matches nothing (see :func:`check_filters`).
    """
    catalog = catalog or Catalog()
    variant_filter = list(variants) if variants is not None else None
    task_filter = list(tasks) if tasks is not None else None
    backbone_filter = list(backbones) if backbones is not None else None
    check_filters(preset, variants=variant_filter, tasks=task_filter, backbones=backbone_filter, catalog=catalog)
    all_variants = catalog.variant_names()
    att_kwargs = dict(preset.data.get("attention_kwargs") or {})
    shared = preset.cell_options()

    # (task label, backbone, variant label, cell, [(lr, weight decay or None)], n/a reason, swept kwargs)
    pairs: list[tuple[str, str, str, Cell, list[tuple[float, float | None]], str | None, tuple[str, ...]]] = []
    for entry in preset.tasks:
        if not _matches(entry.label, task_filter) and not _matches(entry.task, task_filter):
            continue
        task_spec = catalog.task_class(entry.task).spec
        for bname, bkwargs in preset.backbones.items():
            if not _matches(bname, entry.backbones) or not _matches(bname, backbone_filter):
                continue
            settings = entry.backbone_settings(bname, {**bkwargs, **entry.backbone_kwargs.get(bname, {})})
            bspec, _factory = catalog.backbone(bname)
            mode = getattr(bspec, "attention", "required")
            names: list[str | None] = []
            if mode != "none":
                names += [v for v in all_variants if _matches(v, preset.variants) and _matches(v, entry.variants)
                          and _matches(v, variant_filter)
                          and not (entry.exclude_variants and _matches(v, entry.exclude_variants))]
            if mode in ("none", "optional") and preset.baselines and _matches(BASELINE, variant_filter):
                names.append(None)
            budget = entry.budget
            data = {} if entry.train_size is None else {"train_size": entry.train_size}
            for bkwargs, vname in ((kw, v) for kw in settings for v in names):
                vspec = catalog.variant(vname)[0] if vname is not None else None
                cell = Cell(
                    task=entry.task, task_kwargs=entry.knobs, backbone=bname, backbone_kwargs=bkwargs,
                    attention=vname, attention_kwargs=dict(att_kwargs.get(vname) or {}) if vname else {},
                    max_steps=budget.max_steps, batch_size=budget.batch_size, warmup_steps=budget.warmup_steps,
                    schedule=budget.schedule, val_every=budget.val_every, lr=budget.lrs[0], **shared, **data,
                )
                grid = [(lr, wd) for lr in budget.lrs for wd in (budget.weight_decays or (None,))]
                pairs.append((entry.label, bname, vname or BASELINE, cell, grid, fit_reason(bspec, task_spec, vspec),
                              tuple(entry.backbone_sweep.get(bname) or ())))

    out: list[GridCell] = []
    for label, bname, vlabel, cell, _lrs, reason, _swept in pairs:
        if reason is not None:
            ident = {"na": True, "task_label": label, "task": cell.task, "task_kwargs": cell.task_kwargs,
                     "backbone": cell.backbone, "attention": cell.attention}
            if digest(ident) not in {g.id for g in out}:  # a swept backbone's settings share one n/a entry
                out.append(GridCell(digest(ident), label, bname, vlabel, cell, "n/a", reason))
    for seed in preset.seeds:
        for label, bname, vlabel, base, lrs, reason, swept in pairs:
            if reason is not None:
                continue
            for lr, wd in lrs:
                cell = base.replace(seed=int(seed), lr=float(lr), **({} if wd is None else {"weight_decay": wd}))
                out.append(GridCell(cell.id(label), label, bname, vlabel, cell, swept=swept))
    return out


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)`` with ``0 <= I < N`` (e.g. ``$SLURM_ARRAY_TASK_ID/4``)."""
    try:
        i_str, n_str = text.split("/")
        i, n = int(i_str), int(n_str)
    except ValueError:
        raise ValueError(f"--shard: expected I/N such as 0/4, got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard: need N >= 1 and 0 <= I < N (shards are numbered from 0), got {text!r}")
    return i, n


def shard(cells: list[GridCell], index: int, count: int) -> list[GridCell]:
    """The cells of shard ``index`` of ``count``: decided by each cell's id alone,

    so the split is deterministic, the shards are disjoint and their union is
    the grid, and a cell keeps its shard when the grid grows.
    """
    if count == 1:
        return list(cells)
    return [c for c in cells if int(c.id, 16) % count == index]
