"""Tables and figures from ``results.jsonl`` alone.

:func:`build_report` writes, in the results directory:

- ``leaderboard.md`` / ``leaderboard.csv``: one table per task (variants
  ranked by the task's main metric, mean +- std over seeds at the learning
  rate that was best on validation, chance level, params, tokens/s, peak
  memory, length-generalization accuracy) and an overall variants x tasks table
  whose cells say ``n/a: reason`` where a variant does not fit;
- ``heatmap.png``, ``acc_vs_speed.png``, ``curves_<task>.png``,
  ``attention_<task>.png`` and, when ``speed.csv`` is present, ``speed.png``;
- ``leaderboard.html``: one self-contained page (images inlined as data URIs).

Nothing here needs the harness, the registries or Lightning.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
import re
import statistics
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnzoo.leaderboard.grid import BASELINE
from attnzoo.leaderboard.store import latest_rows, read_rows

__all__ = ["Entry", "aggregate", "build_report", "overall_table", "task_table", "file_slug"]


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


@dataclass
class Entry:
    """One (task, backbone, variant) of the leaderboard, over its seeds at the best learning rate."""

    task: str
    backbone: str
    variant: str
    status: str = "ok"                 # ok | n/a | failed (no run at any lr finished ok)
    reason: str | None = None          # n/a reason or the first error
    main_metric: str | None = None
    values: list[float] = field(default_factory=list)   # main metric per seed at the best lr
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


def _entry(task: str, backbone: str, variant: str, rows: list[dict[str, Any]]) -> Entry:
    e = Entry(task, backbone, variant)
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
    if not any(r.get("status") == "ok" for r in runs):
        e.status = "failed"
        first = next((r for r in runs if r.get("error")), runs[0])
        lines = str(first.get("error") or "").strip().splitlines()
        # the last traceback line names the exception; a plain message is one line anyway
        message = (lines[-1] if lines else "")[:160]
        kind = str(first.get("status"))
        e.reason = message if kind == "failed" and message else f"{kind}: {message}".rstrip(": ")
    e.best_lr = best if len(e.lrs) > 0 else None
    e.rows = chosen
    e.values = [v for v in (_num(r.get("main_value")) for r in ok_rows) if v is not None]
    # a seed that diverged at the best lr scored nothing: keep it in the mean as 0, say so in notes
    diverged = [r for r in chosen if r.get("status") == "diverged"]
    e.values += [0.0] * len(diverged)
    e.mean, e.std = _mean_std(e.values)
    e.median = _median(e.values)
    if val_key:
        e.val_mean = _median(_num((r.get("metrics") or {}).get(val_key)) for r in ok_rows)
    long_key = _sibling_metric(e.main_metric, "test_long")
    if long_key:
        longs = [v for v in (_num((r.get("metrics") or {}).get(long_key)) for r in ok_rows) if v is not None]
        e.long_mean = statistics.fmean(longs) if longs else None
    e.params = _median(_num(r.get("params")) for r in runs)
    e.tokens_per_s = _median(_num(r.get("tokens_per_s")) for r in ok_rows)
    e.peak_mem_mb = _median(_num(r.get("peak_mem_mb")) for r in ok_rows)
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


def aggregate(rows: Iterable[dict[str, Any]]) -> dict[str, list[Entry]]:
    """``{task: [Entry, ...]}`` ranked by the main metric (n/a and failed last), tasks in first-seen order."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    task_order: list[str] = []
    for r in latest_rows(rows):
        key = (str(r.get("task")), str(r.get("backbone")), str(r.get("variant")))
        groups.setdefault(key, []).append(r)
        if key[0] not in task_order:
            task_order.append(key[0])
    out: dict[str, list[Entry]] = {t: [] for t in task_order}
    for (task, backbone, variant), grp in groups.items():
        out[task].append(_entry(task, backbone, variant, grp))
    for task, entries in out.items():
        entries.sort(key=lambda e: ({"ok": 0, "failed": 1, "n/a": 2}.get(e.status, 1),
                                    -(e.mean if e.mean is not None else -1.0), e.variant, e.backbone))
    return out


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


