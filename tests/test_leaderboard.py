"""The leaderboard: presets, grid, store, runner, report and the ``attnzoo bench`` command.

Most tests use a fake catalog (fake tasks, backbones and variants with real
specs) and a fake ``run_cell`` (a pure function of the cell), so they take
milliseconds; one test runs real smoke-preset cells through the harness.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from attnzoo.backbones.base import BackboneSpec
from attnzoo.tasks.base import Task, TaskSpec
from attnzoo.commands import bench as bench_cli
from attnzoo.leaderboard.grid import (BASELINE, Catalog, PresetError, cell_id, expand, load_preset, parse_shard,
                                      shard)
from attnzoo.leaderboard.progress import LineProgress
from attnzoo.leaderboard.report import aggregate, build_report
from attnzoo.leaderboard.executors import InlineExecutor, LocalExecutor
from attnzoo.leaderboard.runner import run_grid
from attnzoo.leaderboard.store import RESULTS, ResultStore, finished_ids, merge, read_rows
from attnzoo.spec import AttentionSpec

REPO = Path(__file__).resolve().parents[1]


# -- fakes ------------------------------------------------------------------------
class _FakeTask(Task):
    def __init__(self, length: int = 4, num_symbols: int = 8) -> None:
        super().__init__()
        self.length, self.num_symbols = length, num_symbols


class FakeCopy(_FakeTask):
    spec = TaskSpec(name="copy", summary="copy", length_generalization=True)


class FakeRecall(_FakeTask):
    spec = TaskSpec(name="recall", summary="recall", content_addressed=True)


class FakeSort(_FakeTask):
    spec = TaskSpec(name="sort", summary="sort", output="pointers")


def _factory(query_dim, key_dim=None, value_dim=None, *, width: int = 4, need_weights: bool = False):
    raise AssertionError("never built in these tests")


def _backbone(task, attention, *, d_model: int = 64, num_layers: int = 2, num_heads: int = 4,
              attention_kwargs=None, dropout: float = 0.0):
    raise AssertionError("never built in these tests")


class FakeCatalog(Catalog):
    tasks = {"copy": FakeCopy, "recall": FakeRecall, "sort": FakeSort}
    backbones = {
        "transformer": BackboneSpec("transformer", "blocks", required_capabilities=("self_attention",),
                                    outputs=("tokens",)),
        "seq2seq": BackboneSpec("seq2seq", "rnn", attention="optional", required_capabilities=("cross_attention",),
                                outputs=("tokens",)),
        "pointer": BackboneSpec("pointer", "ptr", required_capabilities=("pointer_logits",), outputs=("pointers",)),
        "mlp": BackboneSpec("mlp", "mlp", attention="none", outputs=("tokens",), fixed_length=True),
    }
    variants = {
        "soft": AttentionSpec("soft", "f", "soft"),
        "sharp": AttentionSpec("sharp", "f", "sharp"),
        "crossonly": AttentionSpec("crossonly", "f", "cross only", self_attention=False),
        "ptr": AttentionSpec("ptr", "f", "pointer", pointer_logits=True, self_attention=False),
        "boom": AttentionSpec("boom", "f", "always raises"),
    }

    def task_names(self):
        return sorted(self.tasks)

    def task_class(self, name):
        return self.tasks[name]

    def backbone_names(self):
        return sorted(self.backbones)

    def backbone(self, name):
        return self.backbones[name], _backbone

    def variant_names(self):
        return sorted(self.variants)

    def variant(self, name):
        return self.variants[name], _factory


PRESET = {
    "name": "fake",
    "seeds": 2,
    "max_steps": 10,
    "batch_size": 4,
    "lrs": [1e-3, 3e-3],
    "warmup_steps": 1,
    "val_every": 5,
    "variants": ["*"],
    "attention_kwargs": {"soft": {"width": 2}},
    "backbones": {"transformer": {"d_model": 16}, "seq2seq": {"d_model": 16}, "pointer": {}, "mlp": {}},
    "tasks": {"copy": {"knobs": {"length": 3}}, "recall": {}, "sort": {"backbones": ["pointer", "mlp"]}},
}

#: fake accuracy per variant: the report must rank by it
QUALITY = {"soft": 0.9, "sharp": 0.6, "crossonly": 0.7, "ptr": 0.8, None: 0.2}


def fake_run_cell(cell: dict) -> dict:
    """A pure stand-in for attnzoo.harness.run.run_cell: quality by variant, a little by lr and seed."""
    att = cell["attention"]
    if cell["task_kwargs"].get("crash"):
        os._exit(3)  # the worker process dies (a segfault, the OOM killer)
    if att == "boom":
        raise RuntimeError("boom: this variant always fails")
    if os.environ.get("FAKE_CELL_SLEEP"):
        time.sleep(float(os.environ["FAKE_CELL_SLEEP"]))
    q = QUALITY.get(att, 0.5) - (0.1 if cell["lr"] > 2e-3 else 0.0) + 0.01 * cell["seed"]
    steps = cell["max_steps"]
    return {
        "status": "ok", "error": None,
        "metrics": {"val/exact_acc": q, "test/exact_acc": q, "test/token_acc": min(1.0, q + 0.05),
                    "test_long/exact_acc": q / 2},
        "main_metric": "test/exact_acc", "main_value": q, "chance": 0.125, "params": 1000, "steps": steps,
        "train_time_s": 0.01, "tokens_per_s": 1000.0 * (1 + len(att or "")), "peak_mem_mb": 1.0,
        "curve": [[s, 2.0 / s, q * s / steps] for s in range(1, steps + 1, 4)],
        "attention_map": None if att is None else
        {"src": [1, 2, 3], "tgt": [3, 2], "weights": [[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]]},
        "provenance": {"worker_pid": os.getpid()},
    }


class CountingRunner:
    def __init__(self):
        self.calls: list[str] = []

    def __call__(self, cell):
        self.calls.append(json.dumps(cell.to_json(), sort_keys=True))
        return fake_run_cell(cell)


@pytest.fixture
def fake_preset():
    return load_preset(PRESET, catalog=FakeCatalog())


@pytest.fixture
def grid(fake_preset):
    return expand(fake_preset, catalog=FakeCatalog())


# -- presets ------------------------------------------------------------------------
def test_preset_validation_lists_every_mismatch():
    bad = json.loads(json.dumps(PRESET))
    bad["seedz"] = 3
    bad["lrs"] = []
    bad["trainer"] = {"gpus": 1}
    bad["variants"] = ["nothing-matches*"]
    bad["attention_kwargs"] = {"soft": {"widht": 2}, "unknown-variant": {}}
    bad["backbones"]["transformer"] = {"d_modle": 16}
    bad["backbones"]["rnn"] = {}
    bad["tasks"]["copy"] = {"knobs": {"lenght": 3}, "steps": 5}
    bad["tasks"]["nope"] = {}
    with pytest.raises(PresetError) as info:
        load_preset(bad, catalog=FakeCatalog())
    text = str(info.value)
    expected = ["'seedz'", "did you mean 'seeds'", "lrs", "'gpus'", "nothing-matches*", "'widht'", "'width'",
                "'unknown-variant'", "'d_modle'", "'d_model'", "backbone 'rnn'", "'lenght'", "'length'",
                "'steps'", "task 'nope'"]
    for piece in expected:
        assert piece in text, f"{piece!r} missing from:\n{text}"
    assert len(info.value.problems) >= 11
    assert text.count("\n  - ") == len(info.value.problems)


@pytest.mark.parametrize("name", ["smoke", "default", "paper"])
def test_builtin_presets_validate_against_the_real_registries(name):
    preset = load_preset(name)
    cells = expand(preset)
    assert any(c.runnable for c in cells)
    tasks = {c.task for c in cells}
    assert len(tasks) >= 2
    # every registered variant shows up, run or n/a: nothing is silently dropped
    variants = {c.variant for c in cells}
    if preset.data["variants"] == ["*"]:
        from attnzoo.registry import list_attention

        assert set(list_attention()) <= variants
    assert BASELINE in variants


def test_default_preset_has_the_contrasts():
    preset = load_preset("default")
    cells = expand(preset)
    runnable = [c for c in cells if c.runnable]
    names = {c.cell.task for c in runnable}
    assert names & {"associative-recall", "mqar"}
    assert {"copy", "sort"} <= names
    recall = {(c.backbone, c.variant) for c in runnable if c.cell.task in ("associative-recall", "mqar")}
    assert ("mlp", BASELINE) in recall and any(v != BASELINE for _, v in recall)
    copy_pairs = {(c.backbone, c.variant) for c in runnable if c.cell.task in ("copy", "reverse")}
    assert ("seq2seq", BASELINE) in copy_pairs and any(b == "seq2seq" and v != BASELINE for b, v in copy_pairs)
    assert any(c.backbone == "pointer" for c in runnable if c.cell.task == "sort")
    # equal budgets within a task
    for task in {c.task for c in runnable}:
        budgets = {(c.cell.max_steps, c.cell.batch_size) for c in runnable if c.task == task}
        assert len(budgets) == 1, (task, budgets)


# -- grid -----------------------------------------------------------------------------
def test_expand_has_na_rows_with_reasons_and_baselines(grid):
    na = [c for c in grid if not c.runnable]
    assert na and all(c.reason for c in na)
    by_pair = {(c.task, c.backbone, c.variant): c for c in grid}
    assert by_pair[("copy", "transformer", "crossonly")].reason == "needs a self-attention variant"
    assert by_pair[("copy", "seq2seq", "crossonly")].runnable
    assert by_pair[("sort", "pointer", "soft")].reason == "needs a variant with pointer logits"
    assert by_pair[("sort", "mlp", BASELINE)].reason  # mlp serves tokens only
    # baselines: mlp (no attention at all) and seq2seq without attention
    assert by_pair[("copy", "mlp", BASELINE)].runnable
    assert by_pair[("copy", "seq2seq", BASELINE)].cell.attention is None
    # runnable cells: every seed x lr; n/a pairs once
    runs = [c for c in grid if c.runnable and c.task == "copy" and c.backbone == "seq2seq" and c.variant == "soft"]
    assert sorted((c.seed, c.lr) for c in runs) == [(0, 1e-3), (0, 3e-3), (1, 1e-3), (1, 3e-3)]
    assert runs[0].cell.attention_kwargs == {"width": 2}
    assert runs[0].cell.task_kwargs == {"length": 3}
    # sort only on the backbones its entry names
    assert {c.backbone for c in grid if c.task == "sort"} == {"pointer", "mlp"}
    ids = [c.id for c in grid]
    assert len(ids) == len(set(ids))


def test_cell_ids_are_stable_and_ignore_threads(fake_preset):
    a = expand(fake_preset, catalog=FakeCatalog())
    b = expand(load_preset(PRESET, catalog=FakeCatalog()), catalog=FakeCatalog())
    assert [c.id for c in a] == [c.id for c in b]
    cell = a[-1].cell
    assert cell_id(cell.replace(threads=7, progress=True)) == cell_id(cell)
    assert cell_id(cell.replace(max_steps=11)) != cell_id(cell)
    assert cell_id(cell.to_json(), a[-1].task) == a[-1].id  # the JSON form hashes the same


def test_filters_select_variants_tasks_backbones(fake_preset):
    cells = expand(fake_preset, variants=["so*", BASELINE], tasks=["copy"], backbones=["seq2seq"],
                   catalog=FakeCatalog())
    assert {(c.task, c.backbone, c.variant) for c in cells} == {("copy", "seq2seq", "soft"),
                                                                ("copy", "seq2seq", BASELINE)}


def test_shards_partition_the_grid(grid):
    for n in (1, 2, 3, 5):
        parts = [shard(grid, i, n) for i in range(n)]
        ids = [c.id for p in parts for c in p]
        assert sorted(ids) == sorted(c.id for c in grid)  # union = all, nothing twice
        assert len(ids) == len(set(ids))
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "x", "1/0", "-1/2"):
        with pytest.raises(ValueError):
            parse_shard(bad)


# -- store and runner ----------------------------------------------------------------------
def test_resume_after_kill_reruns_only_missing_cells(tmp_path, fake_preset, grid):
    store = ResultStore(tmp_path)
    runner = CountingRunner()
    first = run_grid(grid, store, InlineExecutor(runner), fake_preset, max_cells=5)
    assert first.interrupted and first.ran == 5
    assert len(runner.calls) == 5
    second = run_grid(grid, store, InlineExecutor(runner), fake_preset)
    runnable = [c for c in grid if c.runnable]
    assert second.skipped == 5 and second.ran == len(runnable) - 5
    assert len(runner.calls) == len(set(runner.calls)) == len(runnable)  # no cell twice
    rows = read_rows(tmp_path)
    ids = [r["cell_id"] for r in rows]
    assert len(ids) == len(set(ids)) == len(grid)  # n/a rows are written once too
    third = run_grid(grid, store, InlineExecutor(runner), fake_preset)
    assert third.ran == 0 and len(runner.calls) == len(runnable)


def test_torn_last_line_is_tolerated_and_the_cell_reruns(tmp_path, fake_preset, grid):
    store = ResultStore(tmp_path)
    run_grid(grid, store, InlineExecutor(fake_run_cell), fake_preset, max_cells=3)
    rows = read_rows(tmp_path)
    path = tmp_path / RESULTS
    whole = path.read_bytes()
    torn = json.dumps({**rows[-1], "cell_id": "torn"}).encode()[:40]
    path.write_bytes(whole + torn)  # killed in the middle of a write
    assert read_rows(tmp_path) == rows
    runner = CountingRunner()
    run_grid(grid, store, InlineExecutor(runner), fake_preset)
    final = read_rows(tmp_path)
    assert len(final) == len(grid)
    assert all(line.strip().startswith("{") for line in path.read_text().splitlines())


def test_failing_cell_becomes_a_row_and_the_grid_goes_on(tmp_path, fake_preset, grid):
    summary = run_grid(grid, ResultStore(tmp_path), InlineExecutor(fake_run_cell), fake_preset)
    rows = read_rows(tmp_path)
    boom = [r for r in rows if r["variant"] == "boom" and r["status"] != "n/a"]
    assert boom and all(r["status"] == "failed" and "boom" in r["error"] for r in boom)
    assert summary.failed == len(boom)
    assert summary.ok == sum(c.runnable for c in grid) - len(boom)
    # failed rows are finished unless --retry-failed
    assert {r["cell_id"] for r in boom} <= finished_ids(rows)
    assert not {r["cell_id"] for r in boom} & finished_ids(rows, retry_failed=True)
    runner = CountingRunner()
    again = run_grid(grid, ResultStore(tmp_path), InlineExecutor(runner), fake_preset, retry_failed=True)
    assert again.ran == len(boom)
    # provenance on every ran row
    ok = next(r for r in rows if r["status"] == "ok")
    for key in ("attnzoo_version", "git_commit", "torch_version", "device", "hostname", "timestamp"):
        assert key in ok["provenance"]
    for key in ("seed", "preset", "config_hash", "cell_id", "lr", "task", "backbone", "variant"):
        assert ok[key] is not None


def test_local_executor_runs_cells_in_reused_worker_processes(tmp_path, fake_preset, grid):
    cells = [c for c in grid if c.task == "copy"]
    progress_out = tmp_path / "progress.txt"
    with open(progress_out, "w") as fh:
        summary = run_grid(cells, ResultStore(tmp_path / "out"), LocalExecutor(2, fake_run_cell), fake_preset,
                           progress=LineProgress(fh))
    rows = read_rows(tmp_path / "out")
    ran = [r for r in rows if r["status"] != "n/a"]
    assert summary.ran == len(ran) == sum(c.runnable for c in cells)
    pids = {r["provenance"]["pid"] for r in ran}
    assert 1 <= len(pids) <= 2 and os.getpid() not in pids
    text = progress_out.read_text()
    assert "ETA" in text and "failed" in text and "n/a" in text


def test_a_cell_that_kills_its_worker_is_retried_then_recorded(tmp_path, fake_preset, grid):
    cells = [c for c in grid if c.runnable and c.task == "copy" and c.seed == 0 and c.variant == "soft"]
    crash = copy.deepcopy(cells[0])
    crash.id, crash.cell = "crash", crash.cell.replace(task_kwargs={"crash": True})
    cells = [crash, *cells]
    summary = run_grid(cells, ResultStore(tmp_path), LocalExecutor(2, fake_run_cell, max_attempts=2), fake_preset)
    rows = {r["cell_id"]: r for r in read_rows(tmp_path)}
    assert set(rows) == {c.id for c in cells} and summary.ran == len(cells)
    assert rows["crash"]["status"] == "failed" and "2 time(s) alone" in rows["crash"]["error"]
    assert all(r["status"] == "ok" for cid, r in rows.items() if cid != "crash")


def test_merge_joins_shards(tmp_path, fake_preset, grid):
    for i in range(2):
        run_grid(shard(grid, i, 2), ResultStore(tmp_path / f"s{i}"), InlineExecutor(fake_run_cell), fake_preset)
    counts = merge(tmp_path / "all", [tmp_path / "s0", tmp_path / "s1"])
    assert counts["total"] == len(grid)
    again = merge(tmp_path / "all", [tmp_path / "s0", tmp_path / "s1"])
    assert again["added"] == 0 and again["total"] == len(grid)


# -- report -------------------------------------------------------------------------------
REPORT_FILES = ["leaderboard.md", "leaderboard.csv", "leaderboard.html", "heatmap.png", "acc_vs_speed.png",
                "curves_copy.png", "curves_recall.png", "attention_copy.png", "attention_recall.png"]


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    """A directory holding only results.jsonl (and a speed.csv), then the report built from it."""
    run = tmp_path_factory.mktemp("run")
    preset = load_preset(PRESET, catalog=FakeCatalog())
    run_grid(expand(preset, catalog=FakeCatalog()), ResultStore(run), InlineExecutor(fake_run_cell), preset)
    only = tmp_path_factory.mktemp("only")
    (only / RESULTS).write_bytes((run / RESULTS).read_bytes())
    (only / "speed.csv").write_text("variant,length,status,time_ms,peak_mb\nsoft,64,ok,1.0,2\nsoft,128,ok,3.5,6\n"
                                    "sdpa,64,ok,0.5,1\nsdpa,128,ok,1.2,2\nsdpa,256,oom,,\n")
    return only, {p.name for p in build_report(only)}


def test_report_builds_every_file_from_results_alone(reported):
    only, written = reported
    for name in REPORT_FILES + ["speed.png"]:
        assert name in written and (only / name).stat().st_size > 0, name
    md = (only / "leaderboard.md").read_text()
    # the copy table ranks by the metric: soft (0.9) > ptr (0.8) > crossonly (0.7) > sharp (0.6) > baselines
    section = md.split("## copy")[1].split("\n## ")[0]
    ranked = [line.split("|") for line in section.splitlines()
              if line.startswith("| ") and line.split("|")[1].strip().isdigit()]
    means = [float(r[4].split("±")[0]) for r in ranked]
    assert means == sorted(means, reverse=True) and len(means) >= 6
    assert [r[2].strip() for r in ranked][:2] == ["soft", "soft"]
    assert [r[1].strip() for r in ranked] == [str(i) for i in range(1, len(ranked) + 1)]
    assert "n/a: needs a self-attention variant" in md
    assert "failed: failed: RuntimeError: boom" in md or "failed: RuntimeError" in md
    # best lr by validation (1e-3 beats 3e-3 in the fake), mean ± std over the 2 seeds
    entries = {(e.backbone, e.variant): e for e in aggregate(read_rows(only))["copy"]}
    soft = entries[("seq2seq", "soft")]
    assert soft.best_lr == 1e-3 and len(soft.values) == 2
    assert soft.mean == pytest.approx(0.905) and soft.std == pytest.approx(0.00707, abs=1e-4)
    assert soft.chance == 0.125 and soft.long_mean == pytest.approx(0.4525)
    csv_text = (only / "leaderboard.csv").read_text()
    assert csv_text.splitlines()[0].startswith("task,rank,variant")
    overall = md.split("## Overall")[1].split("\n## ")[0]
    assert "none (mlp)" in overall and "chance" in overall


def test_html_is_self_contained(reported):
    page = (reported[0] / "leaderboard.html").read_text()
    import re

    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", page)
    assert refs and all(r.startswith(("data:image/png;base64,", "#")) for r in refs), refs[:3]
    assert "http://" not in page and "https://" not in page
    assert page.count("<img") >= 6 and "<table" in page


# -- the command ----------------------------------------------------------------------------
def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench_cli.configure_parser(parser)
    return parser.parse_args(list(argv))


def _fake_preset_file(tmp_path: Path) -> Path:
    import yaml

    path = tmp_path / "fake.yaml"
    path.write_text(yaml.safe_dump(PRESET))
    return path


def test_cli_dry_run_refuse_and_resume(tmp_path, capsys):
    preset = _fake_preset_file(tmp_path)
    out = tmp_path / "out"
    args = _args("--preset", str(preset), "--out", str(out), "--dry-run")
    assert bench_cli.run_bench(args, catalog=FakeCatalog()) == 0
    printed = capsys.readouterr().out
    assert "n/a   copy / transformer / crossonly" in printed and "needs a self-attention variant" in printed
    assert "run   copy / mlp / none" in printed

    args = _args("--preset", str(preset), "--out", str(out), "--tasks", "copy", "--no-report")
    code = bench_cli.run_bench(args, executor=InlineExecutor(fake_run_cell), catalog=FakeCatalog(), argv=[])
    assert code == 0 and read_rows(out)
    # the same command again: refused, the directory is not empty
    assert bench_cli.run_bench(args, executor=InlineExecutor(fake_run_cell), catalog=FakeCatalog(), argv=[]) == 2
    assert "--resume" in capsys.readouterr().err
    # --resume with a different budget: refused, configs must not mix
    args = _args("--preset", str(preset), "--out", str(out), "--steps", "99", "--resume")
    assert bench_cli.run_bench(args, executor=InlineExecutor(fake_run_cell), catalog=FakeCatalog(), argv=[]) == 2
    assert "another configuration" in capsys.readouterr().err
    # --resume growing the grid (another task) runs only the new cells
    runner = CountingRunner()
    args = _args("--preset", str(preset), "--out", str(out), "--resume", "--no-report")
    assert bench_cli.run_bench(args, executor=InlineExecutor(runner), catalog=FakeCatalog(), argv=[]) == 0
    assert runner.calls and all('"task": "copy"' not in c for c in runner.calls)


def test_cli_parser_subcommands():
    args = _args("report", "some/dir")
    assert args.bench_command == "report" and args.dir == "some/dir"
    args = _args("merge", "out", "a", "b")
    assert args.bench_command == "merge" and args.dirs == ["a", "b"]
    args = _args("--preset", "smoke", "--jobs", "2", "--shard", "0/2", "--devices", "2")
    assert args.bench_command is None and args.jobs == 2 and args.devices == 2


def test_bench_module_does_not_import_lightning():
    code = ("import sys, attnzoo.commands.bench, attnzoo.leaderboard.report, attnzoo.leaderboard.runner; "
            "assert 'lightning' not in sys.modules and 'pytorch_lightning' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def _session_pids(sid: int) -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid=,sid=,stat="], capture_output=True, text=True).stdout
    return [int(pid) for pid, s, stat in (line.split()[:3] for line in out.splitlines() if line.strip())
            if int(s) == sid and not stat.startswith("Z")]


def _start_and_stop(cmd, env, cwd, out, rows_wanted, sig, *, group: bool):
    """Start the command in its own session, send ``sig`` once ``rows_wanted`` cells have rows."""
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.time() + 180
    try:
        while time.time() < deadline and proc.poll() is None:
            ran = [r for r in read_rows(out, warn=False) if r.get("status") != "n/a"] if out.exists() else []
            if len(ran) >= rows_wanted:
                break
            time.sleep(0.1)
        (os.killpg if group else os.kill)(proc.pid, sig)
        err = proc.communicate(timeout=60)[1]
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return proc, err


def test_killed_bench_process_resumes_without_redoing_cells(tmp_path):
    """SIGTERM, then SIGKILL of the real command mid-grid (fake cells), then --resume: every cell exactly once."""
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": f"{Path(__file__).parent}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "FAKE_CELL_SLEEP": "0.3"}
    cmd = [sys.executable, "-m", "attnzoo", "bench", "--preset", "smoke", "--out", str(out), "--jobs", "2",
           "--run-cell", "test_leaderboard:fake_run_cell", "--no-report"]
    # SIGTERM (kill, a scheduler's time limit): a clean stop that says how to resume
    proc, err = _start_and_stop(cmd, env, tmp_path, out, 3, signal.SIGTERM, group=False)
    assert proc.returncode == 130, err[-2000:]
    assert "Resume with:" in err and "--resume" in err
    first = read_rows(out)
    # SIGKILL of the driver alone: its workers notice and exit instead of training for nobody
    proc, err = _start_and_stop(cmd + ["--resume"], env, tmp_path, out, len(first) - 25 + 3, signal.SIGKILL,
                                group=False)
    deadline = time.time() + 30
    while _session_pids(proc.pid) and time.time() < deadline:
        time.sleep(0.5)
    left = _session_pids(proc.pid)
    if left:
        os.killpg(proc.pid, signal.SIGKILL)
    assert not left, f"workers outlived their driver: {left}"
    before = read_rows(out)
    assert len(before) > len(first)
    done = subprocess.run(cmd + ["--resume"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = read_rows(out)
    ids = [r["cell_id"] for r in rows]
    assert len(ids) == len(set(ids))  # nothing twice
    assert {r["cell_id"] for r in before} <= set(ids)
    expected = expand(load_preset("smoke"))
    assert set(ids) == {c.id for c in expected}


def test_real_smoke_cells_end_to_end(tmp_path):
    """Two real cells of the smoke preset through the harness, then the report."""
    out = tmp_path / "smoke"
    args = _args("--preset", "smoke", "--out", str(out), "--tasks", "copy", "--backbones", "seq2seq",
                 "--variants", "scaled-dot,none", "--jobs", "1")
    assert bench_cli.main(args) == 0
    rows = read_rows(out)
    ran = [r for r in rows if r["status"] != "n/a"]
    assert {(r["backbone"], r["variant"]) for r in ran} == {("seq2seq", "scaled-dot"), ("seq2seq", BASELINE)}
    for r in ran:
        assert r["status"] == "ok", r.get("error")
        assert r["main_metric"] and r["params"] > 0 and r["tokens_per_s"] > 0 and r["curve"]
        assert r["provenance"]["torch_version"] and r["config_hash"]
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.html", "heatmap.png", "attention_copy.png"):
        assert (out / name).exists(), name


def _chromium() -> str | None:
    import shutil

    return next((shutil.which(n) for n in ("chromium-headless-shell", "chromium", "chromium-browser",
                                            "google-chrome") if shutil.which(n)), None)


@pytest.mark.browser
def test_html_renders_in_headless_chromium(reported, tmp_path):
    """Opt-in (-m browser): the page renders with its figures (apt-get install chromium-headless-shell)."""
    browser = _chromium()
    if browser is None:
        pytest.skip("no headless Chromium installed")
    shot = tmp_path / "page.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={shot}", "--window-size=1280,2000",
                    (reported[0] / "leaderboard.html").resolve().as_uri()],
                   check=True, capture_output=True, timeout=120)
    from PIL import Image

    img = Image.open(shot).convert("RGB")
    assert img.size == (1280, 2000)
    colors = img.getcolors(maxcolors=1 << 20) or []
    # text and tables alone give a few hundred colours; the inlined heatmap and scatter plot give thousands
    assert len(colors) > 1000, len(colors)
    # the heatmap's viridis yellow-green is on the page: the images loaded from their data URIs
    assert any(r > 150 and g > 180 and b < 80 for _, (r, g, b) in colors)
