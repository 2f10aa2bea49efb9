"""The report as a pipeline: the writers re-render the committed reference byte for byte, and a plugin's task
suite (``TaskSpec.suite``) gets a score table of its own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from attnzoo import results
from attnzoo.leaderboard.grid import expand, load_preset
from attnzoo.leaderboard.report import WRITERS, analyse, build_report, file_slug, suite_scores, suite_table, task_spec
from attnzoo.leaderboard.store import one_config, read_rows
from attnzoo.spec import SpecError
from attnzoo.tasks import TaskSpec, get_task_class, task_registry
from attnzoo.tasks.copying import CopyTask

REFERENCE = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "default"


def _committed_figures(d: Path, tasks: dict) -> dict[str, Path]:
    """The figure keys the figure stage records, for the PNGs committed beside the reference."""
    keys = {k: d / f"{k}.png" for k in ("summary", "heatmap", "profile", "acc_vs_speed")}
    for task in tasks:
        keys.update({f"{kind}:{task}": d / f"{kind}_{file_slug(task)}.png" for kind in ("curves", "attention")})
    return {k: p for k, p in keys.items() if p.exists()}


def test_writers_rerender_the_committed_reference_byte_for_byte():
    """Every writer's output equals the committed file (the figures are the committed PNGs, so the HTML page's
    inlined images match too): the refactors of the report keep its output."""
    res = results.from_rows(one_config(read_rows(REFERENCE), where=str(REFERENCE)))
    report = analyse([r.to_json() for r in res], res.entries())
    report.figures = _committed_figures(REFERENCE, report.tasks)
    assert not any(k.startswith("study:") for k in report.figures)  # the default preset holds no study
    for name, render in WRITERS.items():
        assert render(report) == (REFERENCE / name).read_bytes().decode("utf-8"), name


class _MineA(CopyTask):  # a plugin's task: copy's generator under another spec
    spec = TaskSpec(name="mine-a", summary="a plugin's suite, task a", metric="token_acc", suite="mine")


class _MineB(CopyTask):
    spec = TaskSpec(name="mine-b", summary="a plugin's suite, task b", metric="token_acc", suite="mine")


def _row(task: str, variant: str, seed: int, test: float, backbone: str = "transformer") -> dict:
    return {"status": "ok", "task": task, "task_name": task, "backbone": backbone, "variant": variant, "seed": seed,
            "lr": 1e-3, "main_metric": "test/token_acc", "main_value": test, "chance": 0.1,
            "metrics": {"val/token_acc": test, "test/token_acc": test},
            "cell": {"task": task, "task_kwargs": {}, "backbone": backbone, "lr": 1e-3, "weight_decay": 0.0,
                     "seed": seed}, "cell_id": f"{task}-{variant}-{seed}"}


@pytest.fixture
def mine_suite():
    for cls in (_MineA, _MineB):
        task_registry.add(cls.spec.name, cls, "test-plugin 0.1")
    task_spec.cache_clear()
    try:
        yield
    finally:
        for cls in (_MineA, _MineB):
            task_registry.remove(cls.spec.name)
        task_spec.cache_clear()


def test_a_plugin_suite_gets_its_own_score_table(mine_suite, tmp_path):
    rows = [_row(t, "dot", s, v) for t, v in (("mine-a", 0.9), ("mine-b", 0.5)) for s in (0, 1)]
    rows += [_row("mine-a", "none", s, 0.2, backbone="mlp") for s in (0, 1)]
    scores = suite_scores(rows, "mine")
    assert [s.label for s in scores] == ["dot (transformer)", "none (mlp)"]
    assert scores[0].score == pytest.approx({0: 0.7, 1: 0.7})
    table = suite_table(scores, "mine")
    assert table.headers == ["#", "variant", "mine-a", "mine-b", "mine score", "per seed"]
    assert table.anchor == "suite-mine" and table.title == "mine score"
    build_report(tmp_path, rows=rows)
    md, page = (tmp_path / "leaderboard.md").read_text(), (tmp_path / "leaderboard.html").read_text()
    assert "## mine score" in md and "0.700" in md and "## MAD score" not in md
    assert 'id="suite-mine"' in page and 'href="#suite-mine"' in page and 'id="mad"' not in page


def test_suite_is_checked_and_enters_no_cell_id():
    assert get_task_class("mad-compression").spec.suite == "mad" and get_task_class("copy").spec.suite == ""
    with pytest.raises(SpecError, match="TaskSpec.suite"):
        TaskSpec(name="x", summary="x", suite="Not A Name")
    with pytest.raises(SpecError, match="TaskSpec.suite"):
        TaskSpec(name="x", summary="x", suite=3)  # type: ignore[arg-type]
    # the suite is metadata: no cell of the MAD preset carries it (ids and hashes: tests/data/preset_ids.json)
    cells = expand(load_preset("mad-small"))
    assert cells and all("suite" not in json.dumps(c.cell.to_json()) for c in cells)
