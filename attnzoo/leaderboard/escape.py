"""User-provided text (task labels, variant names, plugin error messages) made inert for where it goes.

One function per destination:

- :func:`md`: markdown (``leaderboard.md``, ``findings.md``): ``&``, ``<`` and ``>`` become
  entities, so a plugin's ``<script>`` or ``<img onerror=...>`` in an error message is text
  in every markdown renderer that passes HTML through (GitHub's included);
- :data:`NO_MATHTEXT`: the matplotlib settings under which no text is parsed as mathtext
  (a ``$`` in a label is a dollar sign, not the start of a formula that can fail to parse).
"""

from __future__ import annotations

from typing import Any

__all__ = ["NO_MATHTEXT", "md"]

#: matplotlib rcParams for figures built from user text: ``$...$`` is printed, never parsed
NO_MATHTEXT: dict[str, Any] = {"text.parse_math": False}


def md(text: Any) -> str:
    """``text`` for markdown: ``&`` first (so entities are not escaped twice), then ``<`` and ``>``."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
