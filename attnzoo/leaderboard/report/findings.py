"""Findings written from the data: each task's claims, checked against ``results.jsonl``.

A task states the contrasts it exists to show in :attr:`attnzoo.tasks.TaskSpec.contrasts`
(see :class:`attnzoo.tasks.base.Contrast`). :func:`evaluate` checks each one against the
report's aggregated entries and returns one :class:`Finding` per claim: a sentence with
its numbers (medians over seeds at the learning rate chosen on validation, solved
rates against the task's threshold, chance) and a verdict:

- ``supported`` / ``not supported``: the numbers decide; a claim the data do not
  support is printed as such, never dropped;
- ``missing``: the rows the claim needs are not in the results (the preset did not
  run them, or every such pair was n/a), and the sentence says which;
- ``unknown``: the task has no contrasts we can read (a plugin task not installed
  here, or none declared).

Every comparison is between medians over seeds, where a seed that diverged or failed
counts as 0 (as in the tables). ``findings.md`` is :func:`findings_markdown`'s output.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from attnzoo.leaderboard.escape import md
from attnzoo.leaderboard.report.aggregation import seed_summary, solve_threshold, task_spec
from attnzoo.tasks.base import NO_ATTENTION, Contrast

if TYPE_CHECKING:
    from attnzoo.leaderboard.report.aggregation import Entry, SeedSummary

__all__ = ["Finding", "evaluate", "findings_markdown", "VERDICTS"]

VERDICTS = ("supported", "not supported", "missing", "unknown")


@dataclass(frozen=True)
class Finding:
    """One claim about one task, checked.

    :param task: the task's label in the results.
    :param kind: the contrast's kind (``attention_beats_baseline``, ...), or ``"none"``.
    :param verdict: one of :data:`VERDICTS`.
    :param claim: the claim with its numbers (no verdict).
    :param why: where the expectation comes from.
    :param context: the task's metric, chance and threshold (one line, shared by its findings).
    """

    task: str
    kind: str
    verdict: str
    claim: str
    why: str = ""
    context: str = ""
    detail: str = ""

    @property
    def verdict_text(self) -> str:
        return self.verdict + (f" ({self.detail})" if self.detail else "")

    @property
    def sentence(self) -> str:
        """``<claim>: supported.`` (or ``not supported (gap +0.03 < 0.10).``, ``missing (...)``)."""
        return f"{self.claim}: {self.verdict_text}."


# -- picking entries ----------------------------------------------------------------------------------
def _split_key(e: Entry, split: str, metric: str | None) -> str | None:
    """``test/exact_acc`` for split="test", or with another split / metric name."""
    main = e.main_metric or ""
    name = metric or (main.split("/", 1)[1] if "/" in main else None)
    return f"{split}/{name}" if name else None


def _stats(e: Entry, split: str = "test", metric: str | None = None) -> SeedSummary | None:
    """The entry's seeds on ``split`` (and ``metric``; default the main one): solved rates only for the main metric."""
    if split == "test" and metric is None:
        return e.summary
    if split == "test_long" and metric is None:
        return e.long_summary
    key = _split_key(e, split, metric)
    return seed_summary(e.rows, key, None) if key and e.rows else None


def _trained(entries: Sequence[Entry], *, variant: str | None = None, attention: bool | None = None,
             backbone: str | None = None) -> list[Entry]:
    """Entries that ran (any status but n/a), filtered by variant name, attention or not, and backbone name."""
    out = []
    for e in entries:
        if e.status == "n/a" or e.summary is None:
            continue
        if variant is not None and e.variant != variant:
            continue
        if attention is not None and (e.variant != NO_ATTENTION) != attention:
            continue
        if backbone is not None and backbone not in (e.backbone_name, e.backbone):
            continue
        out.append(e)
    return out


def _best(entries: Sequence[Entry], split: str = "test", metric: str | None = None) -> tuple[Entry, SeedSummary] | None:
    """The entry with the highest median on ``split`` (ties: solved rate, then name), with its stats."""
    scored = [(e, s) for e in entries if (s := _stats(e, split, metric)) is not None and s.median is not None]
    if not scored:
        return None
    return max(scored, key=lambda es: (es[1].median, es[1].solved, es[0].variant, es[0].backbone))


def _who(e: Entry) -> str:
    return f"{e.variant} [{e.backbone}]"


