"""The group planner and the executors' group hooks: a group is a scheduling detail, one row per cell."""

from __future__ import annotations

import argparse

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnzoo.cell import Cell, Row
from attnzoo.commands.bench import executor_from_args
from attnzoo.leaderboard.executors import InlineExecutor, LocalExecutor
from attnzoo.leaderboard.grid import GridCell
from attnzoo.leaderboard.grouping import CPU_GROUPED_BACKBONES, GridGroup, GroupPolicy, plan
from attnzoo.leaderboard.progress import describe_row


def _gc(backbone: str = "transformer", attention: str | None = "scaled-dot", seed: int = 0, lr: float = 3e-3,
        **over) -> GridCell:
    task, knobs = ("mqar", {"num_kv_pairs": 2, "input_seq_len": 12, "vocab_size": 24}) if backbone == "transformer" \
        else ("copy", {"length": 4})
    cell = Cell(task=task, task_kwargs=knobs, backbone=backbone, attention=attention, seed=seed, lr=lr,
                backbone_kwargs={"d_model": 16}, max_steps=4, val_every=2, batch_size=4, warmup_steps=1,
                val_size=8, test_size=8, **over)
    return GridCell(cell.id(), task, backbone, attention or "none", cell)


@settings(max_examples=25, deadline=None)
@given(seeds=st.integers(1, 7), lrs=st.lists(st.sampled_from([1e-3, 3e-3, 1e-2]), min_size=1, max_size=3, unique=True),
       variants=st.lists(st.sampled_from(["scaled-dot", "dot", "content"]), min_size=1, max_size=3, unique=True),
       cap=st.one_of(st.none(), st.integers(1, 5)))
def test_plan_groups_exactly_the_cells_that_differ_in_seed_and_lr(seeds, lrs, variants, cap):
    cells = [_gc(attention=v, seed=s, lr=lr) for s in range(seeds) for v in variants for lr in lrs]
    units = plan(cells, GroupPolicy("on", cap))
    flat = [m for u in units for m in (u.members if isinstance(u, GridGroup) else [u])]
    assert sorted(gc.id for gc in flat) == sorted(gc.id for gc in cells)  # every cell once
    for u in units:
        if isinstance(u, GridGroup):
            assert 2 <= len(u.members) <= (cap or 16)
            assert len({(m.variant, m.cell.max_steps) for m in u.members}) == 1
    if (cap or 16) >= seeds * len(lrs):
        assert sum(isinstance(u, GridGroup) for u in units) == (len(variants) if seeds * len(lrs) > 1 else 0)


def test_off_and_auto_on_the_cpu():
    cells = [_gc(seed=s) for s in range(3)] + [_gc("seq2seq", "dot", seed=s) for s in range(3)]
    assert plan(cells, GroupPolicy("off")) == cells
    assert plan(cells, None) == cells
    assert not CPU_GROUPED_BACKBONES  # the measured decision (grouping.py): auto keeps the CPU's numbers exact
    assert plan(cells, GroupPolicy("auto")) == cells
    on = plan(cells, GroupPolicy("on"))
    assert isinstance(on[0], GridGroup) and len(on[0].members) == 3 and len(on) == 2  # seq2seq: a group too
    assert on[0].label() == "group of 3: mqar / transformer / scaled-dot"
    cuda = [_gc(seed=s, trainer={"accelerator": "gpu"}) for s in range(3)]
    rnn = [_gc("seq2seq", "dot", seed=s, trainer={"accelerator": "gpu"}) for s in range(3)]
    units = plan(cuda + rnn, GroupPolicy("auto"))  # auto groups on CUDA what vectorizes
    assert len(units[0].members) == 3 and units[1:] == rnn
    with pytest.raises(ValueError, match="group"):
        GroupPolicy("sometimes")
    with pytest.raises(ValueError, match="group size"):
        GroupPolicy("on", 0)


def test_a_multi_device_cell_never_groups():
    cells = [_gc(seed=s, trainer={"accelerator": "cpu", "devices": 2, "strategy": "ddp"}) for s in range(2)]
    assert plan(cells, GroupPolicy("on")) == cells


def test_inline_executor_yields_one_row_per_member_with_the_group_noted():
    cells = [_gc(seed=s) for s in range(2)] + [_gc("seq2seq", "dot")]
    ex = InlineExecutor()
    ex.group = GroupPolicy("on")
    out = list(ex.run(cells))
    assert [gc.id for gc, _ in out] == [gc.id for gc in cells]
    rows = [row for _, row in out]
    assert all(r.status == "ok" for r in rows)
    assert [r.provenance.get("group_size") for r in rows] == [2, 2, None]
    assert rows[0].execution["path"] == "grouped" and rows[2].execution is None
    total = rows[0].provenance["group_wall_s"]
    assert rows[0].provenance["wall_s"] == pytest.approx(total / 2, abs=2e-3)
    line = describe_row(cells[0], rows[0])
    assert "[group of 2: mqar / transformer / scaled-dot]" in line


def test_a_custom_runner_is_never_grouped():
    seen = []

    def fake(cell):
        seen.append(cell.seed)
        return Row(status="ok")

    ex = InlineExecutor(run_cell=fake)
    ex.group = GroupPolicy("on")
    rows = [r for _, r in ex.run([_gc(seed=s) for s in range(3)])]
    assert seen == [0, 1, 2] and all(r.provenance.get("group_size") is None for r in rows)


def test_local_executor_runs_a_group_in_one_worker():
    cells = [_gc(seed=s) for s in range(2)]
    ex = LocalExecutor(1)
    ex.group = GroupPolicy("on")
    out = list(ex.run(cells))
    assert sorted(gc.id for gc, _ in out) == sorted(gc.id for gc in cells)
    rows = [r for _, r in out]
    assert all(r.status == "ok" and r.execution["path"] == "grouped" for r in rows)
    assert len({r.provenance["pid"] for r in rows}) == 1


def test_executor_from_args_sets_the_policy():
    args = argparse.Namespace(group="off", group_size=4, backend="local", jobs=1, run_cell=None)
    assert executor_from_args(args).group == GroupPolicy("off", 4)
    assert executor_from_args(argparse.Namespace(backend="local", jobs=1, run_cell=None)).group is None


def test_a_resumed_grid_groups_only_the_missing_members(tmp_path):
    """Resume is by cell id, before planning: with seed 1 of 3 done, the group trains seeds 0 and 2."""
    from attnzoo.leaderboard.grid import expand, load_preset
    from attnzoo.leaderboard.runner import run_grid
    from attnzoo.leaderboard.store import ResultStore

    preset = load_preset("smoke", overrides={"seeds": 3, "max_steps": 4})
    cells = [gc for gc in expand(preset, tasks=["associative-recall"], variants=["scaled-dot"], backbones=["transformer"])]
    assert len(cells) == 3
    store = ResultStore(tmp_path)
    ex = InlineExecutor()
    run_grid([cells[1]], store, ex, preset)  # an earlier, interrupted run finished seed 1 alone
    ex.group = GroupPolicy("on")
    summary = run_grid(cells, store, ex, preset)
    assert summary.skipped == 1 and summary.ran == 2
    rows = store.rows()
    assert sorted(r["seed"] for r in rows) == [0, 1, 2]
    by_seed = {r["seed"]: r for r in rows}
    assert by_seed[1].get("execution") is None
    assert by_seed[0]["execution"]["members"] == by_seed[2]["execution"]["members"] == 2
