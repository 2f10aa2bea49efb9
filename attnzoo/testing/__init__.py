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

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    from attnzoo.testing.pytest_plugin import conformance_tests

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
    # Lazy (PEP 562): pytest imports attnzoo.testing.pytest_plugin at the start of every
    # run in an environment with attnzoo installed, and the kit pulls in torch. The
    # pytest helper also needs pytest, which a user of check_attention alone may not have.
    if name == "conformance_tests":
        from attnzoo.testing.pytest_plugin import conformance_tests

        return conformance_tests
    if name in __all__:
        from attnzoo.testing import conformance

        return getattr(conformance, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
