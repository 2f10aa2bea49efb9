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
from attnzoo.commands import speed as speed_cmd
from attnzoo.contract import Attention


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    speed_cmd.configure_parser(p)
    return p.parse_args(list(argv))


def test_tiny_run_has_a_row_per_variant(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = speed_cmd.main(_args("--lengths", "16,32", "--repeats", "1", "--device", "cpu", "--out", str(tmp_path),
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
    assert speed_cmd.main(_args("--variants", "no-such-*", "--no-targets")) == 2
    assert "no variant matches" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _args("--lengths", "a,b")


def test_module_does_not_import_lightning() -> None:
    code = "import sys, attnzoo.speed; sys.exit(int('lightning' in sys.modules or 'pytorch_lightning' in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_option_parsing_and_matching() -> None:
    pat, kw = speed.parse_option("local-*:window=32,impl='gather',score=dot")
    assert pat == "local-*" and kw == {"window": 32, "impl": "gather", "score": "dot"}
    for bad in ("local-m", "local-m:", ":window=3", "local-m:window", "local-m:1x=2"):
        with pytest.raises(argparse.ArgumentTypeError):
            speed.parse_option(bad)
    opts = [("local-*", {"window": 32}), ("local-p", {"window": 8})]
    assert speed.options_for("local-m", opts) == {"window": 32}
    assert speed.options_for("local-p", opts) == {"window": 8}  # later pairs win
    assert speed.options_for("dot", opts) == {} and speed.options_for(speed.SDPA, [("*", {"window": 1})]) == {}
    assert _args("-o", "local-*:window=32").option == [("local-*", {"window": 32})]


def test_options_reach_the_variant_and_bad_ones_are_error_rows() -> None:
    rows = speed.run_speed(["local-m"], [32], repeats=1, baselines=False,
                           options=[("local-*", {"window": 2, "impl": "gather"})])
    assert rows[0].status == "ok" and "window=2" in rows[0].call and "impl='gather'" in rows[0].call
    rows = speed.run_speed(["local-m"], [32], repeats=1, baselines=False, options=[("local-m", {"windw": 2})])
    assert rows[0].status == "error" and "windw" in rows[0].error


class _Draws(Attention):
    seen: list[float] = []

    def attend(self, query, key, value, mask, *, state=None, need_weights=True):
        from attnzoo.contract import AttentionOutput

        _Draws.seen.append(float(torch.rand(())))
        return AttentionOutput(value * 1.0)


def test_every_step_draws_the_same_randoms() -> None:
    """Repeats of a stochastic variant do the same work: the generator is reseeded per step."""
    spec = attnzoo.AttentionSpec(name="draws-speed", family="test", summary="draws a random number")
    attnzoo.add_attention(spec, _Draws)
    try:
        _Draws.seen = []
        step, _ = speed._make_step("draws-speed", 8, 1, 4, 1, torch.device("cpu"))
        for _ in range(3):
            step()
    finally:
        attnzoo.remove_attention("draws-speed")
    assert len(_Draws.seen) == 3 and len(set(_Draws.seen)) == 1


def test_local_and_hard_targets() -> None:
    def row(v, t, ms, vs=None):
        return speed.SpeedRow(v, t, 4, 64, 1, "cpu", time_ms=ms, vs_sdpa=vs, call="m(x) with window=32")

    rows = [row("local-m", 1024, 5.0, 0.5), row("local-m", 4096, 10.0, 0.05), row("local-p", 4096, 30.0, 0.2),
            row("dot", 256, 2.0), row("hard", 256, 2.9), row("dot", 4096, 100.0), row("hard", 4096, 160.0)]
    lines = speed.local_target(rows)
    assert "T=4096" in lines[0] and "20.0x faster" in lines[0] and lines[0].endswith("met") and "NOT" not in lines[0]
    assert "NOT met" in lines[1] and "window=32" in lines[1]
    (h,) = speed.hard_target(rows)
    assert "1.45x at T=256" in h and "1.60x at T=4096" in h and h.endswith("NOT met")
    assert speed.hard_target(rows[:3]) == ["- hard vs dot: not measured"]


def test_denormals_are_flushed_for_the_run_and_said_so(tmp_path: Path) -> None:
    rc = speed_cmd.main(_args("--lengths", "8", "--repeats", "1", "--device", "cpu", "--out", str(tmp_path),
                          "--no-targets", "--variants", "dot", "--no-baselines", "--threads", "1"))
    assert rc == 0
    md = (tmp_path / "speed.md").read_text()
    assert "flush_denormal: True" in md or "flush_denormal: False" in md  # False only where the CPU cannot
    tiny = torch.tensor([1e-40])
    assert float(tiny) != 0.0, "flushing must be switched off again after the run"


def test_measure_step_averages_number_runs_per_sample() -> None:
    calls = []

    def step() -> None:
        calls.append(1)

    ms = speed.measure_step(step, torch.device("cpu"), repeats=3, warmup=1, number=5)
    assert len(calls) == 1 + 3 * 5 and ms >= 0
    rows = speed.run_speed(["dot"], [8], repeats=2, baselines=False, min_sample_ms=0)
    assert rows[0].status == "ok" and rows[0].time_ms > 0
