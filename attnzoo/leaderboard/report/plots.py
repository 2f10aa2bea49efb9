"""The report's figures, from aggregated :class:`~attnzoo.leaderboard.report.aggregation.Entry` objects.

Each figure has a ``*_figure`` function that returns the matplotlib ``Figure`` (what
the tests inspect) and a plain function that saves it as a PNG. What they guarantee,
because the first versions misled (issue 12):

- learning curves: every series its own colour *and* line style, however many
  variants (:func:`series_styles`), and the legend outside the axes;
- accuracy vs throughput: one panel per task (accuracies of different tasks are
  not comparable), labels placed so they do not overlap each other or the points
  (:func:`place_labels`, a small greedy repel: no dependency);
- attention maps: one colour scale shared by every panel of a task, with a colour
  bar, so a near-uniform map looks as flat as it is;
- heatmap: the median over seeds with the solved rate in each cell, and the status
  (``diverged``, ``oom``, ``failed``, ``n/a``) where there is no number.
"""

from __future__ import annotations

import base64
import colorsys
import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attnzoo.leaderboard.escape import NO_MATHTEXT
from attnzoo.leaderboard.grid import BASELINE

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from attnzoo.cell import Row
    from attnzoo.leaderboard.report.aggregation import Entry

__all__ = ["series_styles", "place_labels", "heatmap", "heatmap_figure", "acc_vs_speed", "acc_vs_speed_figure",
           "curves", "curves_figure", "attention", "attention_figure", "speed", "speed_figure", "data_uri",
           "summary", "summary_figure", "profile", "profile_figure", "overlapping_texts"]

DPI = 110


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    # labels and names come from presets and plugins: a `$` in them is text, not mathtext to parse
    matplotlib.rcParams.update(NO_MATHTEXT)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Figure, path: Path) -> None:
    # bbox_inches="tight" keeps a legend placed outside the axes inside the image
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    _plt().close(fig)


def _save_optional(fig: Figure | None, path: Path) -> bool:
    """Save ``fig`` when there is one (a figure with nothing to draw is None); whether a file was written."""
    if fig is None:
        return False
    _save(fig, path)
    return True


