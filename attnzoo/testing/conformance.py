"""The conformance kit: does a variant keep the mechanism contract?

``check_attention("additive")`` builds the variant on tiny inputs and runs every
check its spec's capabilities call for; a check whose capability is absent is
*skipped* with the reason, never silently dropped::

    >>> from attnzoo.testing import check_attention
    >>> report = check_attention("scaled-dot")
    >>> report.ok
    True
    >>> print(report)            # one line per check: ✓ passed, ✗ failed, - skipped
    >>> report.raise_for_failures()   # AssertionError listing every failure (for pytest)

A plugin author checks an unregistered class the same way, handing the spec::

    check_attention(MyAttention, spec=MY_SPEC)

What is checked (see :data:`CHECKS` for the list with one line each): shapes for
self- and cross-attention (Tq != Tk, batch 1 and > 1, value_dim != key_dim);
weights form a distribution over the allowed keys and are exactly 0 on masked
keys; the two mask forms agree; a fully masked row gives zero context and zero
weights and finite gradients; causal safety; batch independence; gradients reach
every parameter (or, for non-differentiable variants, the declared ``aux``
tensors exist and carry the estimator's gradient); float64 gradcheck (a wrong
backward is reported as the (output, input) pair whose analytical and numerical
Jacobians differ, with the largest difference); fast path == reference path; eval
determinism; helpful ``ValueError`` on bad shapes, masks and dtypes; NaN in = NaN
out (a NaN in a query row or in a key/value it reads is never turned into a
finite answer, and does not reach rows that do not read it); stateful
step-by-step == one call; pointer logits; and the multi-head wrapper.

``check_attention(name, checks=["gradcheck"])`` runs a subset;
:func:`planned_checks` lists the names a spec gets. The pytest plugin
(:mod:`attnzoo.testing.pytest_plugin`) turns each into its own test item.

Every check runs in its own ``try``: a variant that raises inside one check
fails that check (with the exception in the message) and the others still run.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn

# ``torch.autograd.gradcheck`` is the function (the package re-exports it over its
# submodule), so the exception has to come from the module itself.
from torch.autograd.gradcheck import GradcheckError

from attnzoo.contract import causal_mask
from attnzoo.spec import AttentionSpec

__all__ = ["CheckResult", "ConformanceReport", "check_attention", "planned_checks", "CHECKS", "PASSED", "FAILED", "SKIPPED"]

PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"
_MARK = {PASSED: "✓", FAILED: "✗", SKIPPED: "-"}

#: float32 comparisons between two computations of the same quantity.
ATOL = 1e-5
#: what counts as "exactly zero" for a gradient that must not exist (float32 noise).
ZERO_TOL = 1e-7
#: float64 gradcheck: finite-difference step and tolerances.
GRADCHECK_EPS, GRADCHECK_ATOL, GRADCHECK_RTOL = 1e-6, 1e-4, 1e-3


@dataclass(frozen=True)
class CheckResult:
    """One check: its name, ``status`` in {"passed", "failed", "skipped"}, and why."""

    name: str
    status: str
    message: str = ""

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    @property
    def failed(self) -> bool:
        return self.status == FAILED

    def __str__(self) -> str:
        return f"{_MARK.get(self.status, '?')} {self.name}" + (f": {self.message}" if self.message else "")


@dataclass
class ConformanceReport:
    """The outcome of :func:`check_attention` for one variant.

    :ivar name: the variant's name (its spec's).
    :ivar results: one :class:`CheckResult` per check, in the order they ran.
    """

    name: str
    results: list[CheckResult] = field(default_factory=list)
    #: the device the checks ran on (``"cpu"``, ``"cuda"``, ``"cuda:1"``...)
    device: str = "cpu"

    @property
    def ok(self) -> bool:
        """True when no check failed (skipped checks do not count against it)."""
        return not self.failures

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if r.status == FAILED]

    def counts(self) -> dict[str, int]:
        return {s: sum(r.status == s for r in self.results) for s in (PASSED, FAILED, SKIPPED)}

    def get(self, check: str) -> CheckResult:
        """The result of the check called ``check`` (KeyError listing the names if absent)."""
        for r in self.results:
            if r.name == check:
                return r
        raise KeyError(f"no check named {check!r}; ran: {', '.join(r.name for r in self.results)}")

    def raise_for_failures(self) -> None:
        """Raise ``AssertionError`` listing every failed check; do nothing when :attr:`ok`."""
        if self.failures:
            lines = "\n".join(f"  {r}" for r in self.failures)
            raise AssertionError(f"{self.name}: {len(self.failures)} conformance check(s) failed:\n{lines}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (``attnzoo check NAME --json``)."""
        return {
            "name": self.name,
            "device": self.device,
            "ok": self.ok,
            "counts": self.counts(),
            "results": [{"name": r.name, "status": r.status, "message": r.message} for r in self.results],
        }

    def __str__(self) -> str:
        c = self.counts()
        head = (
            f"attnzoo check {self.name} on {self.device}: {'OK' if self.ok else 'FAILED'} "
            f"({c[PASSED]} passed, {c[FAILED]} failed, {c[SKIPPED]} skipped)"
        )
        return "\n".join([head, *(f"  {r}" for r in self.results)])


class _Skip(Exception):
    """Raised inside a check to mark it skipped with a reason."""


class _Fail(AssertionError):
    """Raised inside a check to mark it failed with a message."""


def _need(cond: bool, msg: str) -> None:
    if not cond:
        raise _Fail(msg)


def _shape(t: Any) -> str:
    return "[" + ", ".join(str(s) for s in t.shape) + "]" if isinstance(t, Tensor) else type(t).__name__


def _maxabs(t: Tensor) -> float:
    return float(t.detach().abs().max()) if t.numel() else 0.0


# --------------------------------------------------------------------------- checks registry

#: name -> one-line description; filled by @_check in run order.
CHECKS: dict[str, str] = {}
_CHECK_FUNCS: list[tuple[str, Callable[["_Suite"], str | None]]] = []


def _check(name: str, doc: str) -> Callable:
    def deco(fn: Callable[["_Suite"], str | None]) -> Callable:
        CHECKS[name] = doc
        _CHECK_FUNCS.append((name, fn))
        return fn

    return deco


# --------------------------------------------------------------------------- the suite


