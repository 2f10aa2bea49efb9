"""`attnzoo fit` prints figures rounded to what they mean, and its --json row says which cell it ran."""

from __future__ import annotations

import argparse
import json
import re

import pytest

from attnzoo.commands import fit


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    fit.configure_parser(parser)
    return parser.parse_args(list(argv))


TINY = ["--task", "copy", "--backbone", "seq2seq", "--attention", "dot", "--task-kwargs", "length=3",
        "--backbone-kwargs", "d_model=8", "--max-steps", "2", "--warmup-steps", "1", "--batch-size", "4",
        "--seed", "5", "--threads", "1", "--no-progress", "--logger", "none"]


@pytest.mark.parametrize("value,text", [(123750.6, "124k tok/s"), (999.4, "999 tok/s"), (2.5e6, "2.5M tok/s"),
                                        (None, "- tok/s")])
def test_rates_have_three_significant_figures(value, text):
    assert fit._si(value, "tok/s") == text


def test_fit_table_and_json(capsys):
    assert fit.main(_args(*TINY)) == 0
    out = capsys.readouterr().out
    assert "copy / seq2seq / dot / seed 5 / lr 0.001: ok" in out
    assert re.search(r"\b\d+(\.\d+)?[kMG]? tok/s", out), out
    assert not re.search(r"\d+\.\d{3,} (tok/s|MiB)", out), out  # no 123750.6000 tok/s, no 325.6100 MiB
    assert "not measured on CPU" in out

    assert fit.main(_args(*TINY, "--json")) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["seed"] == 5 and row["lr"] == pytest.approx(1e-3)
    assert row["cell"]["task"] == "copy" and row["cell"]["attention"] == "dot" and row["cell"]["max_steps"] == 2
    assert row["variant"] == "dot" and row["schema"] >= 2


def test_progress_bar_is_quiet_in_a_pipe(capsys, monkeypatch, tmp_path):
    piped = [a for a in TINY if a != "--no-progress"]
    assert fit.main(_args(*piped)) == 0  # capsys: stdout is not a terminal
    cap = capsys.readouterr()
    assert "\r" not in cap.out + cap.err, "carriage returns in a pipe"
    assert "ok" in cap.out
    assert fit.main(_args(*piped, "--progress")) == 0  # asked for: Lightning's bar, \r and all
    cap = capsys.readouterr()
    assert "\r" in cap.out + cap.err
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    assert fit.build_cell(_args(*piped)).progress is True


def test_default_threads_leave_busy_cores_alone(monkeypatch):
    monkeypatch.setattr(fit, "_physical_cores", lambda: 8)
    for load, processes, want in ((0.0, 1, 4), (5.2, 1, 3), (7.9, 1, 1), (30.0, 1, 1), (0.0, 4, 2), (0.0, 16, 1)):
        monkeypatch.setattr("os.getloadavg", lambda: (load, load, load))
        n, why = fit.default_threads(processes)
        assert n == want, (load, processes, n)
        assert "8 physical core(s)" in why and f"load {load:.1f}" in why


def test_fit_says_which_threads_it_chose(capsys):
    i = TINY.index("--threads")
    args = TINY[:i] + TINY[i + 2:]
    assert fit.main(_args(*args)) == 0
    cap = capsys.readouterr()
    n = re.search(r"attnzoo fit: (\d+) torch thread\(s\) \(\d+ physical core\(s\), 1-min load [\d.]+", cap.err)
    assert n, cap.err
    assert f"threads {n.group(1)}" in cap.out


def test_readme_fit_example_parses_and_resolves():
    """The README's fit commands are valid flags and a cell that resolves (training them is the README's claim)."""
    import shlex
    from pathlib import Path

    from attnzoo.resolve import resolve

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"<!-- fit-example:start -->\n```bash\n(.*?)```", readme, flags=re.S).group(1)
    lines = [shlex.split(ln) for ln in block.strip().splitlines()]
    assert len(lines) == 2 and all(ln[:2] == ["attnzoo", "fit"] for ln in lines)
    cells = [fit.build_cell(_args(*ln[2:])) for ln in lines]
    for cell in cells:
        resolve(cell)
        assert cell.loggers == ("csv",)
    assert cells[0].task == cells[1].task and cells[0].max_steps == cells[1].max_steps  # the same budget
    assert cells[1].backbone == "mlp" and cells[1].attention is None
