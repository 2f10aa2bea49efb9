"""The inductive-bias study (issue 22): its presets' expansion, finite training sets, shipped ids unchanged."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnzoo.harness.data import FreshBatches, TaskDataModule, training_pool
from attnzoo.leaderboard.grid import PresetError, expand, list_presets, load_preset
from attnzoo.tasks import create_task

DATA = Path(__file__).parent / "data" / "preset_ids.json"


@pytest.mark.parametrize("name", sorted(json.loads(DATA.read_text())))
def test_shipped_preset_ids_and_hashes_are_unchanged(name):
    want = json.loads(DATA.read_text())[name]
    preset = load_preset(name)
    ids = sorted(g.id for g in expand(preset, variants=["none", "scaled-dot"]))
    assert preset.config_hash() == want["config_hash"]
    assert (len(ids), hashlib.sha256("\n".join(ids).encode()).hexdigest()) == (want["cells"], want["ids_sha256"])


def _mlp_params(cell) -> int:
    from attnzoo.resolve import resolve
    from attnzoo.harness.module import build_model, build_task

    resolved = resolve(cell)
    return sum(p.numel() for p in build_model(resolved, build_task(resolved)).parameters())


def test_bias_sweep_expansion():
    cells = [g for g in expand(load_preset("bias")) if g.runnable]
    mlp = [g for g in cells if g.backbone == "mlp" and g.cell.task == "mqar" and g.cell.train_size is None]
    depths = {g.cell.backbone_kwargs["num_layers"] for g in mlp}
    widths = {g.cell.backbone_kwargs["hidden"] for g in mlp}
    assert depths == {1, 2, 4, 8} and min(widths) == 64 and max(widths) >= 1024
    lengths = {g.cell.task_kwargs["input_seq_len"] for g in mlp}
    assert len(lengths) >= 4
    # each (length, depth, width, lr, seed) is its own cell, nothing collapsed
    assert len({g.id for g in mlp}) == len(mlp) == len(lengths) * len(depths) * len(widths) * 3 * 3
    att = [g for g in cells if g.variant == "scaled-dot" and g.cell.task == "mqar"]
    assert {g.cell.task_kwargs["input_seq_len"] for g in att} == lengths
    assert max(g.cell.max_steps for g in mlp) >= 10 * max(g.cell.max_steps for g in att)
    assert {g.cell.task for g in cells} >= {"mqar", "associative-recall", "copy", "reverse", "induction-heads"}
    assert any(g.cell.train_size for g in cells)
    # parameters: from about 1e4 (the smallest recall MLP) to at least 1e7 (the largest MQAR one)
    recall = [g for g in cells if g.backbone == "mlp" and g.cell.task == "associative-recall"]
    smallest = min(recall, key=lambda g: (g.cell.task_kwargs["num_pairs"], g.cell.backbone_kwargs["num_layers"],
                                          g.cell.backbone_kwargs["hidden"]))
    largest = max(mlp, key=lambda g: (g.cell.task_kwargs["input_seq_len"], g.cell.backbone_kwargs["num_layers"],
                                      g.cell.backbone_kwargs["hidden"]))
    assert _mlp_params(smallest.cell) < 5e4 and _mlp_params(largest.cell) >= 1e7


def test_bias_small_is_a_subset_of_the_same_forms():
    small = [g for g in expand(load_preset("bias-small")) if g.runnable]
    assert len({g.cell.task_kwargs.get("input_seq_len") for g in small if g.cell.task == "mqar"}) >= 4
    assert {g.cell.backbone_kwargs.get("num_layers") for g in small if g.backbone == "mlp"} == {1, 2, 4}
    assert "bias-small" in list_presets() and "bias" in list_presets()


def _preset(**entry):
    return {"name": "t", "backbones": {"mlp": {"d_model": 8}},
            "tasks": {"copy": {"knobs": {"length": 4, "num_symbols": 4}, **entry}}}


def test_backbone_sweep_is_the_product_and_checked():
    grid = expand(load_preset(_preset(backbone_sweep={"mlp": {"num_layers": [1, 2], "hidden": [8, 16, 32]}})))
    kws = [(g.cell.backbone_kwargs["num_layers"], g.cell.backbone_kwargs["hidden"]) for g in grid]
    assert sorted(kws) == [(a, b) for a in (1, 2) for b in (8, 16, 32)]
    assert all(g.cell.backbone_kwargs["d_model"] == 8 for g in grid)
    # the progress line names the setting: six cells, six labels, each with its own values
    assert len({g.label() for g in grid}) == len(grid)
    assert all(f"(num_layers={g.cell.backbone_kwargs['num_layers']}, hidden={g.cell.backbone_kwargs['hidden']})"
               in g.label() for g in grid)
    with pytest.raises(PresetError, match="backbone_sweep.mlp.widht"):
        load_preset(_preset(backbone_sweep={"mlp": {"widht": [1]}}))
    with pytest.raises(PresetError, match="non-empty list"):
        load_preset(_preset(backbone_sweep={"mlp": {"hidden": []}}))


def test_train_size_is_a_cell_field_that_leaves_fresh_cells_alone():
    fresh = expand(load_preset(_preset()))[0]
    finite = expand(load_preset(_preset(train_size=32)))[0]
    assert fresh.cell.train_size is None and finite.cell.train_size == 32
    assert "train_size" not in fresh.cell.identity() and finite.id != fresh.id
    with pytest.raises(PresetError, match="train_size"):
        load_preset(_preset(train_size=0))


@settings(max_examples=20, deadline=None)
@given(size=st.integers(1, 40), seed=st.integers(0, 1000), batch=st.integers(1, 16))
def test_finite_stream_draws_only_pool_rows(size, seed, batch):
    task = create_task("associative-recall", num_pairs=3, num_keys=6, num_values=6)
    pool = training_pool(task, size, seed)
    assert torch.equal(pool["src"], training_pool(task, size, seed)["src"])  # the same set every time
    rows = {tuple(r) for r in pool["src"].tolist()}
    it = iter(FreshBatches(task, batch, seed, pool=pool))
    for _ in range(3):
        b = next(it)
        assert b["src"].shape == (batch, task.src_len)
        assert {tuple(r) for r in b["src"].tolist()} <= rows
        for s, t in zip(b["src"].tolist(), b["tgt"].tolist()):
            assert task.solve(s) == t  # pairs stay aligned


def test_datamodule_serves_the_train_split_only_with_a_finite_set():
    task = create_task("associative-recall", num_pairs=3, num_keys=6, num_values=6)
    dm = TaskDataModule(task, 8, seed=3, test_splits=("test", "train"), train_size=20)
    dm.setup("test")
    served = torch.cat([b["src"] for b in dm.test_dataloader()[1]])
    assert torch.equal(served, training_pool(task, 20, 3)["src"])
    with pytest.raises(ValueError, match="train_size"):
        TaskDataModule(task, 8, test_splits=("test", "train"))
    with pytest.raises(ValueError, match="train_size"):
        training_pool(task, 0, 0)


def test_a_finite_cell_records_its_train_split_and_a_fresh_one_does_not():
    from attnzoo.cell import Cell
    from attnzoo.harness.run import run_cell

    base = Cell(task="copy", task_kwargs={"length": 4, "num_symbols": 4}, backbone="mlp",
                backbone_kwargs={"d_model": 8}, max_steps=4, val_every=2, warmup_steps=0, record_attention=False,
                val_size=16, test_size=16, threads=1)
    finite = run_cell(base.replace(train_size=8))
    assert finite.status == "ok", finite.error
    assert {"train/exact_acc", "train/token_acc", "test/exact_acc"} <= set(finite.metrics)
    fresh = run_cell(base)
    assert fresh.status == "ok" and not any(k.startswith("train/") for k in fresh.metrics)