def _nums(s: SeedSummary | None) -> str:
    """``median 1.00, 3/3 solved (by step 350)`` (``, 1 diverged`` where a seed did not finish; seeds listed when
    they disagree); the step is the median over seeds of the first validation step at the threshold, ``not by
    step 400`` when half the seeds or more never got there."""
    if s is None or s.median is None:
        return "no result"
    text = f"median {s.median:.2f}"
    if s.threshold is not None:
        text += f", {s.solved}/{s.n} solved"
        text += f" ({s.steps_text()})" if s.steps_text() else ""
    if s.n > 1 and s.hi is not None and s.lo is not None and s.hi - s.lo >= 0.1:
        text += f", seeds {s.per_seed()}"
    elif s.bad:
        text += ", " + ", ".join(f"{n} {st}" for st, n in sorted(s.bad.items()))
    return text


def _subject(variant: str | None, backbone: str | None) -> str:
    """``general on seq2seq``; a baseline reads ``the seq2seq without attention``."""
    if variant == NO_ATTENTION:
        return f"the {backbone} without attention" if backbone else "a backbone without attention"
    return f"{variant}{_where(backbone)}"


def _chance(c: float | None) -> str:
    if c is None:
        return ""
    return f"; chance {c:.2f}" if c >= 0.01 else f"; chance {c:.1g}"


def _where(backbone: str | None) -> str:
    return f" on {backbone}" if backbone else ""


def _on(split: str) -> str:
    return " on test_long" if split == "test_long" else ""


def _why_missing(entries: Sequence[Entry], what: str, *, variant: str | None = None, attention: bool | None = None,
                 backbone: str | None = None) -> str:
    """``no rows for ...`` or ``every ... pair is n/a (reason)``."""
    na = [e for e in entries if e.status == "n/a"
          and (variant is None or e.variant == variant)
          and (attention is None or (e.variant != NO_ATTENTION) == attention)
          and (backbone is None or backbone in (e.backbone_name, e.backbone))]
    if na:
        return f"{what} is n/a here ({na[0].reason})"
    return f"no rows for {what}"


# -- the checks -----------------------------------------------------------------------------------
Verdict = tuple[str, str, str]  # (verdict, claim, detail)


def _gap_verdict(gap: float, margin: float) -> tuple[str, str]:
    ok = gap >= margin - 1e-12
    if margin >= 0:
        return ("supported" if ok else "not supported"), ("" if ok else f"gap {gap:+.2f}, needs ≥ {margin:+.2f}")
    return ("supported" if ok else "not supported"), ("" if ok else f"behind by {-gap:.2f}, more than {-margin:.2f}")


def _attention_beats_baseline(c: Contrast, entries: Sequence[Entry], task: str, chance: str, **_: Any) -> Verdict:
    split, margin = c.get("split", "test"), float(c.get("margin", 0.1))
    bb, base_bb = c.get("backbone"), c.get("baseline_backbone")
    head = f"{task}: the best attention variant{_where(bb)} beats the best no-attention baseline{_where(base_bb)}"
    head += _on(split) + (f" by ≥ {margin:.2f}" if margin > 0 else "")
    att = _best(_trained(entries, attention=True, backbone=bb), split)
    base = _best(_trained(entries, attention=False, backbone=base_bb), split)
    if att is None or base is None:
        missing = []
        if att is None:
            missing.append(_why_missing(entries, "an attention variant" + _where(bb), attention=True, backbone=bb))
        if base is None:
            missing.append(_why_missing(entries, "a no-attention baseline" + _where(base_bb), attention=False,
                                        backbone=base_bb))
        return "missing", head, "; ".join(missing)
    (ea, sa), (eb, sb) = att, base
    claim = (f"{head} ({_who(ea)}, {_nums(sa)} vs {_who(eb)}, {_nums(sb)}{chance})")
    verdict, detail = _gap_verdict(sa.median - sb.median, margin)
    return verdict, claim, detail


