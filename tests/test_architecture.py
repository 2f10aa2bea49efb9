"""The house reads from its imports: no import circle, no mechanism reached around the registry, no long function.

Pure ``ast`` over ``attnzoo/`` (module-level and function-level imports both count, as in
tests/test_layers.py): a deferred import that only works because it is deferred is still a circle.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "attnzoo"

MAX_LINES = 80


def _modules() -> dict[str, Path]:
    out = {}
    for path in PKG.rglob("*.py"):
        parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _targets(module: str, node: ast.Import | ast.ImportFrom, is_pkg: bool) -> list[str]:
    """The attnzoo modules an import statement names (``from a import b`` counts ``a`` and ``a.b``)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            base = module.split(".")[: None if is_pkg else -1]
            base = base[: len(base) - (node.level - 1)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        names = [prefix] + [f"{prefix}.{a.name}" for a in node.names]
    return [n for n in names if n in MODULES]


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _targets(module, node, path.name == "__init__.py"):
                    if target != module and not module.startswith(target + "."):  # a package's own parents
                        graph[module].add(target)
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in MODULES:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_circle():
    circles = _circles(_graph())
    assert not circles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in circles)


def test_the_circle_finder_finds_one():
    graph = defaultdict(set, {"attnzoo.cell": {"attnzoo.backbones"}, "attnzoo.backbones": {"attnzoo.cell"}})
    assert _circles(graph) == [["attnzoo.backbones", "attnzoo.cell"]]


def test_only_mechanisms_import_mechanism_modules():
    """Everything else reaches a variant through the registry (or the mechanisms package's lazy exports)."""
    bad = sorted(f"{m} imports {t}" for m, targets in _graph().items() for t in targets
                 if t.startswith("attnzoo.mechanisms.") and not m.startswith("attnzoo.mechanisms"))
    assert not bad, "\n".join(bad)


def test_no_function_over_80_lines():
    long = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_LINES:
                    long.append(f"{module}:{node.name} ({lines} lines)")
    assert not long, "functions over 80 lines (split them):\n" + "\n".join(sorted(long))
