#!/usr/bin/env python
"""Speed benchmark of every registered attention variant vs. SDPA and a naive reference.

Same as ``attnzoo speed``; see :mod:`attnzoo.speed` for what is measured. Example::

    python benchmarks/speed.py --lengths 64,128,256 --variants '*dot*' --out bench-out/speed
"""

from __future__ import annotations

import sys

from attnzoo.commands.speed import _standalone

if __name__ == "__main__":
    sys.exit(_standalone(sys.argv[1:]))
