"""The conformance kit plugin authors run on their own variants.

::

    from attnzoo.testing import check_attention
    check_attention("my-variant").raise_for_failures()          # registered name
    check_attention(MyAttention, spec=MY_SPEC).raise_for_failures()   # not registered yet

or from the shell: ``attnzoo check my-variant [--json]``. See
:mod:`attnzoo.testing.conformance` for the list of checks (:data:`CHECKS`).
"""

from __future__ import annotations

from attnzoo.testing.conformance import (
    CHECKS,
    FAILED,
    PASSED,
    SKIPPED,
    CheckResult,
    ConformanceReport,
    check_attention,
)

__all__ = ["CHECKS", "CheckResult", "ConformanceReport", "FAILED", "PASSED", "SKIPPED", "check_attention"]
