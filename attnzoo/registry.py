"""Names -> specs -> factories, timm style: ``list_attention("*dot*")``, ``create_attention(name, ...)``.

The registry is filled lazily on first use from every plugin's
``register_attention`` hook (built-ins included), plus whatever a notebook or
test adds in-process with :func:`add_attention`.
"""

from __future__ import annotations

import fnmatch
import inspect
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from torch import nn

from attnzoo import plugins
from attnzoo.errors import (DuplicateRegistrationError, SpecError, UnknownAttentionError, UnknownNameError,
                            close_matches)
from attnzoo.multihead import MultiHeadAttention
from attnzoo.spec import CAPABILITIES, AttentionSpec

__all__ = [
    "AttentionEntry",
    "Registry",
    "list_attention",
    "get_spec",
    "get_entry",
    "attention_entry",
    "create_attention",
    "create_from_entry",
    "add_attention",
    "remove_attention",
    "attention_registry",
    "check_kwargs",
    "kwarg_problems",
    "length_kwargs",
]

E = TypeVar("E")


class Registry(Generic[E]):
    """An ordered name -> entry map with wildcard listing and helpful misses.

    :param kind: what the entries are, for messages ("attention variant").
    :param load: returns ``{name: (entry, source)}``; called lazily, again after a plugin reset.
    :param unknown: the error type raised for a missing name.
    """

    def __init__(
        self,
        kind: str,
        load: Callable[[], dict[str, tuple[E, str]]],
        unknown: Callable[[str, list[str]], Exception] | None = None,
    ) -> None:
        self.kind = kind
        self._load = load
        self._unknown = unknown or (lambda name, known: UnknownNameError(kind, name, known))
        self._loaded: dict[str, tuple[E, str]] | None = None
        self._local: dict[str, tuple[E, str]] = {}
        self._lock = threading.RLock()
        plugins.on_reset(self.invalidate)
        plugins.add_registry(self)  # so `attnzoo plugins` can run this hook and show its failures

    def invalidate(self) -> None:
        """Drop what plugins registered; reload on next access. In-process additions stay."""
        with self._lock:
            self._loaded = None

    def load(self) -> None:
        """Run the plugins' registration hook now if it has not run (failures land on each plugin's record)."""
        self._all()

    def _all(self) -> dict[str, tuple[E, str]]:
        with self._lock:
            if self._loaded is None:
                self._loaded = self._load()
            merged = dict(self._loaded)
            merged.update(self._local)
            return merged

    def add(self, name: str, entry: E, source: str) -> None:
        """Register in-process; a name already taken raises, naming both sources."""
        with self._lock:
            existing = self._all().get(name)
            if existing is not None:
                raise DuplicateRegistrationError(self.kind, name, existing[1], source)
            self._local[name] = (entry, source)

    def remove(self, name: str) -> None:
        """Forget an in-process registration (plugin entries cannot be removed this way)."""
        with self._lock:
            if name not in self._local:
                raise self._unknown(name, sorted(self._local))
            del self._local[name]

    def get(self, name: str) -> E:
        return self.get_with_source(name)[0]

    def get_with_source(self, name: str) -> tuple[E, str]:
        """``(entry, source)`` for ``name``.

        :raises UnknownNameError: (or this registry's ``unknown`` type) with
            close matches, plus a note per plugin that failed to load.
        """
        entries = self._all()
        if name not in entries:
            raise self._unknown(name, sorted(entries))
        return entries[name]

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted names matching an fnmatch ``pattern`` (``"*dot*"``, ``"local-?"``)."""
        return sorted(n for n in self._all() if fnmatch.fnmatchcase(n, pattern))

    def in_order(self) -> list[str]:
        """Every name in registration order: the plugins' in the order they registered, then in-process additions."""
        return list(self._all())

    def __contains__(self, name: object) -> bool:
        return name in self._all()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._all())


@dataclass(frozen=True)
class AttentionEntry:
    """A registered variant: its spec, how to build it, and where it came from."""

    spec: AttentionSpec
    factory: Callable[..., nn.Module]
    source: str = "builtin"

    @property
    def name(self) -> str:
        """The registered name (the spec's)."""
        return self.spec.name


def _accept_attention(spec: Any, factory: Any = None) -> tuple[str, AttentionSpec]:
    if not isinstance(spec, AttentionSpec):
        raise SpecError(f"register(spec, factory): spec must be an attnzoo.AttentionSpec, got {type(spec).__name__}")
    if not callable(factory):
        raise SpecError(
            f"register(spec, factory): factory for {spec.name!r} must be callable "
            f"(factory(query_dim, key_dim, value_dim, **kwargs) -> nn.Module), got {factory!r}"
        )
    return spec.name, (spec, factory)  # type: ignore[return-value]


