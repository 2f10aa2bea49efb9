"""Cell and Row: one typed path from a preset (or `attnzoo fit`'s flags) to the optimizer, and back as a row."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnzoo.cell import SCHEMA_VERSION, Cell, CellError, PairDoesNotFit, Row, cell_default
from attnzoo.resolve import resolve
from attnzoo.leaderboard.grid import expand, load_preset
from attnzoo.leaderboard.store import read_rows

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "benchmarks" / "results" / "default" / "results.jsonl"

names = st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True)
json_scalars = st.one_of(st.integers(-5, 5), st.floats(0.1, 10), st.booleans(), names)
kwargs = st.dictionaries(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), json_scalars, max_size=3)


@st.composite
def cells(draw) -> Cell:
    return Cell(
        task=draw(names), backbone=draw(names), attention=draw(st.none() | names),
        task_kwargs=draw(kwargs), backbone_kwargs=draw(kwargs), attention_kwargs=draw(kwargs),
        seed=draw(st.integers(0, 10)), max_steps=draw(st.integers(1, 5000)), batch_size=draw(st.integers(1, 512)),
        lr=draw(st.floats(1e-5, 1.0)), warmup_steps=draw(st.integers(0, 100)),
        val_every=draw(st.none() | st.integers(1, 100)), weight_decay=draw(st.floats(0, 0.5)),
        trainer={"accelerator": draw(st.sampled_from(["cpu", "gpu", "auto"])), "devices": draw(st.integers(1, 4))},
        disabled_plugins=tuple(draw(st.lists(names, max_size=2))), threads=draw(st.none() | st.integers(1, 8)),
    )


@settings(max_examples=60, deadline=None)
@given(cells())
def test_cell_json_round_trip_and_stable_id(cell):
    data = json.loads(json.dumps(cell.to_json()))
    again = Cell.from_json(data)
    assert again == cell
    assert again.id("label") == cell.id("label")
    # runtime options never change what a cell computes, so never its id
    assert cell.replace(threads=7, progress=True, verbose=True, record_attention=False).id() == cell.id()
    # everything else does
    assert cell.replace(seed=cell.seed + 1).id() != cell.id()
    assert cell.replace(max_steps=cell.max_steps + 1).id() != cell.id()
    assert cell.replace(weight_decay=cell.weight_decay + 0.1).id() != cell.id()


def test_a_cell_is_a_value():
    knobs = {"length": 4}
    cell = Cell(task="copy", backbone="seq2seq", task_kwargs=knobs)
    knobs["length"] = 99
    cell.to_json()["task_kwargs"]["length"] = 77
    assert cell.task_kwargs == {"length": 4}


def test_bad_cells_are_named_all_at_once():
    with pytest.raises(CellError) as info:
        Cell(task="copy", backbone="", max_steps=0, lr=-1, trainer={"acelerator": "gpu"})
    text = str(info.value)
    for piece in ("backbone", "max_steps", "lr", "'acelerator'", "did you mean 'accelerator'"):
        assert piece in text, text
    with pytest.raises(CellError, match="did you mean 'max_steps'"):
        Cell.from_json({"task": "copy", "backbone": "mlp", "max_step": 3})


def test_resolve_lists_every_mismatch_and_one_fit_error():
    cell = Cell(task="copy", backbone="seq2seq", attention="aditive", task_kwargs={"lenght": 3},
                backbone_kwargs={"d_modle": 8})
    with pytest.raises(CellError) as info:
        resolve(cell)
    assert len(info.value.problems) == 3
    text = str(info.value)
    assert "did you mean 'additive'" in text and "'length'" in text and "'d_model'" in text
    with pytest.raises(PairDoesNotFit) as fit:
        resolve(Cell(task="copy", backbone="mlp", attention="dot"))
    assert fit.value.reason == "no attention: baseline"
    ok = resolve(Cell(task="copy", backbone="seq2seq", attention="additive"))
    assert ok.attention_spec.name == "additive" and ok.backbone_spec.name == "seq2seq"


def test_one_default_each_fit_and_presets_read_the_cell():
    """`attnzoo fit`'s flags and a preset's missing keys both fall back to the Cell's field defaults."""
    from attnzoo.commands import fit

    parser = argparse.ArgumentParser()
    fit.configure_parser(parser)
    args = parser.parse_args(["--task", "copy", "--backbone", "seq2seq", "--attention", "additive"])
    built = fit.build_cell(args)
    for name in ("seed", "max_steps", "batch_size", "lr", "warmup_steps", "weight_decay", "val_every",
                 "entropy_coef", "baseline_decay", "trainer"):
        assert getattr(built, name) == cell_default(name), name
    preset = load_preset({"name": "bare", "backbones": {"seq2seq": {}}, "tasks": {"copy": {}}})
    runnable = [gc for gc in expand(preset) if gc.runnable]
    assert runnable
    for gc in runnable:
        for name in ("max_steps", "batch_size", "lr", "warmup_steps", "val_every", "trainer"):
            assert getattr(gc.cell, name) == cell_default(name), name


