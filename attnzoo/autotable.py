"""Which fast kernel ``impl="auto"`` may take, from measurements on CUDA (issue 25).

``impl="auto"`` must never pick a kernel that measured slower than the path it would replace.
:data:`AUTO_MIN_KEYS` says, per (kernel, dtype, mask kind), from how many keys on the kernel
measured faster than its baseline *at that length and every longer one measured*; ``None``
(or a missing entry) means it never measured faster, or was never measured, and auto does not
take it. Explicit ``impl="flex"`` / ``impl="triton"`` still run the kernel.

The table is written from a results file, not by hand: ``benchmarks/gpu_check.sh`` measures
every kernel against its baseline on the GPU it runs on and writes
``benchmarks/results/speed-gpu/auto-table.csv``; ``python benchmarks/auto_table.py FILE``
prints the table that file implies, and ``tests/test_autotable.py`` fails while the committed
file and this table disagree.

Kernels and their baselines:

- ``"flex"``: FlexAttention (scaled-dot/dot/general) against SDPA. Mask kinds: ``"causal"``
  (the backbone's causal mask without padding, which SDPA runs with ``is_causal=True``) and
  ``"masked"`` (any other per-query bool mask, which SDPA gets as a tensor).
- ``"triton-additive"``: the fused additive (Bahdanau) kernel against the chunked reference
  path (additive, pointer); mask kind ``"any"``.

This module imports nothing beyond the standard library, so the library can read the table
without torch's compile stack or Triton.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["AUTO_MIN_KEYS", "auto_min_keys", "auto_takes", "thresholds_from_rows", "thresholds_from_csv",
           "CSV_FIELDS"]

#: (kernel, dtype, mask kind) -> fewest keys from which ``impl="auto"`` takes the kernel on CUDA;
#: None: never (it measured slower everywhere, or was not measured).
#: Source: benchmarks/results/speed-gpu/auto-table.csv (one H200, 2026-12-04: FlexAttention
#: 2.3-2.8x slower than SDPA at T = 1024, 2048, 4096 under a causal mask tensor, fp32).
AUTO_MIN_KEYS: dict[tuple[str, str, str], int | None] = {
    ("flex", "float32", "masked"): None,
}

#: columns of the results file (one row per kernel, dtype, mask kind and length)
CSV_FIELDS = ("kernel", "baseline", "dtype", "mask", "T", "kernel_ms", "baseline_ms")


def auto_min_keys(kernel: str, dtype: str, mask: str) -> int | None:
    """:data:`AUTO_MIN_KEYS`' entry, None where there is none."""
    return AUTO_MIN_KEYS.get((kernel, dtype, mask))


def auto_takes(kernel: str, dtype: str, mask: str, num_keys: int) -> bool:
    """Whether ``impl="auto"`` takes ``kernel`` for this dtype (``"float32"``, ``"bfloat16"``...),
    mask kind and number of keys: only where it measured faster from this many keys on."""
    least = auto_min_keys(kernel, dtype, mask)
    return least is not None and num_keys >= least


def thresholds_from_rows(rows: Iterable[Mapping[str, str]]) -> dict[tuple[str, str, str], int | None]:
    """The table a set of measurements implies.

    For each (kernel, dtype, mask) the smallest measured T such that the kernel was faster than
    its baseline at T and at every longer measured T; None when it lost at the longest one.
    A row whose kernel time is empty (it failed or timed out) counts as a loss.

    :param rows: mappings with the :data:`CSV_FIELDS` (strings, as csv.DictReader gives them).
    """
    by: dict[tuple[str, str, str], list[tuple[int, bool]]] = {}
    for r in rows:
        missing = [f for f in CSV_FIELDS if f not in r]
        if missing:
            raise ValueError(f"rows: expected the columns {', '.join(CSV_FIELDS)}, a row lacks {', '.join(missing)}")
        kernel_ms, base_ms = str(r["kernel_ms"]).strip(), str(r["baseline_ms"]).strip()
        wins = bool(kernel_ms) and bool(base_ms) and float(kernel_ms) < float(base_ms)
        by.setdefault((r["kernel"], r["dtype"], r["mask"]), []).append((int(r["T"]), wins))
    table: dict[tuple[str, str, str], int | None] = {}
    for key, points in by.items():
        least = None
        for t, wins in sorted(points, reverse=True):  # from the longest length down
            if not wins:
                break
            least = t
        table[key] = least
    return table


def thresholds_from_csv(path: str | Path) -> dict[tuple[str, str, str], int | None]:
    """:func:`thresholds_from_rows` of a results file with the :data:`CSV_FIELDS` header."""
    with open(path, newline="") as f:
        return thresholds_from_rows(csv.DictReader(f))
