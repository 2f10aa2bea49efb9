"""Forward+backward time and peak memory of every variant vs. SDPA and a naive reference (``attnzoo speed``).

For each registered variant (plugins included) matching ``--variants`` and each
sequence length T, one training step is timed: build inputs ``[B, T, D]`` that
require grad, run the variant (fast path: ``need_weights=False``), sum the
context (plus ``aux["log_prob"]`` for non-differentiable variants, as the
REINFORCE estimator would), and backpropagate. Beside the variants run two
references on the same shapes:

- ``[sdpa]``: ``F.scaled_dot_product_attention(q, k, v)`` on ``(B, 1, T, D)`` views (with one head), so
  SDPA runs its fused kernel (flash on the CPU and CUDA) instead of the math kernel it takes for 3-D
  inputs: the reference is SDPA at its fastest;
- ``[naive]``: ``softmax(q k^T / sqrt(d)) v`` with the T x T matrix materialised.

With ``--heads H > 1`` variants that allow it run inside
:class:`~attnzoo.multihead.MultiHeadAttention` and the references get the same
four projections, so the comparison stays like for like.

How the variants are called: self-attention variants get ``m(x)``; cross-only
variants ``m(q, k, v)`` with Tq = Tk = T; query-only stateful variants (NTM)
``m(x, state=m.initial_state(B))``. Modules are built with their default
kwargs (``--option 'PATTERN:key=value'`` changes them, e.g. ``-o
'local-*:window=32'``) and are in train mode (hard attention samples). Each
step reseeds torch's generator first, so a stochastic variant draws the same
samples and coin tosses in every repeat and the best-of-repeats cannot pick a
lucky cheap draw.

Denormal floats are flushed to zero for the run (``--no-flush-denormal`` keeps
them): an unscaled score such as ``dot`` on ``randn`` inputs of width 64 puts
most of ``exp(s - max)`` into the denormal range, which x86 CPUs compute about
5x slower; with denormals kept, ``dot`` (one SDPA call) times 4-5x SDPA's
``1/sqrt(d)``-scaled call, a figure about the CPU's slow path, not the mechanism.

What is measured:

- **time**: the best (minimum, as timeit) of ``--repeats`` samples, each the mean wall-clock
  milliseconds of as many back-to-back forward+backward steps as last ``--min-sample-ms``
  (at least one; timeit's autorange, so a 3 ms step is not judged on one noisy run),
  after one warm-up step (CUDA: synchronised). At each length every series is
  built first and the samples run round-robin across series, so load from other
  processes disturbs all of them alike and the ratios stay fair.
- **peak memory**: CUDA: ``torch.cuda.max_memory_allocated`` minus what was
  allocated before the step. CPU: from ``torch.profiler`` (``profile_memory=True``)
  allocation events: the running sum of bytes allocated minus bytes freed by
  the CPU allocator during one step, its maximum. It counts tensors the step
  creates (activations kept for backward, gradients, workspaces), not the
  inputs and parameters that existed before; it is not process RSS.

A series may be a variant with call settings in brackets, ``NAME[key=value,...]``:
``impl=...`` and other constructor kwargs (``additive[impl='triton']``, the fused kernel),
``causal=True`` (the call gets a causal mask tagged by :func:`attnzoo.contract.mark_causal`, as
the Transformer passes it: SDPA's ``is_causal`` path, flash on CUDA) and ``grad=q``/``grad=kv``
(a cross call ``m(q, k, v)`` where only those inputs require grad, as behind a frozen encoder).
Selecting ``local-m``/``local-p`` adds their ``[grad=qkv]``, ``[grad=q]`` and ``[grad=kv]`` rows
(the cliff check of issue 25: the same cross call, only the inputs requiring grad differ); on CUDA, selecting ``scaled-dot`` adds ``scaled-dot[causal=True]`` and, with
Triton installed, ``additive``/``pointer`` add their ``[impl='triton']`` rows.

A cell that fails records ``status="error"`` (or ``"oom"``) and its message
instead of stopping the run (timm's benchmark style); a cell predicted to take
longer than ``--max-seconds`` (from the previous length, assuming T^2 growth)
or to need more memory than half the machine's is recorded as ``"skipped"``.

Writes ``speed.csv`` (one row per variant x length), ``speed.md`` (tables and
the targets) and ``speed.png`` (log-log time and memory vs. T, with the fitted
slope per variant in the legend) under ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import math
import os
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "SpeedRow",
    "run_speed",
    "measure_step",
    "peak_memory_mb",
    "format_table",
    "write_outputs",
    "read_csv",
    "SDPA",
    "NAIVE",
    "DEFAULT_CPU_LENGTHS",
    "DEFAULT_CUDA_LENGTHS",
    "split_series",
]

SDPA = "[sdpa]"
NAIVE = "[naive]"
DEFAULT_CPU_LENGTHS = (64, 128, 256, 512, 1024, 2048, 4096)
DEFAULT_CUDA_LENGTHS = (128, 256, 512, 1024, 2048, 4096, 8192)
#: the multiplicative variants expected to run at SDPA speed (target: within 10%).
SDPA_SPEED_TARGET = ("dot", "scaled-dot", "general", "content")


@dataclass
class SpeedRow:
    """One (variant, length) cell."""

    variant: str
    length: int
    batch: int
    dim: int
    heads: int
    device: str
    status: str = "ok"  # ok | error | oom | skipped
    time_ms: float | None = None
    peak_mb: float | None = None
    vs_sdpa: float | None = None  # time / SDPA time at the same length
    vs_naive: float | None = None  # time / naive time
    mem_vs_sdpa: float | None = None
    error: str | None = None
    call: str = ""


# --------------------------------------------------------------------------- references


class _Projections(nn.Module):
    """Q/K/V/output projections around a head-split attention function (for --heads > 1)."""

    def __init__(self, dim: int, heads: int, attn: Callable[[Tensor, Tensor, Tensor], Tensor]) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim: {dim} is not divisible by heads={heads}")
        self.h, self.attn = heads, attn
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape

        def split(y: Tensor) -> Tensor:
            return y.view(b, t, self.h, d // self.h).transpose(1, 2)  # (B, H, T, d)

        out = self.attn(split(self.q(x)), split(self.k(x)), split(self.v(x)))  # (B, H, T, d)
        return self.o(out.transpose(1, 2).reshape(b, t, d))


def _sdpa(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    if q.dim() == 3:  # the fused kernels take 4-D inputs only; 3-D ones would run the math kernel
        return F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
    return F.scaled_dot_product_attention(q, k, v)


def _naive(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., T, T)
    return torch.softmax(scores, dim=-1) @ v


# --------------------------------------------------------------------------- measuring


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_step(step: Callable[[], None], device: torch.device, repeats: int, warmup: int = 1, number: int = 1) -> float:
    """Best (minimum) over ``repeats`` samples of the mean milliseconds of ``number`` back-to-back ``step()`` runs.

    As ``timeit.repeat(number=...)``: short steps are averaged over enough runs to
    rise above timer and scheduler noise, and the best sample is the least disturbed.
    """
    for _ in range(warmup):
        step()
    _sync(device)
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        for _ in range(max(1, number)):
            step()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1e3 / max(1, number))
    return min(times)  # best of repeats (as timeit): the least disturbed by other processes


def peak_memory_mb(step: Callable[[], None], device: torch.device) -> float:
    """Peak memory (MiB) allocated by one ``step()`` beyond what existed before it.

    CUDA: ``torch.cuda.max_memory_allocated`` minus the allocation at the start.
    CPU: the maximum running sum of the CPU allocator's allocation/free events
    recorded by ``torch.profiler(profile_memory=True)`` during the step.
    """
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        step()
        _sync(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=False) as prof:
        step()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    cur = peak = 0
    for e in events:
        dev = getattr(e, "device_type", None)
        dev = dev() if callable(dev) else dev
        if dev is not None and "CPU" not in str(dev).upper():
            continue
        cur += e.nbytes()
        peak = max(peak, cur)
    return peak / 2**20


def _total_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory / 2**20
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    except (ValueError, OSError, AttributeError):
        return float("inf")


def _is_oom(exc: BaseException) -> bool:
    oom = getattr(torch, "OutOfMemoryError", None)
    return (oom is not None and isinstance(exc, oom)) or "out of memory" in str(exc).lower() or isinstance(exc, MemoryError)


# --------------------------------------------------------------------------- building the cases


def _reseed(seed: int, device: torch.device) -> None:
    """``torch.manual_seed(seed)`` for the generators a step on ``device`` draws from, at a fraction of its cost.

    ``torch.manual_seed`` also queues a lazy CUDA seeding with a formatted stack trace while CUDA is not
    initialised (0.4 ms or more a call on the 2-core CPU, a tenth of a T=256 step), a cost every variant's step
    paid and the SDPA reference's did not. The draws are the same: the same generators get the same seed.
    """
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        torch.cuda.default_generators[index].manual_seed(seed)
    elif device.type != "cpu":
        torch.manual_seed(seed)


def _make_step(
    name: str, length: int, batch: int, dim: int, heads: int, device: torch.device, seed: int = 0,
    options: dict[str, Any] | None = None,
) -> tuple[Callable[[], None], str]:
    """A closure running one forward+backward of ``name`` at length T, and how it calls the variant.

    :param options: constructor kwargs for the variant (``--option``), on top of its defaults.
    """
    g = torch.Generator().manual_seed(seed)

    def leaf(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=g).to(device).requires_grad_(True)

    if name in (SDPA, NAIVE):
        return _reference_step(name, length, batch, dim, heads, device, leaf)
    return _variant_step(name, length, batch, dim, heads, device, leaf, seed, options)


def _reference_step(name: str, length: int, batch: int, dim: int, heads: int, device: torch.device,
                    leaf: Callable[..., Tensor]) -> tuple[Callable[[], None], str]:
    """SDPA's or the naive reference's step (with ``heads`` > 1: behind the same four projections)."""
    fn = _sdpa if name == SDPA else _naive
    if heads > 1:
        mod = _Projections(dim, heads, fn).to(device)
        x = leaf(batch, length, dim)
        call = f"proj + {name} over {heads} heads"

        def forward() -> Tensor:
            return mod(x)

    else:
        q, k, v = leaf(batch, length, dim), leaf(batch, length, dim), leaf(batch, length, dim)
        call = f"{name}(q, k, v)"

        def forward() -> Tensor:
            return fn(q, k, v)

    def step() -> None:
        for p in [*(mod.parameters() if heads > 1 else []), *([x] if heads > 1 else [q, k, v])]:
            p.grad = None
        forward().sum().backward()

    return step, call


def _variant_step(name: str, length: int, batch: int, dim: int, heads: int, device: torch.device,
                  leaf: Callable[..., Tensor], seed: int,
                  options: dict[str, Any] | None) -> tuple[Callable[[], None], str]:
    """A registered variant's step (``name`` may carry call settings in brackets, :func:`split_series`)."""
    from attnzoo.contract import causal_mask, mark_causal
    from attnzoo.registry import create_attention, get_spec, length_kwargs

    name, built, how = split_series(name)
    options = {**(options or {}), **built}
    spec = get_spec(name)
    torch.manual_seed(seed)
    wrap = heads > 1 and spec.multihead
    # Position-indexed variants (location's max_len) are built for the length measured.
    opts = length_kwargs(name, dict(options), length)
    module = (create_attention(name, dim, num_heads=heads, **opts) if wrap else create_attention(name, dim, **opts)).to(device)
    module.train()
    query_only = not spec.self_attention and not spec.cross_attention
    grad = how.get("grad")
    x = leaf(batch, length, dim)
    kv: tuple[Tensor, ...] = ()
    if not query_only and not (spec.self_attention and grad is None):
        kv = (leaf(batch, length, dim), leaf(batch, length, dim))
    if grad is not None:
        for t, which in zip((x, *kv), "qkv"):
            t.requires_grad_(which in grad)
    extra: dict[str, Any] = {}
    if how.get("causal"):
        extra["mask"] = mark_causal(causal_mask(length, device=device)[None].expand(batch, length, length))
    call = _describe_call(query_only, bool(kv), grad, bool(extra), options, heads, wrap)
    leaves = [t for t in (x, *kv) if t.requires_grad]

    def step() -> None:
        for p in [*module.parameters(), *leaves]:
            p.grad = None
        # The same random draws every step: a stochastic variant (hard's samples and coin tosses)
        # then does the same work in every repeat, and best-of-repeats cannot pick a lucky cheap draw.
        _reseed(seed, device)
        kwargs: dict[str, Any] = {"need_weights": False, **extra}
        if spec.stateful:
            kwargs["state"] = module.initial_state(batch, device=device)
        out = module(x, *kv, **kwargs) if kv else module(x, **kwargs)
        loss = out.context.sum()
        if not spec.differentiable and "log_prob" in (out.aux or {}):
            loss = loss + out.aux["log_prob"].sum()  # the REINFORCE surrogate's backward
        loss.backward()

    return step, call


