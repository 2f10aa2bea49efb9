"""attnzoo.diagnostics: each metric on hand-made weights with a known answer, the uniform-attention
ablation, the recording of every layer and head, and metrics unchanged by the diagnostics."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnzoo.contract import uniform_attention
from attnzoo.diagnostics import (
    alignment_accuracy,
    alignment_error_rate,
    batch_metric,
    collect_maps,
    diagnose,
    gold_mass,
    normalized_entropy,
    uniform_weights,
)
from attnzoo.registry import create_attention

shapes = st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(2, 7))


def _perm_gold(b: int, q: int, k: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    pos = torch.randint(0, k, (b, q), generator=g)
    return torch.nn.functional.one_hot(pos, k).bool()


@settings(max_examples=25, deadline=None)
@given(shape=shapes, seed=st.integers(0, 1000))
def test_perfect_alignment_scores_one(shape, seed) -> None:
    gold = _perm_gold(*shape, seed)
    w = gold.float()
    assert gold_mass(w, gold) == pytest.approx(1.0)
    assert alignment_accuracy(w, gold) == 1.0
    assert alignment_error_rate(w, gold) == pytest.approx(0.0)
    assert normalized_entropy(w) == pytest.approx(0.0, abs=1e-6)


@settings(max_examples=25, deadline=None)
@given(shape=shapes, seed=st.integers(0, 1000))
def test_uniform_attention_has_its_closed_form(shape, seed) -> None:
    b, q, k = shape
    g = torch.Generator().manual_seed(seed)
    allowed = torch.rand(b, q, k, generator=g) < 0.6
    allowed[..., 0] = True  # every row sees at least one key
    gold = allowed & (torch.rand(b, q, k, generator=g) < 0.5)
    w = uniform_weights(allowed)
    n = allowed.sum(-1).float()
    rows = gold.any(-1)
    want = ((gold.sum(-1) / n)[rows]).mean().item() if rows.any() else math.nan
    got = gold_mass(w, gold)
    assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, rel=1e-5)
    # entropy of a uniform row over n >= 2 allowed keys is log n: normalized 1
    if bool((n >= 2).any()):
        assert normalized_entropy(w, allowed) == pytest.approx(1.0, rel=1e-5)


def test_masked_and_padded_positions() -> None:
    # query 0 may see keys 0..2 (key 3 is padding), query 1 only key 0, query 2 none (a padded query)
    allowed = torch.tensor([[[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]]], dtype=torch.bool)
    w = uniform_weights(allowed)
    assert torch.equal(w[0, 2], torch.zeros(4)), "a fully masked row gets zeros, never NaN"
    gold = torch.tensor([[[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]], dtype=torch.bool)
    assert gold_mass(w, gold) == pytest.approx((1 / 3 + 1) / 2)  # the padded query is not scored
    assert normalized_entropy(w, allowed) == pytest.approx(1.0)  # only query 0 has >= 2 keys
    assert not math.isnan(normalized_entropy(w, allowed))
    assert math.isnan(gold_mass(w, torch.zeros_like(gold))), "no scored row: NaN, not 0"


def test_alignment_error_rate_with_several_sure_links() -> None:
    # one row, gold on keys 1 and 2 (a date's field), argmax on key 1: P = 1, R = 1/2, AER = 1 - 2/3
    w = torch.tensor([[[0.1, 0.6, 0.3]]])
    gold = torch.tensor([[[False, True, True]]])
    assert alignment_accuracy(w, gold) == 1.0
    assert alignment_error_rate(w, gold) == pytest.approx(1 / 3)
    assert alignment_error_rate(w, torch.tensor([[[True, False, False]]])) == pytest.approx(1.0)


def test_batch_metric() -> None:
    logits = torch.tensor([[[0.0, 1.0], [1.0, 0.0]], [[0.0, 1.0], [0.0, 1.0]]])  # argmax [[1, 0], [1, 1]]
    tgt = torch.tensor([[1, 0], [1, 0]])
    assert batch_metric(logits, tgt, None, "token_acc") == pytest.approx(0.75)
    assert batch_metric(logits, tgt, None, "exact_acc") == pytest.approx(0.5)
    mask = torch.tensor([[True, True], [True, False]])
    assert batch_metric(logits, tgt, mask, "exact_acc") == pytest.approx(1.0)


@pytest.mark.parametrize("name", ["additive", "scaled-dot", "hard", "pointer", "local-m"])
def test_uniform_attention_context_is_the_mean_of_allowed_values(name: str) -> None:
    torch.manual_seed(0)
    att = create_attention(name, 8, 8, 8)
    att.eval()
    q, k, v = torch.randn(2, 3, 8), torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    state = None if name != "local-m" else 0
    with uniform_attention():
        out = att(q, k, v, mask=mask, state=state, need_weights=True)
    want = torch.stack([v[0, :3].mean(0), v[1].mean(0)])[:, None].expand(2, 3, 8)
    torch.testing.assert_close(out.context, want)
    normal = att(q, k, v, mask=mask, state=state, need_weights=True)
    assert not torch.allclose(normal.context, want), "outside the block the variant is itself again"


def test_uniform_attention_multihead_keeps_the_projections() -> None:
    torch.manual_seed(0)
    att = create_attention("scaled-dot", 8, num_heads=2)
    x = torch.randn(1, 4, 8)
    with uniform_attention():
        out = att(x)
    v = att.v_proj(x)  # every head reads the mean of its values, then out_proj
    torch.testing.assert_close(out.context, att.out_proj(v.mean(dim=1, keepdim=True).expand(1, 4, 8)))


def _model(task: str, backbone: str, attention: str, **kwargs):
    from attnzoo.cell import Cell
    from attnzoo.resolve import resolve
    from attnzoo.harness.module import build_model, build_task

    r = resolve(Cell(task=task, backbone=backbone, attention=attention, task_kwargs=kwargs))
    torch.manual_seed(0)
    t = build_task(r)
    return t, build_model(r, t)


@pytest.mark.parametrize("task,backbone,attention,layers,heads", [
    ("copy", "seq2seq", "additive", 1, 1), ("mqar", "transformer", "scaled-dot", 2, 4),
    ("sort", "pointer", "pointer", 1, 1), ("copy", "ntm", "ntm", 1, 1),
    ("associative-recall", "seq2seq", "hard", 1, 1),
])
def test_diagnose_scores_every_layer_and_head(task, backbone, attention, layers, heads) -> None:
    kwargs = {"input_seq_len": 24, "num_kv_pairs": 4} if task == "mqar" else {}
    t, model = _model(task, backbone, attention, **kwargs)
    batch = t.generate(8, torch.Generator().manual_seed(0))
    maps, logits = collect_maps(model.eval(), batch["src"], batch["tgt"])
    assert len(maps) == layers and all(m.weights.shape[1] == heads for m in maps)
    for m in maps:
        assert m.weights.shape[:3] == (8, heads, batch["tgt"].shape[1])
        mass = m.weights[..., : batch["src"].shape[1]].sum(-1)
        assert bool((mass <= 1 + 1e-4).all())
    d = diagnose(model, t, batch, t.spec.metric)
    assert len(d["heads"]) == layers * heads and d["gold"]
    assert d["best"]["gold_mass"] == max(h["gold_mass"] for h in d["heads"])
    assert 0.0 <= d["mean"]["entropy"] <= 1.0 and 0.0 <= d["uniform_metric"] <= 1.0
    sample = d["sample"]
    assert len(sample["layers"]) == layers and len(sample["gold"]) == len(sample["rows"])


def test_diagnose_is_none_without_source_attention() -> None:
    t, model = _model("copy", "bottleneck", "scaled-dot")
    assert diagnose(model, t, t.generate(4, torch.Generator().manual_seed(0)), "exact_acc") is None


def test_a_perfect_copy_attention_scores_one() -> None:
    # a seq2seq whose attention is forced onto the diagonal: every metric at its perfect value
    t, model = _model("copy", "seq2seq", "additive", length=5)
    batch = t.generate(4, torch.Generator().manual_seed(0))
    s = batch["src"].shape[1]

    original = type(model.attention).attend

    def attend(self, query, key, value, mask, *, state=None, need_weights=True):
        out = original(self, query, key, value, mask, state=state, need_weights=need_weights)
        if out.weights is None:  # the ablation's run (weights not asked for)
            return out
        step = attend.calls % s  # decoder step t: one-hot on source position t
        attend.calls += 1
        out.weights = torch.nn.functional.one_hot(torch.full(out.weights.shape[:2], step), s).float()
        return out

    attend.calls = 0
    model.attention.attend = attend.__get__(model.attention)
    d = diagnose(model, t, batch, "exact_acc")
    assert d["mean"] == {"gold_mass": 1.0, "align_acc": 1.0, "aer": 0.0, "entropy": 0.0}


def test_metrics_are_the_same_with_and_without_diagnostics() -> None:
    """The diagnostics run after the metrics on their own held-out batch with the RNG forked: a sampling
    variant's cell trains and scores the same, bit for bit, with them and without."""
    from attnzoo.cell import Cell
    from attnzoo.harness.run import run_cell

    base = dict(task="associative-recall", backbone="seq2seq", attention="hard", max_steps=8, val_every=4,
                batch_size=16, val_size=32, test_size=64, threads=1, progress=False, seed=3)
    with_diag = run_cell(Cell(**base, record_attention=True))
    without = run_cell(Cell(**base, record_attention=False))
    assert with_diag.status == without.status == "ok"
    assert with_diag.alignment is not None and without.alignment is None
    assert with_diag.metrics == without.metrics and with_diag.curve == without.curve


