"""results.jsonl: torn and corrupt lines are named once per process, complete rows are never lost."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from attnzoo.leaderboard import store as store_mod
from attnzoo.leaderboard.store import RESULTS, ResultStore, read_rows

CUT_OFF = "the last line was cut off (a killed run); that cell will run again"


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch):
    monkeypatch.setattr(store_mod, "_warned", set())


def _rows(n: int) -> list[dict]:
    return [{"cell_id": f"c{i}", "status": "ok", "metric": i / 10} for i in range(n)]


def _write(path: Path, rows: list[dict], tail: bytes = b"") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    f = path / RESULTS
    f.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in rows) + tail)
    return f


def test_torn_last_line_is_named_once_however_often_it_is_read(tmp_path, capsys):
    rows = _rows(3)
    _write(tmp_path, rows, json.dumps({"cell_id": "c3", "status": "ok"}).encode()[:17])
    for _ in range(3):  # bench --resume reads the file, run_grid reads it, the report reads it
        assert read_rows(tmp_path) == rows
    ResultStore(tmp_path).open()  # cuts the tail: the same line, no second warning
    err = capsys.readouterr().err
    assert err.count(CUT_OFF) == 1
    assert str(tmp_path / RESULTS) in err
    assert read_rows(tmp_path) == rows and capsys.readouterr().err == ""


def test_open_alone_names_the_cut_line(tmp_path, capsys):
    _write(tmp_path, _rows(2), b'{"cell_id": "c2", "sta')
    ResultStore(tmp_path).open()
    assert capsys.readouterr().err.count(CUT_OFF) == 1
    assert (tmp_path / RESULTS).read_bytes().endswith(b"}\n")


def test_mid_file_bad_line_is_warned_once_per_line(tmp_path, capsys):
    rows = _rows(4)
    f = _write(tmp_path, [])
    lines = [json.dumps(r) for r in rows]
    lines.insert(2, "{not json")
    lines.insert(4, "also not json")
    f.write_text("\n".join(lines) + "\n")
    for _ in range(3):
        assert read_rows(tmp_path) == rows
    err = capsys.readouterr().err
    assert err.count(f"{f}:3: skipping a line that is not valid JSON") == 1
    assert err.count(f"{f}:5: skipping a line that is not valid JSON") == 1
    assert len(err.strip().splitlines()) == 2
    assert CUT_OFF not in err


def test_a_different_bad_line_warns_again(tmp_path, capsys):
    f = _write(tmp_path, _rows(1), b"garbage\n" + json.dumps(_rows(2)[1]).encode() + b"\n")
    read_rows(tmp_path)
    f.write_bytes(f.read_bytes().replace(b"garbage", b"rubbish"))
    read_rows(tmp_path)
    assert capsys.readouterr().err.count(":2: skipping") == 2


def test_warn_false_is_silent(tmp_path, capsys):
    _write(tmp_path, _rows(1), b"bad\n" + b'{"cell_id": "x"')
    assert read_rows(tmp_path, warn=False) == _rows(1)
    assert capsys.readouterr().err == ""


def test_whole_last_row_without_its_newline_is_kept(tmp_path, capsys):
    rows = _rows(3)
    _write(tmp_path, rows[:2], json.dumps(rows[2]).encode())  # killed between the row and its newline
    assert read_rows(tmp_path) == rows
    store = ResultStore(tmp_path).open()
    store.append({"cell_id": "c9", "status": "ok"})
    assert read_rows(tmp_path) == [*rows, {"cell_id": "c9", "status": "ok"}]
    assert capsys.readouterr().err == ""


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 5), cut=st.integers(1, 10_000), extra=st.dictionaries(st.text(max_size=5), st.integers(), max_size=3))
def test_any_cut_of_the_last_row_keeps_every_finished_row(n, cut, extra):
    rows = _rows(n)
    last = {"cell_id": "last", "status": "ok", **extra}
    whole = json.dumps(last).encode()
    tail = whole[: cut % len(whole)]  # 0..len-1 bytes of the row being written, never its newline
    with tempfile.TemporaryDirectory() as d:
        f = _write(Path(d), rows, tail)
        got = read_rows(d, warn=False)
        assert got == rows  # a proper prefix of a JSON object is never a JSON object
        store = ResultStore(d).open()
        store.append(last)
        assert read_rows(d, warn=False) == [*rows, last]
        assert all(json.loads(line) for line in f.read_text().splitlines())
