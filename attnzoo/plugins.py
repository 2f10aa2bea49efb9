"""Plugin loading: built-ins and entry points, through one pluggy manager.

Built-in variants, tasks and backbones are plugins like any other (pytest's
built-in plugins, llm's default_plugins): their modules are registered by name
first, then every entry point in the ``attnzoo`` group. Loading each one is
wrapped: a plugin that fails to import or whose hook raises is recorded with
its distribution name and the error, and skipped. ``attnzoo plugins`` shows it.

Registration failures (a hook that raises, a malformed spec, a name another
plugin already took) only surface when a registry runs its hook, which is
lazy. :func:`load_all` runs every registry's hook now; :func:`failure_summary`
and :func:`warn_failures` report what failed, for commands (``plugins``,
``bench``, ``fit``) that must not stay silent about a missing plugin.

Environment (read when the manager is first built, as pytest and llm do):

- ``ATTNZOO_DISABLE_PLUGIN_AUTOLOAD=1``: load no entry points (built-ins still load).
- ``ATTNZOO_PLUGINS=a,b``: load only these entry points (by entry-point or distribution name).
- ``ATTNZOO_DISABLE_PLUGINS=a,b``: skip these plugins (what ``--disable-plugin`` sets).
"""

from __future__ import annotations

import importlib
import importlib.metadata as importlib_metadata
import os
import sys
import threading
import traceback
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, TextIO

import pluggy

from attnzoo import hookspecs
from attnzoo.errors import DuplicateRegistrationError, set_plugin_failure_source

__all__ = [
    "ENTRY_POINT_GROUP",
    "BUILTIN_PLUGINS",
    "PluginInfo",
    "PluginHost",
    "get_host",
    "configure",
    "reset",
    "collect",
    "load_all",
    "failure_summary",
    "warn_failures",
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

    @property
    def display_name(self) -> str:
        """How messages name the plugin: ``dist version`` for entry points, ``module (builtin)`` for built-ins."""
        return f"{self.name} (builtin)" if self.source == "builtin" else self.label

    def add_error(self, message: str) -> None:
        """Record a failure once: a registry that reloads on the same host must not double it."""
        if message not in self.errors:
            self.errors.append(message)

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
            info.add_error(
                f"{hook_name} raised {type(exc).__name__}: {exc} (at {tb.filename}:{tb.lineno}); "
                f"its {kind}s were skipped"
            )
            continue
        for name, entry in pending:
            if name in out:
                err = DuplicateRegistrationError(kind, name, out[name][1], info.label)
                info.add_error(str(err))
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


def current_config() -> dict[str, Any]:
    """The options the last :func:`configure` set (``{}`` when never called): a copy to compare or restore.

    Keys: ``disabled`` (tuple of plugin names), ``only`` (tuple or ``None``), ``autoload`` (bool or ``None``).
    """
    with _lock:
        return dict(_config)


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


# -- registration failures, surfaced -------------------------------------------
class Loadable(Protocol):
    """What :func:`load_all` needs of a registry: a ``load()`` that runs its plugin hook."""

    def load(self) -> Any: ...


#: Modules that create the registries filled from plugin hooks (attention, tasks, backbones).
REGISTRY_MODULES: tuple[str, ...] = ("attnzoo.registry", "attnzoo.tasks", "attnzoo.backbones")

# Weak, so a registry a test builds and drops does not stay loaded forever.
_registries: "weakref.WeakSet[Any]" = weakref.WeakSet()


def add_registry(registry: Loadable) -> None:
    """Let :func:`load_all` run ``registry.load()`` (every :class:`attnzoo.registry.Registry` calls this)."""
    _registries.add(registry)


def load_all() -> PluginHost:
    """Run every registry's registration hooks now, so their failures are on the plugins' records.

    Registries load lazily, so until something asks for a task, a plugin whose
    ``register_tasks`` raises looks healthy. ``attnzoo plugins`` and the start
    of ``bench`` and ``fit`` call this so they can tell the whole truth.

    :returns: the process-wide :class:`PluginHost`, its ``errors`` filled in.
    """
    host = get_host()
    for modname in REGISTRY_MODULES:
        try:
            importlib.import_module(modname)
        except Exception:
            # attnzoo.tasks and attnzoo.backbones are built-in plugins too: an
            # import failure is already on their own line in `attnzoo plugins`.
            continue
    for registry in list(_registries):
        registry.load()
    return host


def _bare(error: str) -> str:
    for prefix in ("load failed: ", "import failed: "):
        if error.startswith(prefix):
            return error[len(prefix):]
    return error


def failure_summary(*, load: bool = True) -> list[str]:
    """One line per plugin that failed to import or to register; empty when all loaded.

    Example line: ``plugin 'attnzoo-foo 0.1' failed to load (ImportError: No module named 'foo')``.

    :param load: run every registry's hooks first (:func:`load_all`), so
        registration failures are counted; with ``False``, report only what is
        known so far and never build the plugin host.
    """
    if load:
        host: PluginHost | None = load_all()
    else:
        with _lock:
            host = _host
    if host is None:
        return []
    lines = []
    for info in host.plugins():
        if not info.errors:
            continue
        what = "failed to register" if info.loaded else "failed to load"
        lines.append(f"plugin {info.display_name!r} {what} ({'; '.join(_bare(e) for e in info.errors)})")
    return lines


_warned: set[str] = set()


def warn_failures(stream: TextIO | None = None) -> list[str]:
    """Print each plugin failure once per process (``bench`` and ``fit`` call this at start).

    :param stream: where to write (default ``sys.stderr``).
    :returns: the lines printed by this call (empty if all plugins loaded or
        every failure was already reported).
    """
    stream = sys.stderr if stream is None else stream
    new = [line for line in failure_summary() if line not in _warned]
    for line in new:
        _warned.add(line)
        print(f"attnzoo: warning: {line}; what it provides is missing (see `attnzoo plugins`)", file=stream)
    return new


# Unknown-name errors end with a note per failed plugin; they ask here without importing this module.
set_plugin_failure_source(lambda: failure_summary(load=False))
