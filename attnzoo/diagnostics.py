"""Alignment diagnostics: score a variant's attention against a task's gold alignment.

On the synthetic tasks the right alignment is known (:meth:`attnzoo.tasks.Task.gold_alignment`), so
every attention map can be scored against it. The metric functions are pure (torch only): weights
``[..., Q, K]`` whose rows are distributions over keys, ``gold`` bool ``[..., Q, K]`` (broadcastable),
``allowed`` bool ``[..., Q, K]`` the keys each query may see. A row with no gold position is not scored
(an unscored target position); a row with no allowed key counts nowhere.

- :func:`gold_mass`: mean weight on the gold positions.
- :func:`alignment_accuracy`: how often the argmax key is a gold one.
- :func:`alignment_error_rate`: Och & Ney's AER with sure links only, ``1 - F1`` of the argmax links
  against the gold links (Luong et al. 2015, Table 6, report it for global vs local attention).
- :func:`normalized_entropy`: ``H(w) / log(#allowed keys)``: 0 = one key, 1 = uniform.

:func:`diagnose` runs a model on one held-out batch, records every attention call (all layers, all
heads), scores each, and measures the uniform-attention ablation (Wiegreffe & Pinter 2019) through
:func:`attnzoo.contract.uniform_attention`. Attention weights are a diagnostic of where a model
reads, not an explanation of its output (Jain & Wallace 2019).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from attnzoo.contract import Attention, normalize_mask, uniform_attention

__all__ = [
    "gold_mass", "alignment_accuracy", "alignment_error_rate", "normalized_entropy", "uniform_weights",
    "batch_metric", "AttentionMap", "collect_maps", "diagnose", "DIAGNOSTIC_BATCH", "METRICS",
]  # fmt: skip

#: examples of the held-out batch the diagnostics read (the first of the task's test split)
DIAGNOSTIC_BATCH = 64
#: the per-head scores, in the order tables show them
METRICS = ("gold_mass", "align_acc", "aer", "entropy")
#: most weights kept of the sample example's maps (layers x heads x rows x source keys), so a row stays
#: small: past it the heads of each layer are stored averaged, and past it still only the first rows
SAMPLE_VALUES = 8192


def _scored_rows(gold: Tensor, weights: Tensor) -> Tensor:
    return gold.expand_as(weights).any(dim=-1)  # (..., Q)


def _mean(values: Tensor, rows: Tensor) -> float:
    n = int(rows.sum())
    return float((values * rows).sum() / n) if n else math.nan


def gold_mass(weights: Tensor, gold: Tensor) -> float:
    """Mean over scored rows of ``sum_k w[q, k] * gold[q, k]``: 1 when all weight is on gold keys.

    :param weights: ``[..., Q, K]``; :param gold: bool, broadcastable to ``weights``.
    :returns: a float, NaN when no row has a gold position.
    """
    rows = _scored_rows(gold, weights)
    return _mean((weights * gold).sum(dim=-1), rows)


def _argmax_hits(weights: Tensor, gold: Tensor) -> tuple[Tensor, Tensor]:
    rows = _scored_rows(gold, weights)  # (..., Q)
    top = weights.argmax(dim=-1, keepdim=True)  # (..., Q, 1)
    hit = gold.expand_as(weights).gather(-1, top).squeeze(-1)  # (..., Q)
    return hit & rows, rows


def alignment_accuracy(weights: Tensor, gold: Tensor) -> float:
    """Fraction of scored rows whose argmax key is a gold one (ties: the first maximum, as ``argmax``).

    :param weights: ``[..., Q, K]``; :param gold: bool, broadcastable. NaN when no row is scored.
    """
    hit, rows = _argmax_hits(weights, gold)
    return _mean(hit.float(), rows)


def alignment_error_rate(weights: Tensor, gold: Tensor) -> float:
    """AER with sure links only (Och & Ney 2003): ``1 - 2|A ∩ S| / (|A| + |S|)`` = ``1 - F1``.

    ``A`` holds one predicted link per scored row (its argmax key), ``S`` every gold link of the scored
    rows. With one gold key per row it equals ``1 - alignment_accuracy``; with several (a date's field)
    recall is lower. NaN when no row is scored.
    """
    hit, rows = _argmax_hits(weights, gold)
    predicted = int(rows.sum())
    sure = int((gold.expand_as(weights) & rows[..., None]).sum())
    if predicted + sure == 0:
        return math.nan
    return 1.0 - 2.0 * int(hit.sum()) / (predicted + sure)


def normalized_entropy(weights: Tensor, allowed: Tensor | None = None, rows: Tensor | None = None) -> float:
    """Mean of ``H(w_q) / log(n_q)`` over rows, ``n_q`` the keys query q may see (``0 log 0 = 0``).

    Rows with fewer than two allowed keys have no spread to measure and are left out.

    :param weights: ``[..., Q, K]``; :param allowed: bool, broadcastable (None: every key).
    :param rows: bool ``[..., Q]`` (broadcastable), the rows to average (None: every row).
    :returns: in ``[0, 1]`` (0: one key takes all, 1: uniform); NaN when no row counts.
    """
    if allowed is None:
        allowed = torch.ones_like(weights, dtype=torch.bool)
    allowed = allowed.expand_as(weights)
    n = allowed.sum(dim=-1)  # (..., Q)
    w = weights.clamp_min(0) * allowed
    h = -(torch.where(w > 0, w * w.clamp_min(torch.finfo(w.dtype).tiny).log(), torch.zeros_like(w))).sum(dim=-1)
    use = n >= 2
    if rows is not None:
        use = use & rows.expand_as(use)
    return _mean(h / n.clamp_min(2).to(w.dtype).log(), use)


def uniform_weights(allowed: Tensor) -> Tensor:
    """``1 / #allowed`` on the allowed keys of each row, 0 elsewhere (a row with none: zeros)."""
    return allowed.float() / allowed.sum(dim=-1, keepdim=True).clamp_min(1)


def batch_metric(logits: Tensor, tgt: Tensor, mask: Tensor | None, metric: str) -> float:
    """The task's main metric on one batch, as the harness computes it (token or exact accuracy).

    :param logits: ``[N, T, C]``; tgt ``[N, T]``; mask bool ``[N, T]`` (None: every position scored).
    """
    if mask is None:
        mask = torch.ones_like(tgt, dtype=torch.bool)
    correct = (logits.argmax(dim=-1) == tgt) & mask  # (N, T)
    if metric == "exact_acc":
        return float((correct | ~mask).all(dim=1).float().mean())
    return float(correct.sum() / mask.sum().clamp_min(1))


@dataclass
class AttentionMap:
    """One recorded attention of a model, its rows cut to the target positions.

    :ivar layer: which call site (``"blocks.0.attn"``; the NTM's ``"memory"``).
    :ivar weights: ``[B, H, T, K]``; keys ``0 .. S-1`` are the source positions (the Transformer's
        later keys are its target inputs), so gold ``[B, T, S]`` is padded with False to K.
    :ivar allowed: bool ``[B, T, K]``, the keys each row may see.
    :ivar entropy_weights: what the entropy is taken of, when not ``weights`` (the NTM: its read
        weights over memory slots ``[B, H, T, slots]``, ``weights`` being their attribution to sources).
    :ivar writes: the NTM's write weights at the source steps, ``[B, S, slots]``.
    """

    layer: str
    weights: Tensor
    allowed: Tensor
    entropy_weights: Tensor | None = None
    writes: Tensor | None = None


def _outermost_attention(model: nn.Module) -> list[tuple[str, Attention]]:
    found: list[tuple[str, Attention]] = []
    for name, module in model.named_modules():
        if isinstance(module, Attention) and not any(name.startswith(p + ".") for p, _ in found):
            found.append((name, module))
    return found


@contextmanager
def _recording(model: nn.Module) -> Iterator[dict[str, list[tuple[Tensor | None, Any]]]]:
    """Every outermost attention call of ``model`` with ``need_weights=True`` forced:
    ``{name: [(mask [B, Tq, Tk] or None, AttentionOutput), ...]}`` in call order."""
    calls: dict[str, list[tuple[Tensor | None, Any]]] = {}
    handles = []

    def pre(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        return args, {**kwargs, "need_weights": True}

    def post(name: str):
        def hook(module: nn.Module, args: tuple, kwargs: dict, out: Any) -> None:
            calls.setdefault(name, []).append((kwargs.get("mask"), out))
        return hook

    try:
        for name, module in _outermost_attention(model):
            handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
            handles.append(module.register_forward_hook(post(name), with_kwargs=True))
        yield calls
    finally:
        for h in handles:
            h.remove()


def _distribution(out: Any) -> Tensor:
    """``[B, H, Tq, Tk]``: a sampler's distribution (hard attention's ``aux["probs"]``), else per-head
    weights, else the weights as one head."""
    aux = out.aux or {}
    w = aux.get("probs")
    if w is None:
        w = aux.get("head_weights", out.weights)
    return (w if w.dim() == 4 else w[:, None]).float()


def _allowed(mask: Tensor | None, b: int, tq: int, tk: int, device: torch.device) -> Tensor:
    if mask is None:
        return torch.ones(b, tq, tk, dtype=torch.bool, device=device)
    return normalize_mask(mask, b, tq, tk)


def collect_maps(model: nn.Module, src: Tensor, tgt: Tensor) -> tuple[list[AttentionMap], Tensor] | None:
    """Run ``model(src, tgt)`` once, recording every attention layer and head.

    Knows the backbones' layouts: the Transformer (one self-attention call per block; rows from
    ``readout_start``), the seq2seq and pointer backbones (cross-attention over the source, one call
    per step or one for all), the NTM (read weights over memory slots, attributed to the source steps
    through the write weights: ``A[t, s] = sum_k r_t[k] w_s[k] / sum_{u <= S+t} w_u[k]``, the share of
    slot k's writes so far that step s made; erasure ignored).

    :returns: ``(maps, logits [B, T, C])``, or None for a model whose attention does not map output
        positions to source positions (the bottleneck's encoder, a baseline without attention).
    """
    b, s = src.shape
    t = tgt.shape[1]
    with _recording(model) as calls:
        out = model(src, tgt)
    if not calls:
        return None
    maps: list[AttentionMap] = []
    layout = getattr(model, "attention_key_layout", None)
    if callable(getattr(model, "readout_start", None)):  # the Transformer: one sequence, causal
        first = model.readout_start(s)
        for name, ((mask, o),) in calls.items():
            w = _distribution(o)  # (B, H, L, L)
            allowed = _allowed(mask, b, w.shape[2], w.shape[3], src.device)
            maps.append(AttentionMap(name, w[:, :, first : first + t], allowed[:, first : first + t]))
    elif layout == "memory":  # the NTM: one call per controller step, source then target inputs
        ((name, steps),) = calls.items()
        reads = torch.cat([o.weights for _, o in steps], dim=1).float()  # (B, L, slots)
        writes = torch.cat([o.aux["write_weights"] for _, o in steps], dim=1).float()  # (B, L, slots)
        written = writes.cumsum(dim=1)  # (B, L, slots) each slot's total write weight so far
        r, upto = reads[:, s : s + t], written[:, s : s + t]  # (B, T, slots)
        share = writes[:, None, :s] / upto[:, :, None].clamp_min(1e-12)  # (B, T, S, slots)
        attributed = (share * r[:, :, None]).sum(dim=-1)  # (B, T, S)
        allowed = torch.ones(b, t, s, dtype=torch.bool, device=src.device)
        maps.append(AttentionMap(name, attributed[:, None], allowed, entropy_weights=r[:, None], writes=writes[:, :s]))
    elif layout == "src" and not hasattr(model, "blocks"):  # cross-attention over the source
        for name, steps in calls.items():
            ws = [_distribution(o) for _, o in steps]  # each (B, H, Tq, S)
            allowed = torch.cat([_allowed(m, b, w.shape[2], w.shape[3], src.device) for (m, _), w in zip(steps, ws)], 1)
            maps.append(AttentionMap(name, torch.cat(ws, dim=2), allowed))
    else:
        return None
    return maps, out.logits


def _scores(m: AttentionMap, gold: Tensor | None) -> list[dict[str, float | None]]:
    """Per head of ``m``: gold mass, alignment accuracy, AER (None without gold) and entropy."""
    out = []
    rows = gold.any(dim=-1) if gold is not None else m.allowed.any(dim=-1)  # (B, T)
    if gold is not None and gold.shape[-1] < m.weights.shape[-1]:
        gold = torch.cat([gold, gold.new_zeros(*gold.shape[:-1], m.weights.shape[-1] - gold.shape[-1])], dim=-1)
    ent_w = m.entropy_weights if m.entropy_weights is not None else m.weights
    ent_allowed = m.allowed if m.entropy_weights is None else None
    for h in range(m.weights.shape[1]):
        w = m.weights[:, h]  # (B, T, K)
        row: dict[str, float | None] = {"gold_mass": None, "align_acc": None, "aer": None}
        if gold is not None:
            row = {"gold_mass": gold_mass(w, gold), "align_acc": alignment_accuracy(w, gold),
                   "aer": alignment_error_rate(w, gold)}
        row["entropy"] = normalized_entropy(ent_w[:, h], ent_allowed, rows)
        out.append({k: (None if v is None or math.isnan(v) else round(v, 4)) for k, v in row.items()})
    return out


def _mean_of(heads: list[dict[str, Any]], key: str) -> float | None:
    values = [h[key] for h in heads if h.get(key) is not None]
    return round(sum(values) / len(values), 4) if values else None


@torch.no_grad()
def diagnose(model: nn.Module, task: Any, batch: dict[str, Tensor], metric: str) -> dict[str, Any] | None:
    """The alignment diagnostics of a trained ``model`` on one held-out ``batch``.

    :param task: the model's task (its :meth:`~attnzoo.tasks.Task.gold_alignment`).
    :param metric: the task's main metric (``"exact_acc"`` or ``"token_acc"``).
    :returns: None when the model records no source attention; else ``{"n", "gold", "heads":
        [{"layer", "head", "gold_mass", "align_acc", "aer", "entropy"}, ...], "mean": {...},
        "best": {...} (the head with the most gold mass), "metric", "uniform_metric"}`` where
        ``metric`` is the main metric on this batch and ``uniform_metric`` the same under
        :func:`~attnzoo.contract.uniform_attention`.
    """
    src, tgt, mask = batch["src"], batch["tgt"], batch.get("tgt_mask")
    was_training = model.training
    try:
        model.eval()
        collected = collect_maps(model, src, tgt)
        if collected is None:
            return None
        maps, logits = collected
        with uniform_attention():
            uniform_logits = model(src, tgt).logits
    finally:
        model.train(was_training)
    gold = task.gold_alignment(batch)
    heads = []
    for layer, m in enumerate(maps):
        for h, row in enumerate(_scores(m, gold)):
            heads.append({"layer": layer, "name": m.layer, "head": h, **row})
    mean = {k: _mean_of(heads, k) for k in METRICS}
    sample = _sample(maps, task, batch, gold)
    ranked = [h for h in heads if h["gold_mass"] is not None]
    best = max(ranked, key=lambda h: h["gold_mass"]) if ranked else None
    return {
        "n": int(src.shape[0]),
        "gold": gold is not None,
        "heads": heads,
        "mean": mean,
        "best": dict(best) if best else None,
        "metric": round(batch_metric(logits, tgt, mask, metric), 4),
        "uniform_metric": round(batch_metric(uniform_logits, tgt, mask, metric), 4),
        "sample": sample,
    }


def _sample(maps: list[AttentionMap], task: Any, batch: dict[str, Tensor], gold: Tensor | None) -> dict[str, Any]:
    """Example 0's maps, every layer and head, over its scored target rows and the source keys:
    ``{"src", "tgt", "rows", "layers": [{"name", "heads": [H][rows][S]}], "gold": [[S positions] per
    row] | None, "averaged": bool}`` (weights rounded to 3 decimals; at most :data:`SAMPLE_VALUES`). For the NTM the map is its read
    weights attributed to source steps; ``"memory"`` then holds the raw read weights ``[rows][slots]``
    and ``"writes"`` the write weights of the source steps ``[S][slots]`` (head-averaged)."""
    src, tgt, mask = batch["src"][0], batch["tgt"][0], batch.get("tgt_mask")
    s = src.shape[0]
    rows = torch.arange(tgt.shape[0]) if mask is None else mask[0].cpu().nonzero().flatten()
    values = sum(m.weights.shape[1] for m in maps) * len(rows) * s
    averaged = values > SAMPLE_VALUES
    rows = rows[: max(1, SAMPLE_VALUES // (len(maps) * s))] if averaged else rows
    layers = []
    for m in maps:
        w = m.weights[0][:, rows.to(m.weights.device), :s].cpu()  # (H, R, S)
        if averaged:
            w = w.mean(dim=0, keepdim=True)
        layers.append({"name": m.layer, "heads": w.mul(1000).round().div(1000).tolist()})
    out: dict[str, Any] = {"src": src.tolist(), "tgt": tgt.tolist(), "rows": rows.tolist(), "layers": layers,
                           "averaged": averaged, "gold": None}
    if gold is not None:
        out["gold"] = [gold[0, r].nonzero().flatten().tolist() for r in rows.tolist()]
    ntm = [m for m in maps if m.entropy_weights is not None]
    if ntm:
        out["memory"] = ntm[0].entropy_weights[0, 0][rows].mul(1000).round().div(1000).tolist()
        out["writes"] = ntm[0].writes[0].mul(1000).round().div(1000).tolist()
    return out
