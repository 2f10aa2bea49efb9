"""The grouped path (:func:`attnzoo.harness.grouped.run_group`) gives each member the one-cell row.

Tolerance (stated once): curve train losses within a relative 1e-4, validation points, metrics and
attention weights within 1e-5 absolute; status, steps and metric names equal. On these tiny runs the
vectorized matmuls round differently from the single ones at the 1e-7 level, so an accuracy would
only move if a logit tie sat within that: the tolerance is there for rounding, not for a different run.
"""

from __future__ import annotations

import math

import pytest
import torch

from attnzoo.backbones import list_backbones
from attnzoo.cell import Cell, PairDoesNotFit, Row
from attnzoo.resolve import resolve
from attnzoo.harness.grouped import group_key, run_group
from attnzoo.harness.run import run_cell
from attnzoo.registry import list_attention

#: one small task per backbone (the one it is built for)
_TASK = {
    "transformer": ("mqar", {"num_kv_pairs": 2, "input_seq_len": 12, "vocab_size": 24}),
    "seq2seq": ("copy", {"length": 4}),
    "mlp": ("copy", {"length": 4}),
    "pointer": ("sort", {"length": 4}),
    "ntm": ("copy", {"length": 3}),
    "bottleneck": ("mad-compression", {}),
}
_MEMBERS = [(0, 3e-3, 0.01), (1, 1e-3, 0.0), (2, 3e-3, 0.1)]  # (seed, lr, weight decay)
#: pairs that must take the vectorized path (so a broken vmap cannot pass as "everything fell back");
#: the rest fall back with a reason: hard samples, local-m/local-p branch on tensor values, GRU/LSTM
#: (seq2seq, pointer, ntm) have no batching rule
_VECTORIZED = {(b, a) for b in ("transformer", "bottleneck")
               for a in ("scaled-dot", "dot", "general", "content", "additive", "location", "pointer")} | {("mlp", None)}


def _cell(backbone: str, attention: str | None, seed: int = 0, lr: float = 3e-3, wd: float = 0.01,
          **over) -> Cell:
    task, knobs = _TASK[backbone]
    base = dict(task=task, task_kwargs=knobs, backbone=backbone, attention=attention,
                backbone_kwargs={"d_model": 16}, seed=seed, lr=lr, weight_decay=wd, max_steps=4, val_every=2,
                batch_size=4, warmup_steps=1, val_size=8, test_size=8, threads=1)
    return Cell(**{**base, **over})


def _pairs() -> list[tuple[str, str | None]]:
    out = []
    for backbone in list_backbones():
        if backbone not in _TASK:
            continue
        for attention in [None, *list_attention()]:
            try:
                resolve(_cell(backbone, attention))
            except PairDoesNotFit:
                continue
            out.append((backbone, attention))
    return out


def assert_same_row(got: Row, want: Row) -> None:
    assert got.status == want.status, (got.error, want.error)
    assert got.steps == want.steps
    assert got.main_metric == want.main_metric and got.params == want.params and got.chance == want.chance
    assert [p[0] for p in got.curve] == [p[0] for p in want.curve]
    for a, b in zip(got.curve, want.curve):
        assert (a[1] is None) == (b[1] is None) and (a[1] is None or math.isclose(a[1], b[1], rel_tol=1e-4))
        assert (a[2] is None) == (b[2] is None) and (a[2] is None or abs(a[2] - b[2]) <= 1e-5)
    assert got.metrics.keys() == want.metrics.keys()
    assert all(abs(got.metrics[k] - want.metrics[k]) <= 1e-5 for k in want.metrics), (got.metrics, want.metrics)
    assert (got.attention_map is None) == (want.attention_map is None)
    if want.attention_map is not None:
        assert got.attention_map["src"] == want.attention_map["src"]
        w1, w2 = torch.tensor(got.attention_map["weights"]), torch.tensor(want.attention_map["weights"])
        assert w1.shape == w2.shape and torch.allclose(w1, w2, atol=1e-5)


@pytest.mark.parametrize("backbone,attention", _pairs())
def test_a_group_of_three_equals_three_single_runs(backbone, attention):
    """Every classic variant on every backbone it fits: members with their own seed, lr and weight
    decay, grouped, give each the one-cell row; what cannot be vectorized says it fell back."""
    cells = [_cell(backbone, attention, s, lr, wd) for s, lr, wd in _MEMBERS]
    grouped = run_group(cells)
    assert len(grouped) == 3
    for cell, row in zip(cells, grouped):
        assert row.execution is not None and row.execution["path"] in ("grouped", "single")
        assert (row.execution["path"] == "grouped") >= ((backbone, attention) in _VECTORIZED), row.execution
        if row.execution["path"] == "single":  # the fallback ran run_cell itself: its reason is named
            assert row.execution["fallback"] and row.status == "ok"
            continue
        assert_same_row(row, run_cell(cell))


