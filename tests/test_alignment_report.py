"""The leaderboard's alignment diagnostics: the table per task, gold-marked maps with token labels, the
NTM's memory picture, and the bertviz export read back. Rows carry real diagnostics of untrained models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from matplotlib.patches import Rectangle

from attnzoo.cell import Cell
from attnzoo.resolve import resolve
from attnzoo.cli import main
from attnzoo.diagnostics import diagnose
from attnzoo.harness.module import build_model, build_task
from attnzoo.leaderboard.report import alignment, plots
from attnzoo.leaderboard.report import aggregate, build_report
from tests.test_report import row as fake_row


def _row(task: str, backbone: str, variant: str, seed: int = 0, **knobs) -> dict:
    cell = Cell(task=task, backbone=backbone, attention=variant, task_kwargs=knobs, seed=seed)
    r = resolve(cell)
    torch.manual_seed(seed)
    t = build_task(r)
    diag = diagnose(build_model(r, t), t, t.generate(8, torch.Generator().manual_seed(seed)), t.spec.metric)
    out = fake_row(task, backbone, variant, seed, 0.5, metric=t.spec.metric)
    out["cell"]["task_kwargs"] = knobs
    out["alignment"] = diag
    return out


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    out = [_row("date-format", "seq2seq", v, s) for v in ("general", "location") for s in (0, 1)]
    out += [_row("copy", "ntm", "ntm", 0, length=5), _row("copy", "seq2seq", "additive", 0, length=5)]
    return out


def test_the_alignment_table_gives_the_median_over_seeds(rows) -> None:
    entries = aggregate(rows)["date-format"]
    headers, table = alignment.alignment_table(entries)
    assert headers[1:3] == ["gold mass", "align acc"] and len(table) == 2
    general = next(t for t in table if t[0].startswith("general"))
    best = [r["alignment"]["best"]["gold_mass"] for r in rows if r["variant"] == "general"]
    assert general[1] == f"{sum(best) / 2:.2f}"
    assert alignment.alignment_table(aggregate([fake_row("listops", "transformer", "dot", 0, 0.5)])["listops"]) is None


def test_the_report_shows_the_table_and_says_what_attention_weights_are(rows, tmp_path: Path) -> None:
    dates = [r for r in rows if r["task"] == "date-format"]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in dates))
    build_report(tmp_path)
    page = (tmp_path / "leaderboard.html").read_text()
    assert "date-format: alignment</h3>" in page and "Jain &amp; Wallace 2019" in page
    assert "### date-format: alignment" in (tmp_path / "leaderboard.md").read_text()
    findings = (tmp_path / "findings.md").read_text()
    assert "not an explanation of its output (Jain & Wallace 2019)" in findings
    line = next(x for x in findings.splitlines() if x.startswith("- Where attention reads"))
    assert "general [seq2seq]" in line and "location [seq2seq]" in line


def test_maps_are_drawn_with_token_labels_and_gold_boxes(rows) -> None:
    entries = aggregate(rows)["date-format"]
    fig = plots.attention_figure("date-format", entries)
    ax = fig.axes[0]
    e = entries[0]
    sample = e.rows[0].alignment["sample"]
    task = alignment.task_of(e.rows[0])
    assert [t.get_text() for t in ax.get_xticklabels()] == task.decode(sample["src"])
    boxes = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(boxes) == sum(len(g) for g in sample["gold"]) > 0
    assert "red boxes" in fig._suptitle.get_text()


def test_the_ntm_picture_is_its_read_weights_over_memory(rows) -> None:
    fig = plots.attention_figure("copy", aggregate(rows)["copy"])
    ntm = next(ax for ax in fig.axes if ax.get_title().startswith("ntm"))
    assert ntm.get_xlabel() == "memory slot (NTM read weights)"
    assert [t.get_text() for t in ntm.get_xticklabels()][0] == "m0"
    sample = next(r for r in rows if r["variant"] == "ntm")["alignment"]["sample"]
    assert ntm.get_images()[0].get_array().shape == (len(sample["rows"]), len(sample["memory"][0]))


def test_export_attention_reads_back_in_bertviz_layout(rows, tmp_path: Path) -> None:
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cell_id = rows[0]["cell_id"]
    out = tmp_path / "x.pt"
    assert main(["bench", "export-attention", str(tmp_path), cell_id, "--out", str(out)]) == 0
    payload = torch.load(out)
    b = payload["bertviz"]
    sample = rows[0]["alignment"]["sample"]
    assert len(b["cross_attention"]) == len(sample["layers"])
    for layer in b["cross_attention"]:
        assert layer.dim() == 4 and layer.shape[0] == 1
        assert layer.shape[2:] == (len(b["decoder_tokens"]), len(b["encoder_tokens"]))
        torch.testing.assert_close(layer.sum(-1), torch.ones(layer.shape[:3]), atol=0.01, rtol=0)
    assert "".join(b["decoder_tokens"]).count("-") == 2  # an ISO date, decoded
    assert payload["gold"] == sample["gold"]
    assert main(["bench", "export-attention", str(tmp_path), "no-such-cell"]) == 2
