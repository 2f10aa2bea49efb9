"""The overhead benchmark measures the same work both ways, and the harness's per-step savings
change nothing it computes. Correctness only: nothing here asserts a time.

- ``benchmarks/overhead.py``: the plain loop and the harness leave bit-identical parameters after
  the same steps, for every backbone the benchmark times;
- the divergence check read a step late (as on an accelerator) names the right step, and a NaN on
  the very last step is still caught;
- the train loss is logged only where something reads it (a progress bar or a logger);
- REINFORCE's baseline starts at the first batch's mean reward without a host sync;
- the batch fast path moves exactly what Lightning's generic path moves.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from attnzoo.backbones import BackboneOutput, BackboneSpec, add_backbone, remove_backbone
from attnzoo.cell import Cell
from attnzoo.harness.module import AttnzooModule, TrainingDiverged
from attnzoo.harness.run import build, run_cell

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "overhead.py"


@pytest.fixture(scope="module")
def overhead():
    spec = importlib.util.spec_from_file_location("attnzoo_overhead_bench", BENCH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclass/pickle lookups by module name
    try:
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.modules.pop(spec.name, None)


def test_bench_cells_cover_the_default_backbones_and_ntm(overhead):
    cells = overhead.bench_cells(20)
    assert {c.backbone for c in cells.values()} == {"transformer", "seq2seq", "pointer", "mlp", "ntm"}
    for cell in cells.values():
        assert cell.val_every == cell.max_steps  # one validation, at the end: not in either timing
        assert cell.trainer["precision"] == "32-true"


@pytest.mark.parametrize("name", ["transformer", "seq2seq", "seq2seq-additive", "pointer", "mlp", "ntm"])
def test_plain_loop_and_harness_do_the_same_work(overhead, name):
    """Same seeds, batches, loss, optimiser, schedule and clipping: the same parameters, bit for bit."""
    torch.set_num_threads(1)
    cell = overhead.bench_cells(3)[name].replace(max_steps=3, val_every=3)
    plain_clocks, plain = overhead.plain_loop(cell)
    harness_clocks, harness = overhead.harness_loop(cell)
    a, b = plain.state_dict(), harness.state_dict()
    assert a.keys() == b.keys()
    differing = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differing, f"{name}: parameters differ after 3 steps: {differing[:5]}"
    # and the models did train (a zero-step loop would also be "equal")
    fresh = overhead.bench_cells(3)[name]
    from attnzoo.resolve import resolve
    from attnzoo.harness.module import build_model, build_task

    L.seed_everything(fresh.seed, verbose=False)
    resolved = resolve(fresh)
    untrained = build_model(resolved, build_task(resolved)).state_dict()
    assert any(not torch.equal(untrained[k], a[k]) for k in a)
    assert plain_clocks.cpu > 0 and harness_clocks.wall > 0
    if name in ("transformer", "mlp"):  # the grouped path's loop (a group of one): the same work, within
        # float rounding (vmap's batched matmuls round differently: 1e-5 after 3 steps)
        _, grouped = overhead.grouped_loop(cell)
        g = grouped.state_dict()
        assert g.keys() == a.keys() and all(torch.allclose(a[k], g[k], atol=1e-5, rtol=1e-4) for k in a)


def test_bare_lightning_loop_also_matches(overhead):
    cell = overhead.bench_cells(3)["mlp"].replace(max_steps=3, val_every=3)
    _, plain = overhead.plain_loop(cell)
    _, bare = overhead.bare_lightning_loop(cell)
    a, b = plain.state_dict(), bare.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_overhead_cli_rejects_unknown_backbones(overhead, capsys):
    with pytest.raises(SystemExit) as e:
        overhead.main(["--only", "nope"])
    assert e.value.code == 2
    assert "--only: unknown ['nope']" in capsys.readouterr().err


# -- divergence check --------------------------------------------------------------
class _NaNAt(nn.Module):
    """Logits from an embedding; the loss becomes NaN from forward call ``at`` on (0-based)."""

    def __init__(self, task, at: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(task.vocab_size, task.num_classes)
        self.at = at
        self.calls = 0
        self.record_attention = False

    def forward(self, src: Tensor, tgt: Tensor) -> BackboneOutput:
        logits = self.emb(src[:, : tgt.shape[1]])  # (N, T, C)
        if self.training:
            if self.calls >= self.at:
                logits = logits * float("nan")
            self.calls += 1
        return BackboneOutput(logits, {})


@pytest.fixture
def nan_backbone():
    holder = {}

    def factory(task, attention, *, attention_kwargs=None, at=0, **kw):
        holder["model"] = _NaNAt(task, at)
        return holder["model"]

    add_backbone(BackboneSpec(name="test-nan-at", summary="stub", attention="none"), factory)
    try:
        yield holder
    finally:
        remove_backbone("test-nan-at")


def _fit(cell: Cell, lag: int | None) -> tuple[AttnzooModule, L.Trainer, BaseException | None]:
    module, dm, trainer, _ = build(cell)
    module.divergence_lag = lag
    err = None
    try:
        trainer.fit(module, datamodule=dm)
    except TrainingDiverged as exc:
        err = exc
    finally:
        torch.use_deterministic_algorithms(False)
    return module, trainer, err


def _nan_cell(at: int, steps: int = 6) -> Cell:
    return Cell(task="copy", backbone="test-nan-at", backbone_kwargs={"at": at}, max_steps=steps, batch_size=4,
                warmup_steps=0, val_every=steps, val_size=8, test_size=8, record_attention=False)


@pytest.mark.parametrize("lag", [0, 1, 2])
@pytest.mark.parametrize("at", [0, 2, 5])
def test_divergence_names_the_step_whatever_the_lag(nan_backbone, lag, at):
    module, trainer, err = _fit(_nan_cell(at), lag)
    assert isinstance(err, TrainingDiverged)
    assert err.step == at  # the step whose loss was NaN, not the step where it was read
    assert math.isnan(err.loss)
    # read exactly `lag` steps late (inside step at + lag, before its optimizer step), or at the
    # end of training when that step does not exist: a NaN on the last step is still caught
    assert trainer.global_step == min(at + lag, 6)


def test_lag_zero_is_the_cpu_default_and_stops_at_once(nan_backbone):
    module, trainer, err = _fit(_nan_cell(2), None)
    assert module.divergence_lag == 0
    assert err.step == 2 and trainer.global_step == 2  # raised inside step 2, before its optimizer step


def test_run_cell_still_reports_diverged(nan_backbone):
    row = run_cell(_nan_cell(1))
    assert row.status == "diverged"
    assert "at step 1" in row.error


# -- logging only for a reader ------------------------------------------------------
@pytest.mark.parametrize("progress", [False, True])
def test_train_loss_logged_only_for_a_progress_bar(progress):
    cell = Cell(task="copy", backbone="mlp", backbone_kwargs={"d_model": 16}, max_steps=2, batch_size=4,
                warmup_steps=0, val_every=2, val_size=8, test_size=8, progress=progress)
    module, dm, trainer, _ = build(cell)
    try:
        trainer.fit(module, datamodule=dm)
    finally:
        torch.use_deterministic_algorithms(False)
    assert ("train/loss" in trainer.callback_metrics) is progress
    assert module.curve and module.curve[-1][1] is not None and math.isfinite(module.curve[-1][1])


def test_tokens_seen_counts_every_training_token():
    cell = Cell(task="copy", backbone="mlp", backbone_kwargs={"d_model": 16}, task_kwargs={"length": 5},
                max_steps=3, batch_size=4, warmup_steps=0, val_every=3, val_size=8, test_size=8)
    module, dm, trainer, _ = build(cell)
    batch = module.task.generate(4, torch.Generator().manual_seed(0))
    per_step = batch["src"].numel() + batch["tgt"].numel()
    try:
        trainer.fit(module, datamodule=dm)
    finally:
        torch.use_deterministic_algorithms(False)
    assert module.tokens_seen == 3 * per_step


# -- REINFORCE baseline without a host sync -----------------------------------------
@settings(max_examples=25, deadline=None)
@given(st.lists(st.lists(st.floats(0.0, 10.0, width=32), min_size=2, max_size=2), min_size=1, max_size=4),
       st.floats(0.0, 0.99))
def test_baseline_matches_the_synced_formula(batches, decay):
    """baseline_0 = mean reward of batch 0; then b <- decay b + (1 - decay) mean reward, and the
    advantage of each batch uses the baseline before its own update."""
    m = AttnzooModule(Cell(task="copy", backbone="mlp", backbone_kwargs={"d_model": 8}, baseline_decay=decay,
                           entropy_coef=0.0))
    log_prob = torch.tensor([-1.0, -2.0])
    expected_b = None
    for losses in batches:
        per_example = torch.tensor(losses)
        reward = -per_example
        if expected_b is None:
            expected_b = reward.mean()
        term = m._reinforce(per_example, {"log_prob": log_prob})
        assert torch.equal(term, -((reward - expected_b) * log_prob).mean())
        expected_b = expected_b * decay + (1 - decay) * reward.mean()
        assert torch.allclose(m.baseline, expected_b, rtol=0, atol=1e-6)
    assert bool(m.baseline_ready)


# -- batch transfer -------------------------------------------------------------------
def test_transfer_fast_path_matches_lightnings_generic_move():
    from lightning.fabric.utilities.apply_func import move_data_to_device

    m = AttnzooModule(Cell(task="copy", backbone="mlp", backbone_kwargs={"d_model": 8}))
    batch = {"src": torch.arange(6).view(2, 3), "tgt": torch.ones(2, 3, dtype=torch.long),
             "tgt_mask": torch.ones(2, 3, dtype=torch.bool)}
    cpu = torch.device("cpu")
    fast = m.transfer_batch_to_device(batch, cpu, 0)
    generic = move_data_to_device(batch, cpu)
    assert fast.keys() == generic.keys()
    assert all(torch.equal(fast[k], generic[k]) and fast[k].dtype == generic[k].dtype for k in fast)
    # anything that is not a flat dict of tensors goes the generic way
    nested = {"src": batch["src"], "meta": {"x": torch.zeros(1)}, "name": "a"}
    out = m.transfer_batch_to_device(nested, cpu, 0)
    assert out["name"] == "a" and torch.equal(out["meta"]["x"], torch.zeros(1))


def test_build_fills_the_row_before_the_trainer():
    row: dict = {}
    cell = Cell(task="copy", backbone="mlp", backbone_kwargs={"d_model": 8},
                trainer={"accelerator": "cpu", "devices": 1, "strategy": "no-such-strategy"})
    from attnzoo.harness.run import _keep_determinism

    with pytest.raises(Exception), _keep_determinism():  # the Trainer sets the torch flag before it fails
        build(cell, row)
    assert row["params"] > 0 and row["main_metric"].startswith("test/") and 0 < row["chance"] <= 1


def test_grouped_loop_refuses_a_cell_that_does_not_vectorize(overhead):
    cell = overhead.bench_cells(3)["seq2seq"].replace(max_steps=3, val_every=3)
    with pytest.raises(RuntimeError, match="no grouped path"):
        overhead.grouped_loop(cell)