def _describe_call(query_only: bool, cross: bool, grad: str | None, causal: bool, options: dict[str, Any],
                   heads: int, wrap: bool) -> str:
    """How a variant's step calls it, as the tables print it (``m(q, k, v), only q requiring grad``)."""
    call = "m(x, state=initial_state(B))" if query_only else "m(q, k, v)" if cross else "m(x)"
    if grad is not None:
        call += f", only {'+'.join(grad)} requiring grad"
    if causal:
        call += ", causal mask (tagged: SDPA is_causal)"
    if options:
        call += " with " + ", ".join(f"{k}={v!r}" for k, v in options.items())
    if wrap:
        call = f"MultiHead({heads}) " + call
    elif heads > 1:
        call += " (single head: spec says multihead=False)"
    return call


# --------------------------------------------------------------------------- the run


#: settings in a series' brackets that are not constructor kwargs
CALL_SETTINGS = ("causal", "grad")


def split_series(series: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """``"NAME[key=value,...]"`` -> ``(NAME, constructor kwargs, call settings)`` (see the module docstring).

    :raises ValueError: a malformed bracket, or ``grad`` naming other than q, k, v.
    """
    if not series.endswith("]") or "[" not in series:
        return series, {}, {}
    name, _, inner = series[:-1].partition("[")
    built: dict[str, Any] = {}
    how: dict[str, Any] = {}
    if inner:
        try:
            _, kwargs = parse_option(f"x:{inner}")
        except argparse.ArgumentTypeError as exc:
            raise ValueError(f"series {series!r}: {exc}") from exc
        for k, v in kwargs.items():
            (how if k in CALL_SETTINGS else built)[k] = v
    grad = how.get("grad")
    if grad is not None and (not isinstance(grad, str) or not grad or set(grad) - set("qkv")):
        raise ValueError(f"series {series!r}: grad: expected letters of 'qkv' (e.g. grad=q), got {grad!r}")
    return name, built, how


def _extras(names: Sequence[str], device: torch.device) -> list[str]:
    """The rows selecting ``names`` adds on this device (the module docstring lists them)."""
    out = []
    for n in names:
        if n in ("local-m", "local-p"):
            out += [f"{n}[grad=qkv]", f"{n}[grad=q]", f"{n}[grad=kv]"]
        if device.type == "cuda" and n == "scaled-dot":
            out.append("scaled-dot[causal=True]")
        if device.type == "cuda" and n in ("additive", "pointer"):
            from attnzoo.mechanisms import triton_available

            if triton_available():
                out.append(f"{n}[impl='triton']")
    return out


def _select(patterns: str | Sequence[str] | None, device: torch.device | None = None) -> list[str]:
    """Registered names matching the comma-separated fnmatch ``patterns``, and bracketed series of
    registered names as given; with ``device`` the automatic extra rows (:func:`_extras`) too."""
    from attnzoo.registry import list_attention

    names = list_attention()
    pats = [p.strip() for p in (patterns.split(",") if isinstance(patterns, str) else patterns or ["*"]) if p.strip()]
    plain = [p for p in pats if not p.endswith("]")]
    out = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in plain)]
    out += [p for p in pats if p.endswith("]") and split_series(p)[0] in names]
    if device is not None:
        out += [e for e in _extras(out, device) if e not in out]
    return out


