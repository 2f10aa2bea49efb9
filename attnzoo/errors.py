"""Error types raised by attnzoo.

Every error attnzoo raises on purpose derives from :class:`AttnzooError`, so a
caller can catch the library's failures without catching everything else.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import Any

__all__ = [
    "AttnzooError",
    "PairDoesNotFit",
    "UnknownAttentionError",
    "UnknownNameError",
    "DuplicateRegistrationError",
    "PluginError",
    "SpecError",
    "close_matches",
    "fit_reason",
    "is_oom_message",
    "pair_does_not_fit",
    "plugin_failure_note",
    "set_plugin_failure_source",
]


class AttnzooError(Exception):
    """Base class of every error attnzoo raises on purpose.

    Errors pickle with their message and attributes, whatever their
    ``__init__`` takes: they cross process boundaries (a leaderboard worker's
    failure, a Ray task), where the default ``cls(*args)`` rebuild would call
    ``__init__`` with the message alone and raise a ``TypeError`` instead.
    """

    def __reduce__(self) -> tuple:
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


def _rebuild(cls: type, args: tuple, state: dict) -> "AttnzooError":
    err = cls.__new__(cls)
    Exception.__init__(err, *args)
    err.__dict__.update(state)
    return err


def close_matches(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Names among ``candidates`` that look like ``name`` (for "did you mean" hints)."""
    candidates = list(candidates)
    found = difflib.get_close_matches(name, candidates, n=n, cutoff=0.5)
    # Substring hits catch short prefixes such as "scaled" -> "scaled-dot" that
    # difflib's ratio ranks too low.
    for c in candidates:
        if len(found) >= n:
            break
        if (name in c or c in name) and c not in found:
            found.append(c)
    return found


class UnknownNameError(AttnzooError, KeyError):
    """A name that is not in a registry (attention variant, task or backbone).

    When a plugin failed to import or register, the name may be one it would
    have provided, so the message ends with one ``note:`` line per failed
    plugin (the user would otherwise see only a "did you mean" for a built-in).

    :param kind: what was looked up ("attention variant", "task").
    :param name: the name that is missing.
    :param known: the names that exist (for the close matches and the listing).
    :param plugin_failures: lines from :func:`attnzoo.plugins.failure_summary`;
        ``None`` (default) asks the plugin host for the failures known so far,
        ``()`` adds no notes.
    """

    def __init__(self, kind: str, name: str, known: Iterable[str], *, plugin_failures: Iterable[str] | None = None):
        self.kind = kind
        self.name = name
        self.known = sorted(known)
        self.suggestions = close_matches(name, self.known)
        self.plugin_failures = list(_known_plugin_failures() if plugin_failures is None else plugin_failures)
        msg = f"unknown {kind} {name!r}"
        if self.suggestions:
            msg += f"; did you mean {', '.join(repr(s) for s in self.suggestions)}?"
        msg += f" (known: {', '.join(self.known) if self.known else 'none'})"
        msg += "".join("\n" + plugin_failure_note(line) for line in self.plugin_failures)
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return self.args[0]


def plugin_failure_note(line: str) -> str:
    """``note: <line>; the name may come from it (see `attnzoo plugins`)``, for unknown-name messages."""
    return f"note: {line}; the name may come from it (see `attnzoo plugins`)"


#: where unknown-name messages read the plugin failures known so far; :mod:`attnzoo.plugins` installs
#: its own on import (errors sit below plugins: plugins raise them, so this module must not import it)
_plugin_failure_source: Callable[[], list[str]] | None = None


def set_plugin_failure_source(source: Callable[[], list[str]] | None) -> None:
    """Install the function :class:`UnknownNameError` asks for the plugin failures known so far
    (:func:`attnzoo.plugins.failure_summary` with ``load=False``); None: no notes."""
    global _plugin_failure_source
    _plugin_failure_source = source


def _known_plugin_failures() -> list[str]:
    # Never let a lookup failure replace the error being built. No source: the plugin host was
    # never imported, so no plugin can have failed.
    try:
        return list(_plugin_failure_source()) if _plugin_failure_source is not None else []
    except Exception:
        return []


class UnknownAttentionError(UnknownNameError):
    """An attention variant name that is not registered."""

    def __init__(self, name: str, known: Iterable[str]):
        super().__init__("attention variant", name, known)


class DuplicateRegistrationError(AttnzooError, ValueError):
    """Two sources registered the same name; the message names both."""

    def __init__(self, kind: str, name: str, first: str, second: str):
        self.kind, self.name, self.first, self.second = kind, name, first, second
        super().__init__(
            f"{kind} {name!r} is registered twice: first by {first}, again by {second}; "
            f"rename one of them or disable a plugin (--disable-plugin / ATTNZOO_PLUGINS)"
        )


class SpecError(AttnzooError, ValueError):
    """A spec or factory handed to ``register`` is malformed."""


class PairDoesNotFit(AttnzooError, ValueError):
    """The backbone cannot host this (task, attention) pair; ``reason`` is its spec's reason.

    The one error for it, wherever it is decided (the grid's n/a rows, :func:`attnzoo.resolve.resolve`,
    a backbone factory called directly), all through :func:`fit_reason`.
    """

    def __init__(self, message: str, reason: str | None = None):
        self.reason = reason or message
        super().__init__(message)


def fit_reason(backbone_spec: Any, task_spec: Any, attention_spec: Any) -> str | None:
    """None if the pair runs on the backbone, else the backbone spec's reason: the one fits decision.

    :param backbone_spec: a :class:`attnzoo.backbones.BackboneSpec` (its ``fits`` decides; an object
        without one hosts everything).
    :param task_spec: the task's :class:`attnzoo.tasks.TaskSpec`.
    :param attention_spec: the variant's :class:`attnzoo.AttentionSpec`, None for no attention.

    A plugin whose ``fits()`` raises gets the exception as its reason, so the pair
    shows as n/a with it rather than vanishing.
    """
    fits = getattr(backbone_spec, "fits", None)
    if fits is None:
        return None
    try:
        return fits(task_spec, attention_spec)
    except Exception as exc:  # noqa: BLE001 - a plugin's broken fits() is a reason, not a crash
        return f"fits() raised {type(exc).__name__}: {exc}"


def pair_does_not_fit(backbone: str, task: str, attention: str | None, reason: str) -> PairDoesNotFit:
    """The one error for a pair a backbone cannot host (the message carries the spec's reason)."""
    return PairDoesNotFit(f"backbone {backbone!r} cannot run task {task!r} with attention {attention!r}: {reason}",
                          reason=reason)


class PluginError(AttnzooError):
    """A plugin failed to load or its hook raised. Carries the plugin's name."""

    def __init__(self, plugin: str, message: str):
        self.plugin = plugin
        super().__init__(f"plugin {plugin}: {message}")


#: how allocators word an allocation that failed: CUDA's, and the CPU's (``DefaultCPUAllocator: can't
#: allocate memory: you tried to allocate N bytes. Error code 12 (Cannot allocate memory)``)
OOM_MESSAGES = ("out of memory", "allocate memory", "not enough memory")


def is_oom_message(text: str) -> bool:
    """Whether an error message says an allocation failed (CUDA or CPU); the harness and the
    executors (which must not import it) classify ``oom`` by this one list."""
    low = text.lower()
    return any(m in low for m in OOM_MESSAGES)
