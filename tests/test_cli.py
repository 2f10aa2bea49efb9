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


# -- plugin failures through the real console script and importlib.metadata ----
def _fake_site(root, dist: str, version: str, ep_name: str, module: str, source: str):
    """A distribution on PYTHONPATH only (dist-info + module): nothing is installed into the venv."""
    import pathlib

    root = pathlib.Path(root)
    (root / f"{module}.py").write_text(source)
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[attnzoo]\n{ep_name} = {module}\n")
    return root


def _attnzoo(site, *argv):
    import os

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "attnzoo", *argv], capture_output=True, text=True, timeout=120, env=env)


CLASHING = '''
import attnzoo
from attnzoo import AttentionSpec
from attnzoo.mechanisms.dot import DotAttention

@attnzoo.hookimpl
def register_attention(register):
    register(AttentionSpec(name="dot", family="test", summary="a clash on purpose"), DotAttention)
'''


def test_console_plugins_reports_a_real_name_clash(tmp_path):
    site = _fake_site(tmp_path, "attnzoo-evil", "0.1", "evil", "attnzoo_evil_mod", CLASHING)
    proc = _attnzoo(site, "plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    row = {r["name"]: r for r in json.loads(proc.stdout)}["evil"]
    assert row["source"] == "attnzoo-evil" and row["version"] == "0.1"
    assert "'dot' is registered twice: first by builtin, again by attnzoo-evil 0.1" in row["error"]
    proc = _attnzoo(site, "plugins")
    assert "registered twice" in proc.stderr
    assert [ln.split()[3] for ln in proc.stdout.splitlines() if ln.startswith("evil ")] == ["error"]


def test_console_check_notes_a_plugin_that_failed_to_import(tmp_path):
    site = _fake_site(tmp_path, "attnzoo-foo", "0.1", "foo", "attnzoo_foo_mod", "import torch_nonexistent_module\n")
    proc = _attnzoo(site, "check", "foo")
    assert proc.returncode == 2
    assert "unknown attention variant 'foo'" in proc.stderr
    assert ("note: plugin 'attnzoo-foo 0.1' failed to load (ModuleNotFoundError: No module named "
            "'torch_nonexistent_module'); the name may come from it (see `attnzoo plugins`)") in proc.stderr