def run_speed(
    variants: Sequence[str],
    lengths: Sequence[int],
    *,
    batch: int = 4,
    dim: int = 64,
    heads: int = 1,
    repeats: int = 3,
    device: str | torch.device = "cpu",
    max_seconds: float = 60.0,
    baselines: bool = True,
    log: Callable[[str], None] | None = None,
    options: Sequence[tuple[str, dict[str, Any]]] = (),
    min_sample_ms: float = 100.0,
) -> list[SpeedRow]:
    """Measure every (variant, length) cell; never raises for a failing cell.

    :param variants: registered names (see :func:`attnzoo.list_attention`).
    :param lengths: sequence lengths T (Tq = Tk = T).
    :param max_seconds: skip a cell predicted (T^2 growth from the previous length) to take longer.
    :param options: ``(pattern, kwargs)`` pairs: variants matching the fnmatch pattern are built
        with those kwargs (later pairs win), e.g. ``[("local-*", {"window": 32})]``.
    :param min_sample_ms: each timed sample repeats a short step until it lasts about
        this long and reports the mean per step (timeit's autorange); 0: one step per sample.
    :returns: one :class:`SpeedRow` per series and length, references first; ratios filled in.
    """
    dev = torch.device(device)
    lengths = sorted(set(int(t) for t in lengths))
    series = ([SDPA, NAIVE] if baselines else []) + list(variants)
    budget_mb = _total_memory_mb(dev) * 0.5
    rows: list[SpeedRow] = []
    prev: dict[str, SpeedRow | None] = {name: None for name in series}
    done: dict[str, list[SpeedRow]] = {name: [] for name in series}
    for T in lengths:
        # Build every series at this length, then time them round-robin (repeat r of every
        # series before repeat r + 1), so a burst of load from other processes hits all
        # series alike and the ratios to SDPA/naive stay fair.
        cells: list[tuple[SpeedRow, Callable[[], None] | None, int]] = []
        for name in series:
            row = SpeedRow(name, T, batch, dim, heads, str(dev))
            _skip_if_predicted(row, prev[name], done[name], repeats=repeats, max_seconds=max_seconds,
                               budget_mb=budget_mb)
            step, number = (_prepare(row, dev, options_for(name, options), min_sample_ms, log)
                            if row.status == "ok" else (None, 1))
            cells.append((row, step, number))
        _time_round_robin(cells, dev, repeats, log)
        for row, step, _ in cells:
            _finish(row, step, dev, log)
            rows.append(row)
            prev[row.variant] = row
            if row.status == "ok":
                done[row.variant].append(row)
        del cells
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    order = {name: i for i, name in enumerate(series)}
    rows.sort(key=lambda r: (order[r.variant], r.length))
    _fill_ratios(rows)
    return rows