class _Suite:
    """Builds the variant and tiny inputs; each check is a function of the suite.

    Call forms: ``self`` (query only, key = value = query), ``cross`` (query,
    key, value from another sequence, Tq != Tk, Dv != Dk) and ``query-only``
    (stateful variants without keys such as NTM: query [B, Tq, Dq] and state).
    """

    B, TQ, TK = 2, 3, 5  # cross form; self form uses T = TK

    def __init__(
        self,
        spec: AttentionSpec,
        build: Callable[[int, int, int], nn.Module],
        *,
        query_dim: int,
        key_dim: int,
        value_dim: int,
        seed: int,
        multihead: bool = False,
        device: torch.device = torch.device("cpu"),
    ) -> None:
        self.spec = spec
        self.device = device
        self.build = build
        self.dq, self.dk, self.dv = query_dim, key_dim, value_dim
        self.seed = seed
        self.multihead = multihead
        self._modules: dict[str, nn.Module] = {}

    # -- forms and modules ------------------------------------------------------------
    @property
    def query_only(self) -> bool:
        return not self.spec.self_attention and not self.spec.cross_attention

    def forms(self) -> list[str]:
        if self.query_only:
            return ["query-only"]
        out = []
        if self.spec.self_attention:
            out.append("self")
        if self.spec.cross_attention:
            out.append("cross")
        return out

    def masked_form(self) -> str:
        """The form used by mask checks: cross when possible (Tq != Tk), else self."""
        if self.query_only:
            raise _Skip("query-only variant (no keys to mask)")
        return "cross" if self.spec.cross_attention else "self"

    def dims(self, form: str) -> tuple[int, int, int]:
        if form == "self":
            return self.dq, self.dq, self.dq
        return self.dq, self.dk, self.dv

    def module(self, form: str) -> nn.Module:
        """The module for ``form``, built once with a fixed seed (later checks get a fresh deep copy)."""
        if form not in self._modules:
            torch.manual_seed(self.seed)
            dq, dk, dv = self.dims(form)
            try:
                self._modules[form] = self.build(dq, dk, dv)
            except Exception as exc:  # noqa: BLE001 - reported as a failure of the check
                raise _Fail(f"building it with dims ({dq}, {dk}, {dv}) raised {type(exc).__name__}: {exc}") from exc
        return copy.deepcopy(self._modules[form])

    def gen(self, offset: int = 0) -> torch.Generator:
        # On the suite's device: a CPU generator cannot drive torch.randn on CUDA (and the checks run
        # with the suite's device as the default one, see _run).
        return torch.Generator(device=self.device).manual_seed(self.seed * 1000 + offset)

    def inputs(
        self, form: str, *, b: int | None = None, tq: int | None = None, tk: int | None = None, offset: int = 0,
        dtype: torch.dtype = torch.float32,
    ) -> dict[str, Tensor | None]:
        """Random ``query``/``key``/``value`` for ``form`` (key/value None for self and query-only)."""
        g = self.gen(offset)
        b = self.B if b is None else b
        dq, dk, dv = self.dims(form)
        if form == "cross":
            tq = self.TQ if tq is None else tq
            tk = self.TK if tk is None else tk
            return {
                "query": torch.randn(b, tq, dq, generator=g, dtype=dtype),
                "key": torch.randn(b, tk, dk, generator=g, dtype=dtype),
                "value": torch.randn(b, tk, dv, generator=g, dtype=dtype),
            }
        t = self.TK if tq is None else tq
        return {"query": torch.randn(b, t, dq, generator=g, dtype=dtype), "key": None, "value": None}

    @staticmethod
    def lengths(inp: dict[str, Tensor | None]) -> tuple[int, int, int]:
        q = inp["query"]
        k = inp["key"] if inp["key"] is not None else q
        return q.shape[0], q.shape[1], k.shape[1]

    def random_mask(self, b: int, tq: int, tk: int, offset: int = 7) -> Tensor:
        """bool [B, Tq, Tk] with about a third masked and at least one allowed key per row."""
        g = self.gen(offset)
        mask = torch.rand(b, tq, tk, generator=g) > 0.35
        first = torch.randint(0, tk, (b, tq), generator=g)
        mask.scatter_(-1, first[..., None], True)
        return mask

    def initial_state(self, m: nn.Module, b: int, dtype: torch.dtype = torch.float32) -> Any:
        fn = getattr(m, "initial_state", None)
        if not callable(fn):
            raise _Fail(f"stateful variant has no callable initial_state(batch_size, device=None, dtype=None) on {type(m).__name__}")
        try:
            return fn(b, device=self.device, dtype=dtype)
        except TypeError:
            return fn(b, self.device)

    def call(
        self, m: nn.Module, inp: dict[str, Tensor | None], *, mask: Tensor | None = None,
        need_weights: bool = True, state: Any = None, use_state: bool = True,
    ) -> Any:
        """``m(query, key, value, mask=, state=, need_weights=)``; stateful variants get an initial state."""
        kwargs: dict[str, Any] = {"need_weights": need_weights}
        if mask is not None:
            kwargs["mask"] = mask
        if self.spec.stateful and use_state:
            q = inp["query"]
            kwargs["state"] = state if state is not None else self.initial_state(m, q.shape[0], q.dtype)
        args = (inp["query"],) if inp.get("key") is None and inp.get("value") is None else (inp["query"], inp["key"], inp["value"])
        try:
            out = m(*args, **kwargs)
        except TypeError as exc:
            # A forward without the per-call ``need_weights`` keyword: use the module attribute.
            if "need_weights" not in str(exc):
                raise
            kwargs.pop("need_weights")
            m.need_weights = need_weights
            out = m(*args, **kwargs)
        for attr in ("context", "weights", "aux"):
            if not hasattr(out, attr):
                raise _Fail(f"forward returned {type(out).__name__}, expected an AttentionOutput (context, weights, state, aux)")
        return out

    def value_dim_of(self, form: str) -> int:
        return self.dims(form)[2]

    def tk_of(self, form: str, inp: dict[str, Tensor | None], out: Any) -> int:
        if form == "query-only":
            return out.weights.shape[-1] if out.weights is not None else -1
        return self.lengths(inp)[2]


# --------------------------------------------------------------------------- helpers used by checks


def _require_weights(out: Any, what: str) -> Tensor:
    _need(out.weights is not None, f"{what}: weights is None although need_weights=True")
    return out.weights


def _check_shapes(s: _Suite, form: str, b: int, tq: int | None = None, tk: int | None = None) -> str:
    m = s.module(form).eval()
    inp = s.inputs(form, b=b, tq=tq, tk=tk)
    out = s.call(m, inp)
    bb, tqq, tkk = s.lengths(inp)
    dv = s.value_dim_of(form)
    want = (bb, tqq, dv)
    _need(isinstance(out.context, Tensor) and tuple(out.context.shape) == want,
          f"{form}: context {_shape(out.context)}, expected [{bb}, {tqq}, {dv}]")
    w = _require_weights(out, form)
    if form == "query-only":
        _need(w.dim() == 3 and tuple(w.shape[:2]) == (bb, tqq) and w.shape[2] > 0,
              f"{form}: weights {_shape(w)}, expected [{bb}, {tqq}, N]")
    else:
        _need(tuple(w.shape) == (bb, tqq, tkk), f"{form}: weights {_shape(w)}, expected [{bb}, {tqq}, {tkk}]")
    _need(out.context.dtype == inp["query"].dtype, f"{form}: context dtype {out.context.dtype}, expected {inp['query'].dtype}")
    return f"query {_shape(inp['query'])}" + (
        f", key {_shape(inp['key'])}, value {_shape(inp['value'])}" if inp["key"] is not None else ""
    ) + f" -> context {_shape(out.context)}, weights {_shape(w)}"


def _distribution_problems(w: Tensor, mask: Tensor | None, where: str) -> list[str]:
    """Non-negative, sum 1 over allowed keys, exactly 0 on masked keys."""
    probs = []
    if not torch.isfinite(w).all():
        probs.append(f"{where}: weights contain NaN/inf")
        return probs
    if (w < 0).any():
        probs.append(f"{where}: negative weight {float(w.min()):.3g}")
    sums = w.sum(-1)
    if mask is not None:
        has = mask.any(-1)
        sums = sums[has]
        on_masked = w.masked_select(~mask)
        if on_masked.numel() and (on_masked != 0).any():
            probs.append(f"{where}: weight {float(on_masked.abs().max()):.3g} on a masked key (must be exactly 0)")
    if sums.numel() and not torch.allclose(sums, torch.ones_like(sums), atol=1e-4):
        probs.append(f"{where}: weights sum to {float(sums.min()):.5g}..{float(sums.max()):.5g} over allowed keys, expected 1")
    return probs


def _float_aux(out: Any) -> dict[str, Tensor]:
    return {k: v for k, v in (out.aux or {}).items() if isinstance(v, Tensor) and v.is_floating_point()}


def _aux_loss(out: Any, g: torch.Generator) -> Tensor:
    total = out.context.new_zeros(())
    for v in _float_aux(out).values():
        if v.requires_grad:
            total = total + (v.clamp(-1e4, 1e4) * torch.rand(v.shape, generator=g, dtype=v.dtype)).sum() * 1e-2
    return total


def _leaves(inp: dict[str, Tensor | None]) -> dict[str, Tensor]:
    return {k: v for k, v in inp.items() if v is not None}


