"""``attnzoo check NAME [--json]``: run the conformance kit on one registered variant.

The lead's CLI wires it as::

    p = sub.add_parser("check", help="run the conformance kit on a variant")
    attnzoo.testing.cli.configure_parser(p)
    p.set_defaults(func=attnzoo.testing.cli.main)

Exit status: 0 all checks passed (skips allowed), 1 a check failed, 2 unknown name or bad option.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["configure_parser", "main"]


def _kv(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    try:
        val: Any = json.loads(v)
    except json.JSONDecodeError:
        val = v
    return k, val


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add ``NAME``, ``--json``, ``--query-dim``, ``--seed`` and ``--option KEY=VALUE``."""
    parser.add_argument("name", metavar="NAME", help="registered attention variant (see `attnzoo list`)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--query-dim", type=int, default=8, help="feature size of the tiny test inputs (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the module and inputs (default 0)")
    parser.add_argument(
        "--option", "-o", type=_kv, action="append", default=[], metavar="KEY=VALUE",
        help="variant option (JSON value), repeatable, e.g. -o estimator='\"gumbel\"'",
    )


def main(args: argparse.Namespace) -> int:
    """Print the report; return 0 if every check passed, 1 if one failed, 2 for an unknown name."""
    from attnzoo.errors import UnknownAttentionError
    from attnzoo.testing.conformance import check_attention

    try:
        report = check_attention(
            args.name, query_dim=getattr(args, "query_dim", 8), seed=getattr(args, "seed", 0),
            **dict(getattr(args, "option", []) or []),
        )
    except UnknownAttentionError as exc:
        print(f"attnzoo check: {exc}", file=sys.stderr)
        return 2
    except TypeError as exc:  # unknown variant option
        print(f"attnzoo check: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "json", False):
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report)
    return 0 if report.ok else 1


if __name__ == "__main__":  # python -m attnzoo.testing.cli NAME
    p = argparse.ArgumentParser(prog="attnzoo check", description=__doc__.splitlines()[0])
    configure_parser(p)
    sys.exit(main(p.parse_args()))