def _variant_beats(c: Contrast, entries: Sequence[Entry], task: str, chance: str, **_: Any) -> Verdict:
    a, b = c.get("a"), c.get("b")
    bb = c.get("backbone")
    b_bb = c.get("b_backbone", bb)
    split, margin, metric = c.get("split", "test"), float(c.get("margin", 0.0)), c.get("metric")
    verb = "beats" if margin > 0 else ("is at least as good as" if margin == 0 else
                                       f"is at least as good as (within {-margin:.2f})")
    head = f"{task}: {_subject(a, bb)} {verb} {_subject(b, b_bb)}{_on(split)}"
    head += (f" in {metric}" if metric else "") + (f" by ≥ {margin:.2f}" if margin > 0 else "")
    ba = _best(_trained(entries, variant=a, backbone=bb), split, metric)
    bbest = _best(_trained(entries, variant=b, backbone=b_bb), split, metric)
    if ba is None or bbest is None:
        missing = []
        if ba is None:
            missing.append(_why_missing(entries, _subject(a, bb), variant=a, backbone=bb))
        if bbest is None:
            missing.append(_why_missing(entries, _subject(b, b_bb), variant=b, backbone=b_bb))
        return "missing", head, "; ".join(missing)
    (ea, sa), (eb, sb) = ba, bbest
    claim = f"{head} ({_who(ea)}, {_nums(sa)} vs {_who(eb)}, {_nums(sb)}{chance})"
    verdict, detail = _gap_verdict(sa.median - sb.median, margin)
    return verdict, claim, detail


def _solves(c: Contrast, entries: Sequence[Entry], task: str, chance: str, threshold: float, **_: Any) -> Verdict:
    v, bb, split = c.get("variant"), c.get("backbone"), c.get("split", "test")
    head = f"{task}: {_subject(v, bb)} solves it{_on(split)} (median ≥ {threshold:g})"
    best = _best(_trained(entries, variant=v, backbone=bb), split)
    if best is None:
        return "missing", head, _why_missing(entries, _subject(v, bb), variant=v, backbone=bb)
    e, s = best
    claim = f"{head}: {_who(e)}, {_nums(s)}{chance}"
    ok = s.median >= threshold - 1e-12
    return ("supported" if ok else "not supported"), claim, ""


def _fails_long(c: Contrast, entries: Sequence[Entry], task: str, threshold: float, **_: Any) -> Verdict:
    v, bb = c.get("variant"), c.get("backbone")
    head = f"{task}: {_subject(v, bb)} does not generalize to test_long (median there < {threshold:g})"
    trained = _trained(entries, variant=v, backbone=bb)
    if not trained:
        return "missing", head, _why_missing(entries, _subject(v, bb), variant=v, backbone=bb)
    e = max(trained, key=lambda x: (x.median if x.median is not None else -1.0))
    s_long = _stats(e, "test_long")
    if s_long is None or s_long.median is None:
        if e.status != "ok":
            return "missing", head, f"{_who(e)} did not finish: {e.status_text()}"
        return ("supported", f"{head}: {_who(e)} ({_nums(e.summary)} at the training length) has no test_long "
                "result: it is built for one input length and cannot run at another", "")
    claim = f"{head}: {_who(e)}, {_nums(e.summary)} at the training length, {_nums(s_long)} on test_long"
    return ("supported" if s_long.median < threshold else "not supported"), claim, ""


def _degrades_with_length(c: Contrast, entries: Sequence[Entry], task: str, **_: Any) -> Verdict:
    v, bb, metric, margin = c.get("variant"), c.get("backbone"), c.get("metric"), float(c.get("margin", 0.1))
    what = metric or "the main metric"
    head = (f"{task}: {_subject(v, bb)} degrades on longer sequences ({what} drops by ≥ {margin:.2f} from test to "
            "test_long and ends below the best attention variant there)")
    subject = _trained(entries, variant=v, backbone=bb)
    if not subject:
        return "missing", head, _why_missing(entries, _subject(v, bb), variant=v, backbone=bb)
    e = subject[0]
    st, sl = _stats(e, "test", metric), _stats(e, "test_long", metric)
    ref = _best(_trained(entries, attention=True, backbone=bb), "test_long", metric)
    if st is None or sl is None or st.median is None or sl.median is None:
        return "missing", head, f"{_who(e)} has no {what} on both test and test_long"
    if ref is None:
        return "missing", head, _why_missing(entries, "an attention variant" + _where(bb), attention=True,
                                             backbone=bb)
    er, sr = ref
    drop = st.median - sl.median
    claim = (f"{head}: {_who(e)} {st.median:.2f} on test -> {sl.median:.2f} on test_long (drop {drop:.2f}); "
             f"best attention variant there {_who(er)}, {sr.median:.2f}")
    ok = drop >= margin - 1e-12 and sl.median < sr.median
    detail = "" if ok else ("drop smaller than the margin" if drop < margin - 1e-12 else
                            "not below the best attention variant on test_long")
    return ("supported" if ok else "not supported"), claim, detail


