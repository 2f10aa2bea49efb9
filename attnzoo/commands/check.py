"""``attnzoo check NAME [--json]``: run the conformance kit on one registered variant.

The checks are :func:`attnzoo.testing.check_attention`'s; this module parses the flags and prints
its report.

Exit status: 0 all checks passed (skips allowed), 1 a check failed, 2 unknown name or bad option.

``--json`` prints JSON Lines for other CI systems: one object per check, in run order::

    {"variant": "dot", "name": "gradcheck", "status": "passed", "passed": true, "message": "cross: ..."}

``status`` is ``passed``, ``failed`` or ``skipped``; ``passed`` is true, false, or
null for a skipped check (neither: the spec rules it out, ``message`` says why).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["configure_parser", "main", "json_lines"]


def json_lines(report: Any) -> list[str]:
    """One compact JSON object per check of a :class:`~attnzoo.testing.ConformanceReport` (JSON Lines)."""
    passed = {"passed": True, "failed": False}
    return [
        json.dumps({"variant": report.name, "device": report.device, "name": r.name, "status": r.status,
                    "passed": passed.get(r.status), "message": r.message}, ensure_ascii=False)
        for r in report.results
    ]


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
    """Add ``NAME``, ``--json``, ``--query-dim``, ``--seed``, ``--device`` and ``--option KEY=VALUE``."""
    parser.add_argument("name", metavar="NAME", help="registered attention variant (see `attnzoo list`)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object per check (variant, name, status, passed, message), one per line")
    parser.add_argument("--check", action="append", default=None, metavar="CHECK", dest="checks",
                        help="run only this check (repeatable), e.g. --check gradcheck --check multihead.causal")
    parser.add_argument("--query-dim", type=int, default=8, help="feature size of the tiny test inputs (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the module and inputs (default 0)")
    parser.add_argument("--device", default="cpu", metavar="DEVICE",
                        help="run the checks on cpu, cuda (cuda:N) or auto (cuda when available); default cpu")
    parser.add_argument(
        "--option", "-o", type=_kv, action="append", default=[], metavar="KEY=VALUE",
        help="variant option (JSON value), repeatable, e.g. -o estimator='\"gumbel\"'",
    )


def rejected_registrations(name: str) -> list[str]:
    """Why a plugin's registration of attention variant ``name`` was refused (a clash), one line each.

    ``attnzoo check dot`` checks whichever ``dot`` won; a plugin author whose own ``dot``
    was rejected must be told that the green report is not about their code.
    """
    from attnzoo import registry
    from attnzoo.errors import DuplicateRegistrationError
    from attnzoo.plugins import get_host

    try:
        source = registry.get_entry(name).source
    except Exception:  # unknown name: main says so
        source = "?"
    needle = str(DuplicateRegistrationError("attention variant", name, "", "")).split(":")[0]
    return [f"{info.display_name}'s {name!r} was rejected ({err.split('; rename')[0]}); this checks the one from "
            f"{source}" for info in get_host().plugins() for err in info.errors if err.startswith(needle)]


def main(args: argparse.Namespace) -> int:
    """Print the report; return 0 if every check passed, 1 if one failed, 2 for an unknown name."""
    from attnzoo.errors import UnknownAttentionError
    from attnzoo.testing.conformance import check_attention

    try:
        report = check_attention(
            args.name, query_dim=getattr(args, "query_dim", 8), seed=getattr(args, "seed", 0),
            checks=getattr(args, "checks", None), device=getattr(args, "device", "cpu"), **dict(getattr(args, "option", []) or []),
        )
    except UnknownAttentionError as exc:
        print(f"attnzoo check: {exc}", file=sys.stderr)
        return 2
    except (TypeError, ValueError) as exc:  # unknown variant option, unknown --check name
        print(f"attnzoo check: {exc}", file=sys.stderr)
        return 2
    for line in rejected_registrations(args.name):
        print(f"attnzoo check: warning: {line}", file=sys.stderr)
    if getattr(args, "json", False):
        for line in json_lines(report):
            print(line)
    else:
        print(report)
    return 0 if report.ok else 1


if __name__ == "__main__":  # python -m attnzoo.commands.check NAME
    p = argparse.ArgumentParser(prog="attnzoo check", description=__doc__.splitlines()[0])
    configure_parser(p)
    sys.exit(main(p.parse_args()))
