"""The command line has one home (issue 26, step 3): every subcommand in ``attnzoo/commands/``, the
harness and the libraries free of argparse, and ``attnzoo bench`` saying every problem at once."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

from attnzoo.cli import LAZY_COMMANDS
from attnzoo.commands import bench as bench_cli
from attnzoo.leaderboard.executors import InlineExecutor
from tests.test_leaderboard import FakeCatalog, _args, _fake_preset_file, fake_run_cell

PKG = Path(__file__).resolve().parents[1] / "attnzoo"


def test_every_lazy_command_lives_in_commands_with_a_parser_and_a_main():
    for name, (module, _help) in LAZY_COMMANDS.items():
        assert module.startswith("attnzoo.commands."), name
        mod = importlib.import_module(module)
        assert callable(mod.configure_parser) and callable(mod.main), name


def _argparse_users(paths: list[Path]) -> list[str]:
    out = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            out += [f"{path.relative_to(PKG.parent)}:{node.lineno}" for n in names if n.split(".")[0] == "argparse"]
    return out


def test_the_harness_and_the_kit_parse_no_flags():
    assert not _argparse_users(sorted((PKG / "harness").rglob("*.py")) + sorted((PKG / "testing").rglob("*.py")))


def test_bench_names_every_problem_at_once_and_trains_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "something").write_text("x")
    args = _args("--preset", str(_fake_preset_file(tmp_path)), "--out", str(out), "--retry-failed",
                 "--retry-diverged", "--jobs", "0")
    ran = []
    code = bench_cli.run_bench(args, executor=InlineExecutor(lambda c: ran.append(c) or fake_run_cell(c)),
                               catalog=FakeCatalog(), argv=[])
    err = capsys.readouterr().err
    assert code == 2 and not ran
    for problem in ("is not empty", "--retry-failed only makes sense with --resume",
                    "--retry-diverged only makes sense with --resume", "--jobs must be >= 1, got 0"):
        assert problem in err, problem
    assert sorted(p.name for p in out.iterdir()) == ["something"]


def test_conflicting_flags_are_named_together_before_the_preset_loads(tmp_path, capsys):
    args = _args("--preset", str(tmp_path / "missing.yaml"), "--against", "default", "--shard", "0/2")
    assert bench_cli.run_bench(args, catalog=FakeCatalog(), argv=[]) == 2
    err = capsys.readouterr().err
    assert "--against needs --variants" in err and "does not take --shard" in err


def test_plan_writes_nothing(tmp_path):
    args = _args("--preset", str(_fake_preset_file(tmp_path)), "--out", str(tmp_path / "out"))
    plan = bench_cli.plan_bench(args, catalog=FakeCatalog())
    assert plan.cells and plan.out == tmp_path / "out" and plan.jobs >= 1
    assert not (tmp_path / "out").exists()