def _grad_inputs(inp: dict[str, Tensor | None]) -> dict[str, Tensor | None]:
    return {k: (v.detach().clone().requires_grad_(True) if v is not None else None) for k, v in inp.items()}


def _perturb(t: Tensor, sel: tuple, g: torch.Generator) -> Tensor:
    t = t.detach().clone()
    t[sel] = t[sel] + 1.0 + torch.randn(t[sel].shape, generator=g, dtype=t.dtype)
    return t


# --------------------------------------------------------------------------- the checks


@_check("construct", "the factory builds the module for every call form with the tiny dims")
def _c_construct(s: _Suite) -> str:
    built = []
    for form in s.forms():
        m = s.module(form)
        _need(isinstance(m, nn.Module), f"factory returned {type(m).__name__}, expected an nn.Module")
        built.append(f"{form} {s.dims(form)}")
    return "built " + "; ".join(built)


@_check("shapes.self", "self-attention (key = value = query): context [B, T, D], weights [B, T, T]")
def _c_shape_self(s: _Suite) -> str:
    if not s.spec.self_attention:
        raise _Skip("spec says self_attention=False")
    return _check_shapes(s, "self", 2)


@_check("shapes.cross", "cross-attention with Tq != Tk and value_dim != key_dim: context [B, Tq, Dv], weights [B, Tq, Tk]")
def _c_shape_cross(s: _Suite) -> str:
    if not s.spec.cross_attention:
        raise _Skip("spec says cross_attention=False")
    msg = _check_shapes(s, "cross", 2)
    _check_shapes(s, "cross", 2, tq=6, tk=2)
    return msg + "; also Tq > Tk"


@_check("shapes.query-only", "stateful query-only call (no keys): context [B, Tq, Dv], weights [B, Tq, N]")
def _c_shape_qo(s: _Suite) -> str:
    if not s.query_only:
        raise _Skip("variant takes keys (self- or cross-attention)")
    return _check_shapes(s, "query-only", 2)


@_check("shapes.batch1", "batch size 1 works in every call form")
def _c_shape_b1(s: _Suite) -> str:
    return "; ".join(f"{form}: ok" for form in s.forms() if _check_shapes(s, form, 1))


@_check("weights.distribution", "weights are >= 0, sum to 1 over allowed keys and are exactly 0 on masked keys (train and eval)")
def _c_weights(s: _Suite) -> str:
    probs: list[str] = []
    for form in s.forms():
        inp = s.inputs(form)
        b, tq, tk = s.lengths(inp)
        masks: list[Tensor | None] = [None] if form == "query-only" else [None, s.random_mask(b, tq, tk)]
        for mode in ("train", "eval"):
            m = s.module(form)
            m.train(mode == "train")
            for mask in masks:
                torch.manual_seed(s.seed)
                with torch.no_grad():
                    out = s.call(m, inp, mask=mask)
                w = _require_weights(out, form)
                probs += _distribution_problems(w, mask, f"{form}/{mode}/{'masked' if mask is not None else 'unmasked'}")
    _need(not probs, "; ".join(probs[:4]))
    return "distribution over allowed keys in " + ", ".join(s.forms())


@_check("mask.forms-agree", "a [B, Tk] key mask gives the same result as the same mask expanded to [B, Tq, Tk]")
def _c_mask_forms(s: _Suite) -> str:
    form = s.masked_form()
    m = s.module(form).eval()
    inp = s.inputs(form)
    b, tq, tk = s.lengths(inp)
    km = s.random_mask(b, 1, tk)[:, 0]  # (B, Tk)
    with torch.no_grad():
        o2 = s.call(m, inp, mask=km)
        o3 = s.call(m, inp, mask=km[:, None, :].expand(b, tq, tk).clone())
    d = _maxabs(o2.context - o3.context)
    _need(d <= ATOL, f"context differs by {d:.3g} between mask [B, Tk] and [B, Tq, Tk]")
    if o2.weights is not None and o3.weights is not None:
        d = _maxabs(o2.weights - o3.weights)
        _need(d <= ATOL, f"weights differ by {d:.3g} between mask [B, Tk] and [B, Tq, Tk]")
    return f"{form}: max difference {d:.1e}"


@_check("mask.fully-masked", "a query row with no allowed key gives zero context and weights, no NaN, finite gradients")
def _c_fully_masked(s: _Suite) -> str:
    form = s.masked_form()
    inp = _grad_inputs(s.inputs(form))
    b, tq, tk = s.lengths(inp)
    mask = s.random_mask(b, tq, tk)
    mask[0, 1] = False  # one empty query row
    km = torch.ones(b, tk, dtype=torch.bool)
    km[1] = False  # a whole batch row with no key ([B, Tk] form)
    g = s.gen(11)
    for mode in ("train", "eval"):
        m = s.module(form)
        m.train(mode == "train")
        for label, mk, rows in (("[B, Tq, Tk] mask, row (0, 1) empty", mask, (0, 1)), ("[B, Tk] mask, batch row 1 empty", km, (1,))):
            torch.manual_seed(s.seed)
            out = s.call(m, inp, mask=mk)
            where = f"{mode}, {label}"
            _need(torch.isfinite(out.context).all(), f"{where}: context has NaN/inf")
            w = _require_weights(out, where)
            _need(torch.isfinite(w).all(), f"{where}: weights have NaN/inf")
            for k, v in _float_aux(out).items():
                _need(not torch.isnan(v).any(), f"{where}: aux[{k!r}] has NaN")
            _need(_maxabs(w[rows]) == 0, f"{where}: weights of the empty row are {_maxabs(w[rows]):.3g}, expected exactly 0")
            ctx = out.context[rows]
            _need(_maxabs(ctx) <= 1e-6, f"{where}: context of the empty row is {_maxabs(ctx):.3g}, expected 0")
            if mode == "train":
                for v in list(inp.values()) + list(m.parameters()):
                    if v is not None:
                        v.grad = None
                loss = (out.context * torch.randn(out.context.shape, generator=g)).sum() + w.sum() + _aux_loss(out, g)
                if loss.requires_grad:
                    loss.backward()
                    for k, v in _leaves(inp).items():
                        _need(v.grad is None or torch.isfinite(v.grad).all(), f"{where}: gradient of {k} has NaN/inf")
                    for n, p in m.named_parameters():
                        _need(p.grad is None or torch.isfinite(p.grad).all(), f"{where}: gradient of parameter {n} has NaN/inf")
    return f"{form}: zero, finite forward and backward"


def _causal_forms(s: _Suite) -> list[str]:
    if s.query_only:
        return ["query-only"]
    return ["self"] if s.spec.self_attention else ["cross"]


