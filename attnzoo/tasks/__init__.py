"""Built-in tasks and the task registry (``attnzoo.list_tasks``)."""

from __future__ import annotations

import importlib
from typing import Any

from attnzoo import plugins
from attnzoo.errors import SpecError
from attnzoo.tasks.base import PAD, Task, TaskSpec
from attnzoo.hookspecs import hookimpl
from attnzoo.registry import Registry, check_kwargs

__all__ = ["Task", "TaskSpec", "PAD", "task_registry", "list_tasks", "get_task_class", "create_task"]

#: modules (under this package) holding the built-in tasks; each exports ``TASKS``.
_BUILTIN_MODULES: tuple[str, ...] = ("copying", "recall", "selective_copy", "induction", "sort", "listops", "dates", "mad")


@hookimpl
def register_tasks(register):
    for modname in _BUILTIN_MODULES:
        module = importlib.import_module(f"{__name__}.{modname}")
        for task_cls in module.TASKS:
            register(task_cls)


def _accept_task(task_cls: Any) -> tuple[str, type[Task]]:
    if not (isinstance(task_cls, type) and issubclass(task_cls, Task)):
        raise SpecError(f"register(task_class): expected a subclass of attnzoo.tasks.Task, got {task_cls!r}")
    spec = getattr(task_cls, "spec", None)
    if not isinstance(spec, TaskSpec):
        raise SpecError(f"register(task_class): {task_cls.__name__}.spec must be a TaskSpec, got {spec!r}")
    return spec.name, task_cls


def _load_tasks() -> dict[str, tuple[type[Task], str]]:
    return plugins.collect("register_tasks", "task", _accept_task)


task_registry: Registry[type[Task]] = Registry("task", _load_tasks)


def list_tasks(pattern: str = "*") -> list[str]:
    """Registered task names matching the fnmatch ``pattern``, sorted."""
    return task_registry.names(pattern)


def get_task_class(name: str) -> type[Task]:
    """The task class registered as ``name`` (UnknownNameError with suggestions)."""
    return task_registry.get(name)


def create_task(name: str, **knobs: Any) -> Task:
    """Build task ``name`` with its knobs (unknown knobs raise TypeError listing the accepted ones)."""
    cls = get_task_class(name)
    check_kwargs(f"task {name!r}", cls, knobs, noun="knob")
    return cls(**knobs)
