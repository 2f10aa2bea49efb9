"""Built-in backbones and the backbone registry.

A backbone wraps an attention variant for a setting (plain torch, no Lightning)::

    from attnzoo.backbones import get_backbone, create_backbone
    spec, factory = get_backbone("seq2seq")
    spec.fits(task.spec, attnzoo.get_spec("additive"))    # None, or "needs ..." reason
    model = create_backbone("seq2seq", task, "additive", d_model=64)   # PairDoesNotFit(reason) if it does not fit
    out = model(src, tgt)                                  # BackboneOutput(logits [N,T,C], aux, attention)

Factories share the signature
``factory(task, attention, *, d_model=64, num_layers=..., num_heads=..., attention_kwargs=None, **backbone_kwargs)``
where ``attention`` is the variant's :class:`~attnzoo.registry.AttentionEntry` (None for a
baseline): :func:`attnzoo.resolve.resolve` looked it up, and a factory builds it with
``create_from_entry`` (``create_attention`` takes the entry too), so no name is looked up twice.
``d_model``, ``num_layers`` and ``num_heads`` (:data:`~attnzoo.backbones.base.COMMON_OPTIONS`)
may be given to any backbone; one that has no use for one ignores it.
Built-ins (one module each): ``transformer``, ``seq2seq``, ``pointer``, ``ntm``, ``mlp``,
``bottleneck`` (MAD's encoder-bottleneck autoencoder for ``mad-compression``).
Plugins add more through the ``register_backbones(register)`` hook with ``register(spec, factory)``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from torch import nn

from attnzoo import plugins
from attnzoo.errors import SpecError
from attnzoo.backbones.base import AGGREGATED_AUX, BackboneOutput, BackboneSpec, accepted_options, check_fits
from attnzoo.hookspecs import hookimpl
from attnzoo.registry import AttentionEntry, Registry, attention_entry, kwarg_problems

__all__ = [
    "AGGREGATED_AUX",
    "BackboneOutput",
    "BackboneSpec",
    "add_backbone",
    "backbone_registry",
    "create_backbone",
    "get_backbone",
    "list_backbones",
    "remove_backbone",
]

#: module (under this package) -> its factory; each module exports ``SPEC``.
_BUILTIN_MODULES: dict[str, str] = {
    "transformer": "build_transformer",
    "seq2seq": "build_seq2seq",
    "pointer": "build_pointer",
    "ntm": "build_ntm",
    "mlp": "build_mlp",
    "bottleneck": "build_bottleneck",
}

Factory = Callable[..., nn.Module]


@hookimpl
def register_backbones(register):
    for modname, factory_name in _BUILTIN_MODULES.items():
        module = importlib.import_module(f"{__name__}.{modname}")
        register(module.SPEC, getattr(module, factory_name))


def _accept_backbone(spec: Any, factory: Any = None) -> tuple[str, tuple[BackboneSpec, Factory]]:
    if not isinstance(spec, BackboneSpec):
        raise SpecError(f"register(spec, factory): spec must be a BackboneSpec, got {type(spec).__name__}")
    if not callable(factory):
        raise SpecError(
            f"register(spec, factory): factory for backbone {spec.name!r} must be callable "
            f"(factory(task, attention, **kwargs) -> nn.Module), got {factory!r}"
        )
    return spec.name, (spec, factory)


def _load_backbones() -> dict[str, tuple[tuple[BackboneSpec, Factory], str]]:
    return plugins.collect("register_backbones", "backbone", _accept_backbone)


backbone_registry: Registry[tuple[BackboneSpec, Factory]] = Registry("backbone", _load_backbones)


def list_backbones(pattern: str = "*") -> list[str]:
    """Registered backbone names matching the fnmatch ``pattern``, sorted."""
    return backbone_registry.names(pattern)


def get_backbone(name: str) -> tuple[BackboneSpec, Factory]:
    """``(spec, factory)`` of backbone ``name`` (UnknownNameError with suggestions)."""
    return backbone_registry.get(name)


def create_backbone(name: str, task: Any, attention: AttentionEntry | str | None, **kwargs: Any) -> nn.Module:
    """Build backbone ``name`` for ``task`` with variant ``attention`` (a name, looked up once, or its entry).

    :raises TypeError: unknown keyword arguments, listing the accepted ones.
    :raises PairDoesNotFit: (a ValueError) the pair does not fit; the message carries ``spec.fits``'s reason.
    """
    spec, factory = get_backbone(name)
    problems = kwarg_problems(f"backbone {name!r}", accepted_options(factory), kwargs, skip=("task", "attention"))
    if problems:
        raise TypeError("\n".join(problems))
    entry = attention_entry(attention)
    check_fits(spec, task, entry)
    return factory(task, entry, **kwargs)


def add_backbone(spec: BackboneSpec, factory: Factory) -> Factory:
    """Register a backbone in this process (notebooks, tests); not the plugin hook."""
    name, entry = _accept_backbone(spec, factory)
    where = f"in-process ({getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', '?')})"
    backbone_registry.add(name, entry, where)
    return factory


def remove_backbone(name: str) -> None:
    """Undo :func:`add_backbone`."""
    backbone_registry.remove(name)
