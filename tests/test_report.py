"""The report: summaries over seeds, statuses instead of zeros, honest memory, figures that read right,
an HTML page whose anchors resolve, and the ETA. Tiny fake rows only (no training)."""

from __future__ import annotations

from typing import Any


def row(task: str, backbone: str, variant: str, seed: int, value: float | None, *, status: str = "ok",
        lr: float = 1e-3, metric: str = "exact_acc", chance: float = 0.25, long: float | None = None,
        extra: dict[str, float] | None = None, task_name: str | None = None, backbone_kwargs: dict | None = None,
        peak_mem_mb: float | None = None, peak_mem_kind: str | None = None, device: str = "cpu",
        tokens_per_s: float = 1000.0, curve: list | None = None, attention_map: dict | None = None,
        error: str | None = None) -> dict[str, Any]:
    """One results.jsonl row as the runner writes it (the fields the report reads)."""
    metrics: dict[str, float] = {}
    if status == "ok" and value is not None:
        metrics = {f"test/{metric}": value, f"val/{metric}": value}
        if long is not None:
            metrics[f"test_long/{metric}"] = long
        metrics.update(extra or {})
    steps = 100
    return {
        "status": status, "error": error if status != "ok" else None, "metrics": metrics,
        "main_metric": f"test/{metric}", "main_value": value if status == "ok" else None, "chance": chance,
        "params": 1000, "steps": steps if status == "ok" else 40, "train_time_s": 1.0,
        "tokens_per_s": tokens_per_s if status == "ok" else None,
        "peak_mem_mb": peak_mem_mb, "peak_mem_kind": peak_mem_kind,
        "curve": curve if curve is not None else [[s, 2.0 / s, (value or 0.0) * s / steps] for s in (10, 50, 100)],
        "attention_map": attention_map,
        "task": task, "task_name": task_name or task, "backbone": backbone, "variant": variant, "seed": seed,
        "lr": lr, "cell_id": f"{task}-{backbone}-{variant}-{seed}-{lr}-{sorted((backbone_kwargs or {}).items())}",
        "cell": {"task": task_name or task, "backbone": backbone, "backbone_kwargs": backbone_kwargs or {},
                 "attention": None if variant == "none" else variant, "max_steps": steps, "seed": seed, "lr": lr},
        "provenance": {"device": device, "wall_s": 1.0, "cpu_s": 1.0, "timestamp": f"2026-01-01T00:00:{seed:02d}Z"},
    }


def seeds(task: str, backbone: str, variant: str, values: list[float | str], **kw: Any) -> list[dict[str, Any]]:
    """One row per seed; a string value is a status (``"diverged"``, ``"oom"``, ``"failed"``)."""
    out = []
    for i, v in enumerate(values):
        if isinstance(v, str):
            out.append(row(task, backbone, variant, i, None, status=v, error=f"{v}: training loss became nan at step 40",
                           **kw))
        else:
            out.append(row(task, backbone, variant, i, v, **kw))
    return out


# =====================================================================================================
import json  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from attnzoo.leaderboard.report import plots  # noqa: E402
from attnzoo.leaderboard.progress import LineProgress  # noqa: E402
from attnzoo.leaderboard.report import (  # noqa: E402
    PEAK_MEM_NOTE,
    aggregate,
    build_report,
    overall_table,
    seed_summary,
    task_table,
)
from attnzoo.tasks.base import DEFAULT_SOLVE_THRESHOLD  # noqa: E402

#: rows written before rows had a schema (the default preset's reference results at 2 seeds, associative-recall
#: and sort): cpu_rss_peak_delta memory, no schema key
COMMITTED = Path(__file__).resolve().parent / "data" / "schema1_results.jsonl"


def _entry(tasks, task, variant, backbone=None):
    return next(e for e in tasks[task] if e.variant == variant and (backbone is None or e.backbone == backbone))


def _overall_cell(tasks, label, task):
    headers, rows, _ = overall_table(tasks)
    r = next(r for r in rows if r[0] == label)
    return r[headers.index(task)]


