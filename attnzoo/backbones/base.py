"""What every backbone shares: its spec, its output, and small helpers.

A *backbone* wraps an attention variant for one setting (a Transformer block
stack, an RNN encoder-decoder, a pointer network, an NTM controller) or stands
without one as a baseline (an MLP over the flattened input). It is a plain
``nn.Module`` (no Lightning)::

    model = factory(task, entry, d_model=64, attention_kwargs={})   # entry: the variant's AttentionEntry (or None)
    out = model(src, tgt)           # src long [N, S], tgt long [N, T]
    out.logits                      # [N, T, num_classes]
    out.aux                         # {"log_prob": [N], "entropy": [N]} when the variant emits them
    out.attention                   # [N, Tq, Tk] when model.record_attention is True, else None

Teacher forcing everywhere: decoder inputs are ``[BOS, tgt[:, :-1]]`` with
``BOS = num_classes`` an extra id of the target-input embedding.

A factory receives the variant as its :class:`~attnzoo.registry.AttentionEntry`, the
one :func:`attnzoo.resolve.resolve` looked up, and builds it with
:func:`~attnzoo.registry.create_from_entry`: below the resolve step no name is looked up
again. (Built-in factories and models also take a name, for direct calls.) :func:`build`
is what keeps each built-in factory a few lines: it drops the options every backbone is
given (:data:`COMMON_OPTIONS`) that a model has no use for, and :func:`factory_of` gives
the factory the signature its options really have.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from attnzoo.errors import SpecError, fit_reason, pair_does_not_fit
# re-exported: backbones take a variant's entry, and size position-indexed variants with length_kwargs
from attnzoo.registry import AttentionEntry, accepted_kwargs, attention_entry, length_kwargs
from attnzoo.spec import CAPABILITIES, AttentionSpec, validate_name

__all__ = [
    "BackboneSpec",
    "BackboneOutput",
    "AuxAccumulator",
    "AGGREGATED_AUX",
    "COMMON_OPTIONS",
    "accepted_options",
    "attention_entry",
    "build",
    "check_fits",
    "factory_of",
    "length_kwargs",
    "teacher_inputs",
    "longest_src",
    "longest_tgt",
]

#: aux keys summed per example over queries, heads, layers and steps.
AGGREGATED_AUX: tuple[str, ...] = ("log_prob", "entropy")

_ATTENTION_MODES = ("required", "optional", "none")
_OUTPUTS = ("tokens", "pointers")

#: Short reasons shown as "n/a: reason" when a variant lacks a required capability.
_MISSING = {
    "self_attention": "needs a self-attention variant",
    "cross_attention": "needs a cross-attention variant",
    "causal_safe": "needs a causal_safe variant",
    "stateful": "needs a stateful memory variant",
    "differentiable": "needs a differentiable variant",
    "pointer_logits": "needs a variant with pointer logits",
    "fused": "needs a fused variant",
    "multihead": "needs a variant that runs per head (multihead)",
}
#: ... and when it has a capability the backbone cannot use.
_EXCLUDED = {
    "stateful": "needs a stateless variant",
    "pointer_logits": "needs a variant without pointer logits",
}


@dataclass(frozen=True)
class BackboneSpec:
    """What the zoo knows about a backbone without building it.

    Example::

        BackboneSpec(
            name="seq2seq",
            summary="GRU encoder-decoder, Luong attention with input feeding",
            paper="Luong, Pham, Manning 2015",
            attention="optional",
            required_capabilities=("cross_attention",),
        )

    :param attention: ``"required"`` (a variant must be given), ``"optional"``
        (``None`` builds the no-attention baseline) or ``"none"`` (a baseline
        that takes no variant).
    :param required_capabilities: :data:`attnzoo.spec.CAPABILITIES` the variant must have.
    :param excluded_capabilities: capabilities the variant must *not* have
        (e.g. ``stateful`` for a backbone that calls the variant statelessly).
    :param outputs: the ``TaskSpec.output`` kinds it serves (``"tokens"``, ``"pointers"``).
    :param fixed_length: True when the model is built for the training S and T
        only (the MLP): it cannot run a ``test_long`` split.
    :param default_attention: the variant ``attnzoo fit`` runs when none is named; always None
        for a backbone that takes no attention (``attention="none"``).
    """

    name: str
    summary: str
    paper: str = ""
    attention: str = "required"
    required_capabilities: tuple[str, ...] = ()
    outputs: tuple[str, ...] = _OUTPUTS
    fixed_length: bool = False
    excluded_capabilities: tuple[str, ...] = ()
    default_attention: str | None = "scaled-dot"

    def __post_init__(self) -> None:
        validate_name(self.name, "BackboneSpec.name")
        if self.attention == "none":
            object.__setattr__(self, "default_attention", None)
        if not isinstance(self.summary, str) or not self.summary:
            raise SpecError(f"BackboneSpec.summary must be a non-empty string, got {self.summary!r}")
        if self.attention not in _ATTENTION_MODES:
            raise SpecError(f"BackboneSpec.attention must be one of {', '.join(_ATTENTION_MODES)}, got {self.attention!r}")
        for arg in ("required_capabilities", "excluded_capabilities"):
            caps = tuple(getattr(self, arg))
            bad = [c for c in caps if c not in CAPABILITIES]
            if bad:
                raise SpecError(f"BackboneSpec.{arg}: unknown capabilities {bad}; known: {', '.join(CAPABILITIES)}")
            object.__setattr__(self, arg, caps)
        outputs = tuple(self.outputs)
        if not outputs or any(o not in _OUTPUTS for o in outputs):
            raise SpecError(f"BackboneSpec.outputs must be a non-empty subset of {_OUTPUTS}, got {outputs!r}")
        object.__setattr__(self, "outputs", outputs)

    def fits(self, task_spec: Any, attention_spec: AttentionSpec | None) -> str | None:
        """None if (task, variant) can run on this backbone, else a short human reason.

        :param task_spec: a :class:`attnzoo.tasks.TaskSpec` (only ``.output`` is read).
        :param attention_spec: the variant's :class:`AttentionSpec`, or None for "no attention".
        """
        output = getattr(task_spec, "output", "tokens")
        if output not in self.outputs:
            if len(self.outputs) == 1:
                return {"pointers": "pointer tasks only", "tokens": "token tasks only"}[self.outputs[0]]
            return f"cannot serve {output} tasks"
        if attention_spec is None:
            if self.attention == "required":
                return "needs an attention variant"
            return None
        if self.attention == "none":
            return "no attention: baseline"
        for cap in self.required_capabilities:
            if not attention_spec.has(cap):
                return _MISSING.get(cap, f"needs a {cap} variant")
        for cap in self.excluded_capabilities:
            if attention_spec.has(cap):
                return _EXCLUDED.get(cap, f"needs a variant without {cap}")
        return None

    def fits_split(self, split: str) -> str | None:
        """None if the model can evaluate ``split`` ("val", "test", "test_long"), else why not."""
        if split == "test_long" and self.fixed_length:
            return "fixed-length input: cannot run test_long"
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (for ``attnzoo list --json``)."""
        return {
            "name": self.name,
            "summary": self.summary,
            "paper": self.paper,
            "attention": self.attention,
            "required_capabilities": list(self.required_capabilities),
            "excluded_capabilities": list(self.excluded_capabilities),
            "outputs": list(self.outputs),
            "fixed_length": self.fixed_length,
            "default_attention": self.default_attention,
        }


