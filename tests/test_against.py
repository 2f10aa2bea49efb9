"""`attnzoo bench --variants NAME --against REF`: only the new cells train, incomparable references are refused,
and the ranking names the place. Fake catalog and fake run_cell from tests/test_leaderboard.py (milliseconds)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from attnzoo.leaderboard import against
from attnzoo.commands import bench as bench_cli
from attnzoo.leaderboard.grid import expand, load_preset
from attnzoo.leaderboard.executors import InlineExecutor
from attnzoo.leaderboard.store import RESULTS, read_rows
from tests.test_leaderboard import PRESET, QUALITY, CountingRunner, FakeCatalog, _args, _fake_preset_file, fake_run_cell

#: the reference leaves "sharp" out: it plays the new plugin
REFERENCE_VARIANTS = "soft,crossonly,ptr,none"
NEW = "sharp"


@pytest.fixture
def reference(tmp_path) -> tuple[Path, Path]:
    """(preset file, reference results directory) of a fake run without the new variant."""
    preset = _fake_preset_file(tmp_path)
    ref = tmp_path / "ref"
    args = _args("--preset", str(preset), "--variants", REFERENCE_VARIANTS, "--out", str(ref), "--no-report")
    assert bench_cli.run_bench(args, executor=InlineExecutor(fake_run_cell), catalog=FakeCatalog(), argv=[]) == 0
    return preset, ref


def _against(preset: Path, ref: Path, out: Path, *extra: str, runner=None) -> tuple[int, CountingRunner]:
    runner = runner or CountingRunner()
    args = _args("--preset", str(preset), "--variants", NEW, "--against", str(ref), "--out", str(out), *extra)
    return bench_cli.run_bench(args, executor=InlineExecutor(runner), catalog=FakeCatalog(), argv=[]), runner


def test_trains_exactly_the_new_variants_cells_and_ranks_it(reference, tmp_path, capsys):
    preset_file, ref = reference
    ref_rows = read_rows(ref)
    out = tmp_path / "out"
    code, runner = _against(preset_file, ref, out)
    assert code == 0, capsys.readouterr().err

    preset = load_preset(PRESET, catalog=FakeCatalog())
    expected = {gc.id for gc in expand(preset, variants=[NEW], catalog=FakeCatalog()) if gc.runnable}
    rows = read_rows(out)
    ref_ids = {r["cell_id"] for r in ref_rows}
    new = [r for r in rows if r["cell_id"] not in ref_ids]
    assert {r["cell_id"] for r in new if r["status"] != "n/a"} == expected
    assert len(runner.calls) == len(expected)  # nothing of the reference trained again
    assert {r["variant"] for r in new} == {NEW}
    assert rows[:len(ref_rows)] == ref_rows  # the reference rows, untouched, first
    assert {r["config_hash"] for r in rows} == {preset.config_hash()}

    # the leaderboard holds both, and ranking.md says where the new variant lands on each task
    assert NEW in (out / "leaderboard.md").read_text() and "soft" in (out / "leaderboard.md").read_text()
    printed = capsys.readouterr().out
    ranking = (out / against.RANKING).read_text()
    for task in ("copy", "recall"):
        # the oracle: the fake's quality per variant orders the field (baselines are "none (backbone)" rows)
        field = {r["variant"] if r["variant"] != "none" else f"none ({r['backbone']})"
                 for r in rows if r["task"] == task and r["status"] == "ok"}
        place = 1 + sum(QUALITY[None if lab.startswith("none") else lab] > QUALITY[NEW] for lab in field)
        ordinal = {1: "1st", 2: "2nd", 3: "3rd"}.get(place, f"{place}th")
        line = f"{task}: {NEW} ranks {ordinal} of {len(field)} (median {QUALITY[NEW] + 0.005:.3f}, "
        assert re.search(re.escape(line) + r"[0-2]/2 solved, on \w+\)", ranking), ranking
        assert line in printed
        assert f"; best soft {QUALITY['soft'] + 0.005:.3f}" in ranking
    # sort runs only on pointer / mlp here: a variant without pointer logits is n/a there, with the reason
    assert f"sort: {NEW} n/a: " in ranking


def test_a_rerun_trains_nothing_and_a_second_against_needs_resume(reference, tmp_path, capsys):
    preset, ref = reference
    out = tmp_path / "out"
    assert _against(preset, ref, out, "--no-report")[0] == 0
    code, runner = _against(preset, ref, out, "--no-report")
    assert code == 2 and not runner.calls and "--resume" in capsys.readouterr().err
    code, runner = _against(preset, ref, out, "--no-report", "--resume")
    assert code == 0 and not runner.calls


def test_a_changed_budget_is_refused_saying_what_changed(reference, tmp_path, capsys):
    preset, ref = reference
    out = tmp_path / "out"
    code, runner = _against(preset, ref, out, "--steps", "3")
    err = capsys.readouterr().err
    assert code == 2 and not runner.calls and not out.exists()
    assert "config hash" in err and "max_steps 10 -> 3" in err, err


def test_another_attnzoo_version_is_refused(reference, tmp_path, capsys):
    preset, ref = reference
    rows = read_rows(ref)
    for r in rows:
        r["provenance"]["attnzoo_version"] = "9.7.1"
    (ref / RESULTS).write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, runner = _against(preset, ref, tmp_path / "out")
    err = capsys.readouterr().err
    assert code == 2 and not runner.calls
    assert "attnzoo 9.7.1" in err and "major.minor" in err


def test_a_reference_mixing_two_configurations_is_refused(reference, tmp_path, capsys):
    preset, ref = reference
    rows = read_rows(ref)
    rows[-1]["config_hash"] = "0123456789ab"
    (ref / RESULTS).write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, _ = _against(preset, ref, tmp_path / "out")
    assert code == 2 and "several runs" in capsys.readouterr().err


def test_against_needs_variants_and_a_known_reference(tmp_path, capsys):
    preset = _fake_preset_file(tmp_path)
    args = _args("--preset", str(preset), "--against", "default", "--out", str(tmp_path / "o"))
    assert bench_cli.run_bench(args, catalog=FakeCatalog()) == 2
    assert "--against needs --variants" in capsys.readouterr().err
    args = _args("--preset", str(preset), "--variants", NEW, "--against", "defualt", "--out", str(tmp_path / "o"))
    assert bench_cli.run_bench(args, catalog=FakeCatalog()) == 2
    assert "did you mean 'default'" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    args = _args("--preset", str(preset), "--variants", NEW, "--against", str(tmp_path / "empty"))
    assert bench_cli.run_bench(args, catalog=FakeCatalog()) == 2
    assert f"has no {RESULTS}" in capsys.readouterr().err


def test_the_shipped_default_reference_matches_the_shipped_default_preset(tmp_path, capsys):
    """`--against default` must work out of the box: the shipped rows are the shipped preset's cells."""
    assert "default" in against.list_references()
    out = tmp_path / "o"
    args = _args("--variants", "dot", "--against", "default", "--out", str(out), "--dry-run")
    code = bench_cli.run_bench(args)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    # dot is in the reference: every one of its cells is already done
    assert re.search(r"\n(\d+) cell\(s\) to train \(\1 already done\)", captured.out), captured.out
    assert not out.exists()  # a dry run writes nothing