def _fail(row: SpeedRow, exc: BaseException, log: Callable[[str], None] | None) -> None:
    """Record ``exc`` on ``row`` (``oom`` or ``error``, its first line) instead of raising (timm style)."""
    row.status = "oom" if _is_oom(exc) else "error"
    row.error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"[:300]
    row.time_ms = row.peak_mb = None
    if log and os.environ.get("ATTNZOO_SPEED_TRACEBACK"):
        log(traceback.format_exc())


def _skip_if_predicted(row: SpeedRow, p: SpeedRow | None, done: Sequence[SpeedRow], *, repeats: int,
                       max_seconds: float, budget_mb: float) -> None:
    """Mark ``row`` skipped when the previous length ``p`` was, or its cost predicted from ``p`` is too high."""
    if p is not None and p.status in ("skipped", "oom"):
        row.status, row.error = "skipped", f"longer than T={p.length}, which was {p.status}"
    elif p is not None and p.status == "ok" and p.time_ms is not None:
        # growth exponent: the slope between the last two measured lengths (clamped to
        # [1, 3]), else 2 (quadratic attention); NTM-like O(T) variants then run further.
        k_t = k_m = 2.0
        if len(done) >= 2:
            k_t = min(3.0, max(1.0, fit_slope(done[-2:], "time_ms") or 2.0))
            k_m = min(3.0, max(1.0, fit_slope(done[-2:], "peak_mb") or 2.0))
        est_s = p.time_ms * (row.length / p.length) ** k_t * (repeats + 2) / 1e3
        est_mb = (p.peak_mb or 0.0) * (row.length / p.length) ** k_m
        if est_s > max_seconds:
            row.status, row.error = "skipped", f"predicted {est_s:.0f} s > --max-seconds {max_seconds:g}"
        elif est_mb > budget_mb:
            row.status, row.error = "skipped", f"predicted {est_mb:.0f} MiB > half the device memory"


