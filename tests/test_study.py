"""The inductive-bias study's points, figures and findings (attnzoo/leaderboard/report/study.py), on hand-made rows."""

from __future__ import annotations

from typing import Any

import pytest

from attnzoo.leaderboard.report import plots, study
from attnzoo.leaderboard.report import aggregate, build_report

MQAR = {"vocab_size": 64, "num_kv_pairs": 4}


def _rows(label: str, task: str, knobs: dict[str, Any], backbone: str, kwargs: dict[str, Any], acc: float, *,
          solve_at: int | None = None, seeds: int = 3, params: int = 10_000, max_steps: int = 1000,
          train_size: int | None = None, train_acc: float | None = None) -> list[dict[str, Any]]:
    """One row per seed; the validation curve reaches 1.0 at ``solve_at`` (None: it stays at ``acc``)."""
    out = []
    metric = "exact_acc" if task in ("copy", "reverse", "induction-heads") else "token_acc"
    variant = "none" if backbone == "mlp" else "scaled-dot"
    for seed in range(seeds):
        before = acc if solve_at is None else min(acc, 0.25)
        curve = [[s, 1.0, (1.0 if solve_at is not None and s >= solve_at else before)]
                 for s in range(100, max_steps + 1, 100)]
        metrics = {f"test/{metric}": acc, f"val/{metric}": acc}
        if train_acc is not None:
            metrics[f"train/{metric}"] = train_acc
        cell = {"task": task, "task_kwargs": knobs, "backbone": backbone, "backbone_kwargs": kwargs,
                "attention": None if variant == "none" else variant, "seed": seed, "lr": 1e-3, "max_steps": max_steps}
        if train_size is not None:
            cell["train_size"] = train_size
        out.append({"cell_id": f"{label}-{backbone}-{sorted(kwargs.items())}-{seed}", "task": label, "task_name": task,
                    "backbone": backbone, "variant": variant, "seed": seed, "lr": 1e-3, "status": "ok",
                    "metrics": metrics, "main_metric": f"test/{metric}", "main_value": acc, "chance": 0.25,
                    "params": params, "steps": max_steps, "curve": curve, "cell": cell})
    return out


def _study_rows(attention_solves_long: bool = True, mlp_long: float = 0.27) -> list[dict[str, Any]]:
    rows = []
    for T, mlp_acc in ((16, 0.95), (64, mlp_long)):
        knobs = {**MQAR, "input_seq_len": T}
        rows += _rows(f"mqar-T{T}", "mqar", knobs, "transformer", {"d_model": 32, "num_layers": 2}, 1.0 if
                      (T == 16 or attention_solves_long) else 0.3,
                      solve_at=300 if (T == 16 or attention_solves_long) else None, params=27_000)
        for depth in (1, 2):
            for width, params in ((64, 20_000), (256, 3_000_000)):
                rows += _rows(f"mqar-T{T}-mlp", "mqar", knobs, "mlp", {"d_model": 32, "num_layers": depth,
                              "hidden": width}, mlp_acc * (1.0 if width == 256 else 0.9), params=params * depth,
                              max_steps=2000, solve_at=800 if mlp_acc > 0.9 and width == 256 else None)
    rows += _rows("mqar-T16-mlp-n256", "mqar", {**MQAR, "input_seq_len": 16}, "mlp",
                  {"d_model": 32, "num_layers": 2, "hidden": 256}, 0.1, train_size=256, train_acc=1.0, params=900_000)
    for width in (64, 256):
        rows += _rows("copy-control", "copy", {"length": 16, "num_symbols": 16}, "mlp",
                      {"d_model": 32, "num_layers": 2, "hidden": width}, 1.0, solve_at=200, params=40_000 * width)
    return rows


def _points(rows):
    return study.points(aggregate(rows))


