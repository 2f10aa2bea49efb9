"""`attnzoo bench` faults that used to be silent or end in a traceback: each one line, rc 2, before any training."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from attnzoo.leaderboard.grid import FilterError, expand, load_preset
from tests.test_leaderboard import PRESET, FakeCatalog, _args, _fake_preset_file, fake_run_cell

from attnzoo.commands import bench as bench_cli
from attnzoo.leaderboard.executors import InlineExecutor


@pytest.mark.parametrize("flag,typo,hint", [
    ("variants", "sotf", "'soft'"),
    ("tasks", "recal", "'recall'"),
    ("backbones", "seq2sq", "'seq2seq'"),
])
def test_a_filter_typo_is_named_even_beside_a_match(flag, typo, hint):
    preset = load_preset(PRESET, catalog=FakeCatalog())
    good = {"variants": "soft", "tasks": "copy", "backbones": "mlp"}[flag]
    with pytest.raises(FilterError) as info:
        expand(preset, catalog=FakeCatalog(), **{flag: [typo, good]})
    text = str(info.value)
    assert f"--{flag}: {typo!r} matches none" in text and hint in text
    # a wildcard that matches something, and the baselines' 'none', are fine
    assert expand(preset, catalog=FakeCatalog(), **{flag: [good, "*"]})
    assert expand(preset, catalog=FakeCatalog(), variants=["none"])


def test_bench_cli_filter_typo_rc2(tmp_path, capsys):
    args = _args("--preset", str(_fake_preset_file(tmp_path)), "--out", str(tmp_path / "out"),
                 "--variants", "sotf,soft")
    ran = []
    code = bench_cli.run_bench(args, executor=InlineExecutor(lambda c: ran.append(c) or fake_run_cell(c)),
                               catalog=FakeCatalog(), argv=[])
    assert code == 2 and not ran
    assert "did you mean 'soft'" in capsys.readouterr().err


def test_malformed_yaml_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seeds: 2\ntasks:\n  copy: {knobs: {length: 3}\n")
    code = bench_cli.run_bench(_args("--preset", str(bad), "--out", str(tmp_path / "o")), catalog=FakeCatalog())
    err = capsys.readouterr().err
    assert code == 2
    assert "not valid YAML" in err and "line" in err and "Traceback" not in err


def test_out_under_a_file_or_read_only_is_refused_before_training(tmp_path, capsys):
    preset = str(_fake_preset_file(tmp_path))
    afile = tmp_path / "taken"
    afile.write_text("x")
    ran = []
    runner = InlineExecutor(lambda c: ran.append(c) or fake_run_cell(c))
    for out in (afile, afile / "sub"):
        code = bench_cli.run_bench(_args("--preset", preset, "--out", str(out)), executor=runner,
                                   catalog=FakeCatalog(), argv=[])
        assert code == 2 and "a file, not a directory" in capsys.readouterr().err
    if os.geteuid() != 0 and sys.platform != "win32":  # root writes through read-only modes
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
        code = bench_cli.run_bench(_args("--preset", preset, "--out", str(ro / "x")), executor=runner,
                                   catalog=FakeCatalog(), argv=[])
        assert code == 2 and "cannot write there" in capsys.readouterr().err
    assert not ran


def test_read_only_file_system_is_refused(tmp_path, capsys, monkeypatch):
    """The write probe's OSError (EROFS on a read-only mount) becomes the one-line error."""
    preset = str(_fake_preset_file(tmp_path))
    out = tmp_path / "out"
    out.mkdir()
    real = Path.write_bytes

    def refuse(self, data):
        if self.parent == out:
            raise OSError(30, "Read-only file system")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", refuse)
    code = bench_cli.run_bench(_args("--preset", preset, "--out", str(out)), catalog=FakeCatalog(), argv=[])
    assert code == 2 and "Read-only file system" in capsys.readouterr().err


def test_bench_and_fit_name_a_failed_plugin(fresh_plugins, capsys):
    """A plugin that failed to load is said at the start of bench and fit, not only by `attnzoo list`."""
    from attnzoo import plugins
    from attnzoo.commands import fit

    class BrokenEntryPoint:
        name, value, dist = "broken-one", "nowhere.at.all", None

        def load(self):
            raise ImportError("No module named 'nowhere'")

    host = plugins.PluginHost(entry_points=[BrokenEntryPoint()])
    monkeypatch = fresh_plugins
    monkeypatch.setattr(plugins, "_host", host)
    monkeypatch.setattr(plugins, "_warned", set(), raising=False)
    import argparse

    parser = argparse.ArgumentParser()
    fit.configure_parser(parser)
    assert fit.main(parser.parse_args(["--task", "nope"])) == 2
    err = capsys.readouterr().err
    assert "broken-one" in err and "No module named 'nowhere'" in err