@dataclass
class BackboneOutput:
    """What every backbone's forward returns.

    :ivar logits: ``[N, T, num_classes]``.
    :ivar aux: per-example sums ``[N]`` of the variant's ``log_prob`` / ``entropy``
        over every attention call (queries, heads, layers, steps), when it emits them.
    :ivar attention: one representative ``[N, Tq, Tk]`` map whose rows are
        distributions, only when ``model.record_attention`` is True.
    """

    logits: Tensor
    aux: dict[str, Tensor] = field(default_factory=dict)
    attention: Tensor | None = None


class AuxAccumulator:
    """Sums the aggregated aux keys of many attention calls into per-example ``[N]`` tensors."""

    def __init__(self, keys: Iterable[str] = AGGREGATED_AUX) -> None:
        self.keys = tuple(keys)
        self.totals: dict[str, Tensor] = {}

    def add(self, aux: dict[str, Tensor] | None) -> None:
        if not aux:
            return
        for key in self.keys:
            t = aux.get(key)
            if t is None:
                continue
            per_example = t.reshape(t.shape[0], -1).sum(dim=1)  # (N,)
            prev = self.totals.get(key)
            self.totals[key] = per_example if prev is None else prev + per_example

    def result(self) -> dict[str, Tensor]:
        return dict(self.totals)


