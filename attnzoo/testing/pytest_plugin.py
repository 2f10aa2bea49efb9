"""The conformance kit as a pytest plugin: one test item per check, named after the property.

Installed with attnzoo (entry point ``attnzoo`` in the ``pytest11`` group, as
hypothesis and pytest-benchmark do), so a plugin author's suite needs no conftest.
Two ways to use it; both give items such as ``test_my_variant[gradcheck]`` and
``test_my_variant[multihead.causal]``, and a broken property fails exactly its item.

The helper (works with the plugin disabled too, ``-p no:attnzoo``)::

    # tests/test_conformance.py of the plugin package
    from attnzoo.testing import conformance_tests

    test_my_variant = conformance_tests("my-variant")                    # registered name
    test_my_class = conformance_tests(MyAttention, spec=MY_SPEC)         # not registered yet
    test_gumbel = conformance_tests("hard", estimator="gumbel")          # variant options

The marker and fixture, for a test that wants to do more around each check::

    import pytest

    @pytest.mark.attnzoo_conformance("my-variant", query_dim=16)
    def test_kit(attnzoo_check):
        result = attnzoo_check()   # fails the item naming the check and why; skips a skipped check
        assert result.passed

A failing item reads ``my-variant: conformance check 'nan.propagates' failed: ...``;
a check whose capability the spec does not claim is reported as skipped with the
reason. Each item runs its one check (``check_attention(..., checks=[name])``),
so ``-k gradcheck`` runs only gradcheck. The marker takes the arguments of
:func:`~attnzoo.testing.check_attention`: the variant (name or factory), then
``spec=``, ``query_dim=``, ``key_dim=``, ``value_dim=``, ``seed=`` and variant options.

For other CI systems, ``attnzoo check my-variant --json`` prints one JSON object per check.

This module imports only pytest at load time; the kit (and torch) load when a test
uses it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from attnzoo.spec import AttentionSpec
    from attnzoo.testing.conformance import CheckResult

__all__ = ["ConformanceCheck", "conformance_tests", "MARKER"]

#: the marker's name: ``@pytest.mark.attnzoo_conformance(variant, **options)``.
MARKER = "attnzoo_conformance"
_FIXTURE = "attnzoo_check"


@dataclass(frozen=True)
class _Target:
    """What to check: a registered name or a factory, its spec, and check_attention's options."""

    variant: str | Callable[..., Any]
    spec: AttentionSpec | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        if isinstance(self.variant, str):
            return self.variant
        return self.spec.name if self.spec is not None else getattr(self.variant, "__name__", repr(self.variant))

    def resolved_spec(self) -> AttentionSpec:
        from attnzoo.spec import AttentionSpec

        if isinstance(self.spec, AttentionSpec):
            return self.spec
        if self.spec is not None:
            raise TypeError(f"spec: expected an attnzoo.AttentionSpec, got {type(self.spec).__name__}")
        if isinstance(self.variant, str):
            from attnzoo.registry import get_spec

            return get_spec(self.variant)  # UnknownAttentionError with close matches
        raise TypeError(f"{MARKER}: a factory ({self.label}) needs its AttentionSpec as spec=")

    def names(self) -> list[str]:
        from attnzoo.testing.conformance import planned_checks

        return planned_checks(self.resolved_spec())


@dataclass(frozen=True)
class ConformanceCheck:
    """One conformance check of one variant, as handed to a test by the ``attnzoo_check`` fixture.

    :ivar name: the check's name (a key of :data:`~attnzoo.testing.CHECKS`, or ``multihead.<check>``).
    """

    target: _Target
    name: str

    def run(self) -> CheckResult:
        """Run this check alone and return its :class:`~attnzoo.testing.CheckResult` (never raises for a failure)."""
        from attnzoo.testing.conformance import check_attention

        report = check_attention(self.target.variant, spec=self.target.spec, checks=[self.name], **self.target.options)
        return report.get(self.name)

    def __call__(self) -> CheckResult:
        """Run the check: fail the test naming the property, skip it when the spec rules it out, else return the result."""
        result = self.run()
        if result.failed:
            pytest.fail(f"{self.target.label}: conformance check {self.name!r} failed: {result.message}", pytrace=False)
        if result.status == "skipped":
            pytest.skip(f"{self.name}: {result.message}")
        return result

    def __repr__(self) -> str:
        return f"ConformanceCheck({self.target.label!r}, {self.name!r})"