def test_the_sampling_variant_falls_back_with_its_reason():
    rows = run_group([_cell("seq2seq", "hard", s) for s in (0, 1)])
    assert [r.execution["path"] for r in rows] == ["single", "single"]
    assert "samples" in rows[0].execution["fallback"]


def test_a_members_row_does_not_depend_on_its_group():
    """The same member in a group of 2 and a group of 3 (other seeds and lrs beside it) gets one row."""
    member = _cell("transformer", "scaled-dot", 1, 1e-3, 0.0)
    in_two = run_group([_cell("transformer", "scaled-dot", 5, 1e-2), member])[1]
    in_three = run_group([member, _cell("transformer", "scaled-dot", 7, 3e-4), _cell("transformer", "scaled-dot", 8)])[0]
    assert in_two.execution["members"] == 2 and in_three.execution["members"] == 3
    assert_same_row(in_two, in_three)
    assert in_two.curve == in_three.curve and in_two.metrics == in_three.metrics


def test_a_diverging_member_stops_alone():
    """An lr that blows the loss up gives that member its own 'diverged' row; the others train on."""
    cells = [_cell("transformer", "general", 0, warmup_steps=0),
             _cell("transformer", "general", 1, lr=1e30, warmup_steps=0),
             _cell("transformer", "general", 2, warmup_steps=0)]
    rows = run_group(cells)
    single = run_cell(cells[1])
    assert single.status == "diverged"  # the premise: alone it diverges too
    assert rows[1].status == "diverged" and rows[1].steps == single.steps and rows[1].error == single.error
    assert rows[1].curve == single.curve
    for i in (0, 2):
        assert rows[i].status == "ok" and rows[i].execution["path"] == "grouped"
        assert_same_row(rows[i], run_cell(cells[i]))


def test_the_last_validation_when_the_steps_are_not_a_multiple():
    cells = [_cell("seq2seq", "dot", s, max_steps=5, val_every=2) for s in (0, 1)]
    rows = run_group(cells)
    assert [p[0] for p in rows[0].curve] == [2, 4, 5]
    for cell, row in zip(cells, rows):
        assert_same_row(row, run_cell(cell))


def test_group_key_ignores_only_seed_lr_weight_decay_and_runtime_fields():
    a = _cell("seq2seq", "dot")
    assert group_key(a) == group_key(a.replace(seed=9, lr=0.1, weight_decay=0.0, threads=2, record_attention=False))
    for change in ({"max_steps": 6}, {"attention": "general"}, {"batch_size": 8}, {"schedule": "wsd"},
                   {"backbone_kwargs": {"d_model": 8}}):
        assert group_key(a) != group_key(a.replace(**change))
    with pytest.raises(ValueError, match="differ only in"):
        run_group([a, a.replace(max_steps=6)])


def test_an_out_of_memory_group_splits_in_halves(monkeypatch):
    """A group that runs out of memory retries as two halves (here: until groups of one run alone)."""
    from attnzoo.harness import grouped

    sizes = []

    def oom(self):
        sizes.append(len(self.members))
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 GiB")

    monkeypatch.setattr(grouped._GroupTrainer, "fit", oom)
    cells = [_cell("seq2seq", "dot", s) for s in range(4)]
    rows = run_group(cells)
    assert sizes == [4, 2, 2]
    assert all(r.status == "ok" for r in rows)
    assert all(r.execution == {"path": "single", "fallback": "a group of one"} for r in rows)


def test_bf16_autocast_is_recorded_and_follows_the_single_bf16_run():
    """``precision: bf16-mixed`` runs the grouped step under autocast; the row says so. bf16 rounds at
    ~4e-3, so the tolerance here is the loose one: curve losses within a relative 1e-2."""
    cells = [_cell("transformer", "scaled-dot", s, trainer={"precision": "bf16-mixed"}) for s in (0, 1)]
    for cell, row in zip(cells, run_group(cells)):
        assert row.execution == {"path": "grouped", "members": 2, "autocast": "bf16"}
        want = run_cell(cell)
        assert row.status == want.status == "ok" and row.metrics.keys() == want.metrics.keys()
        for a, b in zip(row.curve, want.curve):
            assert a[0] == b[0] and math.isclose(a[1], b[1], rel_tol=1e-2)


def test_a_finite_training_set_falls_back_to_the_one_cell_path():
    """The grouped streams draw fresh data; a cell with train_size must train on its pool, so it runs alone."""
    cells = [_cell("mlp", None, s, 3e-3, 0.01).replace(train_size=32) for s in (0, 1)]
    rows = run_group(cells)
    assert all(r.execution["path"] == "single" and "train_size" in r.execution["fallback"] for r in rows)
    assert all("train/token_acc" in r.metrics for r in rows)  # the one-cell path tested on its pool