# -- summaries that survive seeds -----------------------------------------------------------------------
def test_bimodal_seeds_read_as_solved_rate_with_every_seed():
    rows = (seeds("copy", "seq2seq", "dot", [0.25, 1.0, 1.0]) + seeds("copy", "seq2seq", "general", [0.25, 1.0])
            + seeds("copy", "seq2seq", "additive", [0.5, 0.6, 0.55]))
    tasks = aggregate(rows)
    dot = _entry(tasks, "copy", "dot")
    assert dot.median == 1.0 and dot.solved == 2 and dot.n_seeds == 3
    assert dot.summary.per_seed() == "0.25 / 1.00 / 1.00"
    cell = _overall_cell(tasks, "dot", "copy")
    assert cell.startswith("1.000 (0.25–1.00), 2/3 solved"), cell
    assert "1/2 solved" in _overall_cell(tasks, "general", "copy")
    assert "±" not in cell  # never mean ± std alone
    headers, trows = task_table(tasks["copy"])
    assert [r[1] for r in trows] == ["dot", "general", "additive"]  # ranked by median (1.0, 0.625, 0.55)
    dot_row = trows[0]
    assert dot_row[headers.index("per seed")] == "0.25 / 1.00 / 1.00"
    assert dot_row[headers.index("solved (≥ 0.9)")] == "2/3 solved"


def test_thresholds_come_from_the_task_then_the_row_then_the_default():
    rows = (seeds("copy", "seq2seq", "dot", [0.85, 0.95])
            + seeds("plugin-task", "seq2seq", "dot", [0.85, 0.95])
            + [dict(r, solve_threshold=0.8) for r in seeds("own", "seq2seq", "dot", [0.85, 0.95])])
    tasks = aggregate(rows)
    assert _entry(tasks, "copy", "dot").threshold == 0.9  # TaskSpec.solve_threshold of the registered copy
    assert _entry(tasks, "plugin-task", "dot").threshold == DEFAULT_SOLVE_THRESHOLD
    assert _entry(tasks, "own", "dot").solved == 2 and _entry(tasks, "copy", "dot").solved == 1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.floats(0.0, 1.0), st.sampled_from(["diverged", "oom", "failed"])), min_size=1,
                max_size=6),
       st.floats(0.05, 1.0))
def test_seed_summary_properties(values, threshold):
    rows = seeds("t", "b", "v", values)
    s = seed_summary(rows, None, threshold)
    scores = [0.0 if isinstance(v, str) else v for v in values]
    assert s.n == len(values) and s.scores == scores
    assert s.solved == sum(1 for v in values if not isinstance(v, str) and v >= threshold - 1e-12)
    assert math.isclose(s.median, statistics.median(scores)) and s.lo <= s.median <= s.hi
    assert s.per_seed().count(" / ") == len(values) - 1
    assert sum(s.bad.values()) == sum(isinstance(v, str) for v in values)


# -- statuses, never zeros ------------------------------------------------------------------------------
@pytest.mark.parametrize("status", ["diverged", "oom", "failed"])
def test_an_entry_without_a_number_reads_as_its_status(status):
    rows = seeds("copy", "seq2seq", "dot", [status] * 3) + seeds("copy", "seq2seq", "general", [0.9, 0.95, 1.0])
    tasks = aggregate(rows)
    cell = _overall_cell(tasks, "dot", "copy")
    assert cell.startswith(status) and "0.000" not in cell, cell
    headers, trows = task_table(tasks["copy"])
    dot = next(r for r in trows if r[1] == "dot")
    assert dot[3].startswith(status) and dot[0] == "–", dot
    assert dot[headers.index("per seed")] == f"{status} / {status} / {status}"
    assert trows[0][1] == "general"  # entries with a number rank first
    fig = plots.heatmap_figure(tasks, ["general", "dot"], overall_table(tasks)[2])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert status in texts and not any(t.startswith("0.00") for t in texts), texts


def test_a_seed_that_diverged_counts_as_zero_and_is_named():
    tasks = aggregate(seeds("copy", "seq2seq", "dot", [1.0, "diverged", 1.0]))
    dot = _entry(tasks, "copy", "dot")
    assert dot.median == 1.0 and dot.solved == 2 and dot.summary.lo == 0.0
    assert dot.summary.per_seed() == "1.00 / diverged / 1.00"
    assert _overall_cell(tasks, "dot", "copy").startswith("1.000 (0.00–1.00), 2/3 solved (by step 100), 1 diverged")


