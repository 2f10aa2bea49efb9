"""Shared fixtures. Plugin state is process-global, so tests that touch it restore it."""

from __future__ import annotations

import pytest
import torch

from attnzoo import plugins

# The tests use tiny tensors: one intra-op thread is faster than two fighting over
# small kernels, and keeps timings steady on CI's 2 cores.
torch.set_num_threads(1)


@pytest.fixture
def fresh_plugins(monkeypatch):
    """Run a test with its own plugin host and env; the global host is rebuilt afterwards."""
    for var in ("ATTNZOO_DISABLE_PLUGIN_AUTOLOAD", "ATTNZOO_PLUGINS", "ATTNZOO_DISABLE_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    plugins.reset()
    yield monkeypatch
    monkeypatch.undo()
    plugins.reset()
