"""Plugin loading: built-ins and entry points, through one pluggy manager.

Built-in variants, tasks and backbones are plugins like any other (pytest's
built-in plugins, llm's default_plugins): their modules are registered by name
first, then every entry point in the ``attnzoo`` group. Loading each one is
wrapped: a plugin that fails to import or whose hook raises is recorded with
its distribution name and the error, and skipped. ``attnzoo plugins`` shows it.

Environment (read when the manager is first built, as pytest and llm do):

- ``ATTNZOO_DISABLE_PLUGIN_AUTOLOAD=1``: load no entry points (built-ins still load).
- ``ATTNZOO_PLUGINS=a,b``: load only these entry points (by entry-point or distribution name).
- ``ATTNZOO_DISABLE_PLUGINS=a,b``: skip these plugins (what ``--disable-plugin`` sets).
"""

from __future__ import annotations

import importlib
import importlib.metadata as importlib_metadata
import os
import threading
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pluggy

from attnzoo import hookspecs
from attnzoo.errors import DuplicateRegistrationError

__all__ = [
    "ENTRY_POINT_GROUP",
    "BUILTIN_PLUGINS",
    "PluginInfo",
    "PluginHost",
    "get_host",
    "configure",
    "reset",
    "collect",
]

ENTRY_POINT_GROUP = "attnzoo"

#: Modules whose hookimpls provide the built-in variants, tasks and backbones.
BUILTIN_PLUGINS: tuple[str, ...] = (
    "attnzoo.mechanisms.dot",
    "attnzoo.mechanisms.additive",
    "attnzoo.mechanisms.content",
    "attnzoo.mechanisms.location",
    "attnzoo.mechanisms.hard",
    "attnzoo.mechanisms.local",
    "attnzoo.mechanisms.pointer",
    "attnzoo.mechanisms.ntm",
    "attnzoo.tasks",
    "attnzoo.backbones",
)

_TRUE = {"1", "true", "yes", "on"}


def _env_list(name: str) -> list[str] | None:
    raw = os.environ.get(name)
    if raw is None:
        return None
    return [x.strip() for x in raw.split(",") if x.strip()]


@dataclass
class PluginInfo:
    """One plugin as ``attnzoo plugins`` shows it."""

    name: str
    source: str  # "builtin" or the distribution name
    version: str | None = None
    module: str | None = None
    hooks: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    loaded: bool = False

    @property
    def label(self) -> str:
        """How registry entries name where they came from: ``builtin`` or ``dist version``."""
        if self.source == "builtin":
            return "builtin"
        return f"{self.source} {self.version}" if self.version else self.source

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["error"] = "; ".join(self.errors) if self.errors else None
        return d


class PluginHost:
    """A pluggy manager plus what we learned while loading each plugin.

    :param builtins: module names to register as built-in plugins.
    :param autoload: load entry points (default: unless ``ATTNZOO_DISABLE_PLUGIN_AUTOLOAD``).
    :param only: entry points to load (default: ``ATTNZOO_PLUGINS`` or all).
    :param disabled: plugin names to skip, built-in or not (plus ``ATTNZOO_DISABLE_PLUGINS``).
    :param entry_points: entry points to consider (tests pass fakes here);
        default: ``importlib.metadata.entry_points(group="attnzoo")``.
    """

    def __init__(
        self,
        *,
        builtins: Sequence[str] = BUILTIN_PLUGINS,
        autoload: bool | None = None,
        only: Iterable[str] | None = None,
        disabled: Iterable[str] = (),
        entry_points: Iterable[Any] | None = None,
    ) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        if autoload is None:
            autoload = os.environ.get("ATTNZOO_DISABLE_PLUGIN_AUTOLOAD", "").lower() not in _TRUE
        if only is None:
            only = _env_list("ATTNZOO_PLUGINS")
        self.only = None if only is None else set(only)
        self.disabled = set(disabled) | set(_env_list("ATTNZOO_DISABLE_PLUGINS") or [])
        for modname in builtins:
            self._load_builtin(modname)
        if autoload:
            if entry_points is None:
                entry_points = importlib_metadata.entry_points(group=ENTRY_POINT_GROUP)
            for ep in entry_points:
                self._load_entry_point(ep)

    # -- loading ---------------------------------------------------------
    def _load_builtin(self, modname: str) -> None:
        info = PluginInfo(name=modname, source="builtin", module=modname)
        if modname in self.disabled:
            return
        self.infos[modname] = info
        try:
            module = importlib.import_module(modname)
            self.pm.register(module, name=modname)
        except Exception as exc:  # a broken built-in must not hide the rest
            info.errors.append(f"import failed: {type(exc).__name__}: {exc}")
            return
        info.loaded = True
        info.hooks = self._hook_names(module)

    def _load_entry_point(self, ep: Any) -> None:
        dist = getattr(ep, "dist", None)
        dist_name = getattr(dist, "name", None) if dist is not None else None
        version = getattr(dist, "version", None) if dist is not None else None
        if ep.name in self.disabled or (dist_name and dist_name in self.disabled):
            return
        if self.only is not None and ep.name not in self.only and dist_name not in self.only:
            return
        info = PluginInfo(name=ep.name, source=dist_name or ep.name, version=version, module=ep.value)
        if ep.name in self.infos:
            other = self.infos[ep.name]
            info.errors.append(f"plugin name {ep.name!r} is already used by {other.label}; skipped")
            self.infos[f"{ep.name} ({info.label})"] = info
            return
        self.infos[ep.name] = info
        try:
            plugin = ep.load()
            self.pm.register(plugin, name=ep.name)
        except Exception as exc:
            info.errors.append(f"load failed: {type(exc).__name__}: {exc}")
            return
        info.loaded = True
        info.hooks = self._hook_names(plugin)

    def _hook_names(self, plugin: Any) -> list[str]:
        return sorted(impl_caller.name for impl_caller in self.pm.get_hookcallers(plugin) or [])

    # -- calling ---------------------------------------------------------
    def implementations(self, hook_name: str) -> list[tuple[PluginInfo, Any]]:
        """``(info, hookimpl)`` for every implementation of ``hook_name``, in load order."""
        caller = getattr(self.pm.hook, hook_name)
        order = {name: i for i, name in enumerate(self.infos)}
        impls = sorted(caller.get_hookimpls(), key=lambda impl: order.get(impl.plugin_name, len(order)))
        return [
            (self.infos.get(impl.plugin_name) or PluginInfo(name=impl.plugin_name, source=impl.plugin_name), impl)
            for impl in impls
        ]

    @staticmethod
    def call_impl(impl: Any, **kwargs: Any) -> Any:
        """Run one hook implementation alone (pluggy passes only the arguments it declares)."""
        return impl.function(*[kwargs[a] for a in impl.argnames])

    def plugins(self) -> list[PluginInfo]:
        """Every plugin seen (loaded or failed), built-ins first."""
        return list(self.infos.values())


