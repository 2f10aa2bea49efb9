"""Lightning's loggers on a cell: each writes the row's metric names; none chosen changes nothing."""

from __future__ import annotations

import argparse
import csv
import json
import struct
from pathlib import Path

import pytest

from attnzoo import loggers as lg
from attnzoo.cell import Cell
from attnzoo.commands import fit
from attnzoo.harness.run import run_cell

TINY = Cell(task="copy", backbone="seq2seq", attention="dot", task_kwargs={"length": 3},
            backbone_kwargs={"d_model": 8}, max_steps=4, val_every=2, warmup_steps=1, batch_size=4, seed=3,
            val_size=16, test_size=16, threads=1, record_attention=False)
#: what every logger must carry: the row's own names
KEYS = {"train/loss", "val/token_acc", "val/exact_acc", "test/token_acc", "test/exact_acc"}
#: the module each logger's test needs (any one of them)
NEEDS = {name: modules for name, (_, modules) in lg.LOGGERS.items()}


def _skip_unless_installed(name: str) -> None:
    if NEEDS[name] and not any(lg._installed(m) for m in NEEDS[name]):
        pytest.skip(f"{name}: none of {', '.join(NEEDS[name])} is installed (pip install 'attnzoo[{name}]')")


def _tfrecord_tags(path: Path) -> set[str]:
    """Scalar tags of one TensorBoard event file (TFRecord framing: length, crc, event proto, crc)."""
    from tensorboard.compat.proto.event_pb2 import Event
    data, pos, tags = path.read_bytes(), 0, set()
    while pos < len(data):
        (n,) = struct.unpack("<Q", data[pos:pos + 8])
        event = Event.FromString(data[pos + 12:pos + 12 + n])
        tags |= {v.tag for v in event.summary.value}
        pos += 12 + n + 4
    return tags


def _logged_keys(name: str, log_dir: Path) -> set[str]:
    if name == "csv":
        (path,) = log_dir.glob("csv/version_*/metrics.csv")
        with open(path) as fh:
            return set(next(csv.reader(fh)))
    if name == "tensorboard":
        files = list(log_dir.glob("tensorboard/version_*/events.out.tfevents.*"))
        assert files
        return set().union(*(_tfrecord_tags(f) for f in files))
    if name == "mlflow":
        (run,) = [p.parent for p in log_dir.glob("mlruns/*/*/meta.yaml")]
        return {str(p.relative_to(run / "metrics")) for p in (run / "metrics").rglob("*") if p.is_file()}
    if name == "wandb":
        (path,) = log_dir.glob("wandb/offline-run-*/run-*.wandb")
        data = path.read_bytes()  # history records keep their keys as UTF-8 in the protobuf stream
        return {k for k in KEYS if k.encode() in data}
    raise AssertionError(name)


@pytest.mark.parametrize("name", list(lg.LOGGERS))
def test_each_logger_writes_the_rows_metric_names(name, tmp_path, monkeypatch):
    _skip_unless_installed(name)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")  # no network, whatever the machine's setting
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONSOLE", "off")
    row = run_cell(TINY.replace(loggers=(name,), log_dir=str(tmp_path)))
    assert row.status == "ok", row.error
    if name == "wandb":  # an offline run's file is written by wandb's service, which finishes it on teardown
        import wandb

        wandb.teardown()
    keys = _logged_keys(name, tmp_path)
    missing = KEYS - keys
    assert not missing, f"{name} did not log {sorted(missing)}; it logged {sorted(keys)}"
    assert set(row.metrics) <= keys | {"test_long/token_acc", "test_long/exact_acc"} or name == "wandb"


def test_a_logger_changes_neither_the_id_nor_the_numbers(tmp_path):
    logged = TINY.replace(loggers=("csv",), log_dir=str(tmp_path))
    assert logged.id() == TINY.id() and logged.id("label") == TINY.id("label")
    plain, with_csv = run_cell(TINY), run_cell(logged)
    assert plain.status == with_csv.status == "ok"
    assert plain.metrics == with_csv.metrics  # bit for bit
    assert plain.curve == with_csv.curve


def test_no_logger_builds_the_trainer_without_one():
    from attnzoo.harness.run import _keep_determinism, build

    with _keep_determinism():  # Trainer(deterministic=True) flips a process-wide flag; the next test must not see it
        _, _, trainer, _ = build(TINY)
    assert trainer.loggers == []


