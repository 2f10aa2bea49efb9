"""`attnzoo fit` prints figures rounded to what they mean, and its --json row says which cell it ran."""

from __future__ import annotations

import argparse
import json
import re

import pytest

from attnzoo.harness import fit


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    fit.configure_parser(parser)
    return parser.parse_args(list(argv))


TINY = ["--task", "copy", "--backbone", "seq2seq", "--attention", "dot", "--task-kwargs", "length=3",
        "--backbone-kwargs", "d_model=8", "--max-steps", "2", "--warmup-steps", "1", "--batch-size", "4",
        "--seed", "5", "--threads", "1", "--no-progress"]


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