def data_uri(path: Path) -> str:
    """A PNG file as a ``data:`` URI (the HTML page stays one self-contained file)."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


# -- styles -------------------------------------------------------------------------------------
_LINESTYLES = ("-", "--", "-.", ":")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "*", "p")
_BASELINE_COLORS = ("#000000", "#6b6b6b", "#a0a0a0", "#3d3d3d")


def _palette(n: int) -> list[tuple[float, float, float]]:
    """``n`` distinct RGB colours: tab10, then tab20's light halves, then golden-ratio hues (never a repeat)."""
    from matplotlib import colormaps

    tab20 = colormaps["tab20"].colors
    base = [tuple(c) for c in tab20[0::2]] + [tuple(c) for c in tab20[1::2]]
    out = list(base[:n])
    h = 0.11
    while len(out) < n:
        h = (h + 0.618033988749895) % 1.0
        rgb = colorsys.hsv_to_rgb(h, 0.55 + 0.4 * ((len(out) // 7) % 2), 0.55 + 0.35 * ((len(out) // 3) % 2))
        if all(sum(abs(a - b) for a, b in zip(rgb, c)) > 0.12 for c in out):
            out.append(rgb)
    return out


def series_styles(names: Sequence[str], baselines: Sequence[bool] | None = None) -> dict[str, dict[str, Any]]:
    """A distinct ``{"color", "linestyle", "marker"}`` per name: no two names share a colour, and the line
    style changes every 10 names, so both colour and style tell series apart. Baselines (no attention)
    get greys and a dashed line.

    :param names: series labels, in legend order; duplicates share one style.
    :param baselines: per name, whether it is a baseline (default: none is).
    """
    uniq = list(dict.fromkeys(names))
    is_base = dict(zip(names, baselines)) if baselines is not None else {}
    attn = [n for n in uniq if not is_base.get(n)]
    base = [n for n in uniq if is_base.get(n)]
    colors = _palette(len(attn))
    out: dict[str, dict[str, Any]] = {}
    for i, n in enumerate(attn):
        out[n] = {"color": colors[i], "linestyle": _LINESTYLES[(i // 10) % len(_LINESTYLES)],
                  "marker": _MARKERS[i % len(_MARKERS)]}
    for i, n in enumerate(base):
        grey = _BASELINE_COLORS[i] if i < len(_BASELINE_COLORS) else (0.1 + (0.13 * i) % 0.7,) * 3
        out[n] = {"color": grey, "linestyle": "--", "marker": "x"}
    return out


# -- label placement -------------------------------------------------------------------------------
def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


def place_labels(ax: Any, xs: Sequence[float], ys: Sequence[float], texts: Sequence[str], *,
                 fontsize: float = 7, point_radius_px: float = 4.0) -> list[Any]:
    """Annotate each point ``(xs[i], ys[i])`` with ``texts[i]`` where the label overlaps no other label,
    no point and stays inside the axes: a greedy search over offsets on rings of growing radius
    around the point (a leader line when the label sits far from it). Falls back to the least-overlapping
    spot when the panel is too crowded for none. Call after the axes' limits and scales are final.

    :returns: the ``Annotation`` artists, in input order.
    """
    fig = ax.figure
    fig.canvas.draw()  # limits, scales and layout are final: display coordinates are valid now
    renderer = fig.canvas.get_renderer()
    to_px = ax.transData.transform
    frame = ax.get_window_extent(renderer)
    px_per_pt = fig.dpi / 72.0
    anchors = [tuple(to_px((x, y))) for x, y in zip(xs, ys)]
    r = point_radius_px
    blocked = [(px - r, py - r, px + r, py + r) for px, py in anchors]
    sizes = []
    for t in texts:
        probe = ax.text(0, 0, t, fontsize=fontsize)
        bb = probe.get_window_extent(renderer)
        sizes.append((bb.width, bb.height))
        probe.remove()
    rings = (3, 8, 14, 22, 32, 44, 58, 74, 92)
    angles = [math.radians(a) for a in (30, 150, 330, 210, 90, 270, 0, 180, 60, 120, 300, 240)]
    placed: list[Any] = [None] * len(texts)
    # crowded points first: they have the fewest free spots
    order = sorted(range(len(texts)), key=lambda i: -sum(
        1 for j in range(len(texts)) if abs(anchors[i][0] - anchors[j][0]) + abs(anchors[i][1] - anchors[j][1]) < 40))
    for i in order:
        (px, py), (w, h) = anchors[i], sizes[i]
        best = None
        for ring in rings:
            for ang in angles:
                dx, dy = math.cos(ang) * ring * px_per_pt, math.sin(ang) * ring * px_per_pt
                ha = "left" if dx > 1e-6 else ("right" if dx < -1e-6 else "center")
                va = "bottom" if dy > 1e-6 else ("top" if dy < -1e-6 else "center")
                x0 = px + dx - {"left": 0.0, "right": w, "center": w / 2}[ha]
                y0 = py + dy - {"bottom": 0.0, "top": h, "center": h / 2}[va]
                box = (x0 - 1, y0 - 1, x0 + w + 1, y0 + h + 1)
                outside = (max(0.0, frame.x0 - box[0]) + max(0.0, box[2] - frame.x1)
                           + max(0.0, frame.y0 - box[1]) + max(0.0, box[3] - frame.y1)) * h
                cost = outside + sum(_overlap(box, b) for b in blocked)
                if best is None or cost < best[0] - 1e-9:
                    best = (cost, ring, dx / px_per_pt, dy / px_per_pt, ha, va, box)
                if cost == 0.0:
                    break
            if best is not None and best[0] == 0.0:
                break
        _, ring, ox, oy, ha, va, box = best
        far = ring > 10
        placed[i] = ax.annotate(
            texts[i], (xs[i], ys[i]), xytext=(ox, oy), textcoords="offset points", ha=ha, va=va, fontsize=fontsize,
            arrowprops={"arrowstyle": "-", "color": "0.55", "lw": 0.5, "shrinkA": 0, "shrinkB": 2} if far else None,
        )
        blocked.append(box)
    return placed


# -- heatmap ---------------------------------------------------------------------------------------
def heatmap_figure(tasks: dict[str, list[Entry]], labels: Sequence[str],
                   chosen: dict[str, dict[str, Entry]]) -> Figure:
    """Variants (rows, in ``labels``' order: the overall table's ranking) x tasks: the median of each
    variant's best backbone, the solved rate under it; grey cells name why there is no number."""
    import numpy as np

    plt = _plt()
    task_names = list(tasks)
    data = np.full((len(labels), len(task_names)), np.nan)
    text = [["" for _ in task_names] for _ in labels]
    for i, lab in enumerate(labels):
        for j, t in enumerate(task_names):
            e = chosen.get(lab, {}).get(t)
            if e is not None and e.has_number:
                data[i, j] = e.median
                text[i][j] = f"{e.median:.2f}\n{e.solved}/{e.n_seeds}"
            else:
                others = [x for x in tasks[t] if x.label == lab]
                ran = [x for x in others if x.status != "n/a"]
                if ran:
                    text[i][j] = ran[0].status
                elif others:
                    text[i][j] = "n/a"
    # height: the rows, the two-line title and the upright task names below (about 0.08 in per character)
    below = 0.08 * max((len(t) for t in task_names), default=4)
    fig, ax = plt.subplots(figsize=(max(5.5, 2.8 + 1.2 * len(task_names)), 1.2 + below + 0.5 * max(2, len(labels))),
                           layout="constrained")
    cmap = plt.get_cmap("viridis").with_extremes(bad="#dddddd")
    im = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    # upright-rotated task labels: at 30 degrees long neighbours' extents overlap
    ax.set_xticks(range(len(task_names)), task_names, rotation=90)
    ax.set_yticks(range(len(labels)), labels)
    base = [i for i, lab in enumerate(labels) if _is_baseline_label(lab)]
    if base and len(base) < len(labels):  # the baselines' own band, below a separator
        ax.axhline(min(base) - 0.5, color="white", linewidth=5)
        ax.axhline(min(base) - 0.5, color="black", linewidth=1.2)
    for i, tick in enumerate(ax.get_yticklabels()):
        if i in base:
            tick.set_color("#555555")
            tick.set_fontstyle("italic")
    for i in range(len(labels)):
        for j in range(len(task_names)):
            if text[i][j]:
                v = data[i, j]
                color = "#555555" if np.isnan(v) else ("white" if v < 0.6 else "black")
                ax.text(j, i, text[i][j], ha="center", va="center", fontsize=7, color=color, linespacing=1.1)
    fig.colorbar(im, ax=ax, label="median main test metric over seeds")
    ax.set_title("median over seeds per variant and task (best backbone and lr); under it: seeds solved\n"
                 "rows ranked by IQM over tasks; baselines without attention below the line; grey: no number",
                 fontsize=9)
    return fig


def heatmap(tasks: dict[str, list[Entry]], labels: Sequence[str], chosen: dict[str, dict[str, Entry]],
            path: Path) -> None:
    _save(heatmap_figure(tasks, labels, chosen), path)


# -- accuracy vs throughput -------------------------------------------------------------------------
def acc_vs_speed_figure(tasks: dict[str, list[Entry]]) -> Figure:
    """One panel per task: median main metric against training tokens/s (log), a label per point placed
    by :func:`place_labels`; marker and colour by backbone."""
    plt = _plt()
    names = [t for t, es in tasks.items() if any(e.has_number and e.tokens_per_s for e in es)] or list(tasks)[:1]
    n = max(1, len(names))
    ncols = min(n, 2)
    nrows = math.ceil(n / ncols)
    # constrained layout reserves room for the suptitle above the panels' titles (tight_layout does not)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.2 * ncols, 4.6 * nrows), squeeze=False,
                             layout="constrained")
    backbones = sorted({e.backbone for es in tasks.values() for e in es})
    styles = series_styles(backbones)
    for ax in axes.flat[n:]:
        ax.axis("off")
    pending = []
    for ax, task in zip(axes.flat, names):
        pts = [e for e in tasks.get(task, []) if e.has_number and e.tokens_per_s]
        for e in pts:
            st = styles[e.backbone]
            ax.scatter(e.tokens_per_s, e.median, color=st["color"], marker=st["marker"], s=30, zorder=3)
        if pts:
            ax.set_xscale("log")
            lo, hi = min(e.tokens_per_s for e in pts), max(e.tokens_per_s for e in pts)
            ax.set_xlim(lo / 1.6, hi * 1.6)
            _log_ticks(ax.xaxis, lo / 1.6, hi * 1.6)
        chance = next((e.chance for e in tasks.get(task, []) if e.chance is not None), None)
        if chance is not None:
            ax.axhline(chance, color="gray", linestyle=":", linewidth=1)
        ax.set_ylim(-0.08, 1.1)
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("training throughput (tokens/s, log)", fontsize=8)
        ax.set_ylabel("median main test metric", fontsize=8)
        ax.grid(alpha=0.3)
        pending.append((ax, pts))
    handles = [plt.Line2D([], [], color=styles[b]["color"], marker=styles[b]["marker"], linestyle="", label=b)
               for b in backbones]
    handles.append(plt.Line2D([], [], color="gray", linestyle=":", label="chance"))
    fig.legend(handles=handles, loc="outside right center", fontsize=8, title="backbone")
    fig.suptitle("accuracy vs throughput (median over seeds)")
    fig.canvas.draw()  # the constrained layout is final before labels are placed in display coordinates
    fig.set_layout_engine("none")
    for ax, pts in pending:  # after the layout: label positions are computed in display coordinates
        place_labels(ax, [e.tokens_per_s for e in pts], [e.median for e in pts], [e.variant for e in pts])
    return fig


def _si(x: float, _pos: Any = None) -> str:
    """``20k``, ``1.5M``: a tick label short enough that neighbours on a log axis do not collide."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g}{suffix}"
    return f"{x:.3g}"


def _log_ticks(axis: Any, lo: float, hi: float) -> None:
    """At most about six short labels on a log axis spanning ``[lo, hi]``: 1-2-5 steps when the span is under
    two decades, decades otherwise; minor ticks unlabelled (matplotlib labels them all on a narrow span,
    and they overprint: ``acc_vs_speed.png``'s ``induction-heads-1l`` panel did)."""
    from matplotlib import ticker

    decades = math.log10(max(hi, lo * 1.0001) / lo)
    subs = (1.0, 2.0, 5.0) if decades < 2 else (1.0,)
    if decades < 0.5:
        subs = (1.0, 1.5, 2.0, 3.0, 5.0, 7.0)
    axis.set_major_locator(ticker.LogLocator(base=10, subs=subs))
    axis.set_major_formatter(ticker.FuncFormatter(_si))
    axis.set_minor_formatter(ticker.NullFormatter())


def plain_log(ax: Any, which: str = "x", base: float = 10) -> None:
    """A log scale whose tick labels are short numbers (``64``, ``1.5k``), never mathtext.

    matplotlib's log formatter writes ``$\\mathdefault{2^{6}}$``; with mathtext off for user text
    (:data:`attnzoo.leaderboard.escape.NO_MATHTEXT`) that prints literally, and overprints.
    """
    from matplotlib import ticker

    getattr(ax, f"set_{which}scale")("log", base=base)
    axis = getattr(ax, f"{which}axis")
    axis.set_major_formatter(ticker.FuncFormatter(_si))
    axis.set_minor_formatter(ticker.NullFormatter())


def acc_vs_speed(tasks: dict[str, list[Entry]], path: Path) -> None:
    _save(acc_vs_speed_figure(tasks), path)


# -- the answer first: attention vs no attention per task ---------------------------------------------
def _is_baseline_label(label: str) -> bool:
    return label == BASELINE or label.startswith(f"{BASELINE} (")


def summary_figure(tasks: dict[str, list[Entry]]) -> Figure | None:
    """Per task label (one row each): the best attention variant's median (bar, min–max over seeds as a
    whisker) beside the best no-attention baseline's, and the task's chance level (a black tick), the two
    names and medians printed to the right of the bars. None when no task has both.

    "Best" is the highest median among entries with a number (ties: solved rate), as in the findings.
    """
    import numpy as np

    plt = _plt()
    rows = []
    for task, entries in tasks.items():
        scored = [e for e in entries if e.has_number]
        att = max((e for e in scored if e.variant != BASELINE), key=lambda e: (e.median, e.solved), default=None)
        base = max((e for e in scored if e.variant == BASELINE), key=lambda e: (e.median, e.solved), default=None)
        if att is None and base is None:
            continue
        chance = next((e.chance for e in entries if e.chance is not None), None)
        rows.append((task, att, base, chance))
    if not rows:
        return None
    n = len(rows)
    fig, ax = plt.subplots(figsize=(7.6, 1.1 + 0.46 * n), layout="constrained")
    y = np.arange(n)
    h = 0.36
    colors = {"attention": "#1f77b4", "baseline": "#9a9a9a"}
    for i, (task, att, base, chance) in enumerate(rows):
        for e, dy, kind in ((att, -h / 2, "attention"), (base, h / 2, "baseline")):
            if e is None:
                continue
            s = e.summary
            err = ([[e.median - s.lo], [s.hi - e.median]] if s is not None and s.lo is not None and s.n > 1
                   else None)
            ax.barh(i + dy, e.median, height=h, color=colors[kind], xerr=err,
                    error_kw={"elinewidth": 0.8, "capsize": 2, "ecolor": "#333333"})
            who = e.variant if kind == "attention" else f"{BASELINE} ({e.backbone})"
            ax.text(1.03, i + dy, f"{e.median:.2f} {who}", va="center", ha="left", fontsize=7,
                    color="#1a4f7a" if kind == "attention" else "#555555", clip_on=False)
        if chance is not None:
            ax.plot([chance, chance], [i - 0.45, i + 0.45], color="black", linewidth=1.6, solid_capstyle="butt")
    ax.set_yticks(y, [r[0] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.0)
    ax.set_xlabel("median main test metric over seeds (whisker: min–max)", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    ax.grid(axis="x", alpha=0.3)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors["attention"], label="best attention variant"),
               plt.Rectangle((0, 0), 1, 1, color=colors["baseline"], label="best baseline without attention"),
               plt.Line2D([], [], color="black", linewidth=1.6, label="chance")]
    ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, fontsize=7, frameon=False)
    # room on the right for the names: a fixed margin in the figure, since the texts sit outside the axes
    fig.get_layout_engine().set(rect=(0, 0, 0.74, 1))
    return fig


def summary(tasks: dict[str, list[Entry]], path: Path) -> bool:
    return _save_optional(summary_figure(tasks), path)


def profile_figure(runs: dict[str, list[float]], *, taus: Sequence[float] | None = None) -> Figure | None:
    """Performance profiles (Agarwal et al. 2021): per label, the fraction of its runs (every task and seed,
    normalized so chance is 0 and a perfect score 1) whose score exceeds each threshold tau. Attention
    variants in colour, baselines in grey dashes; the legend outside the axes, in the labels' order.

    :param runs: label -> normalized scores of all its runs (the overall table's order).
    """
    import numpy as np

    from attnzoo.leaderboard.stats import performance_profile

    runs = {k: v for k, v in runs.items() if len(v)}
    if not runs:
        return None
    plt = _plt()
    t = np.linspace(0.0, 1.0, 101) if taus is None else np.asarray(taus, dtype=float)
    labels = list(runs)
    styles = series_styles(labels, [_is_baseline_label(lab) for lab in labels])
    fig, ax = plt.subplots(figsize=(8.5, 4.2), layout="constrained")
    for lab in labels:
        st = styles[lab]
        ax.plot(t, performance_profile(runs[lab], t), color=st["color"], linestyle=st["linestyle"],
                linewidth=1.4, label=lab, drawstyle="steps-post")
    ax.set_xlabel("normalized score tau (0 = chance, 1 = perfect)", fontsize=8)
    ax.set_ylabel("fraction of runs with score > tau", fontsize=8)
    ax.set_xlim(float(t.min()), float(t.max()))
    ax.set_ylim(-0.02, 1.02)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.set_title("performance profiles over every task and seed (higher is better)", fontsize=9)
    fig.legend(loc="outside right upper", fontsize=7, frameon=False, ncol=1 if len(labels) <= 20 else 2)
    return fig


def profile(runs: dict[str, list[float]], path: Path) -> bool:
    return _save_optional(profile_figure(runs), path)


# -- no overprinted text ---------------------------------------------------------------------------------
def overlapping_texts(fig: Figure, *, min_px: float = 1.0, annotations: bool = False) -> list[tuple[str, str]]:
    """Pairs of visible, non-empty texts of ``fig`` whose rendered extents overlap by more than ``min_px``
    in both directions: titles, suptitle, axis labels, drawn tick labels, legend texts and texts placed
    with ``ax.text`` (what a reader sees overprinted).

    :param annotations: also check point labels (``Annotation``: :func:`place_labels` falls back to the
        least-overlapping spot in a panel too crowded for none, so those are best effort).

    :returns: ``[(text a, text b), ...]``; empty when nothing overprints.
    """
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    from matplotlib.text import Annotation, Text

    # tick labels: only those of ticks drawn (an axis keeps spare Tick objects whose stale labels are not shown)
    drawn_ticks: set[int] = set()
    all_ticks: set[int] = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            for tick in [*axis.get_major_ticks(), *axis.get_minor_ticks()]:
                all_ticks.update((id(tick.label1), id(tick.label2)))
            try:
                shown = axis._update_ticks()  # the ticks matplotlib draws (inside the view limits)
            except Exception:  # noqa: BLE001 - a private API: fall back to counting every tick label
                shown = [*axis.get_major_ticks(), *axis.get_minor_ticks()]
            for tick in shown:
                drawn_ticks.update(id(t) for t in (tick.label1, tick.label2) if t.get_visible())
    boxes = []
    for t in fig.findobj(Text):
        if not t.get_visible() or not t.get_text().strip() or t.figure is None:
            continue
        if id(t) in all_ticks and id(t) not in drawn_ticks:
            continue
        if not annotations and isinstance(t, Annotation):
            continue
        try:
            bb = t.get_window_extent(renderer)
        except (RuntimeError, ValueError):
            continue
        if bb.width <= 0 or bb.height <= 0:
            continue
        boxes.append((t.get_text(), bb))
    out = []
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            (ta, a), (tb, b) = boxes[i], boxes[j]
            w = min(a.x1, b.x1) - max(a.x0, b.x0)
            h = min(a.y1, b.y1) - max(a.y0, b.y0)
            if w > min_px and h > min_px:
                out.append((ta, tb))
    return out


# -- learning curves ---------------------------------------------------------------------------------
def curves_figure(task: str, entries: list[Entry]) -> Figure | None:
    """Train loss (log) and validation metric against step, the first finished seed of each entry; one
    colour and line style per entry (:func:`series_styles`), the legend to the right of both panels."""
    plt = _plt()
    series = []
    for e in entries:
        row = next((r for r in e.rows if r.status == "ok" and r.curve), None)
        if row is not None:
            series.append((e, row.curve))
    if not series:
        return None
    styles = series_styles([e.name for e, _ in series], [e.variant == BASELINE for e, _ in series])
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 4.2))
    for e, curve in series:
        pts = [p for p in curve if isinstance(p, (list, tuple)) and len(p) >= 3]
        loss = [(p[0], p[1]) for p in pts if _num(p[1]) is not None and p[1] > 0]
        val = [(p[0], p[2]) for p in pts if _num(p[2]) is not None]
        st = styles[e.name]
        if loss:
            ax_loss.plot(*zip(*loss), color=st["color"], linestyle=st["linestyle"], label=e.name, linewidth=1.3)
        if val:
            ax_val.plot(*zip(*val), color=st["color"], linestyle=st["linestyle"], marker=st["marker"],
                        markersize=3, label=e.name, linewidth=1.3)
    chance = next((e.chance for e in entries if e.chance is not None), None)
    if chance is not None:
        ax_val.axhline(chance, color="gray", linestyle=":", linewidth=1, label="chance")
    if ax_loss.lines:
        plain_log(ax_loss, "y")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("train loss")
    ax_val.set_xlabel("step")
    metric = next((e.main_metric for e in entries if e.main_metric), "main")
    ax_val.set_ylabel(("val/" + metric.split("/", 1)[1]) if "/" in metric else "validation")
    ax_val.set_ylim(-0.03, 1.03)
    for ax in (ax_loss, ax_val):
        ax.grid(alpha=0.3)
    handles, labels = ax_val.get_legend_handles_labels()
    if not handles:
        handles, labels = ax_loss.get_legend_handles_labels()
    fig.suptitle(f"{task}: learning curves (best lr, first seed)")
    fig.tight_layout()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7,
               ncol=1 if len(labels) <= 18 else 2, frameon=False)
    return fig


def curves(task: str, entries: list[Entry], path: Path) -> bool:
    return _save_optional(curves_figure(task, entries), path)


# -- attention maps ------------------------------------------------------------------------------------
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


#: most tick labels on an attention map's axis (a date's 30 characters all fit at font size 6)
_MAX_TICKS = 32


def _chosen_head(diag: dict[str, Any]) -> tuple[int, int, str]:
    """``(layer, head, what)`` to draw: the head with the most gold mass, else (no gold) the most peaked."""
    best = diag.get("best")
    if best and "layer" in best:
        return int(best["layer"]), int(best["head"]), f"gold mass {best.get('gold_mass', 0):.2f}"
    heads = [h for h in diag.get("heads") or [] if h.get("entropy") is not None]
    if heads:
        h = min(heads, key=lambda h: h["entropy"])
        return int(h["layer"]), int(h["head"]), f"entropy {h['entropy']:.2f} (most peaked head)"
    return 0, 0, ""


def _sample_panel(row: Row) -> dict[str, Any] | None:
    """What a panel draws from a row's alignment sample: the chosen layer/head over the scored target rows
    and the source keys, token labels from the task, the gold positions; for the NTM its read weights
    over memory slots, with the slot each gold source step was written to."""
    import numpy as np

    from attnzoo.leaderboard.report.alignment import task_of

    diag = row.alignment or {}
    sample = diag.get("sample")
    if not sample or not sample.get("layers"):
        return None
    task = task_of(row)
    src, tgt, rows = sample["src"], sample["tgt"], sample["rows"]
    ylabels = task.decode([tgt[r] for r in rows], target=True) if task else [str(tgt[r]) for r in rows]
    gold = sample.get("gold")
    if sample.get("memory") is not None:  # the NTM: what it reads is memory, so draw memory
        w = np.asarray(sample["memory"], dtype=float)  # (R, slots)
        writes = np.asarray(sample.get("writes") or [], dtype=float)  # (S, slots)
        marks = []
        if gold and writes.size:
            marks = [(i, int(writes[g].argmax())) for i, gs in enumerate(gold) for g in gs]
        best = diag.get("best") or {}
        # a read head that never moves (entropy ~0) reads one slot at every step: say so, since a copy at
        # 1.00 beside it means the controller carries the sequence, not the read/write addressing
        spread = best.get("entropy")
        note = [f"read entropy {spread:.2f}" + (" (one slot)" if spread < 0.05 else "")] if spread is not None else []
        note += [f"source mass via writes {best['gold_mass']:.2f}"] if best.get("gold_mass") is not None else []
        return {"w": w, "x": [f"m{k}" for k in range(w.shape[1])], "y": ylabels, "gold": marks,
                "xlabel": "memory slot (NTM read weights)", "ylabel": "output step (its target)",
                "note": " · ".join(note), "mark": "slot written at the gold step"}
    layer, head, note = _chosen_head(diag)
    layer = min(layer, len(sample["layers"]) - 1)
    heads = sample["layers"][layer]["heads"]
    head = 0 if sample.get("averaged") else min(head, len(heads) - 1)
    w = np.asarray(heads[head], dtype=float)  # (R, S)
    which = f"L{layer}" + ("" if sample.get("averaged") else f" H{head}")
    marks = [(i, g) for i, gs in enumerate(gold or []) for g in gs]
    return {"w": w, "x": task.decode(src) if task else [str(t) for t in src], "y": ylabels, "gold": marks,
            "xlabel": "key: source token", "ylabel": "query: the target it predicts",
            "note": f"{which} · {note}" if note else which, "mark": "gold position"}


def _legacy_panel(row: Row) -> dict[str, Any] | None:
    """A row stored before the alignment diagnostics: its one ``attention_map``, labelled by ids."""
    import numpy as np

    am = row.attention_map
    if not am:
        return None
    try:
        w = np.asarray(am.get("weights"), dtype=float)
    except (TypeError, ValueError):
        return None
    if w.ndim != 2 or w.size == 0 or not np.isfinite(w).any():
        return None
    tq, tk = w.shape
    xl = _key_labels(am, tk)
    yl = _tick_labels(am.get("tgt_tokens") or am.get("query_tokens") or am.get("tgt"), tq)
    return {"w": w, "x": xl, "y": yl, "gold": [], "note": "",
            "xlabel": "key: " + ("input tokens" if xl else "position"),
            "ylabel": "query: " + ("output tokens" if yl else "position"), "mark": ""}


def attention_figure(task: str, entries: list[Entry]) -> Figure | None:
    """One panel per entry with a recorded map (first finished seed), at most three to a row so each stays
    readable at page width; one colour scale for all panels (0 to the largest weight of any) and one
    colour bar, so a near-uniform map reads as flat next to a peaked one.

    A row with alignment diagnostics is drawn from its stored sample: the layer/head that best matches
    the gold alignment (named in the panel), axes labelled with the task's decoded tokens, and the gold
    positions boxed in red. The NTM's panel is its read weights over memory slots (what it reads), the
    boxes on the slot each gold source step was written to. Older rows draw their one stored map.
    """
    import numpy as np
    from matplotlib.patches import Rectangle

    plt = _plt()
    maps = []
    for e in entries:
        ok = [r for r in e.rows if r.status == "ok"]
        row = next((r for r in ok if (r.alignment or {}).get("sample")), None)
        panel = _sample_panel(row) if row is not None else None
        if panel is None:
            row = next((r for r in ok if r.attention_map), None)
            panel = _legacy_panel(row) if row is not None else None
        if panel is not None and np.isfinite(panel["w"]).any():
            maps.append((e, panel))
    if not maps:
        return None
    vmax = max(1e-9, max(float(np.nanmax(p["w"])) for _, p in maps))
    n = len(maps)
    ncols = min(n, 3)
    nrows = math.ceil(n / ncols)
    # panel height follows the maps' shape: a one-query map (recall) needs a strip, not a square
    ratio = max(0.25, min(1.0, max(p["w"].shape[0] / p["w"].shape[1] for _, p in maps)))
    # at least 6.5 in wide: a one-panel figure still has room for its title beside the colour bar
    fig, axes = plt.subplots(nrows, ncols, figsize=(max(6.5, 4.3 * ncols + 0.8), (1.6 + 2.8 * ratio) * nrows + 0.3),
                             squeeze=False, layout="constrained")
    for ax in axes.flat[n:]:
        ax.axis("off")
    im = None
    marked = set()
    for ax, (e, p) in zip(axes.flat, maps):
        w = p["w"]
        im = ax.imshow(w, cmap="viridis", vmin=0.0, vmax=vmax, aspect="auto", interpolation="nearest")
        for r, k in p["gold"]:
            ax.add_patch(Rectangle((k - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.3))
        if p["gold"]:
            marked.add(p["mark"])
        tq, tk = w.shape
        xl, yl = _tick_labels(p["x"], tk), _tick_labels(p["y"], tq)
        step_x = max(1, math.ceil(tk / _MAX_TICKS))
        step_y = max(1, math.ceil(tq / _MAX_TICKS))
        ax.set_xticks(range(0, tk, step_x), (xl[::step_x] if xl else list(range(0, tk, step_x))), fontsize=6,
                      rotation=90)
        ax.set_yticks(range(0, tq, step_y), (yl[::step_y] if yl else list(range(0, tq, step_y))), fontsize=6)
        ax.set_xlabel(p["xlabel"], fontsize=7)
        ax.set_ylabel(p["ylabel"], fontsize=7)
        acc = f" (median {e.median:.2f})" if e.median is not None else ""
        ax.set_title(f"{e.name}{acc}" + (f"\n{p['note']}" if p["note"] else ""), fontsize=7)
    fig.colorbar(im, ax=[a for a in axes.flat[:n]], label=f"attention weight (one scale, 0–{vmax:.2f})",
                 shrink=0.8, aspect=30)
    boxes = f"\nred boxes: {' / '.join(sorted(marked))}" if marked else ""
    fig.suptitle(f"{task}: attention on one test sample{boxes}", fontsize=9)
    return fig


def attention(task: str, entries: list[Entry], path: Path) -> bool:
    fig = attention_figure(task, entries)
    if fig is None:
        return False
    _save(fig, path)
    return True


# -- speed benchmark --------------------------------------------------------------------------------------
# column names of ``attnzoo speed``'s speed.csv first, then common alternatives
_X_KEYS = ("length", "seq_len", "T")
_Y_KEYS = ("time_ms", "ms", "median_ms")
_G_KEYS = ("variant", "name", "attention")
_M_KEYS = ("peak_mb", "peak_mem_mb", "mem_mb")


def speed(csv_path: Path, path: Path) -> bool:
    """The speed benchmark's scaling plot (time and memory vs sequence length per variant) from its CSV."""
    return _save_optional(speed_figure(csv_path), path)


def speed_figure(csv_path: Path) -> Figure | None:
    """:func:`speed`'s figure; None when the CSV has no rows or columns it can read."""
    plt = _plt()
    with open(csv_path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return None
    cols = list(rows[0])
    x = next((k for k in _X_KEYS if k in cols), None)
    y = next((k for k in _Y_KEYS if k in cols), None)
    g = next((k for k in _G_KEYS if k in cols), None)
    if not (x and y and g):
        return None
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
        return None
    styles = series_styles(sorted(series))
    fig, axes = plt.subplots(1, 2 if mem else 1, figsize=(11 if mem else 6.5, 4.5), squeeze=False)
    for name, pts in sorted(series.items()):
        pts.sort()
        st = {k: v for k, v in styles[name].items()}
        axes[0][0].plot([p[0] for p in pts], [p[1] for p in pts], label=name, markersize=3, **st)
        if mem:
            mp = [(p[0], p[2]) for p in pts if p[2] is not None]
            if mp:
                axes[0][1].plot(*zip(*mp), label=name, markersize=3, **st)
    plain_log(axes[0][0], "x", base=2)
    plain_log(axes[0][0], "y")
    axes[0][0].set_xlabel(x)
    axes[0][0].set_ylabel(y)
    axes[0][0].set_title("time vs sequence length")
    if mem:
        plain_log(axes[0][1], "x", base=2)
        plain_log(axes[0][1], "y")
        axes[0][1].set_xlabel(x)
        axes[0][1].set_ylabel(mem)
        axes[0][1].set_title("peak memory vs sequence length")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, frameon=False)
    return fig