# -- peak memory ------------------------------------------------------------------------------------------
def test_peak_memory_is_empty_on_cpu_and_says_why(tmp_path):
    rows = (seeds("copy", "seq2seq", "dot", [0.9, 0.9], peak_mem_mb=12.3, peak_mem_kind="cpu_rss_peak_delta")
            + seeds("copy", "seq2seq", "general", [0.8, 0.8], peak_mem_mb=None, peak_mem_kind="none (CPU)")
            + seeds("copy", "seq2seq", "additive", [0.7, 0.7], peak_mem_mb=40.0, peak_mem_kind="cuda_max_allocated",
                    device="cuda: H100"))
    tasks = aggregate(rows)
    headers, trows = task_table(tasks["copy"])
    peak = {r[1]: r[headers.index("peak MB")] for r in trows}
    assert peak == {"dot": "–", "general": "–", "additive": "40.0"}
    build_report(tmp_path, rows=rows)
    assert PEAK_MEM_NOTE in (tmp_path / "leaderboard.md").read_text()


# -- figures ------------------------------------------------------------------------------------------------
VARIANTS = ["additive", "content", "dot", "general", "hard", "linear", "local-m", "local-p", "location", "pointer",
            "scaled-dot", "ntm"]


def _many_variant_rows():
    rows = []
    for i, v in enumerate(VARIANTS):
        rows += seeds("associative-recall", "seq2seq", v, [0.2 + 0.06 * i, 0.25 + 0.06 * i],
                      tokens_per_s=40000 + 300 * i,
                      attention_map={"src": [1, 2, 3, 4], "tgt": [5, 6],
                                     "weights": [[1.0, 0, 0, 0], [0, 1.0, 0, 0]] if i % 2 else
                                     [[0.26, 0.25, 0.25, 0.24], [0.25, 0.25, 0.25, 0.25]]})
    rows += seeds("associative-recall", "mlp", "none", [0.27, 0.28], tokens_per_s=41000)
    rows += seeds("associative-recall", "seq2seq", "none", [0.25, 0.25], tokens_per_s=40500)
    return rows


def test_curves_have_a_distinct_colour_and_style_per_series_and_the_legend_outside():
    import matplotlib.colors as mcolors

    tasks = aggregate(_many_variant_rows())
    fig = plots.curves_figure("associative-recall", tasks["associative-recall"])
    ax_loss, ax_val = fig.axes[:2]
    lines = ax_loss.get_lines()
    assert len(lines) == len(VARIANTS) + 2
    colours = [mcolors.to_hex(ln.get_color()) for ln in lines]
    assert len(set(colours)) == len(colours), colours
    styles = {(mcolors.to_hex(ln.get_color()), ln.get_linestyle()) for ln in lines}
    assert len(styles) == len(lines)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend = fig.legends[0].get_window_extent(renderer)
    for ax in (ax_loss, ax_val):
        assert not legend.overlaps(ax.get_window_extent(renderer)), "the legend covers data"
    assert not ax_loss.get_legend() and not ax_val.get_legend()


def test_series_styles_never_repeat_beyond_twenty():
    names = [f"v{i}" for i in range(45)]
    st_ = plots.series_styles(names)
    assert len({tuple(round(c, 3) for c in s["color"]) for s in st_.values()}) == 45


def test_attention_maps_share_one_colour_scale_with_a_colour_bar():
    tasks = aggregate(_many_variant_rows())
    fig = plots.attention_figure("associative-recall", tasks["associative-recall"])
    images = [im for ax in fig.axes for im in ax.get_images()]
    assert len(images) == len(VARIANTS)
    assert len({im.get_clim() for im in images}) == 1, "every panel on one scale"
    assert images[0].get_clim() == (0.0, 1.0)
    colorbars = [ax for ax in fig.axes if "attention weight" in ax.get_ylabel()]
    assert len(colorbars) == 1


def test_acc_vs_speed_labels_do_not_collide():
    tasks = aggregate(_many_variant_rows())
    fig = plots.acc_vs_speed_figure(tasks)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    texts = [t for t in fig.axes[0].texts if t.get_text()]
    assert len(texts) == len(VARIANTS) + 2
    boxes = [Text.get_window_extent(t, renderer) for t in texts]  # the label, not its leader line
    clashes = [(texts[i].get_text(), texts[j].get_text()) for i in range(len(boxes)) for j in range(i)
               if boxes[i].overlaps(boxes[j])]
    assert not clashes, clashes


