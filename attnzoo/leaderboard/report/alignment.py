"""The leaderboard's alignment diagnostics: a table per task, and the export for bertviz.

Rows carry :func:`attnzoo.diagnostics.diagnose`'s result in ``row.alignment``; this module reads
it (no model, no Lightning) for

- :func:`alignment_table` (printed by the markdown and HTML writers): per entry of a task, the best-matching
  layer/head's gold mass, alignment accuracy, AER and entropy, the mean gold mass over every layer and
  head, and the uniform-attention ablation, each the median over the entry's seeds;
- :func:`export_attention` (``attnzoo bench export-attention DIR CELL_ID``): one cell's maps in the
  layout bertviz's ``head_view`` / ``model_view`` take.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attnzoo.cell import Row

if TYPE_CHECKING:
    from attnzoo.leaderboard.report.aggregation import Entry
    from attnzoo.tasks import Task

__all__ = ["ALIGNMENT_NOTE", "alignment_table", "finding_lines", "task_of", "bertviz_payload",
           "export_attention", "find_row"]

#: what the table is and is not (printed under it)
ALIGNMENT_NOTE = (
    "Alignment on 64 held-out test examples: gold mass = mean attention weight on the task's gold source "
    "positions; align acc = how often the argmax is a gold position; AER = 1 - F1 of those links with sure "
    "links only (as Luong et al. 2015, Table 6); entropy = normalized by log(#keys a query may see), "
    "1 = uniform. 'best' is the layer/head with the most gold mass; 'uniform' is the main metric on the "
    "same examples with every attention replaced by uniform weights over its allowed keys (Wiegreffe & "
    "Pinter 2019). Hard attention is scored on its sampling distribution, the pointer network on its "
    "pointer distribution, the NTM on its read weights attributed to the source steps through its write "
    "weights. Attention weights are a diagnostic of where a model reads, not an explanation of its "
    "output (Jain & Wallace 2019). Medians over seeds."
)


def _median(values: list[float | None]) -> float | None:
    xs = [v for v in values if v is not None]
    return statistics.median(xs) if xs else None


def _f(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def _diagnostics(e: Entry) -> list[dict[str, Any]]:
    return [r.alignment for r in e.rows if r.status == "ok" and isinstance(r.alignment, dict)]


def alignment_table(entries: list[Entry]) -> tuple[list[str], list[list[str]]] | None:
    """``(headers, rows)`` for the entries of one task that have diagnostics, in the entries' order;
    None when none has them or the task has no gold alignment (then only entropy would show)."""
    rows = []
    for e in entries:
        ds = _diagnostics(e)
        if not ds or not any(d.get("gold") for d in ds):
            continue
        best = [d.get("best") or {} for d in ds]
        med = lambda key, src: _median([s.get(key) for s in src])  # noqa: E731
        metric, uniform = med("metric", ds), med("uniform_metric", ds)
        where = next((f"L{b['layer']} H{b['head']}" for b in best if "layer" in b), "–")
        rows.append([f"{e.variant} ({e.backbone})",
                     _f(med("gold_mass", best)), _f(med("align_acc", best)), _f(med("aer", best)),
                     _f(med("entropy", best)), where,
                     _f(med("gold_mass", [d.get("mean") or {} for d in ds])),
                     f"{_f(metric)} → {_f(uniform)}"])
    if not rows:
        return None
    headers = ["variant (backbone)", "gold mass", "align acc", "AER", "entropy", "best head",
               "gold mass (mean of heads)", "metric → uniform"]
    return headers, rows


def finding_lines(tasks: dict[str, list[Entry]]) -> dict[str, str]:
    """Per task with diagnostics, the sentence ``findings.md`` cites: each attention entry's gold mass
    (best-matching head, median over seeds), highest first, with its main metric and the same under
    uniform attention, e.g. ``location [seq2seq] 0.93 (1.00 → 0.06)``."""
    out = {}
    for task, entries in tasks.items():
        parts = []
        for e in entries:
            ds = [d for d in _diagnostics(e) if d.get("gold")]
            mass = _median([(d.get("best") or {}).get("gold_mass") for d in ds])
            if mass is None:
                continue
            metric, uniform = _median([d.get("metric") for d in ds]), _median([d.get("uniform_metric") for d in ds])
            parts.append((mass, f"{e.variant} [{e.backbone}] {mass:.2f} ({_f(metric)} → {_f(uniform)})"))
        if parts:
            parts.sort(key=lambda p: -p[0])
            out[task] = ("Where attention reads: gold mass of the best-matching head (the main metric on the "
                         "diagnostics' 64 test examples → the same with uniform attention): "
                         + "; ".join(p[1] for p in parts) + ".")
    return out


def task_of(row: Row) -> Task | None:
    """The row's task object (to decode its ids), or None when it cannot be built here (a plugin's task
    that is not installed, a row without its cell)."""
    cell = row.cell or {}
    name = cell.get("task") or row.task_name or row.task
    try:
        from attnzoo.tasks import create_task

        return create_task(name, **(cell.get("task_kwargs") or {}))
    except Exception:  # noqa: BLE001 - labels fall back to ids
        return None


def find_row(rows: list[Row], cell_id: str) -> Row:
    """The row whose ``cell_id`` is ``cell_id`` or starts with it (a unique prefix).

    :raises KeyError: no row, or several, match (the message says which).
    """
    exact = [r for r in rows if r.cell_id == cell_id]
    found = exact or [r for r in rows if str(r.cell_id or "").startswith(cell_id)]
    if not found:
        raise KeyError(f"CELL_ID: no row with cell id {cell_id!r}")
    if len({r.cell_id for r in found}) > 1:
        ids = ", ".join(sorted({str(r.cell_id) for r in found})[:5])
        raise KeyError(f"CELL_ID: {cell_id!r} matches several cells ({ids}); give more of it")
    return found[-1]


def bertviz_payload(row: Row) -> dict[str, Any]:
    """One row's stored maps in bertviz's encoder-decoder layout.

    ``payload["bertviz"]`` is ``{"cross_attention": [Tensor (1, heads, q, k) per layer],
    "encoder_tokens": [k names], "decoder_tokens": [q names]}``, so ``head_view(**payload["bertviz"])``
    and ``model_view(**payload["bertviz"])`` open it. Queries are the scored target positions of the
    diagnostics' example 0 (named by the target they predict), keys its source positions; for the
    Transformer the map is its rows over the source block of its sequence. The rest of the payload:
    ``cell_id``, ``variant``, ``backbone``, ``task``, ``layers`` (call sites), ``rows`` (target positions),
    ``gold`` (gold source positions per query, or None), ``averaged`` (heads stored averaged), and for
    the NTM ``memory`` (read weights over slots per query) and ``writes`` (write weights per source step).

    :raises ValueError: the row has no stored maps (diagnostics off, or a backbone without source attention).
    """
    import torch

    sample = (row.alignment or {}).get("sample")
    if not sample or not sample.get("layers"):
        raise ValueError(f"cell {row.cell_id!r} has no stored attention maps (no alignment diagnostics in its row)")
    task = task_of(row)
    src, tgt, rows = sample["src"], sample["tgt"], sample["rows"]
    enc = task.decode(src) if task else [str(i) for i in src]
    dec = task.decode([tgt[r] for r in rows], target=True) if task else [str(tgt[r]) for r in rows]
    cross = [torch.tensor(layer["heads"], dtype=torch.float32)[None] for layer in sample["layers"]]  # (1, H, q, k)
    out = {
        "bertviz": {"cross_attention": cross, "encoder_tokens": enc, "decoder_tokens": dec},
        "cell_id": row.cell_id, "task": row.task, "backbone": row.backbone,
        "variant": row.variant, "layers": [layer["name"] for layer in sample["layers"]],
        "rows": rows, "gold": sample.get("gold"), "averaged": bool(sample.get("averaged")),
    }
    for key in ("memory", "writes"):
        if sample.get(key) is not None:
            out[key] = torch.tensor(sample[key], dtype=torch.float32)
    return out


def export_attention(directory: str | Path, cell_id: str, out: str | Path | None = None) -> Path:
    """Write one cell's attention maps (:func:`bertviz_payload`) with ``torch.save``.

    :param directory: a results directory (its ``results.jsonl``).
    :param cell_id: the cell's id or a unique prefix of it.
    :param out: the file (default ``DIR/attention-<cell_id>.pt``).
    :returns: the path written. Read it back with ``torch.load(path)``.
    """
    import torch

    from attnzoo.leaderboard.report.aggregation import latest, typed_rows
    from attnzoo.leaderboard.store import read_rows

    rows = latest(typed_rows(read_rows(directory)))  # the file's JSON objects, read as Rows once
    if not rows:
        raise FileNotFoundError(f"DIR: no results in {Path(directory) / 'results.jsonl'}")
    row = find_row(rows, cell_id)
    payload = bertviz_payload(row)
    path = Path(out) if out else Path(directory) / f"attention-{row.cell_id}.pt"
    torch.save(payload, path)
    return path