def _pm(e: Entry) -> str:
    if e.mean is None:
        return "–"
    return f"{e.mean:.3f} ± {e.std:.3f}" if len(e.values) > 1 else f"{e.mean:.3f}"


def task_table(entries: list[Entry]) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of one task's ranked table."""
    metric = next((e.main_metric for e in entries if e.main_metric), "main")
    has_long = any(e.long_mean is not None for e in entries)
    headers = ["#", "variant", "backbone", f"{metric} (mean ± std)", "seeds", "best lr"]
    headers += ["length gen."] if has_long else []
    headers += ["chance", "params", "tokens/s", "peak MB", "train s", "notes"]
    rows = []
    rank = 0
    for e in entries:
        if e.status == "ok":
            rank += 1
            r = [str(rank), e.variant, e.backbone, _pm(e), str(len(e.values)),
                 f"{e.best_lr:g}" if e.best_lr is not None else "–"]
            r += [_fmt(e.long_mean)] if has_long else []
            r += [_fmt(e.chance), _fmt_int(e.params), _fmt_int(e.tokens_per_s), _fmt(e.peak_mem_mb, 1),
                  _fmt(e.train_time_s, 1), e.notes]
        else:
            what = "n/a" if e.status == "n/a" else "failed"
            r = ["–", e.variant, e.backbone, f"{what}: {e.reason}", "–", "–"]
            r += ["–"] if has_long else []
            r += [_fmt(e.chance), _fmt_int(e.params), "–", "–", "–", e.notes]
        rows.append(r)
    return headers, rows


def overall_table(tasks: dict[str, list[Entry]]) -> tuple[list[str], list[list[str]], dict[str, dict[str, Entry]]]:
    """Variants x tasks: each cell the variant's best backbone on that task, or ``n/a: reason``.

    :returns: headers, rows, and the chosen :class:`Entry` per (label, task).
    """
    chosen: dict[str, dict[str, Entry]] = {}
    na: dict[str, dict[str, list[Entry]]] = {}
    for task, entries in tasks.items():
        for e in entries:
            if e.status == "n/a" or e.status == "failed" and e.mean is None:
                na.setdefault(e.label, {}).setdefault(task, []).append(e)
                continue
            cur = chosen.setdefault(e.label, {}).get(task)
            if cur is None or (e.mean or 0.0) > (cur.mean or 0.0):
                chosen[e.label][task] = e
    labels = sorted(set(chosen) | set(na), key=lambda lab: (lab.startswith(BASELINE), lab))
    headers = ["variant", *tasks]
    rows = []
    for lab in labels:
        r = [lab]
        for task in tasks:
            e = chosen.get(lab, {}).get(task)
            if e is not None:
                r.append(_pm(e) + (f" ({e.backbone})" if e.variant != BASELINE else ""))
            elif task in na.get(lab, {}):
                r.append(_why_not(na[lab][task]))
            else:
                r.append("–")
        rows.append(r)
    chance = ["chance"] + [_fmt(next((e.chance for e in tasks[t] if e.chance is not None), None)) for t in tasks]
    rows.append(chance)
    return headers, rows, chosen