@_check("causal", "under causal_mask, output t does not change with (and has zero gradient w.r.t.) query/key/value after t")
def _c_causal(s: _Suite) -> str:
    if not s.spec.causal_safe:
        raise _Skip("spec says causal_safe=False")
    T = 5
    form = _causal_forms(s)[0]
    inp0 = s.inputs(form, tq=T, tk=T)
    b = inp0["query"].shape[0]
    cmask = None if form == "query-only" else causal_mask(T)[None].expand(b, T, T).clone()
    paths = [True, False] if s.spec.fused else [True]
    g = s.gen(13)
    for nw in paths:
        path = "reference path" if nw else "fast path"
        # 1. perturbation, eval mode (covers non-differentiable variants)
        m = s.module(form).eval()
        with torch.no_grad():
            base = s.call(m, inp0, mask=cmask, need_weights=nw)
            for t in range(T - 1):
                pert = {k: (_perturb(v, (slice(None), slice(t + 1, None)), g) if v is not None else None) for k, v in inp0.items()}
                out = s.call(m, pert, mask=cmask, need_weights=nw)
                d = _maxabs(out.context[:, : t + 1] - base.context[:, : t + 1])
                _need(d <= ATOL, f"{path}: changing inputs after position {t} changes output {t} (and before) by {d:.3g}")
                if nw and out.weights is not None and form != "query-only":
                    d = _maxabs(out.weights[:, : t + 1] - base.weights[:, : t + 1])
                    _need(d <= ATOL, f"{path}: changing inputs after {t} changes weights up to {t} by {d:.3g}")
        # 2. gradients, train mode (differentiable variants)
        if not s.spec.differentiable:
            continue
        m = s.module(form).train()
        for t in range(T - 1):
            inp = _grad_inputs(inp0)
            torch.manual_seed(s.seed)
            out = s.call(m, inp, mask=cmask, need_weights=nw)
            loss = out.context[:, t].sum()
            if not loss.requires_grad:
                break
            loss.backward()
            for k, v in _leaves(inp).items():
                if v.grad is None:
                    continue
                leak = _maxabs(v.grad[:, t + 1 :])
                _need(leak <= ZERO_TOL * (1 + _maxabs(v.grad)),
                      f"{path}: d output[{t}] / d {k}[after {t}] = {leak:.3g}, expected 0")
    return f"{form}, T={T}, " + " and ".join("reference path" if nw else "fast path" for nw in paths) + (
        ", perturbation + gradients" if s.spec.differentiable else ", perturbation (not differentiable)"
    )


@_check("batch-independence", "output row b does not change with (nor has gradient w.r.t.) the other rows' inputs and masks")
def _c_batch(s: _Suite) -> str:
    msgs = []
    g = s.gen(17)
    for form in s.forms():
        inp0 = s.inputs(form, b=3)
        b, tq, tk = s.lengths(inp0)
        mask = None if form == "query-only" else s.random_mask(b, tq, tk)
        m = s.module(form).eval()
        with torch.no_grad():
            base = s.call(m, inp0, mask=mask)
            pert = {k: (_perturb(v, (slice(1, None),), g) if v is not None else None) for k, v in inp0.items()}
            pmask = None if mask is None else torch.cat([mask[:1], s.random_mask(b - 1, tq, tk, offset=99)])
            out = s.call(m, pert, mask=pmask)
        d = _maxabs(out.context[0] - base.context[0])
        _need(d <= ATOL, f"{form}: changing rows 1..{b - 1} changes row 0's context by {d:.3g}")
        if out.weights is not None and base.weights is not None:
            d = _maxabs(out.weights[0] - base.weights[0])
            _need(d <= ATOL, f"{form}: changing rows 1..{b - 1} changes row 0's weights by {d:.3g}")
        if s.spec.differentiable:
            m = s.module(form).train()
            inp = _grad_inputs(inp0)
            torch.manual_seed(s.seed)
            o = s.call(m, inp, mask=mask)
            loss = o.context[0].sum()
            if loss.requires_grad:
                loss.backward()
                for k, v in _leaves(inp).items():
                    if v.grad is not None:
                        leak = _maxabs(v.grad[1:])
                        _need(leak <= ZERO_TOL * (1 + _maxabs(v.grad)), f"{form} (train): d context[0] / d {k}[1:] = {leak:.3g}, expected 0")
        msgs.append(form)
    return "rows independent in " + ", ".join(msgs)


@_check("gradients", "gradients reach every parameter (non-differentiable: declared aux tensors exist, finite, carry gradient)")
def _c_grads(s: _Suite) -> str:
    form = s.forms()[-1]
    m = s.module(form).train()
    inp = s.inputs(form)
    b, tq, tk = s.lengths(inp)
    mask = None if form == "query-only" else s.random_mask(b, tq, tk)
    torch.manual_seed(s.seed)
    out = s.call(m, inp, mask=mask)
    g = s.gen(19)
    notes = []
    if s.spec.differentiable:
        loss = (out.context * torch.randn(out.context.shape, generator=g)).sum() + _aux_loss(out, g)
    else:
        aux = out.aux or {}
        missing = [k for k in s.spec.aux_keys if k not in aux]
        _need(not missing, f"aux lacks declared key(s) {', '.join(missing)} (has: {', '.join(aux) or 'none'})")
        for k in s.spec.aux_keys:
            _need(isinstance(aux[k], Tensor) and torch.isfinite(aux[k]).all(), f"aux[{k!r}] is not a finite tensor")
        lp = aux["log_prob"]
        _need(lp.requires_grad, "aux['log_prob'] carries no gradient (REINFORCE could not train the scores)")
        loss = (out.context * torch.randn(out.context.shape, generator=g)).sum() + lp.sum()
        notes.append(f"aux {', '.join(s.spec.aux_keys)} finite")
    params = [(n, p) for n, p in m.named_parameters() if p.requires_grad]
    if not params:
        return "; ".join(notes + ["no parameters"])
    _need(loss.requires_grad, "the loss does not depend on any parameter")
    loss.backward()
    dead = [n for n, p in params if p.grad is None]
    _need(not dead, f"no gradient reaches {', '.join(dead)}")
    bad = [n for n, p in params if not torch.isfinite(p.grad).all()]
    _need(not bad, f"non-finite gradient in {', '.join(bad)}")
    zero = [n for n, p in params if not (p.grad != 0).any()]
    _need(not zero, f"gradient is identically zero for {', '.join(zero)}")
    return "; ".join(notes + [f"{len(params)} parameter tensor(s) get finite, non-zero gradients"])


@_check("aux", "every aux key the spec declares is returned as a finite tensor with a leading batch dim")
def _c_aux(s: _Suite) -> str:
    if not s.spec.aux_keys:
        raise _Skip("spec declares no aux_keys")
    probs = []
    for form in s.forms():
        for mode in ("train", "eval"):
            m = s.module(form)
            m.train(mode == "train")
            inp = s.inputs(form)
            torch.manual_seed(s.seed)
            with torch.no_grad():
                out = s.call(m, inp)
            aux = out.aux or {}
            for k in s.spec.aux_keys:
                v = aux.get(k)
                if not isinstance(v, Tensor):
                    probs.append(f"{form}/{mode}: aux[{k!r}] missing (has: {', '.join(aux) or 'none'})")
                elif not torch.isfinite(v).all():
                    probs.append(f"{form}/{mode}: aux[{k!r}] has NaN/inf")
                elif v.dim() == 0 or v.shape[0] != inp["query"].shape[0]:
                    probs.append(f"{form}/{mode}: aux[{k!r}] is {_shape(v)}, expected a leading batch dim {inp['query'].shape[0]}")
    _need(not probs, "; ".join(probs[:4]))
    return f"{', '.join(s.spec.aux_keys)} present and finite"


@_check("gradcheck", "torch.autograd.gradcheck in float64 on a tiny masked case (eval mode)")
def _c_gradcheck(s: _Suite) -> str:
    if not s.spec.differentiable:
        raise _Skip("spec says differentiable=False (estimator via aux)")
    form = s.forms()[-1]
    m = s.module(form).double().eval()
    inp = s.inputs(form, b=2, tq=3 if form == "cross" else 3, tk=4, dtype=torch.float64)
    b, tq, tk = s.lengths(inp)
    mask = None
    if form != "query-only":
        mask = torch.ones(b, tk, dtype=torch.bool)
        mask[0, -1] = False
    names = [k for k, v in inp.items() if v is not None]
    state = s.initial_state(m, b, torch.float64) if s.spec.stateful else None

    def fn(*xs: Tensor) -> tuple[Tensor, ...]:
        d = dict(zip(names, xs))
        full = {"query": d["query"], "key": d.get("key"), "value": d.get("value")}
        out = s.call(m, full, mask=mask, state=copy.deepcopy(state))
        return (out.context,) + ((out.weights,) if out.weights is not None else ())

    xs = tuple(inp[k].detach().clone().requires_grad_(True) for k in names)
    try:
        torch.autograd.gradcheck(fn, xs, eps=GRADCHECK_EPS, atol=GRADCHECK_ATOL, rtol=GRADCHECK_RTOL, fast_mode=True)
    except GradcheckError as exc:
        said = str(exc).strip().splitlines()[0].rstrip(",")
        where = _gradient_mismatch(fn, xs, names, ("context", "weights"))
        raise _Fail(f"{form}: analytical and numerical gradients differ: {where} (gradcheck: {said})") from None
    return f"{form}: gradients w.r.t. {', '.join(names)} match finite differences"


