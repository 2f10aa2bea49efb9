"""The conformance kit plugin authors run on their own variants.

::

    from attnzoo.testing import check_attention
    check_attention("my-variant").raise_for_failures()          # registered name
    check_attention(MyAttention, spec=MY_SPEC).raise_for_failures()   # not registered yet

In a pytest suite, one test item per check (see :mod:`attnzoo.testing.pytest_plugin`)::

    from attnzoo.testing import conformance_tests
    test_my_variant = conformance_tests("my-variant")

or from the shell: ``attnzoo check my-variant [--json]``. See
:mod:`attnzoo.testing.conformance` for the list of checks (:data:`CHECKS`).
"""

from __future__ import annotations

from typing import Any

from attnzoo.testing.conformance import (
    CHECKS,
    FAILED,
    PASSED,
    SKIPPED,
    CheckResult,
    ConformanceReport,
    check_attention,
    planned_checks,
)

__all__ = [
    "CHECKS",
    "CheckResult",
    "ConformanceReport",
    "FAILED",
    "PASSED",
    "SKIPPED",
    "check_attention",
    "conformance_tests",
    "planned_checks",
]


def __getattr__(name: str) -> Any:
    # conformance_tests needs pytest, which a user of check_attention alone may not have.
    if name == "conformance_tests":
        from attnzoo.testing.pytest_plugin import conformance_tests

        return conformance_tests
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
