"""attnzoo: a plugin-based zoo of attention mechanisms.

Public API::

    attnzoo.list_attention("*dot*")            # names, fnmatch wildcards
    attnzoo.get_spec("additive")               # AttentionSpec
    attnzoo.create_attention("additive", 64)   # nn.Module following the contract
    attnzoo.add_attention(spec, factory)       # in-process registration
    attnzoo.hookimpl                           # for plugins: register_attention(register)
    attnzoo.list_tasks("*recall*")             # benchmark tasks
    attnzoo.results.load("bench-out/default")  # a results directory: typed rows, .summary(), .to_pandas()

Importing attnzoo does not import Lightning; only ``attnzoo.harness``'s
training modules do. It does not import torch either: every name above loads
its module on first access (PEP 562), because pytest imports
``attnzoo.testing.pytest_plugin`` (and so this package) at the start of every
run in an environment where attnzoo is installed, torch-using tests or not.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from attnzoo.contract import (
        Attention,
        AttentionOutput,
        ScoreAttention,
        causal_mask,
        masked_softmax,
        normalize_mask,
    )
    from attnzoo.errors import (
        AttnzooError,
        DuplicateRegistrationError,
        PluginError,
        SpecError,
        UnknownAttentionError,
        UnknownNameError,
    )
    from attnzoo.hookspecs import hookimpl, hookspec
    from attnzoo.registry import (
        add_attention,
        create_attention,
        get_spec,
        list_attention,
        remove_attention,
    )
    from attnzoo.spec import CAPABILITIES, AttentionSpec

    __version__: str

#: public name -> the module that defines it (loaded on first access)
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(["Attention", "AttentionOutput", "ScoreAttention", "causal_mask", "masked_softmax",
                     "normalize_mask"], "attnzoo.contract"),
    **dict.fromkeys(["AttnzooError", "DuplicateRegistrationError", "PluginError", "SpecError",
                     "UnknownAttentionError", "UnknownNameError"], "attnzoo.errors"),
    **dict.fromkeys(["hookimpl", "hookspec"], "attnzoo.hookspecs"),
    **dict.fromkeys(["add_attention", "create_attention", "get_spec", "list_attention", "remove_attention"],
                    "attnzoo.registry"),
    **dict.fromkeys(["CAPABILITIES", "AttentionSpec"], "attnzoo.spec"),
}


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("attnzoo")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0.0.0+unknown"


def list_tasks(pattern: str = "*") -> list[str]:
    """Registered benchmark task names matching ``pattern`` (fnmatch), sorted."""
    from attnzoo.tasks import list_tasks as _list_tasks

    return _list_tasks(pattern)


__all__ = [
    "Attention",
    "AttentionOutput",
    "AttentionSpec",
    "AttnzooError",
    "CAPABILITIES",
    "DuplicateRegistrationError",
    "PluginError",
    "ScoreAttention",
    "SpecError",
    "UnknownAttentionError",
    "UnknownNameError",
    "__version__",
    "add_attention",
    "causal_mask",
    "create_attention",
    "get_spec",
    "hookimpl",
    "hookspec",
    "list_attention",
    "list_tasks",
    "masked_softmax",
    "normalize_mask",
    "remove_attention",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value: Any = _version()
    elif name == "results":  # the results API (attnzoo.results.load): a submodule, loaded on first access
        value = importlib.import_module("attnzoo.results")
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
