"""No overprinted text in the report's figures: every title, axis label, tick label and legend text is measured
with matplotlib's own text extents (``get_window_extent`` with the figure's renderer) and no two overlap."""

from __future__ import annotations

import csv

import pytest

from attnzoo.leaderboard.report import plots
from attnzoo.leaderboard.report import aggregate, overall_table, rankings
from tests.test_report import seeds

VARIANTS = ["scaled-dot", "content", "general", "dot", "additive", "location", "local-m", "local-p", "hard",
            "linear", "a-very-long-plugin-variant-name"]
LABELS = ["associative-recall", "mqar", "induction-heads", "induction-heads-1l", "selective-copy", "copy",
          "copy-ntm", "sort", "reverse", "date-format", "listops"]


def _crowded_rows():
    """Eleven labels, eleven variants and two baselines; throughputs spread over two decades on most labels and
    within a factor 1.3 on induction-heads-1l (where the log axis used to print overlapping tick labels)."""
    rows = []
    for ti, task in enumerate(LABELS):
        narrow = task == "induction-heads-1l"
        for vi, v in enumerate(VARIANTS):
            tps = (150_000 + 3_000 * vi) if narrow else 10 ** (4 + 2 * vi / len(VARIANTS))
            vals = [((vi * 7 + ti * 3) % 10) / 10, ((vi * 5 + ti) % 10) / 10, 1.0 if vi % 3 == 0 else 0.2]
            rows += seeds(task, "transformer" if ti % 2 else "seq2seq", v, vals, tokens_per_s=tps, chance=0.125)
        rows += seeds(task, "mlp", "none", [0.2, 0.25, 0.3], tokens_per_s=300_000.0, chance=0.125)
        rows += seeds(task, "seq2seq", "none", [0.1, 0.1, 0.2], tokens_per_s=120_000.0, chance=0.125)
    return rows


@pytest.fixture(scope="module")
def crowded():
    tasks = aggregate(_crowded_rows())
    _, rows, chosen = overall_table(tasks)
    labels = [r[0] for r in rows if r[1] != ""]
    return tasks, labels, chosen


def _no_overlap(fig):
    assert fig is not None
    bad = plots.overlapping_texts(fig)
    assert bad == [], f"overprinted texts: {bad[:5]}"


def test_heatmap_has_no_overprinted_text(crowded):
    tasks, labels, chosen = crowded
    _no_overlap(plots.heatmap_figure(tasks, labels, chosen))


def test_acc_vs_speed_has_no_overprinted_titles_or_ticks(crowded):
    tasks, _, _ = crowded
    # four panels (a wide and a narrow throughput range among them) keep the test fast: labels are placed per panel
    fig = plots.acc_vs_speed_figure({t: tasks[t] for t in ("associative-recall", "mqar", "induction-heads-1l",
                                                           "copy-ntm")})
    _no_overlap(fig)
    # the suptitle sits above every panel's title (it used to be printed over the first row's)
    sup = fig._suptitle.get_window_extent(fig.canvas.get_renderer())
    for ax in fig.axes:
        if ax.get_title():
            assert ax.title.get_window_extent(fig.canvas.get_renderer()).y1 <= sup.y0 + 0.5


def test_summary_and_profile_figures_have_no_overprinted_text(crowded):
    tasks, labels, chosen = crowded
    _no_overlap(plots.summary_figure(tasks))
    ranks = rankings(tasks, chosen)
    _no_overlap(plots.profile_figure({lab: [x for r in ranks[lab].runs.values() for x in r] for lab in labels}))


def test_summary_figure_with_one_task_has_no_overprinted_text():
    _no_overlap(plots.summary_figure(aggregate(seeds("copy", "seq2seq", "dot", [1.0, 0.9]) +
                                               seeds("copy", "mlp", "none", [0.5, 0.4]))))


@pytest.mark.parametrize("task", ["mqar", "induction-heads-1l"])
def test_curves_have_no_overprinted_text(crowded, task):
    tasks, _, _ = crowded
    _no_overlap(plots.curves_figure(task, tasks[task]))


def test_speed_figure_has_no_overprinted_text(tmp_path):
    path = tmp_path / "speed.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["variant", "length", "time_ms", "peak_mb", "status"])
        for v in VARIANTS[:6]:
            for n in (64, 128, 256, 512, 1024, 2048):
                w.writerow([v, n, n * 0.01 * (1 + VARIANTS.index(v)), n * 0.5, "ok"])
    _no_overlap(plots.speed_figure(path))


def test_the_check_sees_overprinted_text():
    """The check is not vacuous: two titles drawn on top of each other are reported."""
    plt = plots._plt()
    fig, ax = plt.subplots()
    ax.set_title("a long panel title")
    fig.suptitle("a long figure title", y=ax.title.get_position()[1])
    fig.text(0.5, 0.5, "over", ha="center")
    fig.text(0.5, 0.5, "printed", ha="center")
    assert ("over", "printed") in plots.overlapping_texts(fig)
    plt.close(fig)
