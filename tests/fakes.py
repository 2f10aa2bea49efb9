"""Fake distributions and entry points, as pytest's own plugin tests use."""

from __future__ import annotations

import types
from typing import Any

import torch

import attnzoo
from attnzoo import AttentionSpec


class FakeDist:
    def __init__(self, name: str, version: str = "1.0") -> None:
        self.name = name
        self.version = version


class FakeEntryPoint:
    """Quacks like importlib.metadata.EntryPoint: name, value, group, dist, load()."""

    group = "attnzoo"

    def __init__(self, name: str, plugin: Any, dist: str = "fake-dist", version: str = "1.0") -> None:
        self.name = name
        self.value = f"fake_{name}"
        self.dist = FakeDist(dist, version)
        self._plugin = plugin

    def load(self) -> Any:
        if isinstance(self._plugin, BaseException):
            raise self._plugin
        return self._plugin


class NegL2(attnzoo.ScoreAttention):
    """score = -||q - k||^2, a tiny stand-in variant for plugin tests."""

    def score(self, query, key):
        return -torch.cdist(query, key).pow(2)


def plugin_module(*names: str, raises: Exception | None = None, bad_spec: bool = False) -> types.ModuleType:
    """A plugin module registering variants ``names`` (or raising / registering a bad spec)."""
    mod = types.ModuleType(f"fake_plugin_{'_'.join(names) or 'none'}")

    @attnzoo.hookimpl
    def register_attention(register):
        if raises is not None:
            raise raises
        for n in names:
            if bad_spec:
                register({"name": n}, NegL2)
            else:
                register(AttentionSpec(name=n, family="test", summary=f"fake {n}"), NegL2)

    mod.register_attention = register_attention
    return mod
