"""The conformance kit as a pytest plugin (issue 13 item 3): one item per check, a failure names its check.

The inner suites run with pytester. In-process runs load the plugin explicitly
(``-p no:attnzoo -p attnzoo.testing.pytest_plugin``) so they do not depend on how
this checkout was installed; one subprocess run checks the ``pytest11`` autoload.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

import attnzoo
from attnzoo.testing import check_attention, planned_checks

pytest_plugins = ["pytester"]

PLUGIN_ARGS = ("-p", "no:attnzoo", "-p", "attnzoo.testing.pytest_plugin", "-p", "no:cacheprovider", "-p", "no:randomly")

#: the fake variants, written into each inner test module.
FAKES = '''
import pytest
import torch
from torch import nn

import attnzoo
from attnzoo.contract import ScoreAttention
from attnzoo.testing import conformance_tests


class Good(ScoreAttention):
    def __init__(self, query_dim, key_dim=None, value_dim=None, *, need_weights=False):
        super().__init__(query_dim, key_dim, value_dim, need_weights=need_weights)
        self.proj = nn.Linear(self.query_dim, self.key_dim)

    def score(self, query, key):
        return torch.bmm(self.proj(query), key.transpose(1, 2)) / self.key_dim ** 0.5


class HidesNan(Good):
    def score(self, query, key):
        return torch.nan_to_num(super().score(query, key), nan=0.0)


GOOD = attnzoo.AttentionSpec(name="fake-good", family="test", summary="a correct variant")
HIDES = attnzoo.AttentionSpec(name="fake-hides-nan", family="test", summary="hides NaN", multihead=False)
'''


def _expected(factory: type, spec: attnzoo.AttentionSpec) -> dict[str, int]:
    counts = check_attention(factory, spec=spec).counts()
    return {"passed": counts["passed"], "skipped": counts["skipped"], "failed": counts["failed"]}


def _fakes() -> dict:
    ns: dict = {}
    exec(compile(FAKES, "<fakes>", "exec"), ns)  # the very classes the inner modules define
    return ns


def test_helper_gives_one_passing_item_per_check(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_fake=FAKES + "\ntest_good = conformance_tests(Good, spec=GOOD)\n")
    result = pytester.runpytest(*PLUGIN_ARGS, "-v")
    ns = _fakes()
    want = _expected(ns["Good"], ns["GOOD"])
    assert want["failed"] == 0 and want["passed"] > 20
    result.assert_outcomes(passed=want["passed"], skipped=want["skipped"])
    # items are named after the checks
    result.stdout.fnmatch_lines(["*test_good?gradcheck? PASSED*", "*test_good?stateful.initial-state? SKIPPED*",
                                 "*test_good?multihead.nan.propagates? PASSED*"])
    assert len(planned_checks(ns["GOOD"])) == want["passed"] + want["skipped"]


def test_marker_fails_exactly_the_broken_property(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_fake=FAKES + textwrap.dedent('''
        @pytest.mark.attnzoo_conformance(HidesNan, spec=HIDES)
        def test_kit(attnzoo_check):
            result = attnzoo_check()
            assert result.passed
    '''))
    result = pytester.runpytest(*PLUGIN_ARGS, "-rf")
    ns = _fakes()
    want = _expected(ns["HidesNan"], ns["HIDES"])
    assert want["failed"] == 1
    result.assert_outcomes(passed=want["passed"], skipped=want["skipped"], failed=1)
    result.stdout.fnmatch_lines([
        "*_ test_kit[[]nan.propagates[]] _*",
        "fake-hides-nan: conformance check 'nan.propagates' failed: NaN in query*",
        "FAILED test_fake.py::test_kit[[]nan.propagates[]] - *",
    ])
    assert "finite although they read the NaN" in result.stdout.str()


def test_marker_with_a_registered_name_and_k_selects_one_check(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_dot='''
        import pytest

        @pytest.mark.attnzoo_conformance("dot")
        def test_dot(attnzoo_check):
            attnzoo_check()
    ''')
    result = pytester.runpytest(*PLUGIN_ARGS, "-k", "gradcheck", "-v")
    result.assert_outcomes(passed=1)  # the wrapper does not re-run gradcheck
    result.stdout.fnmatch_lines(["*collected 31 items / 30 deselected / 1 selected*", "*test_dot?gradcheck? PASSED*"])
    assert len(planned_checks(attnzoo.get_spec("dot"))) == 31


def test_usage_errors_are_named(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_no_fixture='''
            import pytest

            @pytest.mark.attnzoo_conformance("dot")
            def test_no_fixture():
                pass
        ''',
        test_no_marker='''
            def test_no_marker(attnzoo_check):
                attnzoo_check()
        ''',
        test_typo='''
            import pytest

            @pytest.mark.attnzoo_conformance("scaled")
            def test_typo(attnzoo_check):
                attnzoo_check()
        ''',
    )
    result = pytester.runpytest(*PLUGIN_ARGS, "--continue-on-collection-errors")
    result.assert_outcomes(errors=3)
    out = result.stdout.str()
    assert "test_no_fixture: the test must take the 'attnzoo_check' argument and call it" in out
    assert "the 'attnzoo_check' fixture needs @pytest.mark.attnzoo_conformance" in out
    assert "scaled-dot" in out  # the unknown name's close match


def test_entry_point_declared_and_autoloaded(pytester: pytest.Pytester) -> None:
    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert pyproject["project"]["entry-points"]["pytest11"] == {"attnzoo": "attnzoo.testing.pytest_plugin"}
    # A fresh interpreter in another directory sees the installed entry point: no -p, no conftest.
    pytester.makepyfile(test_auto='''
        import pytest

        @pytest.mark.attnzoo_conformance("dot")
        def test_dot(attnzoo_check):
            attnzoo_check()
    ''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-k", "causal and not multihead", "--strict-markers")
    result.assert_outcomes(passed=1)
