"""A results directory from Python: typed rows, the leaderboard's summary table, and DataFrames.

::

    from attnzoo import results
    res = results.load("bench-out/default")      # every cell's latest Row
    res.summary().to_pandas()                    # one line per (task label, backbone, variant)

:meth:`Results.summary` is the table the report prints (:mod:`attnzoo.leaderboard.report` calls
:meth:`Results.entries`, the same aggregation): per (task label, backbone, variant), the learning rate
best on validation (mean over seeds, a seed that did not finish counting 0), then over the seeds at that
learning rate the median of the main test metric, its min and max, the solved rate against the task's
threshold and the steps to solve (the median over seeds of the first validation step at the threshold;
None when censored, i.e. half the seeds or more never got there within ``max_steps``).

A *task* is a registered generator (``attnzoo list --tasks``); a *label* is a task run under one setting
in a preset (``induction-heads-1l`` is the induction-heads task with a 1-layer Transformer, ``copy-ntm``
the copy task sized for the NTM). Rows carry both: ``task`` is the label, ``task_name`` the task.

Importing this module is light: the report's aggregation loads on first use, pandas only in
``to_pandas()`` (``pip install 'attnzoo[pandas]'``), and nothing here imports Lightning or matplotlib.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from attnzoo.cell import Row

if TYPE_CHECKING:
    import pandas

    from attnzoo.leaderboard.report.aggregation import Entry

__all__ = ["load", "from_rows", "Results", "Summary", "SummaryRow", "MissingExtraError"]


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the extra that provides it."""


def _pandas(what: str) -> Any:
    try:
        import pandas
    except ImportError as exc:
        raise MissingExtraError(f"{what} needs pandas, which is not installed: pip install 'attnzoo[pandas]' "
                                f"(or pip install pandas)") from exc
    return pandas


@dataclass(frozen=True)
class SummaryRow:
    """One (task label, backbone, variant) of the leaderboard, over its seeds at the best learning rate.

    :ivar label: the task label in the preset (``induction-heads-1l``); ``task`` is the registered task.
    :ivar status: ``ok``, ``n/a`` (the pair does not fit: ``reason``), ``diverged``, ``oom`` or ``failed``.
    :ivar median: the median over seeds of the main test metric (a seed that did not finish counts 0).
    :ivar per_seed: every seed's value in seed order (None: the seed did not finish).
    :ivar normalized_median: ``(median - chance) / (1 - chance)``: 0 at chance, 1 perfect.
    :ivar steps_to_solve: median over seeds of the first validation step at ``solve_threshold``; None when
        censored (``steps_per_seed`` holds None for a seed that never got there within ``max_steps``).
    :ivar baseline: a network without attention (variant ``none``).
    """

    label: str
    task: str
    backbone: str
    variant: str
    baseline: bool
    status: str
    reason: str | None
    main_metric: str | None
    median: float | None
    min: float | None
    max: float | None
    per_seed: tuple[float | None, ...]
    seeds: tuple[Any, ...]
    solved: int
    n_seeds: int
    solve_threshold: float
    steps_to_solve: float | None
    steps_per_seed: tuple[int | None, ...]
    max_steps: int | None
    best_lr: float | None
    lrs: tuple[float, ...]
    chance: float | None
    normalized_median: float | None
    long_median: float | None
    params: float | None
    tokens_per_s: float | None

    @classmethod
    def from_entry(cls, e: Entry) -> SummaryRow:
        from attnzoo.leaderboard.grid import BASELINE
        from attnzoo.leaderboard.stats import normalize

        s = e.summary
        chance = e.chance if e.chance is not None and 0.0 <= e.chance <= 1.0 else None
        return cls(
            label=e.task, task=e.task_name or e.task, backbone=e.backbone, variant=e.variant,
            baseline=e.variant == BASELINE, status=e.status, reason=e.reason, main_metric=e.main_metric,
            median=e.median, min=s.lo if s and e.has_number else None, max=s.hi if s and e.has_number else None,
            per_seed=tuple(s.values) if s else (), seeds=tuple(s.seeds) if s else (), solved=e.solved,
            n_seeds=e.n_seeds, solve_threshold=e.threshold, steps_to_solve=s.median_steps if s else None,
            steps_per_seed=tuple(s.steps) if s else (), max_steps=s.max_steps if s else None, best_lr=e.best_lr,
            lrs=tuple(e.lrs), chance=e.chance,
            normalized_median=normalize(e.median, chance) if e.median is not None else None,
            long_median=e.long_summary.median if e.long_summary else None, params=e.params,
            tokens_per_s=e.tokens_per_s,
        )


