"""The encoder-bottleneck backbone (MAD's compression autoencoder): shapes, the one-position bottleneck,
what it refuses, the MAD table counting its rows under the Transformer, and a short harness run."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import attnzoo
from attnzoo.backbones import create_backbone, get_backbone
from attnzoo.backbones.bottleneck import BottleneckBackbone, BottleneckSpec, sincos_positions
from attnzoo.backbones.transformer import Block
from attnzoo.spec import AttentionSpec
from attnzoo.tasks import PAD, create_task

_small = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _model(task, variant="scaled-dot", **kw) -> BottleneckBackbone:
    torch.manual_seed(0)
    kw = {"d_model": 16, "num_heads": 2, **kw}
    return create_backbone("bottleneck", task, variant, **kw).eval()


def _batch(task, n=4, seed=0):
    return task.generate(n, torch.Generator().manual_seed(seed))


# -- shapes -------------------------------------------------------------------------------------
@_small
@given(v=st.integers(3, 12), s=st.integers(2, 12), n=st.integers(1, 4), heads=st.sampled_from([1, 2, 4]),
       layers=st.integers(1, 2), variant=st.sampled_from(["scaled-dot", "additive", "local-m"]))
def test_shapes(v, s, n, heads, layers, variant):
    task = create_task("mad-compression", vocab_size=v, seq_len=s)
    model = _model(task, variant, d_model=8 * heads, num_heads=heads, num_layers=layers)
    batch = _batch(task, n)
    out = model(batch["src"], batch["tgt"])
    assert out.logits.shape == (n, s - 1, v)  # T = seq_len - 1 content ids, classes = the task's
    assert torch.isfinite(out.logits).all() and out.attention is None
    model.record_attention = True
    att = model(batch["src"], batch["tgt"]).attention
    assert att.shape == (n, s - 1, s)  # the bottleneck's row over the S source keys, once per output
    torch.testing.assert_close(att.sum(-1), torch.ones(n, s - 1))
    assert (att == att[:, :1]).all()  # every output position reads the same one row


@given(length=st.integers(1, 40), dim=st.integers(2, 33))
def test_sincos_positions(length, dim):
    table = sincos_positions(length, dim)
    assert table.shape == (length, dim)
    half = dim // 2
    w = math.exp(-math.log(10000.0) / max(half - 1, 1))  # the second frequency: 10000^(-1/(half-1))
    t = length - 1
    assert table[t, 0].item() == pytest.approx(math.sin(t), abs=1e-4)
    assert table[t, half].item() == pytest.approx(math.cos(t), abs=1e-4)
    if half > 1:
        assert table[t, 1].item() == pytest.approx(math.sin(t * w), abs=1e-4)
    if dim % 2:
        assert (table[:, -1] == 0).all()
    assert torch.equal(sincos_positions(length + 5, dim)[:length], table)  # any output length, same prefix


@pytest.mark.parametrize("variant", ["scaled-dot", "additive"])
def test_the_encoder_is_the_transformers_blocks(variant):
    task = create_task("mad-compression")
    model = _model(task, variant, num_layers=3)
    torch.manual_seed(0)
    transformer = create_backbone("transformer", task, variant, d_model=16, num_heads=2, num_layers=3)
    assert len(model.blocks) == 3 and all(type(b) is Block for b in model.blocks)
    # the same modules, variant included, as the Transformer backbone builds
    assert [type(m) for m in model.blocks.modules()] == [type(m) for m in transformer.blocks.modules()]


# -- the bottleneck ------------------------------------------------------------------------------
def _noise_hook(b: torch.Tensor, *, at_bottleneck: bool, scale: float = 5.0):
    """A forward hook for the last block: adds noise to its output at every position except the
    bottleneck ``b`` ([N] indices), or (``at_bottleneck``, the control) at the bottleneck only."""

    def hook(module, args, output):
        x, out = output
        n, s, d = x.shape
        noise = scale * torch.randn(n, s, d, generator=torch.Generator().manual_seed(7))
        at = torch.zeros(n, s, dtype=torch.bool)
        at[torch.arange(n), b] = True
        where = at if at_bottleneck else ~at
        return x + noise * where[..., None], out  # (N, S, D)

    return hook


@pytest.mark.parametrize("variant", ["scaled-dot", "additive"])
def test_the_decoder_sees_only_the_bottleneck_position(variant):
    task = create_task("mad-compression", vocab_size=8, seq_len=10)
    model = _model(task, variant)
    batch = _batch(task)
    src, tgt = batch["src"], batch["tgt"]
    src[2, 7:] = PAD  # one right-padded row: its bottleneck is position 6, not the last
    b = model.bottleneck_index(src)
    assert b.tolist() == [9, 9, 6, 9]
    with torch.no_grad():
        base = model(src, tgt).logits
        for at_bottleneck in (False, True):
            handle = model.blocks[-1].register_forward_hook(_noise_hook(b, at_bottleneck=at_bottleneck))
            try:
                logits = model(src, tgt).logits
            finally:
                handle.remove()
            if at_bottleneck:  # the control: the same noise at the bottleneck does reach every row's logits
                assert not torch.isclose(logits, base, atol=1e-3).all(dim=(1, 2)).any()
            else:  # every other position of the encoder's output can change without effect
                torch.testing.assert_close(logits, base, rtol=0, atol=0)


def test_gradient_reaches_the_encoder_output_only_at_the_bottleneck():
    task = create_task("mad-compression", vocab_size=8, seq_len=10)
    model = _model(task)
    src = _batch(task)["src"]
    h, b, _aux, _w = model.encode(src)
    h = h.detach().requires_grad_(True)
    rows = torch.arange(src.shape[0])
    model.decode(h[rows, b], task.tgt_len).square().sum().backward()
    grad = h.grad.abs().sum(-1)  # (N, S)
    assert (grad[rows, b] > 0).all()
    grad[rows, b] = 0
    assert (grad == 0).all()


def test_the_bottleneck_is_the_last_real_token_and_tgt_is_never_read():
    task = create_task("mad-compression", vocab_size=8, seq_len=6)
    model = _model(task)
    src = _batch(task, n=3)["src"]
    assert (src[:, -1] == task.COMPRESS).all() and model.bottleneck_index(src).tolist() == [5, 5, 5]
    padded = src.clone()
    padded[1, 4:] = PAD  # right padding: the bottleneck moves to position 3
    assert model.bottleneck_index(padded).tolist() == [5, 3, 5]
    with torch.no_grad():
        # PAD keys are masked and the bottleneck is at 3: row 1 equals its unpadded prefix alone
        prefix = model(padded[1:2, :4], torch.zeros(1, 5, dtype=torch.long)).logits
        torch.testing.assert_close(model(padded, torch.zeros(3, 5, dtype=torch.long)).logits[1:2], prefix)
        a = model(src, torch.ones(3, 5, dtype=torch.long)).logits
        b = model(src, torch.randint(1, 8, (3, 5))).logits
    torch.testing.assert_close(a, b, rtol=0, atol=0)  # no teacher forcing: tgt sets T only


# -- what it hosts ---------------------------------------------------------------------------------
def test_fits_reasons():
    spec = get_backbone("bottleneck")[0]
    assert isinstance(spec, BottleneckSpec) and spec.encoder == "transformer"
    assert spec.to_dict()["encoder"] == "transformer"
    transformer = get_backbone("transformer")[0]
    comp = create_task("mad-compression").spec
    assert spec.fits(comp, attnzoo.get_spec("scaled-dot")) is None
    assert spec.fits(comp, None) == "needs an attention variant"
    assert spec.fits(create_task("sort").spec, attnzoo.get_spec("scaled-dot")) == "token tasks only"
    assert spec.fits(create_task("mqar").spec, attnzoo.get_spec("scaled-dot")).startswith("aligned task")
    # the variants it takes are exactly the Transformer's
    for name in attnzoo.list_attention():
        aspec = attnzoo.get_spec(name)
        assert spec.fits(comp, aspec) == transformer.fits(comp, aspec), name
    fake = AttentionSpec(name="fake", family="fake", summary="fake", causal_safe=False)
    assert spec.fits(comp, fake) == "needs a causal_safe variant"
    with pytest.raises(ValueError, match="aligned task"):
        create_backbone("bottleneck", create_task("mqar"), "scaled-dot")


# -- the MAD table -------------------------------------------------------------------------------
def _row(task, backbone, variant, seed, test, knobs=None):
    knobs = knobs or {}
    return {"status": "ok", "task": task, "task_name": task, "backbone": backbone, "variant": variant, "seed": seed,
            "lr": 1e-3, "main_metric": "test/token_acc", "main_value": test, "chance": 0.1,
            "metrics": {"val/token_acc": test, "test/token_acc": test},
            "cell": {"task": task, "task_kwargs": knobs, "backbone": backbone, "lr": 1e-3, "weight_decay": 0.0,
                     "seed": seed}, "cell_id": f"{task}{json.dumps(knobs)}{backbone}{variant}{seed}"}


def test_mad_table_counts_compression_under_the_encoders_backbone():
    from attnzoo.leaderboard.report import mad_backbone, mad_scores, mad_table

    assert mad_backbone("bottleneck") == "transformer" and mad_backbone("mlp") == "mlp"
    assert mad_backbone("not-installed") == "not-installed"
    rows = []
    for seed in (0, 1):
        rows += [_row("mad-memorization", "transformer", "dot", seed, 0.8),
                 _row("mad-compression", "bottleneck", "dot", seed, 0.4 + 0.2 * seed),
                 _row("mad-memorization", "mlp", "none", seed, 0.2)]
    scores = mad_scores(rows)
    assert [s.label for s in scores] == ["dot (transformer)", "none (mlp)"]  # no row of its own
    dot = scores[0]
    assert dot.tasks["mad-compression"] == pytest.approx({0: 0.4, 1: 0.6})
    assert dot.score == pytest.approx({0: 0.6, 1: 0.7}) and dot.via == {"mad-compression": "bottleneck"}
    headers, trows, notes = mad_table(scores)
    assert "mad-compression" in headers and trows[0][headers.index("mad-compression")] == "0.500 (0.40–0.60)"
    assert any("mad-compression ran on the bottleneck backbone" in n for n in notes)


# -- the harness ---------------------------------------------------------------------------------
def test_trains_with_the_harness():
    from attnzoo.cell import Cell
    from attnzoo.harness.run import run_cell

    # 3 content ids at 2 positions (chance 1/3): small enough to learn in the few steps a test affords
    cell = Cell(task="mad-compression", task_kwargs={"vocab_size": 4, "seq_len": 3}, backbone="bottleneck",
                backbone_kwargs={"d_model": 16, "num_layers": 1, "num_heads": 2}, attention="scaled-dot",
                max_steps=60, batch_size=32, lr=1e-2, warmup_steps=5, val_every=30, val_size=128, test_size=128,
                trainer={"accelerator": "cpu", "devices": 1}, threads=1, record_attention=True)
    row = run_cell(cell)
    assert row["status"] == "ok", row["error"]
    assert row["main_metric"] == "test/token_acc" and row["chance"] == pytest.approx(1 / 3)
    assert row["main_value"] > 0.6  # well above chance: the bottleneck learned to carry both tokens
    am = row["attention_map"]
    assert len(am["weights"]) == 2 and all(len(w) == 3 for w in am["weights"])