def test_every_problem_named_at_once(monkeypatch):
    monkeypatch.setattr(lg, "_installed", lambda module: False)
    with pytest.raises(lg.LoggerError) as err:
        lg.check_loggers(["csv", "tensorbord", "mlflow", "wandb", "tensorboard"])
    text = str(err.value)
    assert "4 logger problems" in text
    assert "'tensorbord': unknown (did you mean 'tensorboard'?)" in text
    for extra in ("tensorboard", "mlflow", "wandb"):
        assert f"pip install 'attnzoo[{extra}]'" in text
    assert lg.check_loggers(["csv", "csv"]) == ("csv",)  # csv needs nothing


def test_cell_refuses_an_unknown_logger_but_not_a_missing_package(monkeypatch):
    from attnzoo.cell import CellError

    with pytest.raises(CellError, match="'nope': unknown"):
        TINY.replace(loggers=("nope",))
    monkeypatch.setattr(lg, "_installed", lambda module: False)
    assert TINY.replace(loggers=("wandb",)).loggers == ("wandb",)  # checked where the cell runs


def _fit_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    fit.configure_parser(parser)
    return parser.parse_args(list(argv))


FIT = ["--task", "copy", "--backbone", "seq2seq", "--attention", "dot", "--task-kwargs", "length=3",
       "--backbone-kwargs", "d_model=8", "--max-steps", "2", "--warmup-steps", "1", "--batch-size", "4"]


def test_fit_refuses_a_missing_extra_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(lg, "_installed", lambda module: False)
    code = fit.main(_fit_args(*FIT, "--logger", "mlflow", "--logger", "wandb", "--log-dir", str(tmp_path / "logs")))
    assert code == 2
    err = capsys.readouterr().err
    assert "attnzoo[mlflow]" in err and "attnzoo[wandb]" in err
    assert not (tmp_path / "logs").exists()


def test_fit_logs_csv_by_default_and_none_turns_it_off(tmp_path, capsys):
    logs = tmp_path / "logs"
    assert fit.main(_fit_args(*FIT, "--log-dir", str(logs))) == 0
    out = capsys.readouterr().out
    (metrics,) = logs.glob("*/csv/version_0/metrics.csv")
    assert metrics.parent.parent.parent.name == fit.build_cell(_fit_args(*FIT)).id()
    assert f"logs (csv): {metrics.parent.parent.parent}" in out
    assert fit.build_cell(_fit_args(*FIT, "--logger", "none")).loggers == ()
    assert fit.build_cell(_fit_args(*FIT, "--logger", "csv,tensorboard")).loggers == ("csv", "tensorboard")


def test_bench_puts_each_cells_logs_under_out_logs_cell_id(tmp_path, monkeypatch):
    from attnzoo.commands import bench as bench_cli
    from attnzoo.leaderboard.executors import InlineExecutor
    from attnzoo.leaderboard.store import read_rows
    from tests.test_leaderboard import FakeCatalog, _fake_preset_file, fake_run_cell

    seen: list[dict] = []

    def recording(cell):
        seen.append(dict(cell.to_json() if isinstance(cell, Cell) else cell))
        return fake_run_cell(seen[-1])

    parser = argparse.ArgumentParser()
    bench_cli.configure_parser(parser)
    out = tmp_path / "out"
    preset = str(_fake_preset_file(tmp_path))
    grid = ["--preset", preset, "--tasks", "copy", "--variants", "soft,none", "--no-report"]
    args = parser.parse_args([*grid, "--out", str(out), "--logger", "csv", "--logger", "csv"])
    assert bench_cli.run_bench(args, executor=InlineExecutor(recording), catalog=FakeCatalog(), argv=[]) == 0
    rows = [r for r in read_rows(out) if r["status"] != "n/a"]
    assert seen and len(rows) == len(seen)
    by_id = {r["cell_id"]: r for r in rows}
    for cell in seen:
        assert cell["loggers"] == ["csv"]
        cell_id = Path(cell["log_dir"]).name
        assert Path(cell["log_dir"]) == out / "logs" / cell_id and cell_id in by_id
    assert all("loggers" not in r["cell"] and "log_dir" not in r["cell"] for r in rows)
    # the same grid without --logger: the same cell ids (a runtime option, not part of what a cell computes)
    out2 = tmp_path / "out2"
    args = parser.parse_args([*grid, "--out", str(out2)])
    assert bench_cli.run_bench(args, executor=InlineExecutor(fake_run_cell), catalog=FakeCatalog(), argv=[]) == 0
    assert {r["cell_id"] for r in read_rows(out2) if r["status"] != "n/a"} == set(by_id)
    assert json.dumps(seen)  # plain JSON went to the worker