def test_row_round_trip_keeps_plugin_columns_and_schema():
    row = Row(status="ok", metrics={"test/exact_acc": 1.0}, main_metric="test/exact_acc", main_value=1.0,
              extra={"my_metric": 3})
    data = json.loads(json.dumps(row.to_json()))
    assert data["schema"] == SCHEMA_VERSION and data["my_metric"] == 3
    back = Row.from_json(data)
    assert back == row and back["my_metric"] == 3 and back.get("missing") is None
    assert Row.empty("n/a", "why").to_json()["train_time_s"] is None


def test_reference_results_still_load_and_resume():
    """Rows written before they had a schema load as schema 1, and every cell of the default preset
    is recognised as done in the committed results (so --resume would train nothing)."""
    rows = read_rows(REFERENCE)
    assert rows
    typed = [Row.from_json(r) for r in rows]
    assert {r.schema for r in typed} <= {1, SCHEMA_VERSION}
    assert all(r.cell_id and r.status for r in typed)
    stored_cells = [Cell.from_json(r.cell) for r in typed if r.status != "n/a"]
    assert stored_cells
    ids = {r.cell_id for r in typed}
    from attnzoo.registry import list_attention

    # the variants the reference was run with (another installed plugin would add cells of its own)
    known = [v for v in sorted({r.variant for r in typed}) if v == "none" or v in list_attention()]
    grid = expand(load_preset("default"), variants=known)
    assert len(grid) > 100
    assert {gc.id for gc in grid} <= ids


def test_schema1_rows_load():
    rows = read_rows(Path(__file__).resolve().parent / "data" / "schema1_results.jsonl")
    typed = [Row.from_json(r) for r in rows]
    assert typed and {r.schema for r in typed} == {1}
    assert all(Cell.from_json(r.cell) for r in typed if r.status != "n/a")


def test_cell_fields_documented():
    doc = Cell.__doc__ or ""
    missing = [f.name for f in fields(Cell) if f.name not in doc]
    assert not missing, f"Cell's docstring does not describe: {missing}"


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 50), st.integers(1, 400), st.sampled_from(["cosine", "wsd", "constant"]))
def test_lr_schedules(warmup, total, schedule):
    from attnzoo.cell import WSD_DECAY_FRACTION
    from attnzoo.harness.module import lr_factor

    f = [lr_factor(s, schedule, warmup, total) for s in range(total)]
    assert all(0.0 <= x <= 1.0 for x in f)
    assert f[: min(warmup, total)] == sorted(f[: min(warmup, total)])  # warmup rises
    after = f[warmup:]
    assert after == sorted(after, reverse=True)  # never rises again
    if schedule == "constant":
        assert all(x == 1.0 for x in after)
    if schedule == "wsd" and after:
        stable_until = max(warmup, total - max(1, round(WSD_DECAY_FRACTION * total)))
        assert all(x == 1.0 for x in f[warmup:stable_until])
    if schedule == "cosine" and total - warmup >= 10:
        assert f[-1] < 0.2  # ends near zero
    if schedule == "wsd" and after:
        decay = total - max(warmup, total - max(1, round(WSD_DECAY_FRACTION * total)))
        if decay > 0:
            assert f[-1] == pytest.approx(1 / decay)  # the last step of a linear decay to zero


