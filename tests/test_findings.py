"""Findings from the data: every declared claim printed with its numbers, supported, not supported or missing."""

from __future__ import annotations

import pytest

from attnzoo.leaderboard.report.findings import evaluate, findings_markdown
from attnzoo.leaderboard.report import aggregate
from attnzoo.tasks.base import (
    attention_beats_baseline,
    degrades_with_length,
    depth_helps,
    fails_long,
    solves,
    variant_beats,
)
from tests.test_report import seeds


def _one(rows, contrast, task="t"):
    found = evaluate(aggregate(rows), contrasts={task: [contrast]})
    assert len(found) == 1
    return found[0]


RECALL = (seeds("t", "seq2seq", "content", [1.0, 1.0, 1.0]) + seeds("t", "seq2seq", "dot", [0.25, 1.0, 1.0])
          + seeds("t", "mlp", "none", [0.27, 0.26, 0.28]) + seeds("t", "seq2seq", "hard", [0.3, 0.25, "diverged"]))


def test_attention_beats_baseline_supported_with_numbers_and_solved_rates():
    f = _one(RECALL, attention_beats_baseline(why="Ba et al. 2016"))
    assert f.verdict == "supported"
    assert f.sentence == ("t: the best attention variant beats the best no-attention baseline by ≥ 0.10 "
                          "(content [seq2seq], median 1.00, 3/3 solved (by step 100) vs none [mlp], median 0.27, 0/3 solved; "
                          "chance 0.25): supported.")
    assert f.why == "Ba et al. 2016"


def test_a_claim_the_data_do_not_support_is_printed_not_dropped():
    rows = seeds("t", "seq2seq", "content", [0.3, 0.28, 0.3]) + seeds("t", "mlp", "none", [0.27, 0.26, 0.28])
    f = _one(rows, attention_beats_baseline())
    assert f.verdict == "not supported"
    assert "median 0.30, 0/3 solved vs none [mlp], median 0.27" in f.sentence
    assert f.sentence.endswith("not supported (gap +0.03, needs ≥ +0.10).")


def test_missing_rows_say_which():
    f = _one(seeds("t", "seq2seq", "content", [1.0, 1.0]), attention_beats_baseline())
    assert f.verdict == "missing" and "no rows for a no-attention baseline" in f.sentence
    na = dict(seeds("t", "pointer", "dot", [1.0])[0], status="n/a", error="needs a variant with pointer logits")
    f = _one(seeds("t", "mlp", "none", [0.1]) + [na], solves("dot", backbone="pointer"))
    assert f.verdict == "missing" and "n/a here (needs a variant with pointer logits)" in f.sentence


def test_bimodal_subject_reads_with_its_seeds():
    f = _one(RECALL, variant_beats("dot", "hard", backbone="seq2seq", margin=-0.02))
    assert f.verdict == "supported"
    assert "dot [seq2seq], median 1.00, 2/3 solved (by step 100), seeds 0.25 / 1.00 / 1.00" in f.sentence
    assert "hard [seq2seq], median 0.25, 0/3 solved, seeds 0.30 / 0.25 / diverged" in f.sentence
    assert "is at least as good as (within 0.02)" in f.sentence


def test_solves_and_fails_long():
    rows = (seeds("t", "mlp", "none", [0.99, 0.98, 1.0]) + seeds("t", "seq2seq", "content", [0.95, 0.9, 0.97], long=0.95)
            + seeds("t", "pointer", "pointer", [0.5, 0.6, 0.95]))
    assert _one(rows, solves("none", backbone="mlp")).verdict == "supported"
    f = _one(rows, solves("pointer", backbone="pointer"))
    assert f.verdict == "not supported" and "median 0.60, 1/3 solved" in f.sentence
    f = _one(rows, fails_long("none", backbone="mlp"))  # no test_long metric at all: it cannot run at another length
    assert f.verdict == "supported" and "cannot run at another" in f.sentence
    f = _one(rows, fails_long("content", backbone="seq2seq"))
    assert f.verdict == "not supported" and "median 0.95, 3/3 solved on test_long" in f.sentence


def test_degrades_with_length_uses_the_named_metric():
    tok = lambda t, lg: {"test/token_acc": t, "test_long/token_acc": lg}  # noqa: E731
    rows = (seeds("t", "seq2seq", "none", [0.0, 0.0], long=0.0, extra=tok(0.4, 0.2))
            + seeds("t", "seq2seq", "additive", [0.9, 0.95], long=0.0, extra=tok(0.99, 0.6)))
    f = _one(rows, degrades_with_length("none", backbone="seq2seq", metric="token_acc"))
    assert f.verdict == "supported", f.sentence
    assert "0.40 on test -> 0.20 on test_long (drop 0.20)" in f.sentence and "additive [seq2seq], 0.60" in f.sentence
    # on exact accuracy it was at 0 already: no drop, and the claim is not supported
    assert _one(rows, degrades_with_length("none", backbone="seq2seq")).verdict == "not supported"


