"""``impl="auto"`` follows measurements (issue 25, item 2): the table and the results file agree,
the table's rule (faster at a length and every longer one), and auto never takes an unmeasured kernel."""

from __future__ import annotations

from pathlib import Path

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnzoo import autotable
from attnzoo.contract import causal_mask, mark_causal
from attnzoo.mechanisms import dot as dotmod

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "speed-gpu" / "auto-table.csv"


def test_table_is_what_the_committed_results_file_implies() -> None:
    assert autotable.thresholds_from_csv(RESULTS) == autotable.AUTO_MIN_KEYS


def test_flex_never_auto_where_it_measured_slower() -> None:
    # The H200 run (fp32, causal mask as a tensor): Flex lost at every length.
    assert not any(autotable.auto_takes("flex", "float32", "masked", t) for t in (1024, 4096, 1 << 20))
    # Never measured: never taken.
    assert not autotable.auto_takes("flex", "bfloat16", "causal", 1 << 20)
    assert not autotable.auto_takes("triton-additive", "float32", "any", 1 << 20)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0.1, 10), st.floats(0.1, 10)), min_size=1, max_size=6))
def test_threshold_is_the_shortest_length_won_from_there_on(times: list[tuple[float, float]]) -> None:
    lengths = [256 << i for i in range(len(times))]
    rows = [{"kernel": "k", "baseline": "b", "dtype": "float32", "mask": "causal", "T": str(t),
             "kernel_ms": f"{k}", "baseline_ms": f"{b}"} for t, (k, b) in zip(lengths, times)]
    least = autotable.thresholds_from_rows(rows)[("k", "float32", "causal")]
    wins = [k < b for k, b in times]
    if least is None:
        assert not wins[-1]
    else:
        i = lengths.index(least)
        assert all(wins[i:]) and (i == 0 or not wins[i - 1])


def test_failed_kernel_row_is_a_loss_and_bad_rows_are_named() -> None:
    rows = [{"kernel": "k", "baseline": "b", "dtype": "bfloat16", "mask": "masked", "T": "1024",
             "kernel_ms": "", "baseline_ms": "3.0"}]
    assert autotable.thresholds_from_rows(rows) == {("k", "bfloat16", "masked"): None}
    try:
        autotable.thresholds_from_rows([{"kernel": "k"}])
    except ValueError as exc:
        assert "kernel_ms" in str(exc)
    else:
        raise AssertionError("a row without the columns was accepted")


def test_mask_kinds() -> None:
    b, t = 2, 6
    causal = causal_mask(t)[None].expand(b, t, t).clone()
    assert dotmod.mask_kind(None) == "none"
    assert dotmod.mask_kind(causal) == "masked"
    assert dotmod.mask_kind(mark_causal(causal)) == "causal"
    assert dotmod.mask_kind(torch.ones(b, t, dtype=torch.bool)[:, None].expand(b, t, t)) == "keys"