def _load_attention() -> dict[str, tuple[AttentionEntry, str]]:
    found = plugins.collect("register_attention", "attention variant", _accept_attention)
    return {
        name: (AttentionEntry(spec, factory, source), source)
        for name, ((spec, factory), source) in found.items()
    }


attention_registry: Registry[AttentionEntry] = Registry(
    "attention variant", _load_attention, lambda name, known: UnknownAttentionError(name, known)
)


def list_attention(
    pattern: str = "*", *, family: str | None = None, capability: str | None = None
) -> list[str]:
    """Registered variant names matching ``pattern`` (fnmatch), sorted.

    :param pattern: wildcard, e.g. ``"*dot*"``.
    :param family: keep only this family (e.g. ``"multiplicative"``).
    :param capability: keep only variants with this capability (a key of
        :data:`attnzoo.spec.CAPABILITIES`, e.g. ``"causal_safe"``).
    """
    if capability is not None and capability not in CAPABILITIES:
        raise ValueError(f"capability must be one of {', '.join(CAPABILITIES)}, got {capability!r}")
    out = []
    for name in attention_registry.names(pattern):
        spec = attention_registry.get(name).spec
        if family is not None and spec.family != family:
            continue
        if capability is not None and not spec.has(capability):
            continue
        out.append(name)
    return out


def get_entry(name: str) -> AttentionEntry:
    """The :class:`AttentionEntry` registered as ``name`` (raises UnknownAttentionError)."""
    return attention_registry.get(name)


def attention_entry(attention: AttentionEntry | str | None) -> AttentionEntry | None:
    """The entry of a variant given by name (one lookup) or already resolved (returned as is); None stays None.

    Backbones and their blocks take either, so :func:`attnzoo.resolve.resolve` hands them the
    entry it looked up and nothing below it looks the name up again, while a direct call
    (``TransformerBackbone("dot", ...)``, a notebook) may still pass the name.
    """
    if attention is None or isinstance(attention, AttentionEntry):
        return attention
    return get_entry(attention)


def get_spec(name: str) -> AttentionSpec:
    """The :class:`AttentionSpec` of variant ``name`` (raises UnknownAttentionError with suggestions)."""
    return get_entry(name).spec


def accepted_kwargs(factory: Callable[..., Any]) -> dict[str, Any] | None:
    """Keyword arguments ``factory`` takes beyond the three dims, with defaults; None if it takes ``**kwargs``."""
    target = factory.__init__ if inspect.isclass(factory) else factory  # type: ignore[misc]
    params = inspect.signature(target).parameters
    out: dict[str, Any] = {}
    for p in params.values():
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            return None
        if p.name in ("self", "query_dim", "key_dim", "value_dim") or p.kind is inspect.Parameter.VAR_POSITIONAL:
            continue
        out[p.name] = None if p.default is inspect.Parameter.empty else p.default
    return out


def kwarg_problems(
    what: str,
    accepted: dict[str, Any] | None,
    kwargs: Mapping[str, Any],
    *,
    skip: tuple[str, ...] = (),
    noun: str = "keyword argument",
) -> list[str]:
    """One line per unknown kwarg, with close matches and the accepted ones: the one kwargs checker.

    :param what: who is being built, for the message (``"create_attention('dot')"``, ``"task 'copy'"``).
    :param accepted: :func:`accepted_kwargs` of the factory (None: it takes ``**kwargs``, anything goes).
    :param skip: parameters the caller passes itself (not the user's to give).
    :param noun: what the kwargs are called in the message (``"knob"`` for tasks).
    """
    if accepted is None:
        return []
    accepted = {k: v for k, v in accepted.items() if k not in skip}
    listing = ", ".join(f"{k}={v!r}" for k, v in accepted.items()) or "none"
    out = []
    for key in sorted(set(kwargs) - set(accepted)):
        hint = close_matches(key, list(accepted))
        out.append(f"{what}: unknown {noun} {key!r}" + (f" (did you mean {', '.join(map(repr, hint))}?)" if hint else "")
                   + f"; accepted: {listing}")
    return out


def check_kwargs(
    what: str,
    factory: Callable[..., Any],
    kwargs: Mapping[str, Any],
    *,
    skip: tuple[str, ...] = (),
    noun: str = "keyword argument",
) -> None:
    """Raise TypeError naming every unknown kwarg of ``factory`` (:func:`kwarg_problems`) and listing the accepted ones."""
    problems = kwarg_problems(what, accepted_kwargs(factory), kwargs, skip=skip, noun=noun)
    if problems:
        raise TypeError("\n".join(problems))


