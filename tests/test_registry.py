"""Registry: wildcards, suggestions, duplicates, kwargs validation, in-process registration."""

from __future__ import annotations

import pytest
import torch

import attnzoo
import attnzoo.mechanisms
from attnzoo import AttentionSpec, DuplicateRegistrationError, SpecError, UnknownAttentionError
from tests.fakes import NegL2


def test_wildcard_listing_is_sorted_and_filtered():
    names = attnzoo.list_attention()
    assert names == sorted(names)
    assert {"dot", "scaled-dot", "general"} <= set(names)
    dots = attnzoo.list_attention("*dot*")
    assert "dot" in dots and "scaled-dot" in dots and "general" not in dots
    assert attnzoo.list_attention("?ot") == ["dot"]
    assert attnzoo.list_attention("no-such-*") == []


def test_family_and_capability_filters():
    mult = attnzoo.list_attention(family="multiplicative")
    assert {"dot", "scaled-dot", "general"} <= set(mult)
    assert all(attnzoo.get_spec(n).family == "multiplicative" for n in mult)
    fused = attnzoo.list_attention(capability="fused")
    assert all(attnzoo.get_spec(n).fused for n in fused) and "scaled-dot" in fused
    with pytest.raises(ValueError, match="capability must be one of"):
        attnzoo.list_attention(capability="teleport")


def test_unknown_name_suggests_close_matches():
    with pytest.raises(UnknownAttentionError) as err:
        attnzoo.get_spec("scaled")
    assert "scaled-dot" in err.value.suggestions
    assert "did you mean 'scaled-dot'" in str(err.value)
    with pytest.raises(UnknownAttentionError, match="general"):
        attnzoo.create_attention("genral", 8)


def test_duplicate_registration_names_both_sources():
    spec = AttentionSpec(name="dot", family="test", summary="clash")
    with pytest.raises(DuplicateRegistrationError) as err:
        attnzoo.add_attention(spec, NegL2)
    msg = str(err.value)
    assert "builtin" in msg and "in-process" in msg and "NegL2" in msg


def test_unknown_kwargs_list_accepted_ones():
    with pytest.raises(TypeError) as err:
        attnzoo.create_attention("scaled-dot", 8, temperature=2.0)
    msg = str(err.value)
    assert "temperature" in msg and "scale=None" in msg and "need_weights=False" in msg
    m = attnzoo.create_attention("scaled-dot", 8, scale=0.5)
    assert m.scale == 0.5


def test_add_attention_decorator_roundtrip():
    spec = AttentionSpec(name="neg-l2-test", family="test", summary="negative squared distance")

    @attnzoo.add_attention(spec)
    class Local(NegL2):
        pass

    try:
        assert "neg-l2-test" in attnzoo.list_attention()
        m = attnzoo.create_attention("neg-l2-test", 4)
        assert isinstance(m, Local)
        out = m(torch.randn(2, 3, 4))
        assert out.context.shape == (2, 3, 4)
        with pytest.raises(DuplicateRegistrationError):
            attnzoo.add_attention(spec, NegL2)
    finally:
        attnzoo.remove_attention("neg-l2-test")
    assert "neg-l2-test" not in attnzoo.list_attention()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="Bad Name", family="f", summary="s"), "lowercase"),
        (dict(name="ok", family="", summary="s"), "family"),
        (dict(name="ok", family="f", summary="s", causal_safe="yes"), "causal_safe must be a bool"),
        (dict(name="ok", family="f", summary="s", differentiable=False), "log_prob"),
    ],
)
def test_spec_validation(kwargs, match):
    with pytest.raises(SpecError, match=match):
        AttentionSpec(**kwargs)


def test_spec_is_frozen_and_serialisable():
    spec = attnzoo.get_spec("scaled-dot")
    with pytest.raises(Exception):
        spec.name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.defaults["x"] = 1  # type: ignore[index]
    d = spec.to_dict()
    assert d["name"] == "scaled-dot" and "fused" in d["capabilities"]


def test_num_heads_refused_when_spec_says_so():
    spec = AttentionSpec(name="single-head-test", family="test", summary="s", multihead=False, notes="scores a memory")
    attnzoo.add_attention(spec, NegL2)
    try:
        with pytest.raises(ValueError, match="num_heads.*scores a memory"):
            attnzoo.create_attention("single-head-test", 8, num_heads=2)
    finally:
        attnzoo.remove_attention("single-head-test")


def test_spec_defaults_fill_missing_kwargs():
    spec = AttentionSpec(name="scaled-test", family="test", summary="s", defaults={"scale": 0.25})
    attnzoo.add_attention(spec, attnzoo.mechanisms.ScaledDotAttention)
    try:
        assert attnzoo.create_attention("scaled-test", 8).scale == 0.25
        assert attnzoo.create_attention("scaled-test", 8, scale=1.0).scale == 1.0
    finally:
        attnzoo.remove_attention("scaled-test")
