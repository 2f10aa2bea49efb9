"""Several optimizer steps per ``training_step`` call (``Cell.steps_per_call``) change nothing but speed.

The harness optimises by hand so one Lightning call can run K steps on K consecutive batches of
the stream; these tests hold it to "the same updates, bit for bit, for any K", with and without
gradient accumulation and REINFORCE, and check the choice of K and its refusal.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnzoo.cell import MAX_STEPS_PER_CALL, Cell, CellError
from attnzoo.harness.data import FreshBatches
from attnzoo.harness.run import _keep_determinism, build, run_cell
from attnzoo.tasks import create_task


def _cell(**over) -> Cell:
    base = dict(task="copy", task_kwargs={"length": 4}, backbone="seq2seq", attention="hard",
                backbone_kwargs={"d_model": 8}, max_steps=12, val_every=6, batch_size=4, warmup_steps=2,
                val_size=16, test_size=16, record_attention=False, threads=1)
    return Cell(**{**base, **over})


def _train(cell: Cell) -> tuple[dict[str, torch.Tensor], list, int, int]:
    """-> (final parameters, curve, optimizer steps taken, training tokens seen)."""
    with _keep_determinism():
        module, dm, trainer, _ = build(cell)
        trainer.fit(module, datamodule=dm)
    params = {k: v.detach().clone() for k, v in module.model.state_dict().items()}
    return params, module.curve, int(trainer.global_step), module.tokens_seen


@pytest.fixture(scope="module")
def one_per_call():
    return {acc: _train(_cell(steps_per_call=1, trainer={"accumulate_grad_batches": acc})) for acc in (1, 2)}


@settings(max_examples=6, deadline=None)
@given(k=st.sampled_from([2, 3, 6]), acc=st.sampled_from([1, 2]))
def test_any_steps_per_call_gives_the_same_updates(one_per_call, k, acc):
    """hard attention (REINFORCE's baseline and sampling draw from the stream's order too) trained with
    K steps per call ends with the very parameters, curve and token count of one step per call."""
    ref_params, ref_curve, ref_steps, ref_tokens = one_per_call[acc]
    params, curve, steps, tokens = _train(_cell(steps_per_call=k, trainer={"accumulate_grad_batches": acc}))
    assert steps == ref_steps == 12
    assert curve == ref_curve and [p[0] for p in curve] == [6, 12]
    assert tokens == ref_tokens
    assert params.keys() == ref_params.keys()
    assert all(torch.equal(params[n], ref_params[n]) for n in params), "an update differs"


def test_accumulation_takes_that_many_batches_per_step(one_per_call):
    *_, steps1, tokens1 = one_per_call[1]
    *_, steps2, tokens2 = one_per_call[2]
    assert steps1 == steps2 == 12 and tokens2 == 2 * tokens1


def test_run_cell_rows_do_not_depend_on_steps_per_call():
    a = run_cell(_cell(attention="additive", steps_per_call=1))
    b = run_cell(_cell(attention="additive"))  # auto: 6 here
    assert a.status == b.status == "ok"
    assert a.metrics == b.metrics and a.curve == b.curve
    assert _cell().id() == _cell(steps_per_call=3).id()  # a runtime option: resume and --against unaffected


@settings(max_examples=200, deadline=None)
@given(max_steps=st.integers(1, 5000), val_every=st.one_of(st.none(), st.integers(1, 5000)))
def test_auto_is_the_largest_divisor_of_both_up_to_the_cap(max_steps, val_every):
    cell = Cell(task="copy", backbone="mlp", max_steps=max_steps, val_every=val_every)
    k, interval = cell.call_steps(), cell.validation_interval()
    assert 1 <= k <= MAX_STEPS_PER_CALL and max_steps % k == 0 and interval % k == 0
    assert not any(max_steps % j == 0 and interval % j == 0 for j in range(k + 1, MAX_STEPS_PER_CALL + 1))
    assert cell.replace(progress=True).call_steps() == 1  # a progress bar counts calls: one step each


def test_a_steps_per_call_that_does_not_divide_is_refused_by_name():
    with pytest.raises(CellError, match=r"steps_per_call: expected a divisor of max_steps \(12\) and of the "
                                        r"validation interval \(6 steps\), got 4"):
        _cell(steps_per_call=4)
    with pytest.raises(CellError, match="steps_per_call: expected a positive integer or null, got 0"):
        _cell(steps_per_call=0)


def test_fresh_batches_per_item_is_the_same_stream_cut_in_lists():
    task = create_task("copy", length=4)
    one = iter(FreshBatches(task, 3, seed=5))
    cut = iter(FreshBatches(task, 3, seed=5, per_item=4))
    flat = [b for _ in range(2) for b in next(cut)]
    for b in flat:
        a = next(one)
        assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
    with pytest.raises(ValueError, match="per_item"):
        FreshBatches(task, 3, seed=5, per_item=0)


def test_divergence_inside_a_call_names_its_step():
    """A NaN loss at step 7 of a 12-step run with 6 steps per call stops there (lag 0 on the CPU)."""
    from attnzoo.harness.module import TrainingDiverged

    cell = _cell(attention="additive", steps_per_call=6)
    with _keep_determinism():
        module, dm, trainer, _ = build(cell)
        forward = module.model.forward
        calls = {"n": 0}

        def poisoned(src, tgt):
            out = forward(src, tgt)
            if module.training:
                calls["n"] += 1
                if calls["n"] == 8:  # the 8th training forward is step 7 (0-based)
                    out.logits.data.fill_(math.nan)
            return out

        module.model.forward = poisoned
        with pytest.raises(TrainingDiverged) as info:
            trainer.fit(module, datamodule=dm)
    assert info.value.step == 7 and trainer.global_step == 7


@pytest.mark.parametrize("hook", ["on_before_backward", "on_after_backward", "on_before_optimizer_step"])
def test_hooks_still_run_and_the_direct_calls_change_nothing(hook):
    """Where Lightning's backward and optimizer step would only call loss.backward(), the clipping and
    optimizer.step(), the module calls them itself; a callback with any of their hooks turns that off
    (its hook runs every step), and the updates and global_step are the same either way."""
    import lightning as L

    class Counts(L.Callback):
        calls = 0

    def count(self, *args) -> None:
        self.calls += 1

    setattr(Counts, hook, count)
    cell = _cell(attention="additive", steps_per_call=6)
    runs = {}
    for hooked in (False, True):
        counts = Counts()
        with _keep_determinism():
            module, dm, trainer, _ = build(cell, callbacks=[counts] if hooked else None)
            trainer.fit(module, datamodule=dm)
        assert module._direct is not hooked
        assert counts.calls == (12 if hooked else 0) and trainer.global_step == 12
        runs[hooked] = module.model.state_dict()
    assert all(torch.equal(runs[False][k], runs[True][k]) for k in runs[False])
