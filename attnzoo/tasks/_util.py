"""Small vectorised samplers and knob checks shared by the built-in tasks."""

from __future__ import annotations

import random
from typing import Any

import torch
from torch import Tensor

__all__ = ["sample_distinct", "sample_weighted_distinct", "python_rng", "require"]


def sample_distinct(n: int, k: int, high: int, generator: torch.Generator) -> Tensor:
    """long [n, k]: per row, ``k`` distinct ints from ``[0, high)`` in uniformly random order."""
    if not 0 <= k <= high:
        raise ValueError(f"cannot draw {k} distinct values from {high}")
    # the indices of the k largest of `high` iid uniforms: a uniform k-subset in uniform order
    return torch.rand(n, high, generator=generator).topk(k, dim=1).indices


def sample_weighted_distinct(n: int, k: int, log_weights: Tensor, generator: torch.Generator) -> Tensor:
    """long [n, k]: per row, ``k`` distinct indices drawn without replacement with
    probabilities proportional to ``exp(log_weights)`` (Gumbel-top-k; the same law as
    ``numpy.random.choice(..., replace=False, p=p)``), in the order they were drawn."""
    high = log_weights.numel()
    if not 0 <= k <= high:
        raise ValueError(f"cannot draw {k} distinct values from {high}")
    u = torch.rand(n, high, generator=generator).clamp_(min=1e-20, max=1.0 - 1e-7)
    gumbel = -torch.log(-torch.log(u))
    return (log_weights + gumbel).topk(k, dim=1).indices


def python_rng(generator: torch.Generator) -> random.Random:
    """A ``random.Random`` seeded from ``generator`` (for the tasks generated in Python)."""
    return random.Random(int(torch.randint(0, 2**62, (1,), generator=generator)))


def require(ok: bool, knob: str, message: str, value: Any = None) -> None:
    """Raise ``ValueError`` naming the knob when a knob value is out of range."""
    if not ok:
        shown = "" if value is None else f", got {value!r}"
        raise ValueError(f"{knob}: {message}{shown}")