def _index(shape: torch.Size, flat: int) -> str:
    return "[" + ", ".join(str(int(i)) for i in torch.unravel_index(torch.tensor(flat), shape)) + "]"


def _gradient_mismatch(fn: Callable[..., tuple[Tensor, ...]], xs: tuple[Tensor, ...], in_names: list[str],
                       out_names: tuple[str, ...]) -> str:
    """Say where the backward is wrong: the worst (output, input) pair and its largest difference.

    gradcheck's fast mode only reports a random projection of the Jacobians, which
    tells a plugin author nothing about *which* input's gradient is wrong. On the
    kit's tiny float64 inputs the full Jacobians are cheap: one backward per output
    element (analytical) and two forwards per input element (central differences).
    """
    with torch.no_grad():
        outs = fn(*xs)
    numerical: list[list[Tensor]] = [[torch.zeros(o.numel(), x.numel(), dtype=o.dtype) for x in xs] for o in outs]
    for j, x in enumerate(xs):
        flat = x.detach().reshape(-1)
        for i in range(flat.numel()):
            plus, minus = list(map(Tensor.detach, xs)), list(map(Tensor.detach, xs))
            for sign, args in ((1.0, plus), (-1.0, minus)):
                t = flat.clone()
                t[i] += sign * GRADCHECK_EPS
                args[j] = t.view_as(x)
            with torch.no_grad():
                up, down = fn(*plus), fn(*minus)
            for k, (u, d) in enumerate(zip(up, down)):
                numerical[k][j][:, i] = ((u - d) / (2 * GRADCHECK_EPS)).reshape(-1)
    worst = None
    mismatched: list[str] = []
    for k, o in enumerate(outs):
        oname = out_names[k] if k < len(out_names) else f"output {k}"
        for r in range(o.numel()):
            xs_r = tuple(x.detach().clone().requires_grad_(True) for x in xs)
            out_r = fn(*xs_r)[k].reshape(-1)[r]
            grads = torch.autograd.grad(out_r, xs_r, allow_unused=True) if out_r.requires_grad else (None,) * len(xs)
            for j, gr in enumerate(grads):
                ana = torch.zeros(xs[j].numel(), dtype=o.dtype) if gr is None else gr.reshape(-1)
                diff = (ana - numerical[k][j][r]).abs()
                tol = GRADCHECK_ATOL + GRADCHECK_RTOL * numerical[k][j][r].abs()
                excess = diff - tol
                c = int(excess.argmax())
                if excess[c] > 0:
                    label = f"{oname} w.r.t. {in_names[j]}"
                    if label not in mismatched:
                        mismatched.append(label)
                    if worst is None or diff[c] > worst[0]:
                        worst = (float(diff[c]), label, f"d {oname}{_index(o.shape, r)} / d {in_names[j]}{_index(xs[j].shape, c)}",
                                 float(ana[c]), float(numerical[k][j][r, c]))
    if worst is None:
        return "no single Jacobian entry is off by more than the tolerance (is the backward nondeterministic?)"
    d, label, entry, a, n = worst
    return (f"{label}: max |analytical - numerical| = {d:.3g} at {entry} (analytical {a:.4g}, numerical {n:.4g}); "
            f"mismatched pairs: {', '.join(mismatched)}")


@_check("fused.fast-equals-reference", "need_weights=False (fast path) and need_weights=True (reference path) give the same context")
def _c_fused(s: _Suite) -> str:
    if not s.spec.fused:
        raise _Skip("spec says fused=False")
    worst = 0.0
    for form in s.forms():
        m = s.module(form).eval()
        inp = s.inputs(form)
        b, tq, tk = s.lengths(inp)
        masks = [None] if form == "query-only" else [None, s.random_mask(b, tq, tk)]
        for mask in masks:
            with torch.no_grad():
                fast = s.call(m, inp, mask=mask, need_weights=False)
                ref = s.call(m, inp, mask=mask, need_weights=True)
            d = _maxabs(fast.context - ref.context)
            worst = max(worst, d)
            _need(d <= ATOL, f"{form}{' masked' if mask is not None else ''}: fast and reference contexts differ by {d:.3g}")
    return f"max difference {worst:.1e}"


@_check("eval-deterministic", "two eval-mode calls (different RNG states) give identical outputs")
def _c_eval(s: _Suite) -> str:
    for form in s.forms():
        m = s.module(form).eval()
        inp = s.inputs(form)
        b, tq, tk = s.lengths(inp)
        mask = None if form == "query-only" else s.random_mask(b, tq, tk)
        with torch.no_grad():
            torch.manual_seed(1)
            o1 = s.call(m, inp, mask=mask)
            torch.manual_seed(2)
            o2 = s.call(m, inp, mask=mask)
        _need(torch.equal(o1.context, o2.context), f"{form}: context differs between two eval calls by {_maxabs(o1.context - o2.context):.3g}")
        if o1.weights is not None and o2.weights is not None:
            _need(torch.equal(o1.weights, o2.weights), f"{form}: weights differ between two eval calls")
    return "identical in " + ", ".join(s.forms())


def _numbers_in_order(msg: str, nums: tuple[int, ...]) -> bool:
    pat = r"(?<!\d)" + r"\D{1,12}".join(str(n) for n in nums) + r"(?!\d)"
    return re.search(pat, msg) is not None


def _expect_value_error(s: _Suite, label: str, arg: str, thunk: Callable[[], Any], *,
                        received: tuple[int, ...] | None = None, expected: tuple[str, ...] = ()) -> str | None:
    """None if ``thunk`` raises a helpful ValueError, else a problem description."""
    try:
        thunk()
    except ValueError as exc:
        msg = str(exc)
        lacks = []
        if not re.search(rf"\b{re.escape(arg)}\b", msg):
            lacks.append(f"the argument name {arg!r}")
        if received is not None and not _numbers_in_order(msg, received):
            lacks.append(f"the received shape {list(received)}")
        for e in expected:
            if e.lower() not in msg.lower():
                lacks.append(f"the expected {e!r}")
        if lacks:
            return f"{label}: ValueError message {msg!r} does not show {', '.join(lacks)}"
        return None
    except Exception as exc:  # noqa: BLE001
        return f"{label}: raised {type(exc).__name__} ({exc}), expected ValueError"
    return f"{label}: accepted silently, expected ValueError"


@_check("errors.inputs", "wrong rank or feature size of query/key/value raises ValueError naming the argument, expected and received shapes")
def _c_err_inputs(s: _Suite) -> str:
    probs: list[str | None] = []
    form = s.forms()[-1]
    m = s.module(form).eval()
    inp = s.inputs(form)
    b, tq, tk = s.lengths(inp)
    dq, dk, dv = s.dims(form)
    q = inp["query"]

    def run(**over: Any) -> Callable[[], Any]:
        return lambda: s.call(m, {**inp, **over})

    probs.append(_expect_value_error(s, "2-D query", "query", run(query=q[:, 0]), received=(b, dq), expected=("expected",)))
    probs.append(_expect_value_error(s, "query feature size", "query", run(query=torch.randn(b, tq, dq + 1)),
                                     received=(b, tq, dq + 1), expected=("expected", str(dq))))
    n = 2
    if form == "cross":
        k, v = inp["key"], inp["value"]
        probs.append(_expect_value_error(s, "key feature size", "key", run(key=torch.randn(b, tk, dk + 1)),
                                         received=(b, tk, dk + 1), expected=("expected", str(dk))))
        probs.append(_expect_value_error(s, "value feature size", "value", run(value=torch.randn(b, tk, dv + 1)),
                                         received=(b, tk, dv + 1), expected=("expected", str(dv))))
        probs.append(_expect_value_error(s, "value length != key length", "value", run(value=torch.randn(b, tk + 1, dv)),
                                         received=(b, tk + 1, dv), expected=("expected", str(tk))))
        probs.append(_expect_value_error(s, "key batch != query batch", "key", run(key=k[:1]),
                                         received=(1, tk, dk), expected=("expected",)))
        probs.append(_expect_value_error(s, "4-D value", "value", run(value=v[:, None]), received=(b, 1, tk, dv),
                                         expected=("expected",)))
        n += 5
    elif form == "query-only":
        probs.append(_expect_value_error(s, "key given to a query-only variant", "key",
                                         lambda: s.call(m, {"query": q, "key": q, "value": None})))
        n += 1
    real = [p for p in probs if p]
    _need(not real, "; ".join(real))
    return f"{n} bad inputs rejected with helpful messages ({form})"


