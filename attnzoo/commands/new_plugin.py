"""``attnzoo new-plugin NAME``: write a complete, installable plugin package for a new variant.

What it writes and how is :mod:`attnzoo.newplugin`'s (``./attnzoo-NAME`` unless ``--dir`` says
otherwise). Exit status: 0 written; 2 an invalid name, a name already registered by someone else,
or a target that exists and is not empty (nothing is written).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from attnzoo.newplugin import NewPluginError, plugin_names, write_plugin

__all__ = ["configure_parser", "main"]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add ``NAME`` and ``--dir``."""
    parser.add_argument("name", metavar="NAME", help="the new variant's name, e.g. my-score (lowercase, digits, -_.)")
    parser.add_argument("--dir", metavar="DIR", default=None,
                        help="where to write the package (default: ./attnzoo-NAME); must not exist or be empty")


def main(args: argparse.Namespace) -> int:
    """Write the package, print what was written and the next steps; 2 on a refused name or directory."""
    from attnzoo.errors import SpecError

    try:
        names = plugin_names(args.name)
        root = Path(args.dir) if args.dir is not None else Path(names.dist)
        written = write_plugin(args.name, root)
    except (SpecError, NewPluginError) as exc:
        print(f"attnzoo new-plugin: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # read-only file system, permissions
        print(f"attnzoo new-plugin: cannot write the package: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {names.dist} in {root}:")
    for path in written:
        print(f"  {path.relative_to(root)}")
    print(
        f"\nnext:\n"
        f"  edit the score in {root / names.module / '__init__.py'} ({names.cls}.score)\n"
        f"  pip install -e {root}\n"
        f"  attnzoo check {names.name}\n"
        f"  attnzoo bench --variants {names.name} --against default   # where it ranks among the reference rows"
    )
    return 0
