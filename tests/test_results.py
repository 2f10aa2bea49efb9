"""attnzoo.results: typed rows of a results directory, the report's summary table, DataFrames."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import attnzoo
from attnzoo.cell import Row
from attnzoo.leaderboard.report import aggregate, task_table
from tests.test_report import row, seeds

ROWS = (seeds("copy", "seq2seq", "content", [1.0, 0.4, 1.0]) + seeds("copy", "mlp", "none", [0.3, 0.3, 0.2])
        + seeds("copy", "seq2seq", "content", [0.2, 0.2, 0.2], lr=1e-2)  # worse on validation: not chosen
        + seeds("copy", "seq2seq", "hard", ["diverged", "diverged", "diverged"])
        + [row("sort", "pointer", "none", 0, None, status="n/a", error="needs pointer logits")])


def _write(tmp_path, rows):
    with open(tmp_path / "results.jsonl", "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    return tmp_path


def test_load_gives_typed_latest_rows(tmp_path):
    retried = dict(ROWS[0], main_value=0.9)
    res = attnzoo.results.load(_write(tmp_path, [*ROWS, retried]))
    assert len(res) == len(ROWS)                       # a retried cell counts once, with its last row
    assert all(isinstance(r, Row) for r in res)
    assert next(r for r in res if r.cell_id == ROWS[0]["cell_id"]).main_value == 0.9
    assert attnzoo.results.load(tmp_path / "results.jsonl").directory == tmp_path
    typed = attnzoo.results.from_rows([Row.from_json(r) for r in ROWS] + [Row(status="failed")])
    assert len(typed) == len(ROWS) + 1  # Rows in, a row without a cell id included
    with pytest.raises(FileNotFoundError, match="results.jsonl"):
        attnzoo.results.load(tmp_path / "nowhere")


def test_summary_is_the_reports_table(tmp_path):
    summary = attnzoo.results.load(_write(tmp_path, ROWS)).summary()
    content = summary.where(label="copy", variant="content")[0]
    # best lr on validation (1e-3: its seeds score 1.0/0.4/1.0 against 0.2 at 1e-2), then the median over seeds
    assert (content.best_lr, content.median, content.min, content.max) == (1e-3, 1.0, 0.4, 1.0)
    assert content.per_seed == (1.0, 0.4, 1.0) and content.solved == 2 and content.n_seeds == 3
    assert content.normalized_median == pytest.approx(1.0) and content.steps_to_solve == 100
    base = summary.where(variant="none", label="copy")[0]
    assert base.baseline and base.normalized_median == pytest.approx((0.3 - 0.25) / 0.75)
    assert summary.where(variant="hard")[0].status == "diverged"
    assert summary.where(label="sort")[0].status == "n/a"
    # the same ranking and numbers as the report's table
    headers, trows = task_table(aggregate(ROWS)["copy"])
    assert [r[1] for r in trows] == [s.variant for s in summary.where(label="copy")]
    with pytest.raises(TypeError, match="unknown field"):
        summary.where(nonsense=1)


def test_to_pandas(tmp_path):
    pd = pytest.importorskip("pandas")
    res = attnzoo.results.load(_write(tmp_path, ROWS))
    df = res.summary().to_pandas()
    assert isinstance(df, pd.DataFrame) and len(df) == len(res.summary())
    assert {"label", "backbone", "variant", "median", "steps_to_solve", "normalized_median"} <= set(df.columns)
    flat = res.to_pandas()
    assert len(flat) == len(res) and "metrics.test/exact_acc" in flat.columns


def test_to_pandas_without_pandas_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    res = attnzoo.results.load(_write(tmp_path, ROWS))
    with pytest.raises(ImportError, match=r"attnzoo\[pandas\]"):
        res.summary().to_pandas()
    with pytest.raises(attnzoo.results.MissingExtraError, match=r"attnzoo\[pandas\]"):
        res.to_pandas()


def test_the_results_api_is_light_to_import():
    code = ("import sys, attnzoo, attnzoo.results; attnzoo.results.from_rows([]);"
            "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'pandas', 'matplotlib', 'lightning', 'pytorch_lightning'})))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


def test_readme_notebook_example_runs(tmp_path, monkeypatch):
    """The README's three lines, on a results directory where they expect one."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "results.load(" in b)
    assert len(block.strip().splitlines()) == 3
    pytest.importorskip("pandas")
    (tmp_path / "bench-out" / "default").mkdir(parents=True)
    _write(tmp_path / "bench-out" / "default", ROWS)
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(block, "README results", "exec"), ns)  # noqa: S102
    assert len(ns["df"]) == len(attnzoo.results.from_rows(ROWS).summary())
