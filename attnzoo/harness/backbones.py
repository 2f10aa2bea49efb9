"""Deprecated alias: the backbones moved to :mod:`attnzoo.backbones` (plain torch, no Lightning)."""

from __future__ import annotations

import warnings

from attnzoo.backbones import *  # noqa: F401,F403
from attnzoo.backbones import __all__  # noqa: F401

warnings.warn(
    "attnzoo.harness.backbones moved to attnzoo.backbones; the old name goes away in attnzoo 0.3",
    DeprecationWarning,
    stacklevel=2,
)