def _depth_helps(c: Contrast, entries: Sequence[Entry], task: str, chance: str, pool: Sequence[Entry] = (),
                 **_: Any) -> Verdict:
    bb, deep, shallow = c.get("backbone", "transformer"), int(c.get("deeper", 2)), int(c.get("shallower", 1))
    margin = float(c.get("margin", 0.1))
    head = f"{task}: {deep} layers of attention{_where(bb)} beat {shallow} by ≥ {margin:.2f}"
    cands = _trained(list(entries) + [p for p in pool if p not in entries], attention=True, backbone=bb)

    def at(layers: int) -> list[Entry]:
        return [e for e in cands if e.backbone_kwargs.get("num_layers") == layers]

    deep_best, shallow_best = _best(at(deep)), _best(at(shallow))
    if deep_best is None or shallow_best is None:
        lacking = [str(n) for n, b in ((deep, deep_best), (shallow, shallow_best)) if b is None]
        return "missing", head, f"no trained {bb} rows with num_layers={' or '.join(lacking)}"
    (ed, sd), (es, ss) = deep_best, shallow_best
    claim = f"{head} (best {deep}-layer: {_who(ed)}, {_nums(sd)} vs best {shallow}-layer: {_who(es)}, {_nums(ss)}{chance})"
    verdict, detail = _gap_verdict(sd.median - ss.median, margin)
    return verdict, claim, detail


_CHECKS: dict[str, Callable[..., Verdict]] = {
    "attention_beats_baseline": _attention_beats_baseline,
    "variant_beats": _variant_beats,
    "solves": _solves,
    "fails_long": _fails_long,
    "degrades_with_length": _degrades_with_length,
    "depth_helps": _depth_helps,
}


def _context(entries: Sequence[Entry], threshold: float) -> tuple[str, str]:
    metric = next((e.main_metric for e in entries if e.main_metric), None)
    chance = next((e.chance for e in entries if e.chance is not None), None)
    seeds = sorted({e.n_seeds for e in entries if e.n_seeds})
    text = f"main metric {metric or '?'}"
    text += f", chance {chance:.2f}" if chance is not None else ""
    text += f", solved at ≥ {threshold:g}"
    if seeds:
        text += f", {'/'.join(map(str, seeds))} seed(s) per entry"
    return text, _chance(chance)


def evaluate(tasks: dict[str, list[Entry]], *,
             contrasts: dict[str, Sequence[Contrast]] | None = None) -> list[Finding]:
    """One :class:`Finding` per declared contrast of every task in ``tasks`` (the report's aggregate).

    :param tasks: ``{task label: [Entry, ...]}`` from :func:`attnzoo.leaderboard.report.aggregation.aggregate`.
    :param contrasts: ``{task name or label: contrasts}`` to use instead of the registered
        :attr:`TaskSpec.contrasts` (tests; a plugin task not installed here).
    :returns: findings in task order, the declared order within a task; a task without
        declared contrasts gets one ``unknown`` finding saying so. When several labels train the
        same task (``copy`` and ``copy-ntm``), a claim is checked under each, and kept only under
        the labels whose rows answer it; it is ``missing`` once, under the first label, only when
        none of them has its rows.
    """
    by_name: dict[str, list[Entry]] = {}
    for entries in tasks.values():
        for e in entries:
            by_name.setdefault(e.task_name or e.task, []).append(e)
    out: list[Finding] = []
    claim_of: dict[int, tuple[str, int]] = {}  # index in out -> (task name, contrast position)
    for label, entries in tasks.items():
        name = next((e.task_name for e in entries if e.task_name), label)
        threshold = next((e.threshold for e in entries), solve_threshold(name))
        context, chance = _context(entries, threshold)
        if contrasts is not None and (label in contrasts or name in contrasts):
            declared: Sequence[Contrast] | None = contrasts.get(label, contrasts.get(name))
        else:
            spec = task_spec(name)
            declared = spec.contrasts if spec is not None else None
        if declared is None:
            out.append(Finding(label, "none", "unknown", f"{label}: no claims to check",
                               detail=f"task {name!r} is not registered here (a plugin task not installed?)",
                               context=context))
            continue
        if not declared:
            out.append(Finding(label, "none", "unknown", f"{label}: no claims to check",
                               detail="the task declares no contrast", context=context))
            continue
        for pos, c in enumerate(declared):
            claim_of[len(out)] = (name, pos)
            check = _CHECKS.get(c.kind)
            if check is None:
                out.append(Finding(label, c.kind, "unknown", f"{label}: a {c.kind!r} claim",
                                   detail="this version cannot check that kind", why=c.why, context=context))
                continue
            verdict, claim, detail = check(c, entries, task=label, chance=chance, threshold=threshold,
                                           pool=by_name.get(name, ()))
            out.append(Finding(label, c.kind, verdict, claim, why=c.why, context=context, detail=detail))
    return _one_answer_per_claim(out, claim_of)