def test_points_join_labels_by_task_and_length():
    pts = _points(_study_rows())
    assert study.is_study(pts)
    lookup = [p for p in pts if p.form == "lookup" and p.train_size is None]
    assert {p.length for p in lookup} == {16, 64}
    assert {(p.depth, p.width) for p in lookup if p.is_mlp} == {(1, 64), (1, 256), (2, 64), (2, 256)}
    assert {p.form for p in pts} == {"lookup", "control"}
    finite = [p for p in pts if p.train_size == 256]
    assert len(finite) == 1 and finite[0].train_median == 1.0 and finite[0].median == pytest.approx(0.1)
    # steps-to-solve is the report's (censoring included): attention at 300, a failing MLP censored
    att = next(p for p in lookup if not p.is_mlp and p.length == 64)
    assert (att.steps, att.solved, att.n_seeds) == (300, 3, 3)
    assert all(p.steps is None for p in lookup if p.is_mlp and p.length == 64)


def test_findings_state_the_result_and_where_the_mlp_succeeded():
    text = "\n".join(study.findings(_points(_study_rows())))
    assert "mqar at T=64 (chance 0.25): no MLP up to 6.0e6 parameters and 2,000 steps passed 0.5" in text
    assert "2-layer scaled-dot at 2.7e4 parameters solved it by step 300 on 3/3 seeds" in text
    assert "mqar at T=16 (chance 0.25): the MLP did pass 0.5" in text
    assert "Claim (mqar)" in text and ": supported; the MLP passed only at T<=16" in text
    assert "on 256 fixed examples" in text and "memorized it: train accuracy 1.00, test 0.10" in text
    assert "Control copy at T=16: the MLP solved it" in text


def test_an_unsupported_claim_is_printed_as_such():
    text = "\n".join(study.findings(_points(_study_rows(attention_solves_long=False))))
    assert "not supported (attention did not solve every length)" in text
    text = "\n".join(study.findings(_points(_study_rows(mlp_long=0.97))))
    assert "not supported (the MLP passed at the longest length)" in text


def _check_figure(fig, *, chance: bool = True):
    assert fig is not None
    assert plots.overlapping_texts(fig) == []
    axes = [a for a in fig.axes if a.get_visible()]
    assert fig.legends and not any(a.get_legend() for a in axes)  # the legend sits off the data
    for ax in axes:
        assert "(" in ax.get_xlabel()  # units or scale named
    if chance:
        assert any(line.get_label() == "chance" for ax in axes for line in ax.get_lines())


def test_figures_inputs_and_readability():
    pts = _points(_study_rows())
    fig = study.accuracy_vs_params_figure(pts)
    _check_figure(fig)
    panels = [a for a in fig.axes if a.get_visible()]
    assert len(panels) == 2 and all(a.get_xscale() == "log" for a in panels)
    assert [a.get_title() for a in panels] == ["mqar, T=16 tokens", "mqar, T=64 tokens"]
    # one line per MLP depth and one for attention, each MLP line through its widths in order of parameters
    lines = {ln.get_label(): ln for ln in panels[1].get_lines() if ln.get_label() != "chance"}
    assert set(lines) == {"MLP depth 1", "MLP depth 2", "2-layer scaled-dot"}
    assert list(lines["MLP depth 2"].get_xdata()) == [40_000, 6_000_000]
    _check_figure(study.steps_vs_length_figure(pts), chance=False)
    _check_figure(study.controls_figure(pts))


def test_report_renders_the_study_only_when_there_is_one(tmp_path):
    import json

    rows = _study_rows()
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    build_report(tmp_path)
    md = (tmp_path / "leaderboard.md").read_text()
    assert "## How far can a network without attention go?" in md and "study_acc_vs_params.png" in md
    assert "no MLP up to" in (tmp_path / "findings.md").read_text()
    assert all((tmp_path / f"{s}.png").is_file() for s in study.FIGURES)
    page = (tmp_path / "leaderboard.html").read_text()  # the page carries the study too, figures inline
    assert 'id="study"' in page and page.count('alt="study ') == len(study.FIGURES) and "no MLP up to" in page
    plain = [r for r in rows if r["task"] == "copy-control"]
    assert not study.is_study(_points(plain))
    assert study.render(aggregate(plain), tmp_path / "none") == []