@_check("errors.mask", "a mask of wrong shape or dtype raises ValueError naming 'mask', the expected and the received shape/dtype")
def _c_err_mask(s: _Suite) -> str:
    m = s.module(s.forms()[-1]).eval()
    if s.query_only:
        inp = s.inputs("query-only")
        b, tq, _ = s.lengths(inp)
        p = _expect_value_error(s, "mask given to a query-only variant", "mask",
                                lambda: s.call(m, inp, mask=torch.ones(b, tq, dtype=torch.bool)))
        _need(p is None, p or "")
        return "query-only variant rejects a mask"
    form = s.masked_form()
    m = s.module(form).eval()
    inp = s.inputs(form)
    b, tq, tk = s.lengths(inp)
    probs = [
        _expect_value_error(s, "mask [B, Tk+1]", "mask", lambda: s.call(m, inp, mask=torch.ones(b, tk + 1, dtype=torch.bool)),
                            received=(b, tk + 1), expected=("expected", str(tk))),
        _expect_value_error(s, "mask [B, Tq, Tk+1]", "mask",
                            lambda: s.call(m, inp, mask=torch.ones(b, tq, tk + 1, dtype=torch.bool)),
                            received=(b, tq, tk + 1), expected=("expected", str(tk))),
        _expect_value_error(s, "mask [B+1, Tk]", "mask", lambda: s.call(m, inp, mask=torch.ones(b + 1, tk, dtype=torch.bool)),
                            received=(b + 1, tk), expected=("expected",)),
        _expect_value_error(s, "float mask", "mask", lambda: s.call(m, inp, mask=torch.ones(b, tk)),
                            expected=("bool", "float")),
        _expect_value_error(s, "int mask", "mask", lambda: s.call(m, inp, mask=torch.ones(b, tq, tk, dtype=torch.long)),
                            expected=("bool", "int")),
    ]
    real = [p for p in probs if p]
    _need(not real, "; ".join(real))
    return f"{form}: 5 bad masks rejected with helpful messages"


def _expect_dtype_error(label: str, arg: str, thunk: Callable[[], Any], dtypes: tuple[torch.dtype, ...]) -> str | None:
    """None if ``thunk`` raises a ValueError naming ``arg`` and every dtype in ``dtypes``, else the problem."""
    try:
        thunk()
    except ValueError as exc:
        msg = str(exc)
        lacks = [] if re.search(rf"\b{re.escape(arg)}\b", msg) else [f"the argument name {arg!r}"]
        lacks += [f"the dtype {d}" for d in dtypes if str(d) not in msg and str(d).replace("torch.", "") not in msg]
        return f"{label}: ValueError message {msg!r} does not show {', '.join(lacks)}" if lacks else None
    except Exception as exc:  # noqa: BLE001
        return f"{label}: raised {type(exc).__name__} ({exc}), expected ValueError naming {arg!r} and the dtypes"
    return f"{label}: accepted silently, expected ValueError"


@_check("errors.dtypes", "a key/value whose dtype differs from the query's, or a non-floating input, raises ValueError naming the argument and both dtypes")
def _c_err_dtypes(s: _Suite) -> str:
    form = s.forms()[-1]
    m = s.module(form).eval()
    inp = s.inputs(form)
    q = inp["query"]
    probs = [_expect_dtype_error("int64 query", "query", lambda: s.call(m, {**inp, "query": q.round().long()}), (torch.int64,))]
    if form == "cross":
        k, v = inp["key"], inp["value"]
        half = {**inp, "query": q.half()}
        probs += [
            # float16 next to float32 is the raw "expected m1 and m2 to have the same dtype" case of issue 12.
            _expect_dtype_error("float16 query, float32 key", "key",
                                lambda: s.call(m, {**half, "value": v.half()}), (torch.float16, torch.float32)),
            _expect_dtype_error("float32 query and key, float64 value", "value",
                                lambda: s.call(m, {**inp, "value": v.double()}), (torch.float32, torch.float64)),
            _expect_dtype_error("bool key", "key", lambda: s.call(m, {**inp, "key": k > 0}), (torch.bool,)),
        ]
    real = [p for p in probs if p]
    _need(not real, "; ".join(real))
    return f"{len(probs)} inputs of the wrong dtype rejected with their dtypes named ({form})"


def _is_named_nan_error(exc: BaseException) -> bool:
    return "nan" in str(exc).lower()


def _rows_changed(a: Tensor, b: Tensor) -> Tensor:
    """bool ``[B, Tq]``: where two contexts ``[B, Tq, Dv]`` differ by more than :data:`ATOL`."""
    return ((a - b).abs() > ATOL).any(-1)


def _moved_rows(s: _Suite, m: nn.Module, inp: dict[str, Tensor | None], arg: str, bi: int, pos: int,
                mask: Tensor | None, need_weights: bool, clean: Tensor, g: torch.Generator, tries: int = 3) -> set[int]:
    """Rows of item ``bi`` whose context moves when ``inp[arg][bi, pos]`` is replaced by random values.

    The kit cannot read a variant's equations, so "depends on" is what moves: location
    scores ignore the keys, a query row ignores the other queries, an NTM step ignores later steps.
    """
    moved = torch.zeros(clean.shape[1], dtype=torch.bool)
    with torch.no_grad():
        for _ in range(tries):
            pert = dict(inp)
            t = inp[arg].detach().clone()
            t[bi, pos] = 3.0 * torch.randn(t[bi, pos].shape, generator=g, dtype=t.dtype)
            pert[arg] = t
            moved |= _rows_changed(s.call(m, pert, mask=mask, need_weights=need_weights).context, clean)[bi]
    return {int(r) for r in moved.nonzero().flatten()}


@_check("nan.propagates", "a NaN in query[b, t] (or in a key/value position row t attends to) gives NaN in that row's context "
        "or an error naming NaN, never a finite answer; rows and batch items that do not depend on it stay finite")
