"""The attention variants, one module per family; importable without Lightning.

Classes load lazily on first access (``from attnzoo.mechanisms import AdditiveAttention``),
so importing this package costs nothing beyond torch.
"""

from __future__ import annotations

import importlib
from typing import Any

# class name -> module under attnzoo.mechanisms (or a full module path)
_EXPORTS = {
    "DotAttention": "dot",
    "ScaledDotAttention": "dot",
    "GeneralAttention": "dot",
    "AdditiveAttention": "additive",
    "ContentAttention": "content",
    "LocationAttention": "location",
    "HardAttention": "hard",
    "LocalAttention": "local",
    "LocalMonotonicAttention": "local",
    "LocalPredictiveAttention": "local",
    "PointerAttention": "pointer",
    "NTMAttention": "ntm",
    # whether the fused additive kernel can run here (speed lists its rows only then)
    "triton_available": "additive",
    # the core's combinator (attnzoo.multihead), still reachable here for code written before it moved
    "MultiHeadAttention": "attnzoo.multihead",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        where = _EXPORTS[name]
        module = importlib.import_module(where if "." in where else f"{__name__}.{where}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