def _prepare(row: SpeedRow, dev: torch.device, options: dict[str, Any], min_sample_ms: float,
             log: Callable[[str], None] | None) -> tuple[Callable[[], None] | None, int]:
    """Build ``row``'s step and warm it up: ``(step, steps per timed sample)``; ``(None, 1)`` when it failed."""
    try:
        step, row.call = _make_step(row.variant, row.length, row.batch, row.dim, row.heads, dev, options=options)
        t_warm = time.perf_counter()
        step()  # warm-up
        _sync(dev)
        # timeit's autorange: each sample runs enough steps to last min_sample_ms
        return step, max(1, min(1000, int(min_sample_ms / 1e3 / max(time.perf_counter() - t_warm, 1e-6))))
    except Exception as exc:  # noqa: BLE001 - an error row, timm style
        _fail(row, exc, log)
        return None, 1


def _time_round_robin(cells: Sequence[tuple[SpeedRow, Callable[[], None] | None, int]], dev: torch.device,
                      repeats: int, log: Callable[[str], None] | None) -> None:
    """Time every live cell ``repeats`` times, one sample of each in turn; the best sample is the figure."""
    times: dict[int, list[float]] = {id(r): [] for r, _, _ in cells}
    for _ in range(max(1, repeats)):
        for row, step, number in cells:
            if step is None or row.status != "ok":
                continue
            try:
                times[id(row)].append(measure_step(step, dev, 1, warmup=0, number=number))
            except Exception as exc:  # noqa: BLE001
                _fail(row, exc, log)
    for row, step, _ in cells:
        if step is not None and row.status == "ok":
            row.time_ms = min(times[id(row)])  # best of repeats (as timeit)