def _c_nan(s: _Suite) -> str:
    form = s.forms()[-1]  # cross when possible: a NaN query then does not also sit in the keys
    inp = s.inputs(form, b=3, tq=4 if form != "cross" else None)
    b, tq, tk = s.lengths(inp)
    mask = None if form == "query-only" else s.random_mask(b, tq, tk)
    bi, t = 1, 1  # the poisoned batch item and query row; items 0 and 2 must not notice
    g = s.gen(23)
    m = s.module(form).eval()
    with torch.no_grad():
        ref = s.call(m, inp, mask=mask)
    w = _require_weights(ref, f"{form} clean call")
    cases = [("query", t)]
    if form == "cross":
        cases += [("key", int(w[bi, 0].argmax())), ("value", int(w[bi, 0].argmax()))]  # a key row 0 attends to
    notes = []
    for arg, pos in cases:
        label = f"NaN in {arg}[{bi}, {pos}]"
        for nw in ([True, False] if s.spec.fused else [True]):
            where = label + ("" if nw else " (fast path)")
            with torch.no_grad():
                clean = s.call(m, inp, mask=mask, need_weights=nw).context
            moved = _moved_rows(s, m, inp, arg, bi, pos, mask, nw, clean, g)
            # A row always reads its own query, and a value it puts weight on (so a variant
            # that hides NaN by ignoring it cannot hide behind an unlucky perturbation).
            if arg == "query":
                must_nan = moved | {t}
            elif arg == "value":
                must_nan = moved | {int(r) for r in (w[bi, :, pos] > 0).nonzero().flatten()}
            else:
                must_nan = moved
            # Rows of item bi that must stay finite: only where the NaN sits in a query and
            # nothing else (self-attention rows all read every value, and 0 * NaN is NaN even
            # on a masked key, so a NaN spreading there is loud, not silent).
            free = set(range(tq)) - must_nan if (arg == "query" and form != "self") else set()
            bad = dict(inp)
            bad[arg] = inp[arg].detach().clone()
            bad[arg][bi, pos] = float("nan")
            try:
                with torch.no_grad():
                    ctx = s.call(m, bad, mask=mask, need_weights=nw).context
            except Exception as exc:  # noqa: BLE001
                _need(_is_named_nan_error(exc), f"{where}: raised {type(exc).__name__} ({exc}) without naming the NaN")
                notes.append(f"{label}: an error naming NaN")
                continue
            hidden = sorted(r for r in must_nan if not torch.isnan(ctx[bi, r]).any())
            _need(not hidden, f"{where}: context row(s) {hidden} of item {bi} are finite although they read the NaN "
                              f"(a silent wrong answer; NaN in must be NaN out)")
            others = [i for i in range(b) if i != bi and not torch.isfinite(ctx[i]).all()]
            _need(not others, f"{where}: the NaN leaked into batch item(s) {others}, which do not depend on it")
            leaked = sorted(r for r in free if not torch.isfinite(ctx[bi, r]).all())
            _need(not leaked, f"{where}: the NaN leaked into row(s) {leaked} of item {bi}, which do not depend on it")
            notes.append(f"{label} -> NaN in row(s) {sorted(must_nan) or 'none (nothing reads it)'}")
    return f"{form}: " + "; ".join(dict.fromkeys(notes))


def _tree_diff(a: Any, b: Any) -> float:
    """Largest abs difference between two states made of tensors/tuples/lists/dicts (0 when not comparable)."""
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        return _maxabs(a.detach().float() - b.detach().float()) if a.shape == b.shape else float("inf")
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)) and len(a) == len(b):
        return max([_tree_diff(x, y) for x, y in zip(a, b)], default=0.0)
    if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
        return max([_tree_diff(a[k], b[k]) for k in a], default=0.0)
    if hasattr(a, "__dict__") and type(a) is type(b):
        return _tree_diff(vars(a), vars(b))
    return 0.0


@_check("stateful.initial-state", "stateful variants expose initial_state(batch_size, device) and return the next state")
def _c_state_init(s: _Suite) -> str:
    if not s.spec.stateful:
        raise _Skip("spec says stateful=False")
    form = s.forms()[0]
    m = s.module(form).eval()
    inp = s.inputs(form)
    st = s.initial_state(m, inp["query"].shape[0])
    _need(st is not None, "initial_state returned None")
    with torch.no_grad():
        out = s.call(m, inp, state=st)
    _need(out.state is not None, "forward returned state=None")
    return f"initial_state -> {type(st).__name__}; forward returns {type(out.state).__name__}"


@_check("stateful.steps-equal-call", "Tq steps in one call == Tq calls of one step, chaining the returned state")
def _c_state_chain(s: _Suite) -> str:
    if not s.spec.stateful:
        raise _Skip("spec says stateful=False")
    form = s.forms()[0]
    m = s.module(form).eval()
    inp = s.inputs(form, tq=4) if form != "cross" else s.inputs(form, tq=4)
    b = inp["query"].shape[0]
    with torch.no_grad():
        whole = s.call(m, inp, state=s.initial_state(m, b))
        st = s.initial_state(m, b)
        ctxs, ws = [], []
        T = inp["query"].shape[1]
        for t in range(T):
            step_inp = dict(inp)
            step_inp["query"] = inp["query"][:, t : t + 1]
            if form == "self":  # self-attention over a prefix is not a single step; feed keys explicitly
                raise _Skip("stateful self-attention: step-wise keys are variant-specific")
            o = s.call(m, step_inp, state=st)
            st = o.state
            ctxs.append(o.context)
            if o.weights is not None:
                ws.append(o.weights)
    d = _maxabs(torch.cat(ctxs, 1) - whole.context)
    _need(d <= ATOL, f"context of {T} chained one-step calls differs from one {T}-step call by {d:.3g}")
    if ws and whole.weights is not None:
        d = _maxabs(torch.cat(ws, 1) - whole.weights)
        _need(d <= ATOL, f"weights of chained steps differ from one call by {d:.3g}")
    d = _tree_diff(st, whole.state)
    _need(d <= ATOL, f"final state of chained steps differs from one call's by {d:.3g}")
    return f"{T} steps chained == one call (context, weights, final state)"


@_check("pointer.logits", "pointer variants return finite aux['logits'] [B, Tq, Tk]; masked keys score below every allowed key")
def _c_pointer(s: _Suite) -> str:
    if not s.spec.pointer_logits:
        raise _Skip("spec says pointer_logits=False")
    form = s.masked_form()
    for mode in ("train", "eval"):
        m = s.module(form)
        m.train(mode == "train")
        inp = s.inputs(form)
        b, tq, tk = s.lengths(inp)
        mask = s.random_mask(b, tq, tk)
        torch.manual_seed(s.seed)
        with torch.no_grad():
            out = s.call(m, inp, mask=mask)
        lg = (out.aux or {}).get("logits")
        _need(isinstance(lg, Tensor), f"{mode}: aux has no 'logits' (has: {', '.join(out.aux or {}) or 'none'})")
        _need(tuple(lg.shape) == (b, tq, tk), f"{mode}: aux['logits'] {_shape(lg)}, expected [{b}, {tq}, {tk}]")
        _need(torch.isfinite(lg).all(), f"{mode}: aux['logits'] has NaN/inf (use finfo.min on masked keys)")
        lo_allowed = lg.masked_fill(~mask, float("inf")).amin(-1)
        hi_masked = lg.masked_fill(mask, float("-inf")).amax(-1)
        _need(bool((hi_masked < lo_allowed).all()), f"{mode}: a masked key's logit is not below every allowed key's")
    return f"aux['logits'] {_shape(lg)} finite, masked keys below allowed"


@_check("multihead", "create_attention(name, D, num_heads=2) passes the shape, mask, causal and NaN checks")
def _c_multihead(s: _Suite) -> str:
    raise _Skip("run separately")  # placeholder; replaced in check_attention


_MULTIHEAD_CHECKS = ("shapes.self", "shapes.cross", "shapes.batch1", "weights.distribution", "mask.forms-agree",
                     "mask.fully-masked", "causal", "nan.propagates")
#: what runs inside the wrapper, in run order ("construct" first).
_MULTIHEAD_RUN = tuple(n for n, _ in _CHECK_FUNCS if n in ("construct", *_MULTIHEAD_CHECKS))


# --------------------------------------------------------------------------- entry point