def _one_answer_per_claim(findings: list[Finding], claim_of: dict[int, tuple[str, int]]) -> list[Finding]:
    """Drop a claim's ``missing`` findings under labels of a task where another label answers it
    (or, when none does, all but the first)."""
    answered: dict[tuple[str, int], bool] = {}
    for i, f in enumerate(findings):
        if i in claim_of:
            key = claim_of[i]
            answered[key] = answered.get(key, False) or f.verdict != "missing"
    kept, seen = [], set()
    for i, f in enumerate(findings):
        key = claim_of.get(i)
        if key is not None and f.verdict == "missing":
            if answered[key] or key in seen:
                continue
            seen.add(key)
        kept.append(f)
    return kept


#: said once in findings.md wherever alignment diagnostics are cited
DIAGNOSTIC_NOT_EXPLANATION = (
    "Where a claim is about alignment, the attention's gold mass is cited (the mean weight on the source "
    "positions the task's answer is at, best-matching layer/head, median over seeds) with the uniform-attention "
    "ablation (the main metric when every attention is replaced by uniform weights, Wiegreffe & Pinter 2019). "
    "Attention weights are a diagnostic of where a model reads, not an explanation of its output "
    "(Jain & Wallace 2019): a model may reach the same answer by other weights."
)


def findings_markdown(findings: Sequence[Finding], *, n_rows: int | None = None,
                      alignment: dict[str, str] | None = None) -> str:
    """``findings.md``: a count of verdicts, then each task's findings with why each was expected.

    :param alignment: per task label, a sentence citing its alignment diagnostics
        (:func:`attnzoo.leaderboard.report.alignment.finding_lines`), printed after the task's claims.
    """
    counts = {v: sum(f.verdict == v for f in findings) for v in VERDICTS}
    lines = ["# Findings", "",
             "Written by `attnzoo bench report` from results.jsonl" + (f" ({n_rows} rows)" if n_rows else "")
             + ". Each task's claims (the contrasts it exists to show, `TaskSpec.contrasts`) are checked against "
             "the medians over seeds at the learning rate chosen on validation; a seed that diverged or failed "
             "counts as 0; *k/n solved* counts the seeds whose main test metric reached the task's threshold, and "
             "*by step S* is the median over seeds of the first step at which the validation main metric reached "
             "it (*not by step N*: half the seeds or more never did within the budget of N steps). "
             "A claim the data do not support is printed as not supported, with its numbers.", "",
             "**" + ", ".join(f"{counts[v]} {v}" for v in VERDICTS if counts[v]) + "**", ""]
    if alignment:
        lines += [DIAGNOSTIC_NOT_EXPLANATION, ""]
    by_task: dict[str, list[Finding]] = {}
    for f in findings:
        by_task.setdefault(f.task, []).append(f)
    for task, fs in by_task.items():
        lines += [f"## {md(task)}", ""]
        if fs[0].context:
            lines += [f"*{md(fs[0].context)}*", ""]
        for f in fs:
            lines.append(f"- {md(f.claim)}: **{md(f.verdict_text)}**.")
            if f.why:
                lines.append(f"  Why expected: {md(f.why)}.")
        if alignment and alignment.get(task):
            lines.append(f"- {md(alignment[task])}")
        lines.append("")
    return "\n".join(lines)