def collect(
    hook_name: str,
    kind: str,
    accept: Callable[..., tuple[str, Any]],
    host: PluginHost | None = None,
) -> dict[str, tuple[Any, str]]:
    """Run a ``register_*`` hook across plugins, isolating each plugin's failures.

    :param hook_name: e.g. ``"register_attention"``.
    :param kind: what is registered, for messages ("attention variant", "task").
    :param accept: called with the arguments a plugin passed to ``register``;
        returns ``(name, entry)`` or raises (SpecError, TypeError...) for bad input.
    :returns: ``{name: (entry, source_label)}``. A plugin whose hook raises
        contributes nothing; a bad or duplicate entry is skipped. Both are
        recorded on the plugin's :class:`PluginInfo` and never raised.
    """
    host = host or get_host()
    out: dict[str, tuple[Any, str]] = {}
    for info, impl in host.implementations(hook_name):
        pending: list[tuple[str, Any]] = []

        def register(*args: Any, **kwargs: Any) -> None:
            pending.append(accept(*args, **kwargs))

        try:
            host.call_impl(impl, register=register)
        except Exception as exc:
            tb = traceback.extract_tb(exc.__traceback__)[-1]
            info.errors.append(
                f"{hook_name} raised {type(exc).__name__}: {exc} (at {tb.filename}:{tb.lineno}); "
                f"its {kind}s were skipped"
            )
            continue
        for name, entry in pending:
            if name in out:
                err = DuplicateRegistrationError(kind, name, out[name][1], info.label)
                info.errors.append(str(err))
                continue
            out[name] = (entry, info.label)
    return out


_lock = threading.Lock()
_host: PluginHost | None = None
_config: dict[str, Any] = {}


def configure(*, disabled: Iterable[str] = (), only: Iterable[str] | None = None, autoload: bool | None = None) -> None:
    """Set how the process-wide plugin host loads (the CLI's ``--disable-plugin``); drops any loaded host."""
    global _host
    with _lock:
        _config.clear()
        _config.update(disabled=tuple(disabled), only=None if only is None else tuple(only), autoload=autoload)
        _host = None
    _notify_reset()


def get_host() -> PluginHost:
    """The process-wide plugin host, built on first use."""
    global _host
    with _lock:
        if _host is None:
            _host = PluginHost(**_config)
        return _host


_reset_callbacks: list[Callable[[], None]] = []


def on_reset(callback: Callable[[], None]) -> None:
    """Run ``callback`` whenever the host is rebuilt (registries drop their caches)."""
    _reset_callbacks.append(callback)


def _notify_reset() -> None:
    for cb in _reset_callbacks:
        cb()


def reset() -> None:
    """Forget the loaded host and configuration (tests; after installing a plugin at run time)."""
    configure()