def _run(s: _Suite, names: tuple[str, ...] | None = None, prefix: str = "") -> Iterator[CheckResult]:
    for name, fn in _CHECK_FUNCS:
        if name == "multihead" or (names is not None and name not in names):
            continue
        try:
            # The suite's device as the default one: modules, inputs and masks a check makes land there.
            with s.device:
                msg = fn(s)
            yield CheckResult(prefix + name, PASSED, msg or "")
        except _Skip as exc:
            yield CheckResult(prefix + name, SKIPPED, str(exc))
        except _Fail as exc:
            yield CheckResult(prefix + name, FAILED, str(exc))
        except Exception as exc:  # noqa: BLE001 - a crash inside a check is that check's failure
            yield CheckResult(prefix + name, FAILED, f"raised {type(exc).__name__}: {exc}")


def planned_checks(spec: AttentionSpec) -> list[str]:
    """The names :func:`check_attention` reports for a variant with this spec, in run order.

    Every check of :data:`CHECKS` appears (capability-driven ones as skipped when the
    capability is absent), then either ``"multihead"`` (skipped: ``multihead=False``) or
    one ``"multihead.<check>"`` per check re-run inside the multi-head wrapper. The
    pytest plugin parametrizes over this list, one test item per name.
    """
    names = [n for n, _ in _CHECK_FUNCS if n != "multihead"]
    if spec.multihead:
        return names + ["multihead." + n for n in _MULTIHEAD_RUN]
    return names + ["multihead"]


def _all_check_names() -> list[str]:
    return [n for n, _ in _CHECK_FUNCS] + ["multihead." + n for n in _MULTIHEAD_RUN]


def _select(checks: Collection[str] | None) -> set[str] | None:
    if checks is None:
        return None
    if isinstance(checks, str):
        checks = (checks,)
    known = _all_check_names()
    unknown = [c for c in checks if c not in known]
    if unknown:
        import difflib

        hints = [f"{c!r}" + (f" (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(c, known, 1)) else "")
                 for c in unknown]
        raise ValueError(f"checks: unknown check name(s) {', '.join(hints)}; known: {', '.join(known)}")
    return set(checks)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The device :func:`check_attention` runs on (its ``device`` argument's rules).

    :raises ValueError: naming ``device``, when it is no device name or that device is not available.
    """
    if device is None:
        return torch.empty(()).device  # the current default device (torch.set_default_device)
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device: expected 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} asked for, but this torch sees no CUDA device (use 'cpu' or 'auto')")
    if dev.type not in ("cpu", "cuda") and not hasattr(torch, dev.type):
        raise ValueError(f"device: {device!r} is not available here")
    return dev


def check_attention(
    name_or_factory: str | Callable[..., nn.Module],
    *,
    spec: AttentionSpec | None = None,
    query_dim: int = 8,
    key_dim: int | None = None,
    value_dim: int | None = None,
    seed: int = 0,
    checks: Collection[str] | None = None,
    device: str | torch.device | None = None,
    **kwargs: Any,
) -> ConformanceReport:
    """Run the conformance checks on one variant and return the report (never raises for a failing check).

    :param name_or_factory: a registered name (``"additive"``), or a factory
        ``factory(query_dim, key_dim, value_dim, **kwargs) -> nn.Module`` (usually the class),
        in which case ``spec`` is required.
    :param spec: the variant's :class:`~attnzoo.AttentionSpec`; with a name it overrides the registered one.
    :param query_dim: Dq of the tiny test inputs (default 8).
    :param key_dim: Dk for cross-attention (default Dq).
    :param value_dim: Dv for cross-attention (default Dk + 4, so that Dv != Dk is exercised).
    :param seed: seeds the module's initialisation and the inputs.
    :param checks: run only these checks (names from :func:`planned_checks`; ``"multihead"``
        means every ``multihead.*`` check). Each check builds its module and inputs from
        ``seed`` alone, so a check run on its own gives the same result as in a full run.
    :param device: where modules, inputs, masks and random generators live: ``"cpu"``, ``"cuda"``
        (``"cuda:1"``...), ``"auto"`` (CUDA when available, else the CPU) or None (torch's current
        default device, so ``torch.set_default_device("cuda")`` then ``check_attention(name)`` checks
        on CUDA). The report names it. Random inputs come from a generator on that device, so the
        numbers differ from the CPU's but every check is the same.
    :param kwargs: variant options (the spec's ``defaults`` fill the rest).
    :raises UnknownAttentionError: ``name_or_factory`` is a name that is not registered.
    :raises TypeError: a factory without ``spec``.
    :raises ValueError: an unknown name in ``checks`` (with the close match), or a ``device`` that
        is not a device name or is not available here.
    """
    wanted = _select(checks)
    dev = resolve_device(device)
    spec, build, build_mh = _builders(name_or_factory, spec, kwargs)
    key_dim = query_dim if key_dim is None else key_dim
    value_dim = key_dim + 4 if value_dim is None else value_dim
    report = ConformanceReport(spec.name, device=str(dev))
    main = None if wanted is None else tuple(n for n, _ in _CHECK_FUNCS if n in wanted)
    if main is None or main:
        suite = _Suite(spec, build, query_dim=query_dim, key_dim=key_dim, value_dim=value_dim, seed=seed, device=dev)
        report.results.extend(_run(suite, main))

    report.results.extend(_multihead_results(spec, build_mh, wanted, query_dim=query_dim, key_dim=key_dim,
                                             value_dim=value_dim, seed=seed, device=dev))
    return report


Builder = Callable[[int, int, int], nn.Module]


def _builders(name_or_factory: str | Callable[..., nn.Module], spec: AttentionSpec | None,
              kwargs: dict[str, Any]) -> tuple[AttentionSpec, Builder, Builder]:
    """``(spec, build, build_mh)``: the variant's spec and how to build it ``(dq, dk, dv)``, alone and as
    two heads. A name goes through the registry; a factory too, as the entry it would be registered as,
    so the kit builds an outside author's class the way the zoo will (``create_from_entry``)."""
    from attnzoo.registry import AttentionEntry, create_from_entry, get_entry

    if isinstance(name_or_factory, str):
        entry = get_entry(name_or_factory)
        spec = spec or entry.spec
    elif callable(name_or_factory):
        if not isinstance(spec, AttentionSpec):
            raise TypeError("check_attention(factory, spec=...): a factory needs its AttentionSpec as spec=")
        entry = AttentionEntry(spec, name_or_factory, source="check_attention")
    else:
        raise TypeError(f"check_attention: expected a variant name or a factory, got {type(name_or_factory).__name__}")

    def build(dq: int, dk: int, dv: int) -> nn.Module:
        return create_from_entry(entry, dq, dk, dv, **kwargs)

    def build_mh(dq: int, dk: int, dv: int) -> nn.Module:
        return create_from_entry(entry, dq, dk, dv, num_heads=2, **kwargs)

    return spec, build, build_mh


def _multihead_results(spec: AttentionSpec, build_mh: Builder, wanted: set[str] | None, *, query_dim: int,
                       key_dim: int, value_dim: int, seed: int, device: torch.device) -> list[CheckResult]:
    """The ``multihead.*`` checks ``wanted`` asks for: run through the wrapper, or skipped with the spec's reason."""
    sub_names = tuple(n for n in _MULTIHEAD_RUN if wanted is None or "multihead" in wanted or f"multihead.{n}" in wanted)
    if not sub_names:
        return []
    if not spec.multihead:
        why = "spec says multihead=False"
        out = [CheckResult("multihead", SKIPPED, why)] if wanted is None or "multihead" in wanted else []
        return out + [CheckResult(f"multihead.{n}", SKIPPED, why) for n in sub_names if f"multihead.{n}" in (wanted or ())]
    dq = query_dim if query_dim % 2 == 0 else query_dim + 1
    dv = value_dim if value_dim % 2 == 0 else value_dim + 1
    # The wrapper is never fused from the outside (it always returns weights when asked).
    mh_spec = replace(spec, fused=False, multihead=False)
    mh = _Suite(mh_spec, build_mh, query_dim=dq, key_dim=key_dim, value_dim=dv, seed=seed, multihead=True, device=device)
    return _run(mh, sub_names, prefix="multihead.")
