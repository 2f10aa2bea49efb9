"""Specs: the frozen description every registered attention variant ships.

A spec is what ``attnzoo list`` and ``attnzoo show`` print and what the harness
reads to decide which (task, backbone) pairs a variant can enter. It holds no
tensors and imports nothing heavy, so listing the zoo stays cheap.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

from attnzoo.errors import SpecError

__all__ = ["AttentionSpec", "CAPABILITIES", "validate_name"]

#: Boolean spec fields that count as capabilities, with what each one promises.
CAPABILITIES: Mapping[str, str] = MappingProxyType(
    {
        "self_attention": "works with key = value = query (Transformer self-attention)",
        "cross_attention": "works with keys/values from another sequence (encoder-decoder)",
        "causal_safe": "a causal mask keeps output t independent of inputs after t",
        "stateful": "carries state between calls (initial_state / returned state)",
        "differentiable": "gradients flow through the weights (else: estimator via aux)",
        "pointer_logits": "returns aux['logits'] over key positions (output distribution)",
        "fused": "has a fused fast path (SDPA) used when weights are not requested",
        "multihead": "can run per head inside MultiHeadAttention",
    }
)

_NAME_RE = re.compile(r"^[a-z][a-z0-9]*([-_.][a-z0-9]+)*$")


def validate_name(name: object, kind: str = "name") -> str:
    """Check a registry name: lowercase letters, digits, and ``-``, ``_`` or ``.`` between them."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise SpecError(
            f"{kind} must be a lowercase string like 'scaled-dot' "
            f"(letters, digits, '-', '_', '.'), got {name!r}"
        )
    return name


@dataclass(frozen=True)
class AttentionSpec:
    """Everything the zoo knows about a variant without building it.

    Example::

        AttentionSpec(
            name="dot",
            family="multiplicative",
            summary="Luong dot score q^T k",
            paper="Luong, Pham, Manning 2015, EMNLP, Eq. (8)",
            url="https://arxiv.org/abs/1508.04025",
        )
    """

    name: str
    family: str
    summary: str
    paper: str = ""
    url: str = ""
    # capabilities (see CAPABILITIES)
    self_attention: bool = True
    cross_attention: bool = True
    causal_safe: bool = True
    stateful: bool = False
    differentiable: bool = True
    pointer_logits: bool = False
    fused: bool = False
    multihead: bool = True
    #: Time/memory in sequence length, e.g. "O(Tq*Tk)" or "O(Tq*window)".
    complexity: str = "O(Tq*Tk)"
    #: Keyword arguments the harness passes unless a preset overrides them.
    defaults: Mapping[str, Any] = field(default_factory=dict)
    #: Keys this variant puts in ``AttentionOutput.aux`` (e.g. "log_prob", "entropy").
    aux_keys: tuple[str, ...] = ()
    #: Why a capability is missing, shown as "n/a: reason" by the leaderboard.
    notes: str = ""
    #: The ``state`` to pass when a decoder calls the variant one query at a time, each call's
    #: returned state feeding the next (Luong's local-m: ``0``, the target step t). None: no state.
    step_state: Any = None

    def __post_init__(self) -> None:
        validate_name(self.name, "AttentionSpec.name")
        if not isinstance(self.family, str) or not self.family:
            raise SpecError(f"AttentionSpec.family must be a non-empty string, got {self.family!r}")
        if not isinstance(self.summary, str) or not self.summary:
            raise SpecError(f"AttentionSpec.summary must be a non-empty string, got {self.summary!r}")
        for cap in CAPABILITIES:
            if not isinstance(getattr(self, cap), bool):
                raise SpecError(f"AttentionSpec.{cap} must be a bool, got {getattr(self, cap)!r}")
        if not isinstance(self.defaults, Mapping):
            raise SpecError(f"AttentionSpec.defaults must be a mapping, got {type(self.defaults).__name__}")
        # Freeze so a spec shared across the process cannot be edited by one caller.
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))
        object.__setattr__(self, "aux_keys", tuple(self.aux_keys))
        if not self.differentiable and not {"log_prob"} <= set(self.aux_keys):
            raise SpecError(
                f"AttentionSpec {self.name!r} is not differentiable, so it must declare "
                f"aux_keys including 'log_prob' for the harness's estimator"
            )

    @property
    def capabilities(self) -> tuple[str, ...]:
        """Names of the capabilities this variant has, in CAPABILITIES order."""
        return tuple(c for c in CAPABILITIES if getattr(self, c))

    def has(self, capability: str) -> bool:
        """Whether the variant has ``capability`` (a key of CAPABILITIES)."""
        if capability not in CAPABILITIES:
            raise ValueError(
                f"capability must be one of {', '.join(CAPABILITIES)}, got {capability!r}"
            )
        return bool(getattr(self, capability))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of the spec (for ``attnzoo list --json``)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            val = getattr(self, f.name)
            if isinstance(val, Mapping):
                val = dict(val)
            elif isinstance(val, tuple):
                val = list(val)
            out[f.name] = val
        out["capabilities"] = list(self.capabilities)
        return out