def test_the_diagnostics_leave_the_global_rng_alone() -> None:
    from attnzoo.cell import Cell
    from attnzoo.harness.module import AttnzooModule

    module = AttnzooModule(Cell(task="associative-recall", backbone="seq2seq", attention="hard"))
    module.model.train()
    batch = module.task.generate(8, torch.Generator().manual_seed(0))
    before = torch.get_rng_state()
    assert module.alignment_diagnostics(batch) is not None
    assert torch.equal(torch.get_rng_state(), before)
    assert module.model.training, "the model's mode is restored"


def test_the_stored_sample_stays_small(monkeypatch) -> None:
    import attnzoo.diagnostics as diagnostics

    monkeypatch.setattr(diagnostics, "SAMPLE_VALUES", 200)
    t, model = _model("mqar", "transformer", "scaled-dot", input_seq_len=24, num_kv_pairs=4)
    d = diagnose(model, t, t.generate(4, torch.Generator().manual_seed(0)), "token_acc")
    sample = d["sample"]
    assert sample["averaged"] and all(len(layer["heads"]) == 1 for layer in sample["layers"])
    assert sum(len(h) * len(h[0]) for layer in sample["layers"] for h in layer["heads"]) <= 200
    assert len(sample["gold"]) == len(sample["rows"]) >= 1


def test_uniform_attention_ntm_reads_the_mean_memory_row() -> None:
    torch.manual_seed(0)
    ntm = create_attention("ntm", 6, memory_slots=5, num_read_heads=2)
    q = torch.randn(3, 1, 6)
    state = ntm.initial_state(3, device="cpu", dtype=torch.float32)
    normal = ntm(q, state=state)
    with uniform_attention():
        out = ntm(q, state=state)
    torch.testing.assert_close(out.state.memory, normal.state.memory)  # the writes run as trained
    mean_row = normal.state.memory.mean(dim=1)  # (B, W)
    torch.testing.assert_close(out.context[:, 0], torch.cat([mean_row, mean_row], dim=-1))
    torch.testing.assert_close(out.weights, torch.full_like(out.weights, 1 / 5))
