"""The base score that variants with their own normalisation share (hard and local attention).

Hard attention (Xu et al. 2015) samples from ``softmax(score)``, local
attention (Luong et al. 2015, Sec. 3.2) normalises ``score`` over a window;
both take the score itself from another variant: anything with a
``.score(query [B, Tq, Dq], key [B, Tk, Dk]) -> [B, Tq, Tk]`` method, named in
the registry (``"general"``) or given as a factory (composition by object).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

__all__ = ["ScoreFactory", "build_score"]

#: a registered variant's name, or a factory ``f(query_dim, key_dim, value_dim, **kw) -> module with .score``
ScoreFactory = str | Callable[..., nn.Module]


def build_score(
    owner: str,
    score: ScoreFactory,
    query_dim: int,
    key_dim: int,
    value_dim: int,
    score_kwargs: dict[str, Any] | None,
) -> nn.Module:
    """Build the base score module and check it has a ``.score(q, k) -> [B, Tq, Tk]`` method.

    :param owner: the variant asking, for messages ("HardAttention").
    :param score: a registered variant name (``"general"``) or a factory.
    :raises ValueError: ``score`` is neither, or builds a module without a score method.
    """
    kwargs = dict(score_kwargs or {})
    if isinstance(score, str):
        # The registry sits above the mechanisms; a name is resolved when the module is built.
        from attnzoo.registry import create_attention

        base = create_attention(score, query_dim, key_dim, value_dim, **kwargs)
    elif callable(score):
        base = score(query_dim, key_dim, value_dim, **kwargs)
    else:
        raise ValueError(
            f"score: expected the name of a registered score variant such as 'general', or a factory, got {score!r}"
        )
    if not callable(getattr(base, "score", None)):
        raise ValueError(
            f"score: {owner} needs a base variant with a .score(query, key) -> [B, Tq, Tk] method "
            f"(a ScoreAttention such as 'general', 'dot', 'scaled-dot', 'additive'); "
            f"{score!r} ({type(base).__name__}) has none"
        )
    return base