def length_kwargs(attention: AttentionEntry | str, kwargs: dict[str, Any] | None, max_len: int, *,
                  key: str = "max_len") -> dict[str, Any]:
    """Copy of ``kwargs`` with ``key`` (``max_len``) raised to cover ``max_len`` when the variant takes it.

    Variants with position-indexed parameters (Luong's *location*) need
    ``max_len >= Tk``; the backbone knows the longest key sequence it will see.
    An explicit value from the caller is kept as given; otherwise the
    variant's own default is used when it is large enough, else ``max_len``.
    The NTM backbone uses the same rule for ``memory_slots``.
    """
    out = dict(kwargs or {})
    entry = attention_entry(attention)
    accepted = accepted_kwargs(entry.factory)
    if accepted is None or key not in accepted or key in out:
        return out
    default = entry.spec.defaults.get(key, accepted[key])
    if not isinstance(default, int) or default < max_len:
        out[key] = int(max_len)
    return out


#: MultiHeadAttention's own options; the rest of create_attention's kwargs go to each head's variant
_WRAPPER_KWARGS = frozenset({"head_dim", "value_head_dim", "out_dim", "bias", "need_weights"})


def create_attention(
    name: str | AttentionEntry,
    query_dim: int,
    key_dim: int | None = None,
    value_dim: int | None = None,
    *,
    num_heads: int | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build variant ``name``: one lookup, then :func:`create_from_entry`.

    :param name: a registered name (an :class:`AttentionEntry` is taken as already looked up, so a
        backbone that passes its ``attention`` argument through works with the entry it is given).
    :param query_dim: Dq. ``key_dim`` defaults to Dq and ``value_dim`` to Dk.
    :param num_heads: wrap in :class:`attnzoo.multihead.MultiHeadAttention`
        with H heads (Q/K/V/output projections); the spec must allow it.
    :param kwargs: variant options; the spec's ``defaults`` fill what is not given.
    :raises UnknownAttentionError: unknown name (with close matches).
    :raises TypeError: unknown kwargs (listing the accepted ones).
    """
    entry = name if isinstance(name, AttentionEntry) else get_entry(name)
    return create_from_entry(entry, query_dim, key_dim, value_dim, num_heads=num_heads, **kwargs)


def create_from_entry(
    entry: AttentionEntry,
    query_dim: int,
    key_dim: int | None = None,
    value_dim: int | None = None,
    *,
    num_heads: int | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build the variant of an already resolved ``entry`` (no name lookup): what backbones call.

    Arguments as :func:`create_attention`'s. The multi-head wrapper takes the entry's factory,
    so it builds each head without looking a name up either.

    :raises ValueError: ``num_heads`` given for a variant whose spec says ``multihead=False``.
    :raises TypeError: unknown kwargs (listing the accepted ones).
    """
    name = entry.spec.name
    opts = {**entry.spec.defaults, **kwargs}
    key_dim = query_dim if key_dim is None else key_dim
    value_dim = key_dim if value_dim is None else value_dim
    if num_heads is not None:
        if not entry.spec.multihead:
            raise ValueError(
                f"num_heads: {name!r} cannot run per head ({entry.spec.notes or 'its spec says multihead=False'})"
            )
        per_head = {k: v for k, v in opts.items() if k not in _WRAPPER_KWARGS}
        check_kwargs(f"create_attention({name!r}, num_heads={num_heads})", entry.factory, per_head)
        return MultiHeadAttention(entry.factory, query_dim, key_dim, value_dim, num_heads=num_heads, name=name, **opts)
    check_kwargs(f"create_attention({name!r})", entry.factory, opts)
    return entry.factory(query_dim, key_dim, value_dim, **opts)


def add_attention(
    spec: AttentionSpec, factory: Callable[..., nn.Module] | None = None
) -> Any:
    """Register a variant in this process (notebooks, tests); not the plugin hook.

    Use directly, ``add_attention(spec, MyAttention)``, or as a class decorator::

        @attnzoo.add_attention(AttentionSpec(name="mine", family="custom", summary="..."))
        class Mine(attnzoo.Attention): ...

    :raises DuplicateRegistrationError: the name is taken (naming both sources).
    """
    if factory is None:
        def decorator(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
            add_attention(spec, f)
            return f

        return decorator
    name, _ = _accept_attention(spec, factory)
    where = f"in-process ({getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', '?')})"
    attention_registry.add(name, AttentionEntry(spec, factory, where), where)
    return factory


def remove_attention(name: str) -> None:
    """Undo :func:`add_attention` for ``name``."""
    attention_registry.remove(name)