def _finish(row: SpeedRow, step: Callable[[], None] | None, dev: torch.device,
            log: Callable[[str], None] | None) -> None:
    """Measure a timed row's peak memory, then log the row's line."""
    if step is not None and row.status == "ok":
        try:
            row.peak_mb = peak_memory_mb(step, dev)
        except Exception as exc:  # noqa: BLE001
            _fail(row, exc, log)
    if log:
        what = f"{row.time_ms:9.2f} ms {row.peak_mb:9.1f} MiB" if row.status == "ok" else f"{row.status}: {row.error}"
        log(f"  {row.variant:<14} T={row.length:<6} {what}")


def options_for(name: str, options: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The kwargs ``--option`` gives variant ``name`` (none for the references)."""
    out: dict[str, Any] = {}
    if name in (SDPA, NAIVE):
        return out
    base = split_series(name)[0]  # "local-m[grad=q]" takes local-m's options
    for pattern, kwargs in options:
        if fnmatch.fnmatchcase(base, pattern):
            out.update(kwargs)
    return out


def parse_option(text: str) -> tuple[str, dict[str, Any]]:
    """``PATTERN:key=value[,key=value...]`` -> ``(pattern, {key: value})``; values are Python literals or strings."""
    import ast

    pattern, sep, rest = text.partition(":")
    if not sep or not pattern or not rest:
        raise argparse.ArgumentTypeError(f"expected PATTERN:key=value[,key=value] such as 'local-*:window=32', got {text!r}")
    kwargs: dict[str, Any] = {}
    for item in rest.split(","):
        key, eq, val = item.partition("=")
        if not eq or not key.strip().isidentifier():
            raise argparse.ArgumentTypeError(f"expected key=value in {text!r}, got {item!r}")
        try:
            kwargs[key.strip()] = ast.literal_eval(val.strip())
        except (ValueError, SyntaxError):
            kwargs[key.strip()] = val.strip()
    return pattern, kwargs


def _fill_ratios(rows: list[SpeedRow]) -> None:
    ref = {(r.variant, r.length): r for r in rows if r.status == "ok"}
    for r in rows:
        if r.status != "ok":
            continue
        s, n = ref.get((SDPA, r.length)), ref.get((NAIVE, r.length))
        if s and s.time_ms:
            r.vs_sdpa = r.time_ms / s.time_ms
            if s.peak_mb:
                r.mem_vs_sdpa = (r.peak_mb or 0.0) / s.peak_mb
        if n and n.time_ms:
            r.vs_naive = r.time_ms / n.time_ms


def fit_slope(rows: Sequence[SpeedRow], attr: str = "time_ms") -> float | None:
    """Least-squares slope of log(attr) against log(T) over the ok cells (None with < 2 points)."""
    pts = [(math.log(r.length), math.log(getattr(r, attr))) for r in rows if r.status == "ok" and (getattr(r, attr) or 0) > 0]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    den = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / den if den else None


# --------------------------------------------------------------------------- reporting


def _series(rows: Sequence[SpeedRow]) -> dict[str, list[SpeedRow]]:
    out: dict[str, list[SpeedRow]] = {}
    for r in rows:
        out.setdefault(r.variant, []).append(r)
    return out


def _cell(r: SpeedRow, what: str) -> str:
    if r.status != "ok":
        return r.status
    if what == "time":
        extra = ""
        if r.variant not in (SDPA, NAIVE) and r.vs_sdpa is not None:
            extra = f" ({r.vs_sdpa:.2f}x / {r.vs_naive:.2f}x)" if r.vs_naive is not None else f" ({r.vs_sdpa:.2f}x)"
        return f"{r.time_ms:.1f}{extra}"
    return f"{r.peak_mb:.1f}"


def format_table(rows: Sequence[SpeedRow], what: str = "time", markdown: bool = False) -> str:
    """A variant x length table of ``time`` (ms, with ratios ours/SDPA and ours/naive) or ``memory`` (MiB)."""
    series = _series(rows)
    lengths = sorted({r.length for r in rows})
    slope_attr = "time_ms" if what == "time" else "peak_mb"
    head = ["variant", *(f"T={t}" for t in lengths), "slope"]
    body = []
    for name, rs in series.items():
        by_len = {r.length: r for r in rs}
        s = fit_slope(rs, slope_attr)
        body.append([name, *(_cell(by_len[t], what) if t in by_len else "" for t in lengths), f"{s:.2f}" if s is not None else "-"])
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max(len(str(x[i])) for x in [head, *body]) for i in range(len(head))]
    fmt = lambda row: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths)))  # noqa: E731
    return "\n".join([fmt(head), fmt(["-" * w for w in widths]), *(fmt(r) for r in body)])


def _errors(rows: Sequence[SpeedRow]) -> list[str]:
    return [f"{r.variant} T={r.length}: {r.status}: {r.error}" for r in rows if r.status != "ok"]


def sdpa_target(rows: Sequence[SpeedRow], names: Sequence[str] = SDPA_SPEED_TARGET, min_length: int = 256) -> list[str]:
    """Lines judging "within 10% of SDPA" from the median time ratio over lengths >= ``min_length``."""
    out = []
    for name in names:
        ratios = [r.vs_sdpa for r in rows if r.variant == name and r.status == "ok" and r.vs_sdpa and r.length >= min_length]
        if not ratios:
            out.append(f"- {name}: not measured")
            continue
        med = statistics.median(ratios)
        verdict = "met" if med <= 1.10 else "NOT met"
        out.append(f"- {name}: median time / SDPA over T >= {min_length} = {med:.2f}x "
                   f"(range {min(ratios):.2f}-{max(ratios):.2f}) -> {verdict}")
    return out


def local_target(rows: Sequence[SpeedRow], names: Sequence[str] = ("local-m", "local-p"), ratio: float = 0.10) -> list[str]:
    """Lines judging "at least 10x faster than SDPA" (time / SDPA <= 0.10) at the longest length measured."""
    out = []
    for name in names:
        ok = [r for r in rows if r.variant == name and r.status == "ok" and r.vs_sdpa]
        if not ok:
            out.append(f"- {name}: not measured")
            continue
        r = max(ok, key=lambda r: r.length)
        verdict = "met" if r.vs_sdpa <= ratio else "NOT met"
        out.append(f"- {name} ({r.call.split(' with ')[-1] if ' with ' in r.call else 'default options'}): "
                   f"time / SDPA at T={r.length} = {r.vs_sdpa:.3f}x ({1 / r.vs_sdpa:.1f}x faster) -> "
                   f"at least {1 / ratio:.0f}x faster {verdict}")
    return out


def hard_target(rows: Sequence[SpeedRow], name: str = "hard", ref: str = "dot", ratio: float = 1.5) -> list[str]:
    """A line judging "``hard`` within 1.5x of ``dot``" at every length measured."""
    by = {(r.variant, r.length): r for r in rows if r.status == "ok" and r.time_ms}
    lengths = sorted({t for v, t in by if v == name and (ref, t) in by})
    if not lengths:
        return [f"- {name} vs {ref}: not measured"]
    rs = [by[(name, t)].time_ms / by[(ref, t)].time_ms for t in lengths]  # type: ignore[operator]
    verdict = "met" if max(rs) <= ratio else "NOT met"
    return [f"- {name} / {ref}: " + ", ".join(f"{x:.2f}x at T={t}" for x, t in zip(rs, lengths))
            + f" -> within {ratio:g}x at every length {verdict}"]


def cliff_target(rows: Sequence[SpeedRow], names: Sequence[str] = ("local-m", "local-p"), ratio: float = 1.2) -> list[str]:
    """Lines judging "no cliff": ``NAME[grad=q]`` and ``NAME[grad=kv]`` within ``ratio`` of the same cross
    call with every input requiring grad (``NAME[grad=qkv]``; ``NAME``'s self call when that row is absent)
    at every length measured."""
    by = {(r.variant, r.length): r for r in rows if r.status == "ok" and r.time_ms}
    out = []
    for name in names:
        base = f"{name}[grad=qkv]" if any(v == f"{name}[grad=qkv]" for v, _ in by) else name
        for case in (f"{name}[grad=q]", f"{name}[grad=kv]"):
            lengths = sorted(t for v, t in by if v == case and (base, t) in by)
            if not lengths:
                continue
            rs = [by[(case, t)].time_ms / by[(base, t)].time_ms for t in lengths]  # type: ignore[operator]
            verdict = "met" if max(rs) <= ratio else "NOT met"
            out.append(f"- {case} / {base}: " + ", ".join(f"{x:.2f}x at T={t}" for x, t in zip(rs, lengths))
                       + f" -> within {ratio:g}x at every length {verdict}")
    return out


def additive_memory_target(device: str | torch.device = "cpu", batch: int = 4, length: int = 4096, dim: int = 64) -> str:
    """Peak memory of one additive forward+backward at B=4, T=4096, hidden=64 vs. the 4 GB target."""
    from attnzoo.registry import list_attention

    if "additive" not in list_attention():
        return "- additive B=4, T=4096, hidden=64 under 4 GB: not measured (additive not registered)"
    dev = torch.device(device)
    try:
        step, _ = _make_step("additive", length, batch, dim, 1, dev)
        t0 = time.perf_counter()
        mb = peak_memory_mb(step, dev)
        secs = time.perf_counter() - t0
    except Exception as exc:  # noqa: BLE001
        return f"- additive B={batch}, T={length}, hidden={dim}: {type(exc).__name__}: {exc}"[:300]
    verdict = "met" if mb < 4096 else "NOT met"
    return (f"- additive B={batch}, T={length}, dim=hidden={dim}, forward+backward: peak {mb:.0f} MiB "
            f"({mb / 1024:.2f} GiB; one profiled step took {secs:.1f} s) -> under 4 GB {verdict}")


def write_outputs(rows: Sequence[SpeedRow], out_dir: str | Path, *, meta: dict[str, Any], targets: Sequence[str] = ()) -> dict[str, Path]:
    """Write speed.csv, speed.md and speed.png under ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "speed.csv", "md": out / "speed.md", "png": out / "speed.png"}
    names = [f.name for f in SpeedRow.__dataclass_fields__.values()]  # type: ignore[attr-defined]
    with paths["csv"].open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=names)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else (f"{v:.6g}" if isinstance(v, float) else v)) for k, v in asdict(r).items()})
    md = [
        "# attnzoo speed",
        "",
        "Forward+backward of one step; time = best-of-repeats ms (ours / SDPA, ours / naive in brackets); "
        "peak memory = MiB allocated by the step beyond its inputs and parameters "
        "(CPU: torch.profiler allocator events; CUDA: max_memory_allocated). slope = fitted d log y / d log T.",
        "",
        "```",
        *(f"{k}: {v}" for k, v in meta.items()),
        "```",
        "",
        "## Time (ms)",
        "",
        format_table(rows, "time", markdown=True),
        "",
        "## Peak memory (MiB)",
        "",
        format_table(rows, "memory", markdown=True),
        "",
    ]
    if targets:
        md += ["## Targets", "", *targets, ""]
    errs = _errors(rows)
    if errs:
        md += ["## Cells not measured", "", *(f"- {e}" for e in errs), ""]
    paths["md"].write_text("\n".join(md))
    try:
        _plot(rows, paths["png"])
    except Exception as exc:  # noqa: BLE001 - a missing matplotlib must not lose the tables
        paths.pop("png")
        print(f"attnzoo speed: plot skipped ({type(exc).__name__}: {exc})", file=sys.stderr)
    return paths


