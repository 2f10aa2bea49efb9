"""Deprecated alias: the tasks moved to :mod:`attnzoo.tasks` (plain torch, no Lightning)."""

from __future__ import annotations

import warnings

from attnzoo.tasks import *  # noqa: F401,F403
from attnzoo.tasks import __all__  # noqa: F401

warnings.warn(
    "attnzoo.harness.tasks moved to attnzoo.tasks; the old name goes away in attnzoo 0.3",
    DeprecationWarning,
    stacklevel=2,
)