def test_place_labels_separates_a_tight_cluster():
    plt = plots._plt()
    fig, ax = plt.subplots(figsize=(5, 4))
    xs, ys = [1.0 + 0.001 * i for i in range(10)], [0.5] * 10
    ax.scatter(xs, ys)
    ax.set_xlim(0, 2)
    ax.set_ylim(0, 1)
    labels = plots.place_labels(ax, xs, ys, [f"variant-{i}" for i in range(10)])
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    boxes = [Text.get_window_extent(t, r) for t in labels]  # the label, not its leader line
    assert not any(boxes[i].overlaps(boxes[j]) for i in range(10) for j in range(i))
    plt.close(fig)


# -- the page ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def committed_subset(tmp_path_factory):
    """Old rows (the committed default results: cpu_rss_peak_delta memory, no schema key), two tasks of them."""
    rows = [json.loads(line) for line in COMMITTED.read_text().splitlines() if line.strip()]
    keep = [r for r in rows if r["task"] in ("associative-recall", "sort")]
    d = tmp_path_factory.mktemp("old")
    (d / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in keep))
    return d, {p.name for p in build_report(d)}


def test_report_on_old_rows_writes_findings_and_hides_cpu_memory(committed_subset):
    d, written = committed_subset
    assert {"findings.md", "leaderboard.md", "leaderboard.html", "heatmap.png"} <= written
    md = (d / "leaderboard.md").read_text()
    section = md.split("## associative-recall")[1].split("\n## ")[0]
    assert PEAK_MEM_NOTE in section
    headers = next(line for line in section.splitlines() if line.startswith("| #")).split("|")
    col = [h.strip() for h in headers].index("peak MB")
    body = [line.split("|") for line in section.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert body and all(r[col].strip() == "–" for r in body)
    findings = (d / "findings.md").read_text()
    assert "associative-recall: the best attention variant beats the best no-attention baseline" in findings
    assert "2/2 solved" in findings and "supported" in findings


def test_html_anchors_resolve_and_the_answer_comes_first(committed_subset):
    page = (committed_subset[0] / "leaderboard.html").read_text()
    hrefs = re.findall(r'href="#([^"]+)"', page)
    ids = set(re.findall(r'id="([^"]+)"', page))
    assert len(hrefs) >= 5 and set(hrefs) <= ids, set(hrefs) - ids
    assert len(ids) == len(re.findall(r'id="', page)), "ids are unique"
    # the answer (summary figure, heatmap), then the overall table, then the findings per task, collapsed
    assert (page.index('id="summary-figure"') < page.index('id="heatmap-figure"') < page.index('id="overall"')
            < page.index('id="findings"') < page.index('id="task-sort"'))
    assert re.search(r'<details class="task" id="task-sort"', page)
    assert re.search(r"\d+ labels? from \d+ tasks?", page)
    # each overall cell with a number links to its task's findings
    assert re.search(r'<td data-col="sort"[^>]*><a href="#task-sort">', page)
    other = [r for r in re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", page)
             if not r.startswith(("#", "data:image/png;base64,"))]
    assert not other and "http://" not in page and "https://" not in page  # still self-contained
    assert 'class="zoom" tabindex="0"' in page  # attention grids: click to enlarge


# -- ETA ---------------------------------------------------------------------------------------------------------
class _Cell:
    def __init__(self, i, task, backbone, steps):
        self.id, self.task, self.backbone = f"c{i}", task, backbone
        self.cell = {"max_steps": steps, "backbone": backbone}

    def label(self):
        return f"{self.task} / {self.backbone}"


class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _finish(progress, clock, gc, wall):
    clock.t += wall
    progress.advance(gc, {"status": "ok", "steps": gc.cell["max_steps"], "provenance": {"wall_s": wall}})


def test_eta_costs_the_remaining_cells_by_steps_and_backbone():
    import io

    clock = _Clock()
    cheap = [_Cell(i, "copy", "mlp", 100) for i in range(4)]
    dear = [_Cell(10 + i, "selective-copy", "transformer", 1000) for i in range(4)]
    other = _Cell(20, "sort", "pointer", 500)
    p = LineProgress(io.StringIO(), clock=clock)
    p.start(total=9, skipped=0, na=0, slots=1, cells=cheap + dear + [other])
    assert p.eta() is None
    for gc in cheap:  # 0.01 s/step
        _finish(p, clock, gc, 1.0)
    _finish(p, clock, dear[0], 50.0)  # 0.05 s/step
    # 3 transformer cells x 1000 steps x 0.05 + the pointer cell at the median rate of all (0.01) x 500
    assert p.eta() == pytest.approx(3 * 50.0 + 500 * 0.01)
    naive = statistics.median([1.0] * 4 + [50.0]) * 4  # what the per-cell median said: 4 s
    assert p.eta() > 30 * naive
    p.slots = 2
    assert p.eta() == pytest.approx((3 * 50.0 + 5.0) / 2)


def test_eta_without_cells_falls_back_to_the_median_cell_time():
    import io

    clock = _Clock()
    p = LineProgress(io.StringIO(), clock=clock)
    p.start(total=4, skipped=0, na=0, slots=1)
    _finish(p, clock, _Cell(0, "copy", "mlp", 100), 2.0)
    assert p.eta() == pytest.approx(3 * 2.0)


# -- steps to solve -------------------------------------------------------------------------------------------
from attnzoo.leaderboard.report import format_summary, median_steps, steps_to_solve  # noqa: E402


def test_steps_to_solve_is_the_first_validation_step_at_the_threshold():
    curve = [[100, 2.0, 0.3], [200, 1.0, None], [300, 0.5, 0.92], [400, 0.4, 0.8], [500, 0.3, 0.99]]
    assert steps_to_solve(curve, 0.9) == 300          # first crossing, even if it dips later
    assert steps_to_solve(curve, 0.95) == 500
    assert steps_to_solve(curve, 0.999) is None       # never: censored
    assert steps_to_solve([], 0.9) is None
    assert steps_to_solve([[10, 1.0]], 0.0) is None   # a point without a validation value says nothing


@given(st.lists(st.one_of(st.none(), st.integers(1, 1000)), min_size=1, max_size=7))
def test_median_steps_treats_censored_seeds_as_later_than_any_step(steps):
    m = median_steps(steps)
    censored = sum(s is None for s in steps)
    n = len(steps)
    if censored * 2 >= n + (n % 2):  # the middle seed (or one of the two middle) never solved
        assert m is None
    else:
        assert m is not None and min(s for s in steps if s is not None) <= m <= max(s for s in steps if s is not None)


def test_steps_to_solve_censored_in_tables_findings_and_csv(tmp_path):
    late = [[100, 1.0, 0.2], [200, 0.5, 0.95]]
    never = [[100, 1.0, 0.2], [200, 0.5, 0.5]]
    rows = (seeds("t", "seq2seq", "content", [1.0, 1.0], curve=late)
            + [row("t", "seq2seq", "content", 2, 0.5, curve=never)]
            + seeds("t", "seq2seq", "dot", [1.0], curve=late) + seeds("t", "seq2seq", "hard", [0.95, 0.5, 0.5],
                                                                       curve=never))
    for r in rows:
        if r["variant"] == "hard" and r["seed"] == 0:
            r["curve"] = late
    tasks = aggregate(rows)
    by = {e.variant: e for e in tasks["t"]}
    assert by["content"].summary.steps == [200, 200, None]
    assert by["content"].summary.steps_text() == "by step 200"
    assert by["hard"].summary.steps == [200, None, None]
    assert by["hard"].summary.steps_text() == "not by step 100"  # censored at the cells' max_steps
    headers, trows = task_table(tasks["t"])
    col = headers.index("steps to solve")
    cells = {r[1]: r[col] for r in trows}
    assert cells["content"] == "200 (200 / 200 / >100)"
    assert cells["hard"] == ">100 (200 / >100 / >100)"
    assert format_summary(by["content"].summary).startswith("1.000 (0.50–1.00), 2/3 solved (by step 200)")
    build_report(tmp_path, rows=rows)
    import csv

    with open(tmp_path / "leaderboard.csv", encoding="utf-8") as fh:
        got = {r["variant"]: r for r in csv.DictReader(fh)}
    assert got["hard"]["steps_per_seed"] == "200 censored censored" and got["hard"]["steps_to_solve"] == ""
    assert float(got["content"]["steps_to_solve"]) == 200 and got["content"]["max_steps"] == "100"


# -- the overall ranking, the answer paragraph, the counts ---------------------------------------------------
from attnzoo.leaderboard.report import counts_line, lead_summary, rankings  # noqa: E402
from attnzoo.leaderboard.stats import iqm  # noqa: E402


def _three_tasks():
    rows = []
    for task in ("a", "b", "c"):
        rows += seeds(task, "s", "strong", [1.0, 1.0, 0.9]) + seeds(task, "s", "middle", [0.7, 0.6, 0.65])
        rows += seeds(task, "s", "weak", [0.3, 0.25, 0.2]) + seeds(task, "mlp", "none", [0.5, 0.55, 0.6])
    rows += seeds("a-long", "s", "strong", [1.0, 1.0, 1.0], task_name="a") + seeds("a-long", "mlp", "none",
                                                                                      [0.9, 0.95, 1.0], task_name="a")
    return rows


def test_overall_table_ranks_by_iqm_with_intervals_and_sets_baselines_apart():
    tasks = aggregate(_three_tasks())
    headers, rows, chosen = overall_table(tasks)
    assert headers[:3] == ["variant", "IQM [95% CI]", "tasks solved"]
    labels = [r[0] for r in rows if r[1] != ""]
    assert labels == ["strong", "middle", "weak", "none (mlp)"]  # the baseline in its own band, after attention
    ranks = rankings(tasks, chosen)
    # the IQM is over every task and seed, normalized to chance 0.25
    middle = [(v - 0.25) / 0.75 for v in (0.7, 0.6, 0.65)] * 3
    assert ranks["middle"].iqm.value == pytest.approx(iqm(middle))
    assert ranks["middle"].iqm.lo <= ranks["middle"].iqm.value <= ranks["middle"].iqm.hi
    assert overall_table(aggregate(_three_tasks()))[1] == rows  # fixed bootstrap seed: the same text twice
    assert re.fullmatch(r"\d\.\d\d \[\d\.\d\d, \d\.\d\d\]", rows[0][1])


def test_the_answer_paragraph_and_counts_come_from_the_data():
    tasks = aggregate(_three_tasks())
    _, rows, chosen = overall_table(tasks)
    text = lead_summary(tasks, rankings(tasks, chosen), rows)
    assert text.startswith("On 3 of 4 labels the best attention variant beats the best network without attention "
                           "by at least 0.10 (median over seeds: a 1.00 vs 0.55; b 1.00 vs 0.55; c 1.00 vs 0.55).")
    assert "within 0.10 on 1 (a-long 1.00 vs 0.95)" in text
    assert "Across labels strong ranks first by IQM" in text
    assert counts_line(tasks).startswith("4 labels from 3 tasks (a label is a task run under one setting of the "
                                         "preset: a-long is a)")


def _with_setting(rows: list[dict[str, Any]], knobs: dict[str, int], train_size: int | None = None):
    for r in rows:
        r["cell"]["task_kwargs"] = dict(knobs)
        r["cell"]["train_size"] = train_size
    return rows


def test_a_study_label_split_by_model_family_is_compared_as_one():
    """bias-small gives the MLP a label of its own (mqar-T16-mlp) beside the attention one (mqar-T16): the
    answer paragraph and the summary figure compare the two as one; a label with other knobs or another
    training-set size stays apart, and so does a label that has both kinds itself."""
    from attnzoo.leaderboard.report import pair_labels

    rows = _with_setting(seeds("m16", "transformer", "scaled-dot", [1.0, 1.0, 0.9], task_name="mqar"), {"T": 16})
    rows += _with_setting(seeds("m16-mlp", "mlp", "none", [0.3, 0.3, 0.3], task_name="mqar"), {"T": 16})
    rows += _with_setting(seeds("m32-mlp", "mlp", "none", [0.2, 0.2, 0.2], task_name="mqar"), {"T": 32})
    rows += _with_setting(seeds("m16-n256", "mlp", "none", [0.9, 0.9, 0.9], task_name="mqar"), {"T": 16}, 256)
    rows += _three_tasks()
    tasks = aggregate(rows)
    paired = pair_labels(tasks)
    assert list(paired)[:3] == ["m16 + m16-mlp", "m32-mlp", "m16-n256"]
    assert {e.variant for e in paired["m16 + m16-mlp"]} == {"scaled-dot", "none"}
    assert all(lab in paired for lab in ("a", "b", "c", "a-long"))  # both kinds in one label: untouched
    _, overall, chosen = overall_table(tasks)
    text = lead_summary(tasks, rankings(tasks, chosen), overall)
    assert text.startswith("On 4 of 7 comparisons (labels of one task and setting split by model family compared "
                           "as one: m16 + m16-mlp) the best attention variant beats")
    assert "m16 + m16-mlp 1.00 vs 0.30" in text
    assert "No pair to compare on m32-mlp, m16-n256." in text
    assert "Nothing reaches the solve threshold on m16-mlp, m32-mlp at this budget." in text