def _why_not(entries: list[Entry]) -> str:
    """``failed: reason (backbones)`` if it failed somewhere, else ``n/a: reason (backbones)``, grouped by reason."""
    failed = [e for e in entries if e.status == "failed"]
    shown, word = (failed, "failed") if failed else (entries, "n/a")
    by_reason: dict[str, list[str]] = {}
    for e in shown:
        by_reason.setdefault(str(e.reason), []).append(e.backbone)
    parts = []
    for reason, backbones in by_reason.items():
        where = f" ({', '.join(sorted(backbones))})" if shown[0].variant != BASELINE else ""
        parts.append(f"{word}: {reason}{where}")
    return "; ".join(parts)


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    out = ["| " + " | ".join(esc(h) for h in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _html_table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = []
    for r in rows:
        cells = []
        for c in r:
            text = str(c)
            cls = ' class="na"' if text.startswith(("n/a", "failed")) else ""
            cells.append(f"<td{cls}>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def file_slug(name: str) -> str:
    """A task label as a file-name piece: ``associative-recall`` stays, odd characters become ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "task"


# -- figures ------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _heatmap(tasks: dict[str, list[Entry]], path: Path) -> None:
    import numpy as np

    plt = _plt()
    _, rows, chosen = overall_table(tasks)
    labels = [r[0] for r in rows if r[0] != "chance"]
    task_names = list(tasks)
    data = np.full((len(labels), len(task_names)), np.nan)
    text = [["" for _ in task_names] for _ in labels]
    for i, lab in enumerate(labels):
        for j, t in enumerate(task_names):
            e = chosen.get(lab, {}).get(t)
            if e is not None and e.mean is not None:
                data[i, j] = e.mean
                text[i][j] = f"{e.mean:.2f}"
            else:
                others = [x for x in tasks[t] if x.label == lab]
                if others:
                    text[i][j] = "failed" if any(x.status == "failed" for x in others) else "n/a"
    fig, ax = plt.subplots(figsize=(max(5.5, 2.6 + 1.1 * len(task_names)), 1.2 + 0.38 * len(labels)))
    cmap = plt.get_cmap("viridis").with_extremes(bad="#dddddd")
    im = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(task_names)), task_names, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for i in range(len(labels)):
        for j in range(len(task_names)):
            if text[i][j]:
                v = data[i, j]
                color = "white" if (not np.isnan(v) and v < 0.6) else "black"
                ax.text(j, i, text[i][j], ha="center", va="center", fontsize=8, color=color)
    fig.colorbar(im, ax=ax, label="main metric (test)")
    ax.set_title("main test metric per variant and task\n(best backbone and lr, mean over seeds; grey: n/a or failed)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _acc_vs_speed(tasks: dict[str, list[Entry]], path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 5.5))
    markers = "osD^v<>pX*h"
    backbones = sorted({e.backbone for es in tasks.values() for e in es})
    colors = plt.get_cmap("tab10")
    plotted = False
    for ti, (task, entries) in enumerate(tasks.items()):
        for e in entries:
            if e.mean is None or not e.tokens_per_s:
                continue
            m = markers[backbones.index(e.backbone) % len(markers)]
            ax.scatter(e.tokens_per_s, e.mean, color=colors(ti % 10), marker=m, s=36)
            ax.annotate(e.variant, (e.tokens_per_s, e.mean), fontsize=6, xytext=(3, 2), textcoords="offset points")
            plotted = True
    if plotted:
        ax.set_xscale("log")
    ax.set_xlabel("training throughput (tokens/s, log)")
    ax.set_ylabel("main metric (test)")
    ax.set_ylim(-0.03, 1.05)
    handles = [plt.Line2D([], [], color=colors(i % 10), marker="o", linestyle="", label=t)
               for i, t in enumerate(tasks)]
    handles += [plt.Line2D([], [], color="gray", marker=markers[i % len(markers)], linestyle="", label=b)
                for i, b in enumerate(backbones)]
    ax.legend(handles=handles, fontsize=7, loc="best")
    ax.set_title("accuracy vs throughput")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _curves(task: str, entries: list[Entry], path: Path) -> bool:
    plt = _plt()
    series = []
    for e in entries:
        row = next((r for r in e.rows if r.get("status") == "ok" and r.get("curve")), None)
        if row is not None:
            series.append((e, row["curve"]))
    if not series:
        return False
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 4.2))
    for e, curve in series:
        pts = [p for p in curve if isinstance(p, (list, tuple)) and len(p) >= 3]
        loss = [(p[0], p[1]) for p in pts if _num(p[1]) is not None]
        val = [(p[0], p[2]) for p in pts if _num(p[2]) is not None]
        style = "--" if e.variant == BASELINE else "-"
        if loss:
            ax_loss.plot(*zip(*loss), style, label=e.name, linewidth=1.2)
        if val:
            ax_val.plot(*zip(*val), style, marker=".", label=e.name, linewidth=1.2)
    chance = next((e.chance for e in entries if e.chance is not None), None)
    if chance is not None:
        ax_val.axhline(chance, color="gray", linestyle=":", linewidth=1, label="chance")
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("train loss")
    ax_val.set_xlabel("step")
    metric = next((e.main_metric for e in entries if e.main_metric), "main")
    ax_val.set_ylabel(_sibling_metric(metric, "val") or "validation")
    ax_val.set_ylim(-0.03, 1.03)
    ax_val.legend(fontsize=6, loc="best", ncol=2)
    for ax in (ax_loss, ax_val):
        ax.grid(alpha=0.3)
    fig.suptitle(f"{task}: learning curves (best lr, first seed)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _tick_labels(tokens: Sequence[Any] | None, n: int) -> list[str] | None:
    if not tokens or len(tokens) != n:
        return None
    return [str(t) for t in tokens]


def _key_labels(am: dict[str, Any], tk: int) -> list[str] | None:
    """Labels of the key axis: the input tokens, or for a decoder-only model that attends over
    ``[source; separator; target[:-1]]``, those with ``|`` for the separator."""
    keys = _tick_labels(am.get("key_tokens"), tk)
    if keys:
        return keys
    src = am.get("src_tokens") or am.get("src") or []
    tgt = am.get("tgt_tokens") or am.get("tgt") or []
    if len(src) == tk:
        return [str(t) for t in src]
    if src and len(src) < tk <= len(src) + 1 + len(tgt):
        return [str(t) for t in src] + ["|"] + [str(t) for t in tgt[: tk - len(src) - 1]]
    return None


def _attention(task: str, entries: list[Entry], path: Path) -> bool:
    import numpy as np

    plt = _plt()
    maps = []
    for e in entries:
        row = next((r for r in e.rows if r.get("status") == "ok" and r.get("attention_map")), None)
        if row is None:
            continue
        am = row["attention_map"]
        try:
            w = np.asarray(am.get("weights"), dtype=float)
        except (TypeError, ValueError):
            continue
        if w.ndim != 2 or w.size == 0:
            continue
        maps.append((e, am, w))
    if not maps:
        return False
    n = len(maps)
    ncols = min(n, 4)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.4 * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, (e, am, w) in zip(axes.flat, maps):
        ax.imshow(w, cmap="viridis", vmin=0.0, vmax=max(1e-9, float(np.nanmax(w))), aspect="auto",
                  interpolation="nearest")
        tq, tk = w.shape
        xl = _key_labels(am, tk)
        yl = _tick_labels(am.get("tgt_tokens") or am.get("query_tokens") or am.get("tgt"), tq)
        step_x = max(1, math.ceil(tk / 24))
        step_y = max(1, math.ceil(tq / 24))
        ax.set_xticks(range(0, tk, step_x), (xl[::step_x] if xl else list(range(0, tk, step_x))), fontsize=6,
                      rotation=90)
        ax.set_yticks(range(0, tq, step_y), (yl[::step_y] if yl else list(range(0, tq, step_y))), fontsize=6)
        ax.set_xlabel("key: " + ("input tokens" if xl else "position"), fontsize=7)
        ax.set_ylabel("query: " + ("output tokens" if yl else "position"), fontsize=7)
        acc = f" ({e.mean:.2f})" if e.mean is not None else ""
        ax.set_title(f"{e.name}{acc}", fontsize=8)
    fig.suptitle(f"{task}: attention on one test sample")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# column names of ``attnzoo speed``'s speed.csv first, then common alternatives
_X_KEYS = ("length", "seq_len", "T")
_Y_KEYS = ("time_ms", "ms", "median_ms")
_G_KEYS = ("variant", "name", "attention")
_M_KEYS = ("peak_mb", "peak_mem_mb", "mem_mb")


def _speed(csv_path: Path, path: Path) -> bool:
    """The speed benchmark's scaling plot (time and memory vs sequence length per variant) from its CSV."""
    plt = _plt()
    with open(csv_path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return False
    cols = list(rows[0])
    x = next((k for k in _X_KEYS if k in cols), None)
    y = next((k for k in _Y_KEYS if k in cols), None)
    g = next((k for k in _G_KEYS if k in cols), None)
    if not (x and y and g):
        return False
    mem = next((k for k in _M_KEYS if k in cols), None)
    series: dict[str, list[tuple[float, float, float | None]]] = {}
    for r in rows:
        if r.get("status") not in (None, "", "ok"):
            continue
        try:
            xv, yv = float(r[x]), float(r[y])
        except (TypeError, ValueError):
            continue
        mv = None
        if mem:
            try:
                mv = float(r[mem])
            except (TypeError, ValueError):
                mv = None
        series.setdefault(r[g], []).append((xv, yv, mv))
    if not series:
        return False
    fig, axes = plt.subplots(1, 2 if mem else 1, figsize=(11 if mem else 6.5, 4.5), squeeze=False)
    for name, pts in sorted(series.items()):
        pts.sort()
        axes[0][0].plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=name)
        if mem:
            mp = [(p[0], p[2]) for p in pts if p[2] is not None]
            if mp:
                axes[0][1].plot(*zip(*mp), marker=".", label=name)
    axes[0][0].set_xscale("log", base=2)
    axes[0][0].set_yscale("log")
    axes[0][0].set_xlabel(x)
    axes[0][0].set_ylabel(y)
    axes[0][0].set_title("time vs sequence length")
    axes[0][0].legend(fontsize=6, ncol=2)
    if mem:
        axes[0][1].set_xscale("log", base=2)
        axes[0][1].set_yscale("log")
        axes[0][1].set_xlabel(x)
        axes[0][1].set_ylabel(mem)
        axes[0][1].set_title("peak memory vs sequence length")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# -- the report -----------------------------------------------------------------------------
_CSV_FIELDS = ["task", "rank", "variant", "backbone", "status", "reason", "main_metric", "mean", "std", "median",
               "n_seeds", "values", "best_lr", "lrs", "val_mean", "length_gen", "chance", "params", "tokens_per_s",
               "peak_mem_mb", "train_time_s", "notes"]


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


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:2em auto;max-width:1200px;
padding:0 1em;color:#222}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px;margin:1em 0;display:block;overflow-x:auto}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;white-space:nowrap}
th{background:#f3f3f3}tbody tr:nth-child(even){background:#fafafa}
td.na{color:#888;font-style:italic;white-space:normal;max-width:28em}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 12px;font-size:13px}dt{font-weight:600}
"""


def build_report(directory: str | Path, *, rows: list[dict[str, Any]] | None = None) -> list[Path]:
    """Write every table and figure of ``directory`` from its ``results.jsonl``; returns the paths written."""
    d = Path(directory)
    rows = latest_rows(read_rows(d) if rows is None else rows)
    if not rows:
        raise FileNotFoundError(f"no results in {d / 'results.jsonl'}: nothing to report")
    tasks = aggregate(rows)
    written: list[Path] = []
    figures: dict[str, Path] = {}

    p = d / "heatmap.png"
    _heatmap(tasks, p)
    figures["heatmap"] = p
    p = d / "acc_vs_speed.png"
    _acc_vs_speed(tasks, p)
    figures["acc_vs_speed"] = p
    for task, entries in tasks.items():
        p = d / f"curves_{file_slug(task)}.png"
        if _curves(task, entries, p):
            figures[f"curves:{task}"] = p
        p = d / f"attention_{file_slug(task)}.png"
        if _attention(task, entries, p):
            figures[f"attention:{task}"] = p
    speed_csv, speed_png = d / "speed.csv", d / "speed.png"
    if speed_png.exists() and speed_csv.exists():  # `attnzoo speed --out DIR` drew it: show that one
        figures["speed"] = speed_png
    elif speed_csv.exists():
        try:
            if _speed(speed_csv, speed_png):
                figures["speed"] = speed_png
                written.append(speed_png)
        except Exception as exc:  # a CSV from another tool must not stop the report
            print(f"warning: could not plot {speed_csv}: {type(exc).__name__}: {exc}", file=sys.stderr)
    written += [p for k, p in figures.items() if k != "speed"]

    # markdown
    prov = _provenance_summary(rows)
    o_headers, o_rows, _ = overall_table(tasks)
    md = ["# attnzoo leaderboard", ""]
    md += [f"- **{k}**: {v}" for k, v in prov]
    md += ["", "Each cell: the task's main test metric, mean ± std over seeds at the learning rate that was best on "
           "validation, for the variant's best backbone on that task (in parentheses). `none (...)` rows are the "
           "baselines without attention. `n/a` cells say why a variant does not fit.", ""]
    md += ["## Overall", "", _md_table(o_headers, o_rows), "", "![heatmap](heatmap.png)", "",
           "![accuracy vs throughput](acc_vs_speed.png)", ""]
    for task, entries in tasks.items():
        headers, trows = task_table(entries)
        chance = next((e.chance for e in entries if e.chance is not None), None)
        md += [f"## {task}", "", f"Chance level: {_fmt(chance)}. Ranked by "
               f"{next((e.main_metric for e in entries if e.main_metric), 'the main metric')}.", "",
               _md_table(headers, trows), ""]
        if f"curves:{task}" in figures:
            md += [f"![curves {task}]({figures[f'curves:{task}'].name})", ""]
        if f"attention:{task}" in figures:
            md += [f"![attention {task}]({figures[f'attention:{task}'].name})", ""]
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
        for task, entries in tasks.items():
            rank = 0
            for e in entries:
                rank += e.status == "ok"
                w.writerow({
                    "task": task, "rank": rank if e.status == "ok" else "", "variant": e.variant,
                    "backbone": e.backbone, "status": e.status, "reason": e.reason or "",
                    "main_metric": e.main_metric or "", "mean": e.mean, "std": e.std, "median": e.median,
                    "n_seeds": len(e.values), "values": " ".join(f"{v:.4f}" for v in e.values),
                    "best_lr": e.best_lr, "lrs": " ".join(f"{x:g}" for x in e.lrs), "val_mean": e.val_mean,
                    "length_gen": e.long_mean, "chance": e.chance, "params": e.params,
                    "tokens_per_s": e.tokens_per_s, "peak_mem_mb": e.peak_mem_mb, "train_time_s": e.train_time_s,
                    "notes": e.notes,
                })
    written.append(p)

    # html (self-contained: styles inline, images as data URIs)
    parts = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
             "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
             "<title>attnzoo leaderboard</title>", f"<style>{_CSS}</style></head><body>",
             "<h1>attnzoo leaderboard</h1>", "<dl>"]
    parts += [f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in prov]
    parts += ["</dl>", "<h2>Overall</h2>",
              "<p>Main test metric, mean ± std over seeds at the best learning rate on validation, best backbone "
              "in parentheses; <code>none (...)</code> rows are baselines without attention.</p>",
              _html_table(o_headers, o_rows)]

    def img(key: str, alt: str) -> None:
        if key in figures:
            parts.append(f'<img alt="{html.escape(alt)}" src="{_data_uri(figures[key])}">')

    img("heatmap", "accuracy heatmap, variants x tasks")
    img("acc_vs_speed", "accuracy vs throughput")
    for task, entries in tasks.items():
        headers, trows = task_table(entries)
        chance = next((e.chance for e in entries if e.chance is not None), None)
        parts += [f"<h2>{html.escape(task)}</h2>", f"<p>Chance level: {_fmt(chance)}.</p>",
                  _html_table(headers, trows)]
        img(f"curves:{task}", f"learning curves, {task}")
        img(f"attention:{task}", f"attention maps, {task}")
    if "speed" in figures:
        parts.append("<h2>Speed</h2>")
        img("speed", "speed benchmark")
    parts.append("</body></html>")
    p = d / "leaderboard.html"
    p.write_text("\n".join(parts), encoding="utf-8")
    written.append(p)
    return written
