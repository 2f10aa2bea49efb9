"""The first-party plugin in plugins/ is found through its installed entry point, not by path."""

from __future__ import annotations

import importlib.metadata as md

import torch

import attnzoo
from attnzoo import plugins
from attnzoo.registry import get_entry


def test_linear_plugin_discovered_through_entry_point(fresh_plugins):
    eps = {ep.name: ep for ep in md.entry_points(group="attnzoo")}
    assert "linear" in eps, "attnzoo-linear is not installed: pip install -e plugins/attnzoo-linear"
    assert eps["linear"].dist.name == "attnzoo-linear"
    entry = get_entry("linear")
    assert entry.source == f"attnzoo-linear {eps['linear'].dist.version}"
    info = {i.name: i for i in plugins.get_host().plugins()}["linear"]
    assert info.loaded and info.source == "attnzoo-linear" and info.module == "attnzoo_linear"
    # With autoload off the variant disappears: nothing imports it by path.
    fresh_plugins.setenv("ATTNZOO_DISABLE_PLUGIN_AUTOLOAD", "1")
    plugins.reset()
    assert "linear" not in attnzoo.list_attention()


def test_linear_attention_equation():
    """Katharopoulos et al. 2020, Eq. (5)-(7), computed directly."""
    torch.manual_seed(0)
    m = attnzoo.create_attention("linear", 4, 4, 3)
    q, k, v = torch.randn(2, 5, 4), torch.randn(2, 6, 4), torch.randn(2, 6, 3)
    phi = lambda x: torch.nn.functional.elu(x) + 1  # noqa: E731
    sim = torch.einsum("bqd,bkd->bqk", phi(q), phi(k))
    expect = (sim @ v) / (sim.sum(-1, keepdim=True) + m.eps)
    torch.testing.assert_close(m(q, k, v).context, expect, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(m(q, k, v, need_weights=True).context, expect, atol=1e-5, rtol=1e-4)
    mask = torch.zeros(2, 5, 6, dtype=torch.bool)
    out = m(q, k, v, mask=mask, need_weights=True)
    assert (out.context == 0).all() and (out.weights == 0).all()