class Summary(Sequence[SummaryRow]):
    """The leaderboard's summary: a sequence of :class:`SummaryRow`, task labels in first-seen order, ranked
    within each label as in the report."""

    def __init__(self, rows: Sequence[SummaryRow]) -> None:
        self._rows = tuple(rows)

    @overload
    def __getitem__(self, i: int) -> SummaryRow: ...
    @overload
    def __getitem__(self, i: slice) -> Summary: ...

    def __getitem__(self, i: int | slice) -> SummaryRow | Summary:
        return Summary(self._rows[i]) if isinstance(i, slice) else self._rows[i]

    def __len__(self) -> int:
        return len(self._rows)

    def __repr__(self) -> str:
        labels = list(dict.fromkeys(r.label for r in self._rows))
        return f"Summary({len(self)} entries over {len(labels)} task label(s))"

    def where(self, **match: Any) -> Summary:
        """The entries whose fields equal ``match`` (``summary.where(label="copy", backbone="seq2seq")``).

        :raises TypeError: a name that is not a :class:`SummaryRow` field.
        """
        names = {f.name for f in fields(SummaryRow)}
        bad = sorted(set(match) - names)
        if bad:
            raise TypeError(f"Summary.where: unknown field(s) {', '.join(bad)}; fields are {', '.join(sorted(names))}")
        return Summary([r for r in self._rows if all(getattr(r, k) == v for k, v in match.items())])

    def to_pandas(self) -> pandas.DataFrame:
        """A DataFrame, one line per entry, the :class:`SummaryRow` fields as columns (``attnzoo[pandas]``)."""
        pd = _pandas("Summary.to_pandas()")
        return pd.DataFrame([asdict(r) for r in self._rows], columns=[f.name for f in fields(SummaryRow)])


class Results(Sequence[Row]):
    """The latest :class:`~attnzoo.cell.Row` of every cell of a results directory (a retried cell's last row)."""

    def __init__(self, rows: Sequence[Row | dict[str, Any]], directory: Path | None = None) -> None:
        from attnzoo.leaderboard.store import latest_rows

        self.directory = directory
        plain = [r.to_json() if isinstance(r, Row) else r for r in rows]  # latest_rows keys dicts
        self._rows = tuple(Row.from_json(r) for r in latest_rows(plain))
        self._entries: dict[str, list[Entry]] | None = None

    @overload
    def __getitem__(self, i: int) -> Row: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[Row]: ...

    def __getitem__(self, i: int | slice) -> Row | Sequence[Row]:
        return self._rows[i]

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[Row]:
        return iter(self._rows)

    def __repr__(self) -> str:
        where = f" from {self.directory}" if self.directory else ""
        return f"Results({len(self)} rows{where})"

    def entries(self) -> dict[str, list[Entry]]:
        """``{task label: [Entry, ...]}``, ranked: :func:`attnzoo.leaderboard.report.aggregation.aggregate` of these rows
        (what the report's tables, figures and findings are built from; computed once)."""
        if self._entries is None:
            from attnzoo.leaderboard.report.aggregation import aggregate

            self._entries = aggregate(self._rows)  # the typed Rows themselves: the report reads attributes
        return self._entries

    def summary(self) -> Summary:
        """The per (task label, backbone, variant) table the report prints (see the module docstring)."""
        return Summary([SummaryRow.from_entry(e) for entries in self.entries().values() for e in entries])

    def to_pandas(self) -> pandas.DataFrame:
        """One line per row (cell), its fields as columns and each metric a column of its own
        (``metrics.test/exact_acc``); ``curve``, ``attention_map``, ``cell`` and ``provenance`` stay objects."""
        pd = _pandas("Results.to_pandas()")
        flat = []
        for r in self._rows:
            d = r.to_json()
            for k, v in (d.pop("metrics", None) or {}).items():
                d[f"metrics.{k}"] = v
            flat.append(d)
        return pd.DataFrame(flat)


def from_rows(rows: Sequence[Row | dict[str, Any]]) -> Results:
    """:class:`Results` of rows already in memory (dicts as in ``results.jsonl``, or :class:`Row`)."""
    return Results(rows)


def load(directory: str | os.PathLike[str]) -> Results:
    """The rows of ``DIR/results.jsonl`` (or of that file itself), every cell's latest.

    :raises FileNotFoundError: no results file there.
    """
    from attnzoo.leaderboard.store import RESULTS, read_rows

    p = Path(directory)
    path = p if p.is_file() else p / RESULTS
    if not path.is_file():
        raise FileNotFoundError(f"attnzoo.results.load: no {RESULTS} at {path} (pass a directory written by "
                                f"`attnzoo bench`, or its {RESULTS})")
    return Results(read_rows(path), directory=path.parent)
