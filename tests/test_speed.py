"""A tiny run of the speed benchmark: a row per variant and length, numbers or an error status."""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import attnzoo
from attnzoo import speed
from attnzoo.contract import Attention


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    speed.configure_parser(p)
    return p.parse_args(list(argv))


def test_tiny_run_has_a_row_per_variant(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = speed.main(_args("--lengths", "16,32", "--repeats", "1", "--device", "cpu", "--out", str(tmp_path),
                          "--no-targets", "--max-seconds", "600",
                          "--batch", "2", "--dim", "16", "--threads", "1"))
    assert rc == 0
    out = capsys.readouterr().out
    with (tmp_path / "speed.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    cells = {(r["variant"], int(r["length"])): r for r in rows}
    for name in [speed.SDPA, speed.NAIVE, *attnzoo.list_attention()]:
        assert name in out
        for t in (16, 32):
            r = cells[(name, t)]
            if r["status"] == "ok":
                assert float(r["time_ms"]) > 0 and float(r["peak_mb"]) >= 0
            else:
                assert r["status"] in {"error", "oom", "skipped"} and r["error"]
    # the multiplicative variants run and get ratios to both references
    assert cells[("scaled-dot", 32)]["status"] == "ok" and cells[("scaled-dot", 32)]["vs_sdpa"]
    assert (tmp_path / "speed.md").read_text().startswith("# attnzoo speed")
    assert (tmp_path / "speed.png").stat().st_size > 0
    back = speed.read_csv(tmp_path / "speed.csv")
    assert len(back) == len(rows) and speed.format_table(back).splitlines()[0].startswith("variant")


class _Broken(Attention):
    def attend(self, query, key, value, mask, *, state=None, need_weights=True):
        raise RuntimeError("deliberately broken")


def test_broken_variant_records_an_error_row() -> None:
    spec = attnzoo.AttentionSpec(name="broken-speed", family="test", summary="raises in forward")
    attnzoo.add_attention(spec, _Broken)
    try:
        rows = speed.run_speed(["broken-speed", "dot"], [8, 16], repeats=1, baselines=True)
    finally:
        attnzoo.remove_attention("broken-speed")
    broken = [r for r in rows if r.variant == "broken-speed"]
    assert [r.status for r in broken] == ["error", "error"]
    assert "deliberately broken" in broken[0].error
    assert all(r.status == "ok" and r.vs_sdpa and r.vs_naive for r in rows if r.variant == "dot")
    assert "error" in speed.format_table(rows)


def test_peak_memory_sees_the_score_matrix() -> None:
    x = torch.randn(2, 256, 16, requires_grad=True)

    def step() -> None:
        x.grad = None
        (torch.softmax(x @ x.transpose(1, 2), -1) @ x).sum().backward()

    mb = speed.peak_memory_mb(step, torch.device("cpu"))
    assert mb >= 2 * 256 * 256 * 4 / 2**20  # at least one [2, 256, 256] float32 matrix


def test_slope_and_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [speed.SpeedRow("v", t, 1, 8, 1, "cpu", time_ms=float(t) ** 2) for t in (8, 16, 32)]
    assert speed.fit_slope(rows) == pytest.approx(2.0)
    assert speed.main(_args("--variants", "no-such-*", "--no-targets")) == 2
    assert "no variant matches" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _args("--lengths", "a,b")


def test_module_does_not_import_lightning() -> None:
    code = "import sys, attnzoo.speed; sys.exit(int('lightning' in sys.modules or 'pytorch_lightning' in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
