"""Data flows one way: commands -> leaderboard -> harness -> backbones -> mechanisms, never back.

Checked on the source (every ``import`` in every module, function-level ones
included), so a shortcut that only works because an import is deferred fails
here before it becomes a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "attnzoo"

#: layer -> packages/modules it must never import (at any depth, deferred imports included)
FORBIDDEN = {
    "mechanisms": ("attnzoo.harness", "attnzoo.leaderboard", "attnzoo.tasks", "attnzoo.backbones", "attnzoo.cli",
                   "attnzoo.commands", "attnzoo.cell", "lightning"),
    "tasks": ("attnzoo.harness", "attnzoo.leaderboard", "attnzoo.backbones", "attnzoo.cli", "attnzoo.commands", "lightning"),
    "backbones": ("attnzoo.harness", "attnzoo.leaderboard", "attnzoo.cli", "attnzoo.commands", "lightning"),
    "cell.py": ("attnzoo.harness", "attnzoo.leaderboard", "attnzoo.cli", "attnzoo.commands", "lightning"),
    "registry.py": ("attnzoo.harness", "attnzoo.leaderboard", "attnzoo.tasks", "attnzoo.backbones", "attnzoo.mechanisms",
                    "attnzoo.commands", "lightning"),
    "resolve.py": ("attnzoo.harness", "attnzoo.leaderboard", "attnzoo.cli", "attnzoo.commands", "lightning"),
    # the core: the contract, the multi-head combinator, specs and errors sit below everything else
    "contract.py": ("attnzoo.",),
    "multihead.py": ("attnzoo.registry", "attnzoo.mechanisms", "attnzoo.backbones", "attnzoo.tasks", "attnzoo.cell",
                     "lightning"),
    "errors.py": ("attnzoo.",),
    "plugins.py": ("attnzoo.harness", "attnzoo.leaderboard", "lightning"),
    "harness": ("attnzoo.leaderboard", "attnzoo.cli", "attnzoo.commands"),
    "leaderboard": ("attnzoo.cli", "attnzoo.commands"),
    # the libraries the commands call take typed arguments and return values: no way back up
    "testing": ("attnzoo.mechanisms", "attnzoo.harness", "attnzoo.leaderboard", "attnzoo.cli", "attnzoo.commands",
                "lightning"),
    "speed.py": ("attnzoo.harness", "attnzoo.leaderboard", "attnzoo.cli", "attnzoo.commands", "lightning"),
    "newplugin.py": ("attnzoo.harness", "attnzoo.leaderboard", "attnzoo.cli", "attnzoo.commands", "lightning"),
    "__init__.py": ("attnzoo.harness", "attnzoo.leaderboard", "attnzoo.cli", "attnzoo.commands", "lightning"),
}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return out


def _modules(layer: str) -> list[Path]:
    target = PKG / layer
    return [target] if target.is_file() else sorted(target.rglob("*.py"))


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_import_against_the_flow(layer):
    bad = []
    for path in _modules(layer):
        for lineno, name in _imports(path):
            if any(name == f or name.startswith(f if f.endswith(".") else f + ".") for f in FORBIDDEN[layer]):
                bad.append(f"{path.relative_to(PKG.parent)}:{lineno} imports {name}")
    assert not bad, "\n".join(bad)


def test_multihead_wraps_a_factory_without_the_registry():
    """The registry builds MultiHeadAttention; the wrapper never looks a name up (the old circle)."""
    assert not [n for _, n in _imports(PKG / "multihead.py") if n.startswith("attnzoo.registry")]
    from attnzoo.mechanisms import DotAttention, MultiHeadAttention

    mha = MultiHeadAttention(DotAttention, 8, num_heads=2, name="dot")
    assert isinstance(mha.inner, DotAttention) and mha.inner.query_dim == 4
    with pytest.raises(TypeError, match=r"create_attention\('dot'"):
        MultiHeadAttention("dot", 8, num_heads=2)