def test_depth_helps_tells_one_and_two_layers_apart():
    rows = (seeds("t", "transformer", "dot", [0.3, 0.35], backbone_kwargs={"num_layers": 1, "d_model": 64})
            + seeds("t", "transformer", "dot", [0.95, 1.0], backbone_kwargs={"num_layers": 2, "d_model": 64})
            + seeds("t", "mlp", "none", [0.2, 0.2]))
    tasks = aggregate(rows)
    assert {e.backbone for e in tasks["t"]} == {"transformer (num_layers=1)", "transformer (num_layers=2)", "mlp"}
    f = _one(rows, depth_helps())
    assert f.verdict == "supported"
    assert "best 2-layer: dot [transformer (num_layers=2)], median 0.97" in f.sentence
    f = _one(seeds("t", "transformer", "dot", [0.9], backbone_kwargs={"num_layers": 2}), depth_helps())
    assert f.verdict == "missing" and "num_layers=1" in f.sentence


def test_registered_contrasts_and_unknown_tasks():
    rows = [dict(r, task=t, task_name=t, cell_id=t + r["cell_id"]) for t in ("associative-recall", "plugin-task")
            for r in RECALL]
    found = evaluate(aggregate(rows))
    recall = [f for f in found if f.task == "associative-recall"]
    assert [f.kind for f in recall] == ["attention_beats_baseline", "variant_beats"]  # TaskSpec.contrasts
    assert recall[0].verdict == "supported"
    assert recall[1].verdict == "missing" and "no rows for general on seq2seq" in recall[1].sentence
    plugin = [f for f in found if f.task == "plugin-task"]
    assert len(plugin) == 1 and plugin[0].verdict == "unknown" and "not registered here" in plugin[0].sentence
    md = findings_markdown(found, n_rows=len(rows))
    assert md.startswith("# Findings") and "## associative-recall" in md and "## plugin-task" in md
    assert "1 supported, 1 missing, 1 unknown" in md
    for f in found:
        assert f.claim in md


@pytest.mark.parametrize("status", ["diverged", "failed"])
def test_a_subject_that_never_finished_scores_zero_in_the_claim(status):
    rows = seeds("t", "seq2seq", "content", [status] * 2) + seeds("t", "mlp", "none", [0.27, 0.26])
    f = _one(rows, attention_beats_baseline())
    assert f.verdict == "not supported" and f"median 0.00, 0/2 solved, 2 {status}" in f.sentence


def test_a_claim_over_two_labels_of_one_task_is_answered_once():
    """copy and copy-ntm train the same task on different backbones: a claim whose rows live under one
    label is kept there and not also printed as missing under the other; a claim no label can answer
    is missing exactly once."""
    rows = (seeds("t", "seq2seq", "content", [1.0, 1.0]) + seeds("t", "mlp", "none", [0.2, 0.3])
            + seeds("t-ntm", "ntm", "ntm", [0.9, 0.95], task_name="t"))
    claims = [solves("ntm", backbone="ntm"), attention_beats_baseline(), solves("pointer", backbone="pointer")]
    found = evaluate(aggregate(rows), contrasts={"t": claims})
    by_claim = [(f.task, f.verdict) for f in found]
    assert by_claim == [("t", "supported"), ("t", "missing"), ("t-ntm", "supported")], by_claim
    assert "no rows for pointer on pointer" in found[1].sentence


def test_findings_say_steps_to_solve_and_censoring():
    late, never = [[50, 1.0, 0.95]], [[50, 1.0, 0.3], [100, 1.0, 0.5]]
    rows = (seeds("t", "seq2seq", "content", [1.0], curve=late) + seeds("t", "seq2seq", "content", [0.3, 0.3],
                                                                         curve=never)[1:]
            + seeds("t", "mlp", "none", [0.27, 0.26, 0.28]))
    rows[1]["seed"], rows[1]["cell_id"] = 1, "c1"
    rows.append({**rows[1], "seed": 2, "cell_id": "c2"})
    f = _one(rows, attention_beats_baseline())
    # one seed of three reached the threshold on validation at step 50, two never did within the 100 steps
    assert "content [seq2seq], median 0.30, 1/3 solved (not by step 100)" in f.sentence
    assert "none [mlp], median 0.27, 0/3 solved;" in f.sentence  # nobody solved: no step to report
    g = _one(seeds("t", "seq2seq", "content", [1.0, 1.0, 1.0], curve=late), solves(variant="content"))
    assert "3/3 solved (by step 50)" in g.sentence
