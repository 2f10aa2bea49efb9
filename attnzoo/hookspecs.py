"""Hook specifications: the whole plugin API of attnzoo.

A plugin is a module (or object) with functions decorated ``@attnzoo.hookimpl``
whose names match the specs below, exposed through an entry point in the
``attnzoo`` group::

    # pyproject.toml of your package
    [project.entry-points.attnzoo]
    my_variant = "my_package.plugin"

Built-in variants, tasks and backbones register through these same hooks.
"""

from __future__ import annotations

from typing import Any, Callable

import pluggy

__all__ = ["hookspec", "hookimpl", "PROJECT_NAME"]

PROJECT_NAME = "attnzoo"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_attention(register: Callable[..., None]) -> None:
    """Register attention variants.

    :param register: call ``register(spec, factory)`` once per variant, where
        ``spec`` is an :class:`attnzoo.AttentionSpec` and ``factory`` is a
        callable ``factory(query_dim, key_dim, value_dim, **kwargs) -> nn.Module``
        (usually the module class) following the mechanism contract.

    Example::

        @attnzoo.hookimpl
        def register_attention(register):
            register(AttentionSpec(name="cosine-t", family="content",
                                   summary="cosine score / temperature"), CosineT)
    """


@hookspec
def register_tasks(register: Callable[..., None]) -> None:
    """Register benchmark tasks.

    :param register: call ``register(task_class)`` where ``task_class`` is a
        subclass of :class:`attnzoo.tasks.Task` with a ``spec`` class
        attribute (:class:`attnzoo.tasks.TaskSpec`).

    Example::

        @attnzoo.hookimpl
        def register_tasks(register):
            register(MyCountingTask)
    """


@hookspec
def register_backbones(register: Callable[..., None]) -> None:
    """Register model backbones that wrap an attention variant for a setting.

    :param register: call ``register(spec, factory)`` with a
        :class:`attnzoo.backbones.BackboneSpec` and a callable building
        the ``nn.Module`` (see that module for the factory's arguments).

    Example::

        @attnzoo.hookimpl
        def register_backbones(register):
            register(BackboneSpec(name="my-rnn", summary="..."), build_my_rnn)
    """


@hookspec
def register_commands(cli: Any) -> None:
    """Add subcommands to the ``attnzoo`` command line.

    :param cli: the ``argparse`` sub-parsers object; call
        ``cli.add_parser(name, help=...)`` and set ``func`` with
        ``parser.set_defaults(func=callable(args) -> int)``.

    Example::

        @attnzoo.hookimpl
        def register_commands(cli):
            p = cli.add_parser("hello", help="say hello")
            p.set_defaults(func=lambda args: print("hello") or 0)
    """


@hookspec
def extend_result_row(row: dict[str, Any], cell: dict[str, Any]) -> dict[str, Any] | None:
    """Add columns to a leaderboard result row after a cell finishes.

    :param row: the row as the harness produced it (metrics, provenance...).
    :param cell: the JSON-able cell spec (task, backbone, attention, seed, ...).
    :returns: a dict of extra columns merged into the row, or None.

    Example::

        @attnzoo.hookimpl
        def extend_result_row(row, cell):
            return {"my_metric": compute(row)}
    """
