"""Every registered variant (built-ins and installed plugins) passes the conformance kit (timm style)."""

from __future__ import annotations

import pytest

import attnzoo
from attnzoo.testing import check_attention

VARIANTS = attnzoo.list_attention()


@pytest.mark.parametrize("name", VARIANTS)
def test_variant_conforms(name: str) -> None:
    report = check_attention(name)
    report.raise_for_failures()
    assert report.ok
    # every capability-driven check ran or said why not
    assert all(r.status in {"passed", "skipped"} for r in report.results)
    assert all(r.message for r in report.results if r.status == "skipped")


def test_registry_is_not_empty() -> None:
    assert {"dot", "scaled-dot", "general"} <= set(VARIANTS)
