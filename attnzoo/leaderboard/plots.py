"""The report's figures, from aggregated :class:`~attnzoo.leaderboard.report.Entry` objects.

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

    from attnzoo.leaderboard.report import Entry

__all__ = ["series_styles", "place_labels", "heatmap", "heatmap_figure", "acc_vs_speed", "acc_vs_speed_figure",
           "curves", "curves_figure", "attention", "attention_figure", "speed", "data_uri"]

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
    fig, ax = plt.subplots(figsize=(max(5.5, 2.8 + 1.2 * len(task_names)), 1.4 + 0.5 * len(labels)))
    cmap = plt.get_cmap("viridis").with_extremes(bad="#dddddd")
    im = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(task_names)), task_names, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for i in range(len(labels)):
        for j in range(len(task_names)):
            if text[i][j]:
                v = data[i, j]
                color = "#555555" if np.isnan(v) else ("white" if v < 0.6 else "black")
                ax.text(j, i, text[i][j], ha="center", va="center", fontsize=7, color=color, linespacing=1.1)
    fig.colorbar(im, ax=ax, label="median main test metric over seeds")
    ax.set_title("median over seeds per variant and task (best backbone and lr); under it: seeds solved\n"
                 "rows ranked by tasks solved, then mean median; grey: no number, and why", fontsize=9)
    fig.tight_layout()
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
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.2 * ncols, 4.6 * nrows), squeeze=False)
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
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, title="backbone")
    fig.suptitle("accuracy vs throughput (median over seeds)")
    fig.tight_layout()
    for ax, pts in pending:  # after the layout: label positions are computed in display coordinates
        place_labels(ax, [e.tokens_per_s for e in pts], [e.median for e in pts], [e.variant for e in pts])
    return fig


def acc_vs_speed(tasks: dict[str, list[Entry]], path: Path) -> None:
    _save(acc_vs_speed_figure(tasks), path)


# -- learning curves ---------------------------------------------------------------------------------
def curves_figure(task: str, entries: list[Entry]) -> Figure | None:
    """Train loss (log) and validation metric against step, the first finished seed of each entry; one
    colour and line style per entry (:func:`series_styles`), the legend to the right of both panels."""
    plt = _plt()
    series = []
    for e in entries:
        row = next((r for r in e.rows if r.get("status") == "ok" and r.get("curve")), None)
        if row is not None:
            series.append((e, row["curve"]))
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
        ax_loss.set_yscale("log")
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
    fig = curves_figure(task, entries)
    if fig is None:
        return False
    _save(fig, path)
    return True


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


def attention_figure(task: str, entries: list[Entry]) -> Figure | None:
    """One panel per entry with a recorded map (first finished seed), at most three to a row so each stays
    readable at page width; one colour scale for all panels (0 to the largest weight of any) and one
    colour bar, so a near-uniform map reads as flat next to a peaked one."""
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
        if w.ndim != 2 or w.size == 0 or not np.isfinite(w).any():
            continue
        maps.append((e, am, w))
    if not maps:
        return None
    vmax = max(1e-9, max(float(np.nanmax(w)) for _, _, w in maps))
    n = len(maps)
    ncols = min(n, 3)
    nrows = math.ceil(n / ncols)
    # panel height follows the maps' shape: a one-query map (recall) needs a strip, not a square
    ratio = max(0.25, min(1.0, max(w.shape[0] / w.shape[1] for _, _, w in maps)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.3 * ncols + 0.8, (1.3 + 2.8 * ratio) * nrows),
                             squeeze=False, layout="constrained")
    for ax in axes.flat[n:]:
        ax.axis("off")
    im = None
    for ax, (e, am, w) in zip(axes.flat, maps):
        im = ax.imshow(w, cmap="viridis", vmin=0.0, vmax=vmax, aspect="auto", interpolation="nearest")
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
        acc = f" (median {e.median:.2f})" if e.median is not None else ""
        ax.set_title(f"{e.name}{acc}", fontsize=8)
    fig.colorbar(im, ax=[a for a in axes.flat[:n]], label=f"attention weight (one scale, 0–{vmax:.2f})",
                 shrink=0.8, aspect=30)
    fig.suptitle(f"{task}: attention on one test sample")
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
    axes[0][0].set_xscale("log", base=2)
    axes[0][0].set_yscale("log")
    axes[0][0].set_xlabel(x)
    axes[0][0].set_ylabel(y)
    axes[0][0].set_title("time vs sequence length")
    if mem:
        axes[0][1].set_xscale("log", base=2)
        axes[0][1].set_yscale("log")
        axes[0][1].set_xlabel(x)
        axes[0][1].set_ylabel(mem)
        axes[0][1].set_title("peak memory vs sequence length")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, frameon=False)
    _save(fig, path)
    return True