def _target_from(args: tuple[Any, ...], kwargs: dict[str, Any], where: str) -> _Target:
    if len(args) != 1:
        raise TypeError(f"{where}: expected one variant (a registered name or a factory), got {len(args)} positional argument(s)")
    variant = args[0]
    if not (isinstance(variant, str) or callable(variant)):
        raise TypeError(f"{where}: expected a variant name or a factory, got {type(variant).__name__}")
    opts = dict(kwargs)
    return _Target(variant, opts.pop("spec", None), opts)


def _parametrize(target: _Target) -> tuple[list[ConformanceCheck], list[str]]:
    names = target.names()
    return [ConformanceCheck(target, n) for n in names], names


def conformance_tests(variant: str | Callable[..., Any], **kwargs: Any) -> Callable[[ConformanceCheck], None]:
    """A test function parametrized over every check of ``variant``: bind it to a ``test_*`` name.

    ::

        test_my_variant = conformance_tests("my-variant")

    :param variant: a registered name, or a factory ``factory(query_dim, key_dim, value_dim, **options)``.
    :param kwargs: :func:`~attnzoo.testing.check_attention`'s keywords (``spec=`` for a factory,
        ``query_dim=``, ``seed=``, ...) and variant options.
    :returns: a pytest test function with one parameter set per check, ids = check names.
    :raises UnknownAttentionError: an unregistered name (at import of the test module, with close matches).
    """
    target = _target_from((variant,), kwargs, "conformance_tests")
    checks, ids = _parametrize(target)

    @pytest.mark.parametrize(_FIXTURE, checks, ids=ids)
    def test_conformance(attnzoo_check: ConformanceCheck) -> None:
        attnzoo_check()

    test_conformance.__doc__ = f"attnzoo conformance kit on {target.label}, one item per check."
    return test_conformance


# --------------------------------------------------------------------------- pytest hooks


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(variant, *, spec=None, query_dim=8, seed=0, **options): run the attnzoo conformance kit "
        f"on VARIANT, one test item per check; the test takes the '{_FIXTURE}' fixture and calls it",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker(MARKER)
    if marker is None:
        return
    where = f"@pytest.mark.{MARKER} on {metafunc.function.__name__}"
    # pytrace=False: a collection error that reads as one line, not a trace through the registry.
    if _FIXTURE not in metafunc.fixturenames:
        pytest.fail(f"{where}: the test must take the '{_FIXTURE}' argument and call it", pytrace=False)
    from attnzoo.errors import AttnzooError

    try:
        checks, ids = _parametrize(_target_from(tuple(marker.args), dict(marker.kwargs), where))
    except (AttnzooError, TypeError, ValueError) as exc:
        problem = f"{where}: {exc}"
    else:
        metafunc.parametrize(_FIXTURE, checks, ids=ids)
        return
    pytest.fail(problem, pytrace=False)  # outside the except: no "during handling" chain


@pytest.fixture
def attnzoo_check(request: pytest.FixtureRequest) -> ConformanceCheck:
    """One conformance check; parametrized by ``@pytest.mark.attnzoo_conformance(variant)`` (this body runs without it)."""
    pytest.fail(
        f"{request.node.nodeid}: the '{_FIXTURE}' fixture needs @pytest.mark.{MARKER}(\"variant-name\") on the test "
        f"(or use attnzoo.testing.conformance_tests)",
        pytrace=False,
    )
