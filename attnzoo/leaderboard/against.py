"""``attnzoo bench --variants NAME --against REF``: rank a new variant among reference results without retraining them.

REF is a results directory (one holding ``results.jsonl``) or the name of a
reference attnzoo ships (``default``: ``benchmarks/results/default`` in a
checkout, ``attnzoo/_results/default`` in a wheel; see
:func:`attnzoo.leaderboard.grid.shipped_dir`). The command

1. reads the reference rows and takes their preset and seeds;
2. refuses (exit 2, saying why) when the rows cannot be compared with what
   this attnzoo would train: a config hash other than the preset's (a budget,
   knob, kwarg or trainer option differs, e.g. ``--steps``), reference cells
   this attnzoo builds differently (a changed default), or another attnzoo
   version (major.minor);
3. copies the reference rows into ``--out`` and runs the grid of the given
   variants there like any ``--resume``: only cells without a row train;
4. builds the leaderboard of reference plus new rows (the new variant's rows highlighted on the page) and
   writes ``ranking.md``, one "where it ranks" line per task, e.g.
   ``copy: mine ranks 3rd of 13 (median 0.940, 2/2 solved, on transformer); best additive 1.000``, and the
   probability that the new variant improves on each reference variant, with its interval
   (:func:`improvement_lines`): ``P(mine > scaled-dot) = 0.31 [0.12, 0.52] over 9 task(s): indistinguishable``.

The summaries come from :func:`attnzoo.leaderboard.report.aggregation.aggregate` and
:func:`~attnzoo.leaderboard.report.tables.overall_table` (the variant's best backbone
per task, ranked by :meth:`~attnzoo.leaderboard.report.aggregation.Entry.sort_key`), so the
ranking and the leaderboard cannot disagree.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attnzoo.errors import AttnzooError, close_matches
from attnzoo.leaderboard.grid import BASELINE, GridCell, Preset, shipped_dir
from attnzoo.leaderboard.escape import md
from attnzoo.leaderboard.store import RESULTS, latest_rows, read_rows

__all__ = [
    "AgainstError",
    "Reference",
    "RANKING",
    "list_references",
    "resolve_reference",
    "load_reference",
    "comparability_problems",
    "seed_out",
    "default_out",
    "where_it_ranks",
    "improvement_lines",
    "write_ranking",
]

#: the file in --out with the "where it ranks" lines
RANKING = "ranking.md"

#: how many differing cells a refusal spells out before it says "and N more"
_SHOW = 3


class AgainstError(AttnzooError, ValueError):
    """A reference that cannot be used (missing, empty, mixed); the message says why."""


@dataclass(frozen=True)
class Reference:
    """The rows of a reference run and what they were trained with.

    :ivar name: how the user named it (``default``, or the directory as given).
    :ivar directory: the folder holding ``results.jsonl`` (and perhaps ``runs.json``).
    :ivar rows: the latest row of every cell, in file order.
    """

    name: str
    directory: Path
    rows: list[dict[str, Any]]

    @property
    def presets(self) -> list[str]:
        return sorted({str(r["preset"]) for r in self.rows if r.get("preset")})

    @property
    def config_hashes(self) -> list[str]:
        return sorted({str(r["config_hash"]) for r in self.rows if r.get("config_hash")})

    @property
    def versions(self) -> list[str]:
        return sorted({str((r.get("provenance") or {}).get("attnzoo_version")) for r in self.rows
                       if (r.get("provenance") or {}).get("attnzoo_version")})

    @property
    def seeds(self) -> list[int]:
        return sorted({int(r["seed"]) for r in self.rows if r.get("status") != "n/a" and r.get("seed") is not None})

    @property
    def variants(self) -> list[str]:
        return sorted({str(r.get("variant")) for r in self.rows})


def list_references() -> list[str]:
    """Names of the reference results attnzoo ships (folders of ``shipped_dir("results")`` with a results.jsonl)."""
    root = shipped_dir("results")
    if root is None:
        return []
    return sorted(p.name for p in root.iterdir() if (p / RESULTS).is_file())


def resolve_reference(ref: str | Path) -> Path:
    """The directory of reference ``ref``: a results directory (or its results.jsonl), else a shipped name.

    :raises AgainstError: neither (with close matches among the shipped names).
    """
    p = Path(ref)
    if p.is_file() and p.name == RESULTS:
        return p.parent
    if p.is_dir():
        if not (p / RESULTS).is_file():
            raise AgainstError(f"--against {ref}: the directory has no {RESULTS}; pass a results directory of "
                               f"`attnzoo bench` or a shipped reference ({', '.join(list_references()) or 'none'})")
        return p
    known = list_references()
    if str(ref) in known:
        return shipped_dir("results") / str(ref)  # type: ignore[operator]  # known is non-empty: the dir exists
    hint = close_matches(str(ref), known)
    raise AgainstError(f"--against {ref}: no such results directory, nor a shipped reference"
                       + (f"; did you mean {', '.join(map(repr, hint))}?" if hint else "")
                       + f" (shipped: {', '.join(known) or 'none found in this install'})")


def load_reference(ref: str | Path) -> Reference:
    """Read reference ``ref`` (see :func:`resolve_reference`).

    :raises AgainstError: no rows, or rows of several presets or configurations (nothing to compare one run with).
    """
    directory = resolve_reference(ref)
    rows = latest_rows(read_rows(directory))
    reference = Reference(str(ref), directory, rows)
    where = f"--against {ref} ({directory / RESULTS})"
    if not rows:
        raise AgainstError(f"{where}: no rows")
    if len(reference.config_hashes) > 1 or len(reference.presets) > 1:
        raise AgainstError(f"{where}: rows of several runs (presets {', '.join(reference.presets) or '?'}, config "
                           f"hashes {', '.join(reference.config_hashes) or '?'}): a reference is one configuration")
    if not reference.config_hashes or not reference.presets:
        raise AgainstError(f"{where}: rows without a preset or config hash (not written by `attnzoo bench`)")
    return reference


def _major_minor(version: str) -> tuple[int, int] | None:
    m = re.match(r"(\d+)\.(\d+)", version)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _identity(cell: Any) -> dict[str, Any]:
    from attnzoo.cell import Cell

    return (cell if isinstance(cell, Cell) else Cell.from_json(cell)).identity()


def _differences(reference_cell: dict[str, Any], ours: GridCell) -> str:
    """``max_steps 300 -> 2, lr 0.003 -> 0.001``: the identity fields that differ (reference -> this run)."""
    try:
        a = _identity(reference_cell)
    except Exception as exc:  # a row from another schema: say so rather than guess
        return f"the reference cell does not load here ({type(exc).__name__}: {exc})"
    b = _identity(ours.cell)
    keys = [k for k in dict.fromkeys([*a, *b]) if a.get(k) != b.get(k)]
    return ", ".join(f"{k} {a.get(k, '(default)')!r} -> {b.get(k, '(default)')!r}" for k in keys) or "none"


def comparability_problems(reference: Reference, preset: Preset, grid: Sequence[GridCell],
                           version: str) -> list[str]:
    """Why the reference rows and cells of ``preset`` run by attnzoo ``version`` cannot share a leaderboard.

    :param grid: the whole preset expanded (every variant, the reference's seeds), to match cells by id.
    :param version: this attnzoo's version (``attnzoo.__version__``).
    :returns: one sentence per problem; empty when the rows are comparable.
    """
    problems: list[str] = []
    ours = _major_minor(version)
    theirs = sorted({mm for v in reference.versions if (mm := _major_minor(v)) is not None})
    if ours is None:
        problems.append(f"cannot tell this attnzoo's version ({version!r}: a source tree without install "
                        f"metadata); install it (`pip install -e .`) so rows say which attnzoo trained them")
    elif not theirs:
        problems.append("the reference rows do not say which attnzoo version trained them")
    elif theirs != [ours]:
        problems.append(f"the reference was trained by attnzoo {', '.join(reference.versions)}, this is attnzoo "
                        f"{version}: another major.minor may train, score or default differently; rerun the "
                        f"reference with this version (`attnzoo bench --preset {reference.presets[0]}`)")

    # cells of both, matched by what they are (task label, backbone, variant, seed, lr), to say what changed
    by_key = {(gc.task, gc.backbone, gc.variant, gc.seed, gc.lr): gc for gc in grid if gc.runnable}
    ids = {gc.id for gc in grid}
    ran = [r for r in reference.rows if r.get("status") != "n/a" and isinstance(r.get("cell"), dict)]

    def key(r: dict[str, Any]) -> tuple[Any, ...]:
        lr = r.get("lr")
        return (r.get("task"), r.get("backbone"), r.get("variant"), r.get("seed"),
                float(lr) if lr is not None else None)

    changed = [(r, by_key[key(r)]) for r in ran if key(r) in by_key and r.get("cell_id") not in ids]
    (ref_hash,) = reference.config_hashes
    if ref_hash != preset.config_hash():
        text = (f"the reference's config hash is {ref_hash} (preset {reference.presets[0]}), this run's is "
                f"{preset.config_hash()}: a budget, knob, kwarg or trainer option differs (--steps, --accelerator, "
                f"--precision... and edits of the preset change it; --seeds and --variants do not)")
        if changed:
            text += "; e.g. " + "; ".join(f"{r['task']} / {r['backbone']} / {r['variant']}: {_differences(r['cell'], gc)}"
                                          for r, gc in changed[:1])
        problems.append(text)
    elif changed:
        shown = "; ".join(f"{r['task']} / {r['backbone']} / {r['variant']} seed {r['seed']}: "
                          f"{_differences(r['cell'], gc)}" for r, gc in changed[:_SHOW])
        more = f" (and {len(changed) - _SHOW} more)" if len(changed) > _SHOW else ""
        problems.append(f"{len(changed)} reference cell(s) are not the cells this attnzoo builds from the same "
                        f"preset (a default changed): {shown}{more}")
    return problems


def default_out(reference: Reference, variants: Iterable[str]) -> Path:
    """``bench-out/<variants>-vs-<reference>``, e.g. ``bench-out/mine-vs-default``."""
    def slug(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"

    ref = reference.name if reference.name in list_references() else reference.directory.name
    return Path("bench-out") / f"{slug('+'.join(variants))}-vs-{slug(ref)}"


def seed_out(out: Path, reference: Reference) -> None:
    """Copy the reference's results.jsonl (and runs.json, which says how it was run) into the empty ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(reference.directory / RESULTS, out / RESULTS)
    runs = reference.directory / "runs.json"
    if runs.is_file():
        shutil.copyfile(runs, out / "runs.json")


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def where_it_ranks(rows: Iterable[dict[str, Any]], variants: Iterable[str]) -> list[str]:
    """One line per (task, variant) saying where each of ``variants`` ranks on that task.

    A variant's standing on a task is its best backbone there (as in the overall
    table); the field is every variant and baseline that ran on the task, those
    without a number (diverged, failed) last.

    :returns: e.g. ``copy: mine ranks 3rd of 13 (median 0.940, 2/2 solved, on transformer); best additive 1.000``,
        ``sort: mine n/a: needs a variant with pointer logits``; a median at chance level reads ``mqar: mine is at
        chance (13 ran) (median 0.130, chance 0.125, ...)`` rather than as a place among others at chance.
    """
    from attnzoo.leaderboard.report.aggregation import aggregate
    from attnzoo.leaderboard.report.tables import at_chance, overall_table

    tasks = aggregate(rows)
    _, _, chosen = overall_table(tasks)
    wanted = list(dict.fromkeys(variants))
    lines: list[str] = []
    for task, entries in tasks.items():
        numbered = sorted(((lab, by_task[task]) for lab, by_task in chosen.items() if task in by_task),
                          key=lambda item: item[1].sort_key())
        ranked = [lab for lab, _ in numbered]
        ranked += sorted({e.label for e in entries if e.status != "n/a" and e.label not in ranked})
        best = numbered[0] if numbered else None
        for v in wanted:
            mine = [e for e in entries if e.variant == v]
            if not mine:
                continue
            labels = sorted({e.label for e in mine})  # one label, or one per backbone for the baselines
            for lab in labels:
                e = chosen.get(lab, {}).get(task)
                if e is None:
                    ran = [x for x in mine if x.label == lab and x.status != "n/a"]
                    if not ran:
                        reasons = sorted({x.status_text() for x in mine if x.label == lab})
                        lines.append(f"{task}: {lab} {'; '.join(reasons)}")
                        continue
                    lines.append(f"{task}: {lab} ranks {_ordinal(ranked.index(lab) + 1)} of {len(ranked)} "
                                 f"({ran[0].status_text()})")
                    continue
                place = ranked.index(lab) + 1
                standing = (f"is at chance ({len(ranked)} ran)" if at_chance(e) else
                            f"ranks {_ordinal(place)} of {len(ranked)}")
                chance = f", chance {e.chance:.3g}" if at_chance(e) and e.chance is not None else ""
                text = (f"{task}: {lab} {standing} (median {e.median:.3f}{chance}, "
                        f"{e.summary.solved_text() if e.summary else '–'}"
                        + (f", on {e.backbone}" if e.variant != BASELINE else "") + ")")
                if best is not None and best[0] != lab:
                    text += f"; best {best[0]} {best[1].median:.3f}"
                elif len(numbered) > 1:
                    text += f"; next {numbered[1][0]} {numbered[1][1].median:.3f}"
                lines.append(text)
    return lines


#: a probability of improvement whose interval holds this reads "indistinguishable"
EVEN = 0.5


def improvement_lines(rows: Iterable[dict[str, Any]], variants: Iterable[str]) -> list[str]:
    """For each of ``variants`` against every other label of the overall table (reference variants and
    baselines), the probability of improvement (Agarwal et al. 2021) over the tasks both have a number on:
    ``P(mine > scaled-dot) = 0.31 [0.12, 0.52] over 9 tasks: indistinguishable``.

    Each task's runs are the seeds of each label's best backbone there, normalized to chance (0) and a perfect
    score (1); the interval is a 95% stratified bootstrap with a fixed seed (:mod:`attnzoo.leaderboard.stats`).
    "indistinguishable" where the interval holds 0.5, else "better" or "worse".
    """
    from attnzoo.leaderboard.report.aggregation import aggregate
    from attnzoo.leaderboard.report.tables import overall_table, rankings
    from attnzoo.leaderboard.stats import probability_of_improvement

    tasks = aggregate(rows)
    _, _, chosen = overall_table(tasks)
    ranks = rankings(tasks, chosen)
    wanted = list(dict.fromkeys(variants))
    lines = []
    for lab in [lab for lab in ranks if any(lab == v or lab.startswith(f"{v} (") for v in wanted)]:
        mine = ranks[lab].runs
        for other in sorted(ranks, key=lambda o: -(ranks[o].iqm.value if ranks[o].iqm is not None else -9.0)):
            if other == lab or any(other == v for v in wanted):
                continue
            common = [t for t in tasks if t in mine and t in ranks[other].runs]
            if not common:
                lines.append(f"P({lab} > {other}): no task where both have a number")
                continue
            ci = probability_of_improvement([mine[t] for t in common], [ranks[other].runs[t] for t in common])
            verdict = "indistinguishable" if ci.straddles(EVEN) else ("better" if ci.lo > EVEN else "worse")
            lines.append(f"P({lab} > {other}) = {ci.text()} over {len(common)} task(s): {verdict}")
    return lines


def write_ranking(out: Path, reference: Reference, lines: Sequence[str],
                  improvements: Sequence[str] = ()) -> Path:
    """Write ``out/ranking.md``: where the new variants rank against ``reference``, one line per task."""
    text = [
        "# Where it ranks",
        "",
        f"Against the reference `{reference.name}` ({len(reference.rows)} rows, preset "
        f"{reference.presets[0]}, config hash {reference.config_hashes[0]}), at the same budgets. Each line: the "
        f"variant's best backbone on the task, its rank among every variant and baseline that ran there (by the "
        f"median over seeds, then the solved rate), and the best other entry. The full tables are in "
        f"[leaderboard.md](leaderboard.md).",
        "",
        *[f"- {md(line)}" for line in lines],
        "",
    ]
    if improvements:
        text += ["## Probability of improvement", "",
                 "P(A > B): the chance that a run of A scores higher than a run of B on a task drawn at random from "
                 "those both have a number on (Agarwal et al. 2021), scores normalized to chance (0) and perfect (1), "
                 "with a 95% stratified bootstrap interval (fixed seed). *indistinguishable*: the interval holds 0.5.",
                 "", *[f"- {line}" for line in improvements], ""]
    path = out / RANKING
    path.write_text("\n".join(text), encoding="utf-8")
    return path
