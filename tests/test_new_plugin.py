"""`attnzoo new-plugin NAME`: the package it writes installs, passes its own tests and registers."""

from __future__ import annotations

import re
import ast
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from attnzoo.cli import main
from attnzoo.newplugin import plugin_names, render_plugin

VALID_NAME = st.from_regex(r"[a-z][a-z0-9]{0,6}([-_.][a-z0-9]{1,4}){0,3}", fullmatch=True)


def _run(*argv: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(list(argv), capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env)


def test_written_package_installs_passes_its_tests_and_is_listed(tmp_path):
    # A name of our own: other engineers' test runs share this venv.
    name = f"demo-{os.getpid()}"
    pkg = tmp_path / "pkg"
    assert main(["new-plugin", name, "--dir", str(pkg)]) == 0
    names = plugin_names(name)
    try:
        proc = _run(sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e", str(pkg))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        proc = _run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", cwd=pkg)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert re.search(r"\b\d+ passed", proc.stdout) and " failed" not in proc.stdout, proc.stdout
        proc = _run(sys.executable, "-m", "attnzoo", "list", name)
        assert proc.returncode == 0, proc.stderr
        (line,) = [ln for ln in proc.stdout.splitlines() if ln.startswith(name + " ")]
        assert f"{names.dist} 0.1.0" in line and "custom" in line
        proc = _run(sys.executable, "-m", "attnzoo", "check", name)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    finally:
        _run(sys.executable, "-m", "pip", "uninstall", "-y", "-q", names.dist)
    assert name not in _run(sys.executable, "-m", "attnzoo", "list", "--json").stdout


def test_default_directory_is_attnzoo_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["new-plugin", "cosine-t"]) == 0
    root = tmp_path / "attnzoo-cosine-t"
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == [
        ".gitignore", "README.md", "attnzoo_cosine_t/__init__.py", "pyproject.toml", "tests/test_attnzoo_cosine_t.py",
    ]
    out = capsys.readouterr().out
    assert "pip install -e attnzoo-cosine-t" in out and "attnzoo check cosine-t" in out


@pytest.mark.parametrize("bad", ["Demo", "my score", "-x", "9lives", "a--b", ""])
def test_invalid_name_is_refused_and_nothing_written(tmp_path, capsys, bad):
    assert main(["new-plugin", "--dir", str(tmp_path / "out"), "--", bad]) == 2
    err = capsys.readouterr().err
    assert "attnzoo new-plugin: NAME must be a lowercase string" in err and repr(bad) in err
    assert not (tmp_path / "out").exists()


def test_non_empty_directory_is_refused_and_left_alone(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep me")
    assert main(["new-plugin", "demo", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path}: exists and is not empty" in err
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"] and (tmp_path / "mine.txt").read_text() == "keep me"


def test_a_file_as_directory_is_refused(tmp_path, capsys):
    (tmp_path / "f").write_text("")
    assert main(["new-plugin", "demo", "--dir", str(tmp_path / "f")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_an_empty_existing_directory_is_used(tmp_path):
    assert main(["new-plugin", "demo", "--dir", str(tmp_path)]) == 0
    assert (tmp_path / "pyproject.toml").is_file()


def test_a_taken_name_is_refused(tmp_path, capsys):
    assert main(["new-plugin", "dot", "--dir", str(tmp_path / "out")]) == 2
    assert "'dot' is already registered by builtin" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@settings(max_examples=40, deadline=None)
@given(name=VALID_NAME)
def test_every_valid_name_renders_a_consistent_package(name):
    names = plugin_names(name)
    assert names.module.isidentifier() and names.cls.isidentifier() and names.cls.endswith("Attention")
    files = render_plugin(names)
    project = tomllib.loads(files["pyproject.toml"])
    assert project["build-system"]["build-backend"] == "setuptools.build_meta"
    assert project["project"]["name"] == f"attnzoo-{name}"
    assert project["project"]["version"] == "0.1.0"
    assert any(dep.startswith("attnzoo") and not dep.startswith("attnzoo-") for dep in project["project"]["dependencies"])
    assert project["project"]["entry-points"]["attnzoo"] == {name: names.module}
    assert project["tool"]["setuptools"]["packages"] == [names.module]
    module = ast.parse(files[f"{names.module}/__init__.py"])
    classes = {n.name: n for n in module.body if isinstance(n, ast.ClassDef)}
    assert [ast.unparse(b) for b in classes[names.cls].bases] == ["attnzoo.ScoreAttention"]
    funcs = {n.name for n in module.body if isinstance(n, ast.FunctionDef)}
    assert "register_attention" in funcs
    assert f'name="{name}"' in files[f"{names.module}/__init__.py"]
    test_src = files[f"tests/test_{names.module}.py"]
    ast.parse(test_src)
    assert "check_attention" in test_src and f"from {names.module} import SPEC, {names.cls}" in test_src
    readme = files["README.md"]
    for step in ("pip install -e .", f"attnzoo check {name}", f"attnzoo bench --variants {name} --preset smoke"):
        assert step in readme


def test_the_rendered_module_runs_the_kit_in_process(tmp_path, monkeypatch):
    # No install: import the written module from its folder and run the kit on the class.
    from attnzoo.testing import check_attention

    assert main(["new-plugin", "inproc", "--dir", str(tmp_path)]) == 0
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    mod = importlib.import_module("attnzoo_inproc")
    try:
        report = check_attention(mod.InprocAttention, spec=mod.SPEC)
        assert report.ok, str(report)
    finally:
        sys.modules.pop("attnzoo_inproc", None)
