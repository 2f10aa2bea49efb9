"""``attnzoo list``, ``attnzoo show NAME`` and ``attnzoo plugins``: what the registries hold.

They read the registries (variants, tasks, backbones, plugins) and print; nothing
here imports torch's heavier parts or Lightning, so they answer at once.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

__all__ = ["add_parsers", "cmd_list", "cmd_plugins", "cmd_show", "table"]


def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def _short_caps(caps: Sequence[str]) -> str:
    abbrev = {
        "self_attention": "self",
        "cross_attention": "cross",
        "causal_safe": "causal",
        "stateful": "stateful",
        "differentiable": "diff",
        "pointer_logits": "pointer",
        "fused": "fused",
        "multihead": "mh",
    }
    return ",".join(abbrev.get(c, c) for c in caps)


def cmd_list(args: argparse.Namespace) -> int:
    if args.tasks:
        from attnzoo.tasks import list_tasks, task_registry

        names = list_tasks(args.pattern)
        items = []
        for n in names:
            cls, source = task_registry.get_with_source(n)
            spec = cls.spec
            items.append({"name": n, "metric": spec.metric, "output": spec.output, "summary": spec.summary,
                          "paper": spec.paper, "length_generalization": spec.length_generalization,
                          "source": source})
        if args.json:
            print(json.dumps(items, indent=2))
        else:
            print(table([[i["name"], i["metric"], i["output"], i["source"], i["summary"]] for i in items],
                         ["task", "metric", "output", "source", "summary"]))
            print(f"\n{len(items)} task(s): registered generators. A preset runs a task under one or more settings, "
                  "each a *label* (induction-heads-1l: induction-heads with a 1-layer Transformer; copy-ntm: copy "
                  "sized for the NTM), so a leaderboard counts labels, e.g. '11 labels from 9 tasks'.")
        return 0
    if args.backbones:
        from attnzoo.backbones import backbone_registry

        items = []
        for n in backbone_registry.names(args.pattern):
            (spec, _factory), source = backbone_registry.get_with_source(n)
            items.append({"name": n, "attention": spec.attention, "summary": spec.summary,
                          "requires": list(spec.required_capabilities), "source": source})
        if args.json:
            print(json.dumps(items, indent=2))
        else:
            print(table([[i["name"], i["attention"], ",".join(i["requires"]) or "-", i["source"], i["summary"]]
                          for i in items], ["backbone", "attention", "requires", "source", "summary"]))
        return 0

    from attnzoo.registry import attention_registry, list_attention

    try:
        names = list_attention(args.pattern, family=args.family, capability=args.capability)
    except ValueError as exc:
        print(f"attnzoo list: {exc}", file=sys.stderr)
        return 2
    items = []
    for n in names:
        entry = attention_registry.get(n)
        items.append({**entry.spec.to_dict(), "source": entry.source})
    if args.json:
        print(json.dumps(items, indent=2))
        return 0
    if not items:
        print(f"no attention variant matches {args.pattern!r}", file=sys.stderr)
        return 1
    rows = [[i["name"], i["family"], i["source"], _short_caps(i["capabilities"]), _short_paper(i["paper"])]
            for i in items]
    print(table(rows, ["name", "family", "source", "capabilities", "paper"]))
    _warn_plugin_errors()
    return 0


def _short_paper(paper: str, width: int = 40) -> str:
    return paper if len(paper) <= width else paper[: width - 1].rstrip() + "…"


def _warn_plugin_errors() -> None:
    from attnzoo.plugins import failure_summary

    lines = failure_summary()
    if lines:
        print(f"\n{len(lines)} plugin(s) failed and were skipped (see `attnzoo plugins`):", file=sys.stderr)
        for line in lines:
            print(f"  {line}", file=sys.stderr)


def _describe_kwargs(factory: Any) -> list[str]:
    from attnzoo.registry import accepted_kwargs

    accepted = accepted_kwargs(factory)
    if accepted is None:
        return ["(accepts **kwargs)"]
    return [f"{k}={v!r}" for k, v in accepted.items()]


def cmd_show(args: argparse.Namespace) -> int:
    from attnzoo.errors import close_matches
    from attnzoo.registry import attention_registry
    from attnzoo.spec import CAPABILITIES

    name = args.name
    if name in attention_registry:
        entry = attention_registry.get(name)
        spec = entry.spec
        print(f"{spec.name}  ({spec.family})  from {entry.source}")
        print(f"  {spec.summary}")
        if spec.paper:
            print(f"  paper: {spec.paper}")
        if spec.url:
            print(f"  url: {spec.url}")
        print(f"  complexity: {spec.complexity}")
        print(f"  capabilities: {', '.join(spec.capabilities) or 'none'}")
        missing = [c for c in CAPABILITIES if not spec.has(c)]
        if missing:
            print(f"  lacks: {', '.join(missing)}")
        if spec.aux_keys:
            print(f"  aux: {', '.join(spec.aux_keys)}")
        if spec.defaults:
            print(f"  defaults: {dict(spec.defaults)}")
        if spec.notes:
            print(f"  notes: {spec.notes}")
        print(f"  factory: {getattr(entry.factory, '__module__', '?')}.{getattr(entry.factory, '__qualname__', entry.factory)}")
        print(f"  arguments: query_dim, key_dim=None, value_dim=None, {', '.join(_describe_kwargs(entry.factory))}")
        doc = inspect.getdoc(entry.factory)
        if doc:
            print()
            print(textwrap.indent(doc, "  "))
        return 0
    known: list[str] = list(attention_registry.names())
    try:
        from attnzoo.tasks import task_registry

        if name in task_registry:
            cls, source = task_registry.get_with_source(name)
            spec = cls.spec
            print(f"{spec.name}  (task)  from {source}")
            print(f"  {spec.summary}")
            if spec.paper:
                print(f"  paper: {spec.paper}")
            print(f"  metric: {spec.metric}   output: {spec.output}   "
                  f"length generalization: {'yes' if spec.length_generalization else 'no'}")
            if spec.slices:
                print(f"  slices: {', '.join(spec.slices)}")
            print(f"  knobs: {', '.join(_describe_kwargs(cls)) or 'none'}")
            doc = inspect.getdoc(cls)
            if doc:
                print()
                print(textwrap.indent(doc, "  "))
            return 0
        known += task_registry.names()
    except ImportError:
        pass
    from attnzoo.errors import plugin_failure_note
    from attnzoo.plugins import failure_summary

    suggestions = close_matches(name, known)
    hint = f"; did you mean {', '.join(repr(s) for s in suggestions)}?" if suggestions else ""
    print(f"attnzoo show: unknown attention variant or task {name!r}{hint} "
          f"(`attnzoo list` and `attnzoo list --tasks` name them)", file=sys.stderr)
    for line in failure_summary():
        print(plugin_failure_note(line), file=sys.stderr)
    return 2


def cmd_plugins(args: argparse.Namespace) -> int:
    from attnzoo.plugins import load_all

    # Run every registry's hooks: a hook that raises, a bad spec or a name
    # clash is only found then, and must show here as an import failure does.
    infos = load_all().plugins()
    if args.json:
        print(json.dumps([i.to_dict() for i in infos], indent=2))
        return 0
    rows = []
    for i in infos:
        status = "ok" if i.loaded and not i.errors else ("error" if i.errors else "not loaded")
        rows.append([i.name, i.source, i.version or "-", status, ",".join(h.removeprefix("register_") for h in i.hooks) or "-"])
    print(table(rows, ["plugin", "distribution", "version", "status", "hooks"]))
    failed = [i for i in infos if i.errors]
    for i in failed:
        print(f"\n{i.name} ({i.label}):", file=sys.stderr)
        for err in i.errors:
            print(f"  {err}", file=sys.stderr)
    return 0


def add_parsers(sub: Any, formatter_class: type[argparse.HelpFormatter]) -> None:
    """Add ``list``, ``show`` and ``plugins`` to the ``attnzoo`` sub-parsers ``sub``."""
    p = sub.add_parser("list", help="list attention variants (or --tasks / --backbones)", formatter_class=formatter_class,
                       description="List registered attention variants with their family, source and capabilities.")
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch wildcard, e.g. '*dot*' (default: all)")
    p.add_argument("--json", action="store_true", help="print JSON (every spec field plus source)")
    p.add_argument("--family", help="only this family, e.g. multiplicative")
    p.add_argument("--capability", help="only variants with this capability, e.g. causal_safe")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--tasks", action="store_true", help="list benchmark tasks instead")
    g.add_argument("--backbones", action="store_true", help="list backbones instead")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", help="print one variant's (or task's) spec, arguments and docstring",
                       description="Print a variant's spec, its constructor arguments with defaults and its docstring.")
    p.add_argument("name", help="variant or task name")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("plugins", help="list plugins with version, hooks and load errors",
                       description="Every plugin seen: built-ins and entry points, with load errors if any.")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_plugins)
