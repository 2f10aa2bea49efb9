"""Causal without padding reaches SDPA as ``is_causal=True`` (issue 25, item 2).

A backbone tags its causal, unpadded mask (``contract.mark_causal``); scaled-dot, dot and general
then call SDPA with ``is_causal=True`` and no mask tensor (flash-eligible on CUDA), and every other
path reads the same tensor. Checked here: the two calls agree (values and gradients), the tag
survives the multi-head wrapper, padding keeps the tensor path, and a Transformer's outputs and
gradients do not change with the tag (so existing cells train to the same numbers).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from attnzoo import contract
from attnzoo.backbones import transformer as tmod
from attnzoo.contract import causal_mask, is_causal_mask, mark_causal, sdpa
from attnzoo.registry import create_attention

MULTIPLICATIVE = ("dot", "scaled-dot", "general")


def _spy_sdpa(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    calls: list[dict] = []
    real = F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append({"is_causal": kwargs.get("is_causal", False), "mask": kwargs.get("attn_mask") is not None})
        return real(*args, **kwargs)

    monkeypatch.setattr(contract.F, "scaled_dot_product_attention", spy)
    return calls


@settings(max_examples=25, deadline=None)
@given(b=st.integers(1, 3), t=st.integers(1, 40), d=st.sampled_from([4, 8, 16]), scale=st.floats(0.1, 1.0))
def test_is_causal_equals_the_mask_path_with_gradients(b: int, t: int, d: int, scale: float) -> None:
    g = torch.Generator().manual_seed(b * 100 + t)
    qkv = [torch.randn(b, t, d, generator=g, requires_grad=True) for _ in range(3)]
    mask = causal_mask(t)[None].expand(b, t, t)
    plain = sdpa(*qkv, mask, scale=scale)
    tagged = sdpa(*qkv, mark_causal(mask.clone()), scale=scale)
    torch.testing.assert_close(tagged, plain, rtol=1e-6, atol=1e-6)
    w = torch.randn(plain.shape, generator=g)
    ga = torch.autograd.grad((plain * w).sum(), qkv)
    gb = torch.autograd.grad((tagged * w).sum(), qkv)
    for x, y in zip(ga, gb):
        torch.testing.assert_close(y, x, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", MULTIPLICATIVE)
def test_multihead_variants_call_sdpa_with_is_causal(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    torch.manual_seed(0)
    m = create_attention(name, 16, num_heads=2)
    x = torch.randn(3, 9, 16, requires_grad=True)
    mask = causal_mask(9)[None].expand(3, 9, 9).clone()
    calls = _spy_sdpa(monkeypatch)
    ref = m(x, mask=mask).context
    assert calls == [{"is_causal": False, "mask": True}]
    out = m(x, mask=mark_causal(mask)).context
    assert calls[1:] == [{"is_causal": True, "mask": False}]
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)
    ga = torch.autograd.grad(ref.square().sum(), [x, *m.parameters()], allow_unused=True)
    gb = torch.autograd.grad(out.square().sum(), [x, *m.parameters()], allow_unused=True)
    for a, b in zip(ga, gb):
        if a is not None:
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    # need_weights takes the reference path, which reads the tagged tensor as it is
    w = m(x, mask=mask, need_weights=True).weights
    assert bool((w.triu(1) == 0).all())


def test_tag_rules() -> None:
    m = causal_mask(4)[None].expand(2, 4, 4)
    assert not is_causal_mask(m) and not is_causal_mask(None)
    assert is_causal_mask(mark_causal(m))
    assert is_causal_mask(contract.carry_causal(m, m[:, None]))
    with pytest.raises(ValueError, match="mask: mark_causal expects a square bool mask"):
        mark_causal(torch.ones(2, 3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask"):
        mark_causal(torch.ones(2, 4, 4))


def _transformer(attention: str) -> tmod.TransformerBackbone:
    torch.manual_seed(3)
    return tmod.TransformerBackbone(attention, vocab_size=11, num_classes=7, d_model=16, num_layers=2, num_heads=2,
                                    max_len=32)


@pytest.mark.parametrize("attention", ["scaled-dot", "general", "additive"])
def test_transformer_numbers_do_not_change_with_the_tag(monkeypatch: pytest.MonkeyPatch, attention: str) -> None:
    g = torch.Generator().manual_seed(1)
    src, tgt = torch.randint(1, 11, (4, 8), generator=g), torch.randint(0, 7, (4, 3), generator=g)
    outs, grads = [], []
    for tag in (True, False):
        if not tag:
            monkeypatch.setattr(contract, "mark_causal", lambda mask: mask)  # causal_keep_mask tags through it
        calls = _spy_sdpa(monkeypatch)
        model = _transformer(attention)
        logits = model(src, tgt).logits
        loss = logits.square().mean()
        grads.append(torch.autograd.grad(loss, list(model.parameters()), allow_unused=True))
        outs.append(logits)
        if attention != "additive":
            assert {c["is_causal"] for c in calls} == {tag}
    assert torch.equal(outs[0], outs[1])
    for a, b in zip(*grads):
        assert (a is None) == (b is None) and (a is None or torch.equal(a, b))


def test_padding_keeps_the_mask_tensor(monkeypatch: pytest.MonkeyPatch) -> None:
    src = torch.randint(1, 11, (2, 8))
    src[0, -2:] = 0  # PAD
    calls = _spy_sdpa(monkeypatch)
    _transformer("scaled-dot")(src, torch.randint(0, 7, (2, 3)))
    assert calls and all(c == {"is_causal": False, "mask": True} for c in calls)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", MULTIPLICATIVE)
def test_cuda_tagged_causal_reaches_flash(name: str) -> None:
    """bf16 with the tagged mask runs under the flash kernel alone (a mask tensor would rule flash out)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    m = create_attention(name, 64, num_heads=2).cuda().to(torch.bfloat16)
    x = torch.randn(2, 256, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    mask = mark_causal(causal_mask(256, device="cuda")[None].expand(2, 256, 256))
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        out = m(x, mask=mask).context
        out.float().sum().backward()
    ref = create_attention(name, 64, num_heads=2, impl="reference").cuda().to(torch.bfloat16)
    ref.load_state_dict(m.state_dict())
    torch.testing.assert_close(out, ref(x, mask=mask).context, rtol=2e-2, atol=2e-2)
