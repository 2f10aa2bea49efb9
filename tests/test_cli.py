"""The command line: list/show/plugins/--help, in-process and as a real console script."""

from __future__ import annotations

import json
import subprocess
import sys

import attnzoo
from attnzoo.cli import LAZY_COMMANDS, main


def test_list_json_names_every_variant(capsys):
    assert main(["list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == attnzoo.list_attention()
    by_name = {r["name"]: r for r in rows}
    assert by_name["scaled-dot"]["source"] == "builtin"
    assert "Vaswani" in by_name["scaled-dot"]["paper"]
    assert "fused" in by_name["scaled-dot"]["capabilities"]


def test_list_pattern_and_table(capsys):
    assert main(["list", "*dot*"]) == 0
    out = capsys.readouterr().out
    assert "scaled-dot" in out and "general" not in out
    assert main(["list", "nothing-matches-*"]) == 1


def test_show_unknown_exits_nonzero_with_suggestion(capsys):
    assert main(["show", "scaled"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'scaled-dot'" in err


def test_show_prints_spec_arguments_and_docstring(capsys):
    assert main(["show", "scaled-dot"]) == 0
    out = capsys.readouterr().out
    assert "Vaswani" in out and "scale=None" in out and "sqrt{d_k}" in out and "capabilities:" in out


def test_help_lists_every_command_with_a_line():
    proc = subprocess.run([sys.executable, "-m", "attnzoo", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for name in ["list", "show", "plugins", *LAZY_COMMANDS]:
        lines = [ln for ln in proc.stdout.splitlines() if ln.strip().startswith(name + " ")]
        assert lines, f"{name} missing from --help"
        assert len(lines[0].split()) > 2, f"{name} has no help text"


def test_console_script_lists_plugin_variant():
    proc = subprocess.run([sys.executable, "-m", "attnzoo", "list", "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    sources = {r["name"]: r["source"] for r in json.loads(proc.stdout)}
    assert sources["linear"].startswith("attnzoo-linear ")
