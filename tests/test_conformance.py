"""Every registered variant (built-ins and installed plugins) passes the conformance kit (timm style)."""

from __future__ import annotations

import pytest

import attnzoo
from attnzoo.testing import check_attention

VARIANTS = attnzoo.list_attention()

#: Variants whose NaN propagation is being fixed in their own files (issue 12: hard
#: points at position 0 with weight 1.0; local-p's fix has landed). Only the
#: NaN checks may fail for them (reported as xfail); anything else fails the test.
#: Once a fix lands the test simply passes; then remove the name here.
NAN_FIX_PENDING: set[str] = set()  # every variant propagates NaN now
NAN_CHECKS = {"nan.propagates", "multihead.nan.propagates"}


@pytest.mark.parametrize("name", VARIANTS)
def test_variant_conforms(name: str) -> None:
    report = check_attention(name)
    failed = {r.name for r in report.failures}
    if name in NAN_FIX_PENDING and failed:
        assert failed <= NAN_CHECKS, str(report)
        pytest.xfail(f"{name}: NaN propagation pending in its own module ({', '.join(sorted(failed))})")
    report.raise_for_failures()
    assert report.ok
    # every capability-driven check ran or said why not
    assert all(r.status in {"passed", "skipped"} for r in report.results)
    assert all(r.message for r in report.results if r.status == "skipped")


def test_registry_is_not_empty() -> None:
    assert {"dot", "scaled-dot", "general"} <= set(VARIANTS)