def test_schedule_is_a_budget_key_and_changes_ids():
    base = load_preset({"name": "s", "backbones": {"seq2seq": {}}, "tasks": {"copy": {}}})
    wsd = load_preset({"name": "s", "backbones": {"seq2seq": {}}, "tasks": {"copy": {"schedule": "wsd"}}})
    a = [gc for gc in expand(base) if gc.runnable]
    b = [gc for gc in expand(wsd) if gc.runnable]
    assert {gc.cell.schedule for gc in a} == {"cosine"} and {gc.cell.schedule for gc in b} == {"wsd"}
    assert not {gc.id for gc in a} & {gc.id for gc in b}
    assert base.config_hash() != wsd.config_hash()
    with pytest.raises(Exception, match="schedule"):
        load_preset({"name": "s", "backbones": {"seq2seq": {}}, "tasks": {"copy": {"schedule": "linear"}}})


def test_per_task_backbone_kwargs_make_a_shallower_transformer():
    """One task label can run the preset's transformer with other kwargs (1 vs 2 layers on induction heads)."""
    preset = load_preset({"name": "depth", "backbones": {"transformer": {"d_model": 16, "num_layers": 2}},
                          "tasks": {"induction-heads": {},
                                    "induction-heads-1l": {"task": "induction-heads",
                                                           "backbone_kwargs": {"transformer": {"num_layers": 1}}}},
                          "variants": ["scaled-dot"], "baselines": False})
    layers = {(gc.task, gc.cell.backbone_kwargs["num_layers"], gc.cell.backbone_kwargs["d_model"])
              for gc in expand(preset) if gc.runnable}
    assert layers == {("induction-heads", 2, 16), ("induction-heads-1l", 1, 16)}
    with pytest.raises(Exception, match="num_layer'.*did you mean 'num_layers'"):
        load_preset({"name": "d", "backbones": {"transformer": {}},
                     "tasks": {"copy": {"backbone_kwargs": {"transformer": {"num_layer": 1}}}}})


def test_exclude_variants_leaves_a_duplicate_out_and_keeps_the_hash():
    base = {"name": "x", "backbones": {"seq2seq": {"d_model": 8}}, "tasks": {"copy": {}}}
    excl = {"name": "x", "backbones": {"seq2seq": {"d_model": 8}}, "tasks": {"copy": {"exclude_variants": ["point*"]}}}
    a, b = load_preset(base), load_preset(excl)
    va = {gc.variant for gc in expand(a)}
    vb = {gc.variant for gc in expand(b)}
    assert "pointer" in va and va - vb == {"pointer"}
    assert a.config_hash() == b.config_hash()  # selection, not budget: the rows stay comparable
    with pytest.raises(Exception, match="pointr"):
        load_preset({**excl, "tasks": {"copy": {"exclude_variants": ["pointr"]}}})


def test_weight_decays_are_a_grid_dimension_beside_lrs():
    preset = load_preset({"name": "wd", "backbones": {"seq2seq": {"d_model": 8}}, "variants": ["dot"],
                          "baselines": False, "lrs": [1e-3, 3e-3],
                          "tasks": {"copy": {"weight_decays": [0.0, 0.1]}, "reverse": {}}})
    grid = [gc for gc in expand(preset) if gc.runnable]
    copy = {(gc.cell.lr, gc.cell.weight_decay) for gc in grid if gc.task == "copy"}
    assert copy == {(1e-3, 0.0), (1e-3, 0.1), (3e-3, 0.0), (3e-3, 0.1)}
    rev = {(gc.cell.lr, gc.cell.weight_decay) for gc in grid if gc.task == "reverse"}
    assert rev == {(1e-3, cell_default("weight_decay")), (3e-3, cell_default("weight_decay"))}
    assert len({gc.id for gc in grid}) == len(grid)
    assert any("wd 0.1" in gc.label() for gc in grid)
    with pytest.raises(Exception, match="weight_decays"):
        load_preset({"name": "wd", "backbones": {"seq2seq": {}}, "tasks": {"copy": {"weight_decays": [-1]}}})