def test_default_out_names_the_variants_and_the_reference(reference):
    _, ref = reference
    assert against.default_out(against.load_reference(ref), ["my-score"]) == Path("bench-out/my-score-vs-ref")
    assert against.default_out(against.load_reference("default"), ["a*", "b"]).name == "a_b-vs-default"


@given(st.integers(min_value=1, max_value=10_000))
def test_ordinals(n):
    text = against._ordinal(n)
    assert int(text[:-2]) == n
    expected = "th" if n % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    assert text[-2:] == expected


def test_a_reference_of_a_preset_file_needs_that_file(reference, tmp_path, capsys):
    _, ref = reference
    args = _args("--variants", NEW, "--against", str(ref), "--out", str(tmp_path / "o"))
    assert bench_cli.run_bench(args, catalog=FakeCatalog()) == 2
    err = capsys.readouterr().err
    assert "unknown preset 'fake'" in err and "pass that preset's file with --preset" in err


def test_against_reports_probability_of_improvement_and_highlights_the_new_variant(reference, tmp_path, capsys):
    preset_file, ref = reference
    out = tmp_path / "out"
    code, _ = _against(preset_file, ref, out)
    assert code == 0, capsys.readouterr().err
    ranking = (out / against.RANKING).read_text()
    printed = capsys.readouterr().out
    assert "## Probability of improvement" in ranking
    pattern = rf"P\({NEW} > soft\) = (\d\.\d\d) \[(\d\.\d\d), (\d\.\d\d)\] over \d+ task\(s\): (\w+)"
    m = re.search(pattern, ranking)
    assert m, ranking
    value, lo, hi, verdict = float(m[1]), float(m[2]), float(m[3]), m[4]
    assert lo <= value <= hi
    assert verdict == ("indistinguishable" if lo <= 0.5 <= hi else "better" if lo > 0.5 else "worse")
    assert m[0] in printed
    page = (out / "leaderboard.html").read_text()
    assert re.search(rf'<tr class="mine"[^>]*>.*?<td>{NEW}</td>', page), "the new variant's row is highlighted"
    assert "highlighted: <b>" in page


def test_improvement_lines_say_indistinguishable_when_the_interval_holds_one_half():
    from tests.test_report import seeds

    rows = []
    for task in ("a", "b", "c"):
        rows += seeds(task, "t", "mine", [0.6, 0.9, 0.3]) + seeds(task, "t", "twin", [0.3, 0.6, 0.9])
        rows += seeds(task, "t", "weak", [0.0, 0.01, 0.02], chance=0.0)
    lines = against.improvement_lines(rows, ["mine"])
    twin = next(line for line in lines if "> twin)" in line)
    weak = next(line for line in lines if "> weak)" in line)
    assert twin.startswith("P(mine > twin) = 0.50 [") and twin.endswith("over 3 task(s): indistinguishable")
    assert weak.startswith("P(mine > weak) = 1.00 [1.00, 1.00]") and weak.endswith(": better")
    assert not any(line.startswith("P(twin") for line in lines)  # only the new variant against the others


def test_a_median_at_chance_reads_at_chance_not_as_a_place():
    from tests.test_report import seeds

    rows = (seeds("t", "s", "good", [1.0, 1.0, 1.0]) + seeds("t", "s", "mine", [0.26, 0.25, 0.27])
            + seeds("t", "s", "other", [0.25, 0.26, 0.25]))
    (line,) = against.where_it_ranks(rows, ["mine"])
    assert line.startswith("t: mine is at chance (3 ran) (median 0.260, chance 0.25") and "ranks" not in line
    from attnzoo.leaderboard.report import aggregate, task_table

    headers, trows = task_table(aggregate(rows)["t"])
    assert [r[0] for r in trows] == ["1", "at chance", "at chance"]
