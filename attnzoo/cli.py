"""The ``attnzoo`` console script: the top-level parser, plugin commands, and dispatch.

Every subcommand lives in :mod:`attnzoo.commands` (one module each: it parses its
flags, calls the library and prints). Commands are cheap to list: heavy ones
(``fit``, ``bench``, ``speed``, ``check``, ``new-plugin``) import their modules only
to build their parsers, and those modules import Lightning only when they run.
Plugins add commands through ``register_commands``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

__all__ = ["main", "build_parser"]

#: command -> (module with configure_parser/main, one-line help)
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "check": ("attnzoo.commands.check", "run the conformance kit on a variant (yours too)"),
    "fit": ("attnzoo.commands.fit", "train one (task, backbone, attention) triple and print its metrics"),
    "bench": ("attnzoo.commands.bench", "run the leaderboard grid and write tables and plots (the main job)"),
    "speed": ("attnzoo.commands.speed", "time forward+backward and peak memory of every variant vs SDPA"),
    "new-plugin": ("attnzoo.commands.new_plugin", "write an installable plugin package for a new variant (pyproject, module, test)"),
}


# -- parser ------------------------------------------------------------------
class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=28)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The full parser, plugin commands included."""
    from attnzoo import __version__

    parser = argparse.ArgumentParser(
        prog="attnzoo",
        description="A zoo of attention mechanisms: list, inspect, check, train and benchmark them.",
        epilog=textwrap.dedent(
            """\
            examples:
              attnzoo list '*dot*'              variants matching a wildcard
              attnzoo show additive             spec, arguments and equations of one variant
              attnzoo check my-variant          conformance kit on your own variant
              attnzoo bench --preset default    the leaderboard (the main job)
            environment: ATTNZOO_DISABLE_PLUGIN_AUTOLOAD=1, ATTNZOO_PLUGINS=a,b, ATTNZOO_DISABLE_PLUGINS=a,b
            """
        ),
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"attnzoo {__version__}")
    parser.add_argument("--disable-plugin", metavar="NAME", action="append", default=[],
                        help="skip this plugin (entry-point, distribution or built-in module name); repeatable")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    from attnzoo.commands.catalog import add_parsers

    add_parsers(sub, _HelpFormatter)

    for name, (modname, help_text) in LAZY_COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text[:1].upper() + help_text[1:] + ".",
                           formatter_class=_HelpFormatter)
        try:
            module = importlib.import_module(modname)
            module.configure_parser(p)
            p.set_defaults(func=module.main)
        except Exception as exc:  # a broken command must not take the CLI down
            p.set_defaults(func=_unavailable(name, exc))

    _add_plugin_commands(sub)
    return parser


def _unavailable(name: str, exc: Exception):
    def run(args: argparse.Namespace) -> int:
        print(f"attnzoo {name}: unavailable ({type(exc).__name__}: {exc})", file=sys.stderr)
        return 2

    return run


def _add_plugin_commands(sub: Any) -> None:
    from attnzoo.plugins import get_host

    host = get_host()
    for info, impl in host.implementations("register_commands"):
        try:
            host.call_impl(impl, cli=sub)
        except Exception as exc:
            info.errors.append(f"register_commands raised {type(exc).__name__}: {exc}; its commands were skipped")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``attnzoo`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # --disable-plugin must act before plugins load (they can add commands),
    # so read it with a pre-parser first.
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--disable-plugin", action="append", default=[])
    known, _ = pre.parse_known_args(argv)
    from attnzoo import plugins

    if known.disable_plugin:
        import os

        # Worker processes (leaderboard cells) inherit the choice through the env.
        previous = [x for x in os.environ.get("ATTNZOO_DISABLE_PLUGINS", "").split(",") if x]
        os.environ["ATTNZOO_DISABLE_PLUGINS"] = ",".join(previous + known.disable_plugin)
        plugins.configure(disabled=known.disable_plugin)

    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `attnzoo list | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
