"""attnzoo from a wheel: presets and reference results are package data, and `attnzoo bench` runs from it.

The wheel is built from a copy of the tree (so concurrent runs never share a
``build/`` folder) and installed, without dependencies, into a fresh venv that
sees the current environment's packages (torch, lightning, ...) but none of its
attnzoo: no editable finder, no dist-info, no plugins. Commands then run from a
directory outside the repository, so nothing can be read from the source tree.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(argv: list[str], *, cwd: Path, env: dict[str, str] | None = None,
         timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _site_packages(venv: Path) -> Path:
    py = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return venv / ("Lib" if os.name == "nt" else "lib") / ("" if os.name == "nt" else py) / "site-packages"


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """attnzoo's wheel, built once per session (tests/test_readme.py installs it too)."""
    src = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    for rel in ("attnzoo", "benchmarks"):
        shutil.copytree(ROOT / rel, src / rel, ignore=ignore)
    for rel in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / rel, src / rel)
    out = tmp_path_factory.mktemp("wheel")
    proc = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                 str(src)], cwd=src)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (whl,) = out.glob("attnzoo-*.whl")
    return whl


def make_venv(wheel: Path, base: Path) -> dict[str, str]:
    """A fresh venv under ``base`` with ``wheel`` installed; returns the environment to run its commands in
    (its ``bin`` first on PATH; run ``python -m pip`` there, never a bare ``pip``, which may be another venv's)."""
    base.mkdir(parents=True, exist_ok=True)
    venv = base / "v"
    proc = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=base)
    assert proc.returncode == 0, proc.stderr
    # `--system-site-packages` would show the base interpreter's packages, not this venv's torch;
    # a .pth line naming a folder of links to this venv's packages, attnzoo's own left out, does.
    farm = base / "parent-site-packages"
    farm.mkdir()
    here = Path(sysconfig.get_paths()["purelib"])
    for entry in here.iterdir():
        low = entry.name.lower()
        if low.startswith(("attnzoo", "__editable__", "_attnzoo")) or low.endswith(".pth"):
            continue
        (farm / entry.name).symlink_to(entry)
    _site_packages(venv).joinpath("zz_parent_env.pth").write_text(f"{farm}\n")
    python = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    proc = _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)],
                cwd=base)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> dict[str, str]:
    return make_venv(wheel, tmp_path_factory.mktemp("venv"))


def test_wheel_ships_presets_and_reference_results_not_figures(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    presets = sorted(n for n in names if n.startswith("attnzoo/_presets/"))
    assert presets == sorted(f"attnzoo/_presets/{p.name}" for p in (ROOT / "benchmarks/presets").glob("*.yaml"))
    assert "attnzoo/_results/default/results.jsonl" in names
    assert not [n for n in names if n.endswith((".png", ".html"))], "figures and pages stay in the repository"
    assert "attnzoo/templates/plugin/pyproject.toml.tmpl" in names


def test_installed_wheel_lists_presets_and_runs_the_smoke_preset(venv, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    where = _run(["python", "-c", "import attnzoo, attnzoo.leaderboard.grid as g; "
                  "print(attnzoo.__file__); print(g.shipped_dir('presets')); print(g.shipped_dir('results'))"],
                 cwd=outside, env=venv)
    assert where.returncode == 0, where.stderr
    module, presets, results = where.stdout.split()
    assert not Path(module).is_relative_to(ROOT), f"imported attnzoo from the source tree: {module}"
    assert Path(presets).parent == Path(module).parent and Path(presets).name == "_presets"
    assert Path(results).name == "_results" and (Path(results) / "default" / "results.jsonl").is_file()

    helptext = _run(["attnzoo", "bench", "--help"], cwd=outside, env=venv)
    assert helptext.returncode == 0, helptext.stderr
    listed = re.search(r"built-in preset \(([^)]*)\)", " ".join(helptext.stdout.split()))
    assert listed is not None, helptext.stdout
    assert {"smoke", "default", "paper"} <= set(listed.group(1).replace(",", " ").split())

    out = tmp_path / "x"
    proc = _run(["attnzoo", "bench", "--preset", "smoke", "--jobs", "1", "--steps", "2", "--out", str(out),
                 "--no-report", "--variants", "dot,none", "--tasks", "copy"], cwd=outside, env=venv, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    ran = [r for r in rows if r["status"] != "n/a"]
    assert ran and all(r["status"] == "ok" for r in ran), [(r["variant"], r["status"], r.get("error")) for r in ran]
    assert {r["variant"] for r in ran} <= {"dot", "none"} and "dot" in {r["variant"] for r in ran}
    assert all(r["steps"] == 2 and r["preset"] == "smoke" for r in ran)


def test_pyproject_names_every_package(tmp_path):
    """The package list is explicit (package-dir maps the data packages): a new subpackage must be added."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "attnzoo").rglob("__init__.py")}
    missing = sorted(found - listed)
    assert not missing, f"add {missing} to [tool.setuptools] packages in pyproject.toml"
    assert {"attnzoo._presets", "attnzoo._results"} <= listed


def test_importing_the_pytest_plugin_imports_no_torch(tmp_path):
    """pytest loads attnzoo's pytest11 plugin in every run: importing it (and attnzoo) stays light."""
    code = ("import sys, attnzoo.testing.pytest_plugin, attnzoo; "
            "assert 'torch' not in sys.modules, 'torch imported'; "
            "assert set(attnzoo.__all__) <= set(dir(attnzoo)); "
            "print(attnzoo.__version__, attnzoo.hookimpl.project_name, attnzoo.ScoreAttention.__name__)")
    proc = _run([sys.executable, "-c", code], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    version, project, cls = proc.stdout.split()
    assert project == "attnzoo" and cls == "ScoreAttention" and re.fullmatch(r"\d+\.\d+\S*", version)
