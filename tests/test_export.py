"""`attnzoo bench export DIR --format lm-eval`: lm-evaluation-harness's results layout, read back."""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from attnzoo.commands import bench as bench_cli
from attnzoo.leaderboard.export import export, lm_eval_results
from attnzoo.leaderboard.store import ResultStore

ROOT = Path(__file__).resolve().parents[1]


def _row(variant: str, backbone: str, seed: int, lr: float, val: float, test: float, long: float | None = None,
         status: str = "ok") -> dict:
    metrics = {"val/exact_acc": val, "test/exact_acc": test, "test/token_acc": min(1.0, test + 0.1)}
    if long is not None:
        metrics["test_long/exact_acc"] = long
    cell = {"task": "copy", "backbone": backbone, "attention": None if variant == "none" else variant,
            "task_kwargs": {"length": 8}, "max_steps": 100, "batch_size": 32, "lr": lr, "seed": seed,
            "test_size": 512}
    return {"status": status, "metrics": metrics if status == "ok" else {}, "main_metric": "test/exact_acc",
            "main_value": test, "chance": 0.0625, "cell_id": f"{variant}-{backbone}-{seed}-{lr}", "task": "copy",
            "task_name": "copy", "backbone": backbone, "variant": variant, "seed": seed, "lr": lr,
            "preset": "fake", "config_hash": "abc123", "cell": cell, "schema": 2,
            "provenance": {"git_commit": "deadbeef", "device": "cpu: test", "timestamp": f"2026-12-04T17:0{seed}:00Z"}}


def _lm_eval_metrics(entry: dict) -> dict[str, tuple[float, float | str]]:
    """What a reader of lm-eval files does: ``metric,filter`` keys, each with its ``metric_stderr,filter``."""
    out = {}
    for key, value in entry.items():
        if "," not in key or "_stderr," in key:
            continue
        metric, filt = key.split(",", 1)
        out[metric] = (value, entry[f"{metric}_stderr,{filt}"])
    return out


def test_best_lr_mean_and_stderr_over_seeds_read_back(tmp_path):
    rows = []
    tests = {1e-3: [0.9, 0.8, 0.95], 3e-3: [0.99, 0.1, 0.2]}  # 1e-3 wins on validation
    vals = {1e-3: [0.9, 0.85, 0.9], 3e-3: [0.99, 0.1, 0.2]}
    for lr in tests:
        for seed in range(3):
            rows.append(_row("dot", "seq2seq", seed, lr, vals[lr][seed], tests[lr][seed], long=tests[lr][seed] / 2))
    rows.append(_row("none", "mlp", 0, 1e-3, 0.5, 0.5))
    store = ResultStore(tmp_path / "run").open()
    store.extend(rows)

    paths = export(tmp_path / "run", "lm-eval", tmp_path / "lm")
    assert sorted(p.relative_to(tmp_path / "lm").parts[0] for p in paths) == ["dot__seq2seq", "none__mlp"]
    doc = json.loads((tmp_path / "lm" / "dot__seq2seq").glob("results_*.json").__next__().read_text())
    got = _lm_eval_metrics(doc["results"]["copy"])
    want = tests[1e-3]
    assert got["exact_acc"][0] == pytest.approx(statistics.fmean(want))
    assert got["exact_acc"][1] == pytest.approx(statistics.stdev(want) / math.sqrt(3))
    assert got["token_acc"][0] == pytest.approx(statistics.fmean(min(1.0, t + 0.1) for t in want))
    long = _lm_eval_metrics(doc["results"]["copy/test_long"])
    assert long["exact_acc"][0] == pytest.approx(statistics.fmean(want) / 2)
    assert doc["group_subtasks"] == {"copy": ["copy/test_long"]}
    assert doc["configs"]["copy"]["lr"] == 1e-3 and doc["configs"]["copy"]["seeds"] == [0, 1, 2]
    assert doc["configs"]["copy"]["lrs"] == [1e-3, 3e-3]
    assert doc["versions"]["copy"] == "abc123" and doc["n-shot"]["copy"] == 0
    assert doc["n-samples"]["copy"] == {"original": 512, "effective": 512}
    assert doc["higher_is_better"]["copy"] == {"exact_acc": True, "token_acc": True}
    assert doc["git_hash"] == "deadbeef" and doc["model_name"] == "dot@seq2seq"
    assert doc["config"]["model_args"] == "backbone=seq2seq,attention=dot"
    assert doc["config"]["random_seed"] == [0, 1, 2]
    assert doc["date"] == pytest.approx(1796403720.0)  # the newest row at the best lr: 2026-12-04T17:02:00Z
    # one seed: no standard error, written as lm-eval writes it
    baseline = json.loads(next((tmp_path / "lm" / "none__mlp").glob("results_*.json")).read_text())
    assert baseline["results"]["copy"]["exact_acc_stderr,none"] == "N/A"


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=5))
def test_every_metric_has_its_stderr_and_the_mean_is_the_seeds(values):
    rows = [_row("dot", "seq2seq", s, 1e-3, v, v) for s, v in enumerate(values)]
    (doc,) = lm_eval_results(rows).values()
    metrics = _lm_eval_metrics(doc["results"]["copy"])
    assert metrics["exact_acc"][0] == pytest.approx(statistics.fmean(values))
    se = metrics["exact_acc"][1]
    assert se == "N/A" if len(values) == 1 else 0 <= se <= 0.5 + 1e-9


def test_failed_seeds_are_left_out_and_named(tmp_path):
    rows = [_row("dot", "seq2seq", 0, 1e-3, 0.9, 0.9), _row("dot", "seq2seq", 1, 1e-3, 0, 0, status="failed")]
    (doc,) = lm_eval_results(rows).values()
    assert doc["configs"]["copy"]["seeds"] == [0] and doc["configs"]["copy"]["seeds_not_ok"] == [1]
    assert _lm_eval_metrics(doc["results"]["copy"])["exact_acc"] == (0.9, "N/A")
    assert lm_eval_results([_row("dot", "seq2seq", 1, 1e-3, 0, 0, status="failed")]) == {}


def test_the_shipped_reference_exports_through_the_command(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    bench_cli.configure_parser(parser)
    ref = ROOT / "benchmarks" / "results" / "default"
    args = parser.parse_args(["export", str(ref), "--format", "lm-eval", "--out", str(tmp_path)])
    assert bench_cli.main(args) == 0
    assert "lm-eval file(s)" in capsys.readouterr().out
    docs = [json.loads(p.read_text()) for p in tmp_path.glob("*/results_*.json")]
    assert len(docs) >= 10
    for doc in docs:
        for task, entry in doc["results"].items():
            assert _lm_eval_metrics(entry), task
            top = task.split("/")[0]
            assert top in doc["configs"] and task in doc["versions"]
    by_model = {d["model_name"]: d for d in docs}
    assert _lm_eval_metrics(by_model["scaled-dot@seq2seq"]["results"]["associative-recall"])["exact_acc"][0] == 1.0
    args = parser.parse_args(["export", str(tmp_path / "nothing")])
    assert bench_cli.main(args) == 2
