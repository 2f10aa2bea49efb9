"""attnzoo: a plugin-based zoo of attention mechanisms.

Public API::

    attnzoo.list_attention("*dot*")            # names, fnmatch wildcards
    attnzoo.get_spec("additive")               # AttentionSpec
    attnzoo.create_attention("additive", 64)   # nn.Module following the contract
    attnzoo.add_attention(spec, factory)       # in-process registration
    attnzoo.hookimpl                           # for plugins: register_attention(register)
    attnzoo.list_tasks("*recall*")             # benchmark tasks

Importing attnzoo does not import Lightning; only ``attnzoo.harness``'s
training modules do.
"""

from __future__ import annotations

from importlib import metadata as _metadata

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

try:
    __version__ = _metadata.version("attnzoo")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+unknown"


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