def check_fits(spec: BackboneSpec, task: Any, attention: AttentionEntry | None) -> None:
    """Raise :class:`~attnzoo.errors.PairDoesNotFit` (a ValueError) with the spec's reason when
    (task, attention) does not fit ``spec``.

    :func:`attnzoo.backbones.create_backbone` calls it before any factory, with the same
    decision (:func:`attnzoo.errors.fit_reason`) the grid uses for its n/a rows.
    """
    reason = fit_reason(spec, task.spec, None if attention is None else attention.spec)
    if reason is not None:
        raise pair_does_not_fit(spec.name, task.spec.name, None if attention is None else attention.name, reason)


#: options every backbone factory is given whether its model uses them or not: a preset sets them
#: for all its backbones (``num_heads`` reaches the RNNs too). Kwarg checks accept them for every
#: factory (:func:`accepted_options`) and :func:`build` drops the ones a model does not take.
COMMON_OPTIONS: tuple[str, ...] = ("d_model", "num_layers", "num_heads")
#: ... and ``attention_kwargs``, which the harness hands every factory (empty for a baseline)
_GIVEN = (*COMMON_OPTIONS, "attention_kwargs")

F = TypeVar("F", bound=Callable[..., Any])


def accepted_options(factory: Callable[..., Any]) -> dict[str, Any] | None:
    """The options ``factory`` takes, :data:`COMMON_OPTIONS` included, with defaults; None if it takes ``**kwargs``."""
    accepted = accepted_kwargs(factory)
    return None if accepted is None else {**dict.fromkeys(COMMON_OPTIONS), **accepted}


def build(model: Callable[..., nn.Module], *args: Any, **options: Any) -> nn.Module:
    """``model(*args, **options)`` less the given options (:data:`COMMON_OPTIONS`, ``attention_kwargs``)
    that ``model``'s signature does not take: a factory passes on what it was given, restating nothing."""
    takes = inspect.signature(model).parameters
    return model(*args, **{k: v for k, v in options.items() if k in takes or k not in _GIVEN})


def factory_of(model: Callable[..., nn.Module], *, derived: tuple[str, ...] = ()) -> Callable[[F], F]:
    """Decorate a ``build_x(task, attention, ..., **options)`` factory with the signature its options have.

    The signature (which kwarg checks, presets and error listings read) is the factory's own
    parameters, then ``model``'s keyword-only ones it does not name, less ``derived`` (what the
    factory computes from the task itself). ``**options`` goes on to the model through :func:`build`.
    """

    def wrap(factory: F) -> F:
        sig = inspect.signature(factory)
        params = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        named = {p.name for p in params} | set(derived)
        params += [p for p in inspect.signature(model).parameters.values()
                   if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in named]
        factory.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        return factory

    return wrap


def longest_src(task: Any) -> int:
    """The longest S this task produces (training or test_long)."""
    return max(int(task.src_len), int(getattr(task, "long_src_len", None) or 0))


def longest_tgt(task: Any) -> int:
    """The longest T this task produces (training or test_long)."""
    return max(int(task.tgt_len), int(getattr(task, "long_tgt_len", None) or 0))


def teacher_inputs(tgt: Tensor, bos: int) -> Tensor:
    """``[BOS, tgt[:, :-1]]``: the teacher-forced decoder inputs, long ``[N, T]``."""
    start = torch.full_like(tgt[:, :1], bos)  # (N, 1)
    return torch.cat([start, tgt[:, :-1]], dim=1)  # (N, T)


def check_batch(name: str, src: Tensor, tgt: Tensor) -> None:
    """Raise ValueError unless src/tgt are long ``[N, S]`` / ``[N, T]`` with the same N."""
    for arg, t in (("src", src), ("tgt", tgt)):
        if not isinstance(t, Tensor) or t.dim() != 2 or t.dtype != torch.long:
            got = f"{t.dtype} {list(t.shape)}" if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"{name}: {arg} must be a long tensor [N, {'S' if arg == 'src' else 'T'}], got {got}")
    if src.shape[0] != tgt.shape[0]:
        raise ValueError(f"{name}: src and tgt must have the same batch size, got {src.shape[0]} and {tgt.shape[0]}")


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
