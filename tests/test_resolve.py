"""Resolve once, compose by object: a cell's names are looked up by :func:`attnzoo.resolve.resolve`
and nowhere below it; backbones and blocks build from the entry they are handed."""

from __future__ import annotations

import inspect

import pytest
import torch

from attnzoo.cell import Cell
from attnzoo.registry import AttentionEntry, attention_registry, create_attention, create_from_entry, get_entry
from attnzoo.resolve import resolve


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every name the attention registry is asked for, in order."""
    asked: list[str] = []
    real = attention_registry.get_with_source

    def counting(name: str):
        asked.append(name)
        return real(name)

    monkeypatch.setattr(attention_registry, "get_with_source", counting)
    return asked


@pytest.mark.parametrize("backbone,attention,kwargs", [
    ("transformer", "scaled-dot", {"num_layers": 2}),  # was 3 + L = 5 lookups
    ("transformer", "location", {"num_layers": 3}),  # length_kwargs reads the entry too
    ("bottleneck", "general", {"num_layers": 2}),
    ("seq2seq", "local-m", {}),  # step_state reads the spec
    ("ntm", "ntm", {}),  # the factory reads num_read_heads' default
    ("pointer", "pointer", {}),
])
def test_a_cell_looks_its_variant_up_once(lookups, backbone, attention, kwargs):
    from attnzoo.harness.module import build_model, build_task

    task = "sort" if backbone == "pointer" else "copy"
    cell = Cell(task=task, backbone=backbone, attention=attention,
                backbone_kwargs={"d_model": 16, "num_heads": 2, **kwargs})
    resolved = resolve(cell)
    model = build_model(resolved, build_task(resolved))
    assert isinstance(model, torch.nn.Module)
    # (local-m builds its score variant, "general", by name: a lookup of another variant, not this one)
    assert lookups.count(attention) == 1, f"{attention!r} looked up {lookups.count(attention)} times: {lookups}"
    assert resolved.attention is get_entry(attention) and resolved.attention_spec.name == attention


def test_create_attention_is_one_lookup_then_create_from_entry(lookups):
    entry = get_entry("general")
    assert lookups == ["general"]
    torch.manual_seed(0)
    by_entry = create_from_entry(entry, 8, num_heads=2)
    torch.manual_seed(0)
    by_name = create_attention("general", 8, num_heads=2)
    assert lookups == ["general", "general"]
    assert by_entry.state_dict().keys() == by_name.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(by_entry.state_dict().values(), by_name.state_dict().values()))
    # an entry handed to create_attention (a plugin backbone passing its argument through) is not looked up
    create_attention(entry, 8)
    assert lookups == ["general", "general"]


def test_factories_declare_only_options_their_model_uses():
    """``num_heads`` is a common option (a preset gives it to every backbone), not restated by factories
    whose model has no heads; the kwarg checks still accept it for every backbone."""
    from attnzoo.backbones import create_backbone, get_backbone
    from attnzoo.resolve import backbone_kwarg_problems
    from attnzoo.tasks import create_task

    for name in ("seq2seq", "pointer", "ntm", "mlp"):
        _, factory = get_backbone(name)
        assert "num_heads" not in inspect.signature(factory).parameters, name
        assert backbone_kwarg_problems(name, factory, {"num_heads": 4}) == []
    _, factory = get_backbone("transformer")
    assert {"num_heads", "ffn_mult", "readout", "max_len"} <= set(inspect.signature(factory).parameters)
    assert backbone_kwarg_problems("seq2seq", get_backbone("seq2seq")[1], {"num_head": 4})  # a typo still fails
    model = create_backbone("seq2seq", create_task("copy", length=4), "additive", d_model=8, num_heads=4)
    assert model.attention is not None
    with pytest.raises(TypeError, match="widht"):
        create_backbone("seq2seq", create_task("copy", length=4), "additive", widht=3)


def test_default_attention_lives_on_the_backbone_spec():
    from attnzoo.backbones import BackboneSpec, get_backbone

    assert get_backbone("transformer")[0].default_attention == "scaled-dot"
    assert get_backbone("mlp")[0].default_attention is None
    assert BackboneSpec(name="x", summary="s", default_attention="dot").default_attention == "dot"
    assert BackboneSpec(name="x", summary="s", attention="none").default_attention is None
    assert get_backbone("seq2seq")[0].to_dict()["default_attention"] == "scaled-dot"


def test_backbones_take_an_entry_or_a_name_alike():
    from attnzoo.backbones.transformer import TransformerBackbone

    torch.manual_seed(0)
    a = TransformerBackbone(get_entry("scaled-dot"), 11, 7, d_model=16, num_heads=2)
    torch.manual_seed(0)
    b = TransformerBackbone("scaled-dot", 11, 7, d_model=16, num_heads=2)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert isinstance(get_entry("dot"), AttentionEntry) and get_entry("dot").name == "dot"


def test_transformer_and_bottleneck_share_one_encoder():
    from attnzoo.backbones.bottleneck import BottleneckBackbone
    from attnzoo.backbones.transformer import TransformerBackbone, TransformerEncoder

    t = TransformerBackbone("scaled-dot", 11, 7, d_model=16, num_heads=2)
    b = BottleneckBackbone("scaled-dot", 11, 7, d_model=16, num_heads=2)
    assert type(t.blocks) is TransformerEncoder and type(b.blocks) is TransformerEncoder