def read_csv(path: str | Path) -> list[SpeedRow]:
    """Rows back from a ``speed.csv`` (to re-render tables or the plot)."""
    kinds = {f.name: f.type for f in SpeedRow.__dataclass_fields__.values()}  # type: ignore[attr-defined]
    out = []
    with Path(path).open(newline="") as fh:
        for rec in csv.DictReader(fh):
            vals: dict[str, Any] = {}
            for k, v in rec.items():
                t = str(kinds.get(k, "str"))
                if v == "" and "None" in t:
                    vals[k] = None
                elif t.startswith("int"):
                    vals[k] = int(v)
                elif "float" in t:
                    vals[k] = float(v)
                else:
                    vals[k] = v
            out.append(SpeedRow(**vals))
    return out


def _plot(rows: Sequence[SpeedRow], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    for ax, attr, label in ((axes[0], "time_ms", "forward+backward time (ms)"), (axes[1], "peak_mb", "peak memory (MiB)")):
        colors = plt.get_cmap("tab20").colors
        for i, (name, rs) in enumerate(_series(rows).items()):
            ok = [r for r in rs if r.status == "ok" and (getattr(r, attr) or 0) > 0]
            if not ok:
                continue
            s = fit_slope(ok, attr)
            style = "--" if name in (SDPA, NAIVE) else "-"
            ax.plot([r.length for r in ok], [getattr(r, attr) for r in ok], style, marker="os^vD<>"[i % 7], ms=3,
                    color="black" if name == SDPA else "grey" if name == NAIVE else colors[i % len(colors)],
                    label=f"{name} (slope {s:.2f})" if s is not None else name)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length T")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    r0 = rows[0] if rows else None
    if r0:
        fig.suptitle(f"attnzoo speed: B={r0.batch}, D={r0.dim}, heads={r0.heads}, {r0.device}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
