"""Faults a user hits, with real processes, real signals and a real file system (issue 27).

Each test drives the real ``attnzoo bench`` command in its own session with fake cells
(:mod:`tests.fault_cells`) on the smoke preset's copy task: three cells (two baselines,
quick, and one attention cell that holds its worker), two workers.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from attnzoo.commands import bench as bench_cli
from attnzoo.leaderboard.grid import expand, load_preset
from attnzoo.leaderboard.lock import LOCK_NAME, OutDirLocked, OutLock
from attnzoo.leaderboard.store import RESULTS, read_rows

from tests.test_leaderboard import FakeCatalog, _args, _fake_preset_file, fake_run_cell
from attnzoo.leaderboard.executors import InlineExecutor

REPO = Path(__file__).resolve().parents[1]
GRID = ["--preset", "smoke", "--tasks", "copy", "--backbones", "seq2seq,mlp", "--variants", "additive,none"]
CELLS = {c.id for c in expand(load_preset("smoke"), tasks=["copy"], backbones=["seq2seq", "mlp"],
                              variants=["additive", "none"])}


@pytest.fixture
def fake_results(tmp_path) -> Path:
    """A results folder of the fake preset (fake cells, in this process)."""
    out = tmp_path / "fake"
    args = _args("--preset", str(_fake_preset_file(tmp_path)), "--out", str(out), "--no-report")
    assert bench_cli.run_bench(args, executor=InlineExecutor(fake_run_cell), catalog=FakeCatalog(), argv=[]) == 0
    return out


def _env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", **extra}


def _cmd(out: Path, *extra: str, runner: str = "tests.fault_cells:lightning_like") -> list[str]:
    return [sys.executable, "-m", "attnzoo", "bench", *GRID, "--jobs", "2", "--out", str(out),
            "--run-cell", runner, "--no-report", *extra]


def _start(cmd: list[str], env: dict[str, str], **kw) -> subprocess.Popen:
    # SIGINT at its default in the child, as in a terminal (a background job of a script ignores it)
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kw)


def _ran(out: Path) -> list[dict]:
    return [r for r in read_rows(out, warn=False) if r.get("status") != "n/a"] if (out / RESULTS).exists() else []


def _wait_for(pred, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while not pred():
        assert time.time() < deadline, "timed out waiting"
        time.sleep(0.05)


def _session(sid: int) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid=,sid=,stat=,args="], capture_output=True, text=True).stdout
    return [line for line in out.splitlines()
            if line.split()[1] == str(sid) and not line.split()[2].startswith("Z")]


def _assert_clean_stop(proc: subprocess.Popen, err: str, out: Path) -> None:
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert "--resume" in err and "attnzoo bench" in err
    try:  # the forkserver and the resource tracker leave as soon as their driver is gone
        _wait_for(lambda: not _session(proc.pid), timeout=15)
    except AssertionError:
        left = _session(proc.pid)
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError(f"processes outlived the command: {left}") from None
    raw = (out / RESULTS).read_bytes() if (out / RESULTS).exists() else b""
    assert not raw or raw.endswith(b"\n")  # whole rows only
    assert not (out / LOCK_NAME).exists()


@pytest.mark.parametrize("moment,sig,group,times", [
    ("worker idle", signal.SIGINT, True, 1),    # Ctrl-C in a terminal: the whole process group
    ("worker idle", signal.SIGTERM, False, 1),  # `kill PID`, a scheduler's time limit: the driver alone
    ("worker idle", signal.SIGINT, True, 2),    # Ctrl-C again while it stops
    ("all busy", signal.SIGINT, True, 1),
    ("start-up", signal.SIGINT, True, 1),
    ("start-up", signal.SIGTERM, False, 1),
])
def test_interrupt_ends_the_run_at_any_moment(tmp_path, moment, sig, group, times):
    """The tail of every grid: a worker idle (it trained a cell, so it ignores SIGTERM as Lightning makes it)
    while another trains. The command used to print the resume hint and then hang at exit for minutes
    (a second Ctrl-C printed a traceback and it still hung)."""
    out = tmp_path / "out"
    env = _env(**({"FAULT_ALL_SLOW": "1"} if moment == "all busy" else {}))
    proc = _start(_cmd(out), env)
    try:
        if moment == "worker idle":
            _wait_for(lambda: len(_ran(out)) >= 2)  # both baselines done; the attention cell holds its worker
        elif moment == "all busy":
            _wait_for(lambda: (out / LOCK_NAME).exists())
            time.sleep(1.5)
        else:
            _wait_for(lambda: (out / LOCK_NAME).exists())
        for _ in range(times):
            (os.killpg if group else os.kill)(proc.pid, sig)
        _, err = proc.communicate(timeout=30)  # a hang guard, not a speed claim
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    _assert_clean_stop(proc, err, out)
    if moment == "worker idle":
        assert len(_ran(out)) == 2  # nothing finished is lost



def test_a_ctrl_c_while_the_forkserver_starts_is_not_lost(monkeypatch):
    """A Ctrl-C that comes while the forkserver starts reaches the driver's handler afterwards. It used to meet
    a SIG_IGN the driver set for that window and vanish (7 hangs in 30 start-up interrupts): when CPython's
    start of the resource tracker unblocked SIGINT, or when another thread took the signal. Both are here:
    the tracker's start is modelled (its first call unblocks, as CPython's does), and the Ctrl-C is sent to
    the process, which pytest's threads share."""
    import multiprocessing.forkserver as forkserver
    import multiprocessing.resource_tracker as tracker
    from attnzoo.leaderboard.executors import _start_forkserver_deaf

    started: list[bool] = []

    def tracker_start() -> None:
        if not started:
            started.append(True)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})

    def forkserver_start() -> None:
        tracker.ensure_running()
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(tracker, "ensure_running", tracker_start)
    monkeypatch.setattr(forkserver, "ensure_running", forkserver_start)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            _start_forkserver_deaf()
            time.sleep(0.5)  # a lost signal never comes
    finally:
        signal.signal(signal.SIGINT, previous)
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, set())


def test_a_ctrl_c_inside_the_locks_acquire_leaves_it_owned_and_released(tmp_path, monkeypatch):
    """Between the lock file's creation and the lock's record of its descriptor, a Ctrl-C left a file that
    nobody removed (the start-up interrupt saw it in CI). Now it lands when acquire() returns."""
    lock = OutLock(tmp_path / "out")
    real = os.ftruncate

    def ctrl_c_then_truncate(fd: int, length: int) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        real(fd, length)

    monkeypatch.setattr(os, "ftruncate", ctrl_c_then_truncate)
    with pytest.raises(KeyboardInterrupt):
        lock.acquire()
    assert lock.path.exists()
    lock.release()
    assert not lock.path.exists()


def test_interrupt_while_writing_the_report(fake_results):
    """SIGTERM (the harder of the two: nothing but our handler makes it a KeyboardInterrupt)."""
    before = (fake_results / RESULTS).read_bytes()
    proc = _start([sys.executable, "-m", "attnzoo", "bench", "report", str(fake_results)], _env())
    try:
        _wait_for(lambda: (fake_results / "heatmap.png").exists())  # the first figure: the report is under way
        os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    assert proc.returncode == 130 and "Traceback" not in err, err[-3000:]
    assert f"attnzoo bench report {fake_results}" in err and "intact" in err
    assert (fake_results / RESULTS).read_bytes() == before


# -- one writer per results folder ---------------------------------------------------
def test_lock_refuses_a_second_holder_and_is_stale_after_death(tmp_path):
    with OutLock(tmp_path / "d", command="first"):
        with pytest.raises(OutDirLocked) as info:
            OutLock(tmp_path / "d").acquire()
        assert f"pid {os.getpid()}" in str(info.value) and "started" in str(info.value)
    assert not (tmp_path / "d" / LOCK_NAME).exists()
    # a holder killed with SIGKILL leaves its file behind: the next one takes it over
    code = (f"import os, sys; sys.path.insert(0, {str(REPO)!r}); from attnzoo.leaderboard.lock import OutLock; "
            f"OutLock({str(tmp_path / 'd')!r}).acquire(); print('held', flush=True); os.kill(os.getpid(), 9)")
    subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (tmp_path / "d" / LOCK_NAME).exists()
    with OutLock(tmp_path / "d"):
        pass


def test_a_second_bench_on_the_same_out_is_refused_naming_the_holder(tmp_path):
    out = tmp_path / "out"
    env = _env()
    first = _start(_cmd(out), env)
    try:
        _wait_for(lambda: len(_ran(out)) >= 1)
        second = subprocess.run(_cmd(out, "--resume"), env=env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stderr[-2000:]
        assert f"pid {first.pid}" in second.stderr and "in use" in second.stderr and "started" in second.stderr
        rows = read_rows(out)
        os.killpg(first.pid, signal.SIGKILL)  # its lock goes with it
        first.communicate(timeout=30)
    except BaseException:
        os.killpg(first.pid, signal.SIGKILL)
        raise
    assert len(rows) == len({r["cell_id"] for r in rows})  # the refused one trained nothing
    with OutLock(out):  # stale: the next writer takes it
        pass


def test_two_starts_at_once_one_runs(tmp_path):
    """Both check that --out is empty, then both write: the lock is taken before the check."""
    out = tmp_path / "out"
    env = _env(FAULT_HOLD="0.5")
    procs = [_start(_cmd(out), env) for _ in range(2)]
    results = [p.communicate(timeout=180) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], [e[-1500:] for _, e in results]
    ids = [r["cell_id"] for r in read_rows(out)]
    assert len(ids) == len(set(ids)) == len(CELLS)


# -- the file system fills up ------------------------------------------------------
def _limited(limit: int):
    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


def test_disk_full_while_appending_keeps_whole_rows_and_says_how_to_resume(tmp_path):
    """A file-size limit (EFBIG, as ENOSPC on a full disk) stops a write mid-row: the row must not be torn."""
    out = tmp_path / "out"
    limit = 2500  # a fake row is about 1 kB: one or two fit, the next is cut by the limit
    proc = subprocess.run(_cmd(out), env=_env(FAULT_HOLD="0.1"), capture_output=True, text=True, timeout=180,
                          preexec_fn=_limited(limit))
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert "cannot write a row" in proc.stderr and "--resume" in proc.stderr and "intact" in proc.stderr
    raw = (out / RESULTS).read_bytes() if (out / RESULTS).exists() else b""
    assert len(raw) <= limit and (not raw or raw.endswith(b"\n"))
    rows = [json.loads(line) for line in raw.splitlines()]  # every line whole
    assert len(rows) < len(CELLS)


def test_disk_full_while_reporting_leaves_results_and_says_how_to_rerun(tmp_path, fake_results):
    before = (fake_results / RESULTS).read_bytes()
    cmd = [sys.executable, "-m", "attnzoo", "bench", "report", str(fake_results)]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=180,
                          preexec_fn=_limited(len(before) + 2000))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "intact" in proc.stderr and f"attnzoo bench report {fake_results}" in proc.stderr
    assert (fake_results / RESULTS).read_bytes() == before
    assert bench_cli.main(_args("report", str(fake_results))) == 0  # the command it printed works


# -- reports never mix configurations ------------------------------------------------
def test_merge_of_two_budgets_is_refused_naming_both_hashes(tmp_path, capsys):
    preset = str(_fake_preset_file(tmp_path))
    for name, extra in (("a", ()), ("b", ("--steps", "30"))):
        args = _args("--preset", preset, "--out", str(tmp_path / name), "--no-report", *extra)
        assert bench_cli.run_bench(args, executor=InlineExecutor(fake_run_cell), catalog=FakeCatalog(),
                                   argv=[]) == 0
    hashes = [read_rows(tmp_path / n)[0]["config_hash"] for n in "ab"]
    assert hashes[0] != hashes[1]
    capsys.readouterr()
    code = bench_cli.main(_args("merge", str(tmp_path / "m"), str(tmp_path / "a"), str(tmp_path / "b")))
    err = capsys.readouterr().err
    assert code == 2 and all(h in err for h in hashes) and "row(s) in" in err
    assert not read_rows(tmp_path / "m")  # nothing written
    # one configuration merges as before
    assert bench_cli.main(_args("merge", str(tmp_path / "m"), str(tmp_path / "a"), "--no-report")) == 0


def test_report_refuses_a_row_of_another_configuration(fake_results, capsys):
    """A row with the same cell id but another config hash used to replace the real one in the report."""
    rows = read_rows(fake_results)
    real = next(r for r in rows if r["status"] == "ok")
    forged = {**real, "config_hash": "0123456789ab", "main_value": 0.999}
    with open(fake_results / RESULTS, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(forged) + "\n")
    capsys.readouterr()
    assert bench_cli.main(_args("report", str(fake_results))) == 2
    err = capsys.readouterr().err
    assert real["config_hash"] in err and "0123456789ab" in err and f"({len(rows)} row(s))" in err
    # one configuration, named: reported alone
    assert bench_cli.main(_args("report", str(fake_results), "--config", real["config_hash"])) == 0
    assert "0.999" not in (fake_results / "leaderboard.md").read_text()


# -- user text in the report ---------------------------------------------------------
def test_labels_and_plugin_errors_are_text_in_figures_and_markdown(tmp_path):
    """A `$` in a task label made matplotlib's mathtext raise; a plugin's `<script>` reached the markdown."""
    import yaml

    from tests.test_leaderboard import PRESET

    data = json.loads(json.dumps(PRESET))
    label = "copy $\\bogus$ cost <b>&"
    data["tasks"] = {label: {"task": "copy", "knobs": {"length": 3}}}
    preset = tmp_path / "p.yaml"
    preset.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"

    def runner(cell):
        if cell["attention"] == "sharp":
            raise RuntimeError("<script>alert('x')</script> & $\\bogus$")
        return fake_run_cell(cell)

    args = _args("--preset", str(preset), "--out", str(out))
    assert bench_cli.run_bench(args, executor=InlineExecutor(runner), catalog=FakeCatalog(), argv=[]) == 0
    for name in ("leaderboard.md", "findings.md"):
        text = (out / name).read_text()
        assert "<script>" not in text and "<b>" not in text, name
    board = (out / "leaderboard.md").read_text()
    assert "&lt;script&gt;" in board and "copy $\\bogus$ cost &lt;b&gt;&amp;" in board
    assert list(out.glob("curves_*.png"))


# -- failure text that tells the truth ------------------------------------------------
@pytest.mark.parametrize("name", __import__("attnzoo").list_attention())
def test_a_query_of_another_dtype_than_the_parameters_is_named(name):
    """ntm with an fp16 query raised a raw 'mat1 and mat2 must have the same dtype' naming no argument."""
    import torch

    import attnzoo

    spec = attnzoo.get_spec(name)
    m = attnzoo.create_attention(name, 8, 8, 6) if spec.cross_attention else attnzoo.create_attention(name, 8)
    if next(m.parameters(), None) is None:
        pytest.skip(f"{name} has no parameters: any floating query dtype works")
    q = torch.randn(2, 3, 8, dtype=torch.float16)
    kv = {"key": torch.randn(2, 4, 8, dtype=torch.float16), "value": torch.randn(2, 4, 6, dtype=torch.float16)}
    with pytest.raises(ValueError, match=r"^query: expected the dtype of \w+'s parameters \(torch\.float32\), "
                                         r"got torch\.float16"):
        m(q, **(kv if spec.cross_attention else {}))


def _huge_allocation(cell):
    import torch

    return torch.empty(10**14, dtype=torch.uint8)  # a real allocation the CPU allocator refuses


def test_an_allocation_the_cpu_refuses_is_oom_and_the_live_line_names_the_exception():
    from attnzoo.harness.run import _fail
    from attnzoo.leaderboard.backend import execute_cell
    from attnzoo.leaderboard.progress import describe_row, error_summary

    cell = expand(load_preset("smoke"), tasks=["copy"], backbones=["mlp"])[0]
    row = execute_cell(cell.cell, _huge_allocation)
    assert row.status == "oom", row.error
    harness_row: dict = {}
    try:
        _huge_allocation(None)
    except RuntimeError as exc:
        _fail(harness_row, exc)
    assert harness_row["status"] == "oom"
    first = harness_row["error"].splitlines()[0]
    assert first.startswith("RuntimeError: ") and "allocate" in first
    line = describe_row(cell, harness_row)
    assert "RuntimeError: " in line and 'File "' not in line
    # an older row whose error starts with the traceback: the exception's line, not a frame
    old = ('Traceback (most recent call last):\n  File "/x/torch/nn/modules/module.py", line 1789, in _call_impl\n'
           '    return forward_call(*args, **kwargs)\nValueError: query: expected a 3-D tensor')
    assert error_summary(old) == "ValueError: query: expected a 3-D tensor"


def test_the_preset_check_refuses_a_batch_the_machine_cannot_hold(tmp_path):
    import yaml

    from attnzoo.leaderboard.grid import PresetError

    data = yaml.safe_load((REPO / "benchmarks" / "presets" / "smoke.yaml").read_text())
    data["batch_size"] = 1_000_000_000
    with pytest.raises(PresetError) as info:
        load_preset(data)
    text = str(info.value)
    assert "tasks.copy: batch_size 1000000000 needs at least" in text and "GiB" in text


def test_check_warns_that_a_plugins_registration_of_the_name_was_rejected(fresh_plugins, capsys):
    from attnzoo.cli import main as cli_main
    from tests.fakes import FakeEntryPoint, plugin_module
    from tests.test_plugins import _install_fakes

    _install_fakes(fresh_plugins, FakeEntryPoint("evil", plugin_module("dot"), dist="evil-dist", version="0.1"))
    cli_main(["check", "dot", "--check", "construct"])
    err = capsys.readouterr().err
    assert "evil-dist 0.1's 'dot' was rejected" in err and "this checks the one from builtin" in err
    cli_main(["check", "additive", "--check", "construct"])
    assert "rejected" not in capsys.readouterr().err


def test_retry_diverged_reruns_diverged_cells_and_the_hint_names_it(tmp_path, capsys):
    preset = str(_fake_preset_file(tmp_path))
    out = tmp_path / "out"

    def diverging(cell):
        row = fake_run_cell(cell)
        return {**row, "status": "diverged", "error": "loss is nan"} if cell["attention"] == "sharp" else row

    args = _args("--preset", preset, "--out", str(out), "--no-report")
    assert bench_cli.run_bench(args, executor=InlineExecutor(diverging), catalog=FakeCatalog(), argv=[]) == 0
    err = capsys.readouterr().err
    # 'boom' fails, 'sharp' diverges: the hint names the flag for each
    assert "Rerun them with --resume --retry-failed --retry-diverged" in err
    diverged = {r["cell_id"] for r in read_rows(out) if r["status"] == "diverged"}
    ran: list = []
    runner = InlineExecutor(lambda c: ran.append(c) or fake_run_cell(c))
    args = _args("--preset", preset, "--out", str(out), "--no-report", "--resume", "--retry-failed")
    assert bench_cli.run_bench(args, executor=runner, catalog=FakeCatalog(), argv=[]) == 0
    assert ran and all(c["attention"] == "boom" for c in ran)  # failed cells only
    ran.clear()
    args = _args("--preset", preset, "--out", str(out), "--no-report", "--resume", "--retry-diverged")
    assert bench_cli.run_bench(args, executor=runner, catalog=FakeCatalog(), argv=[]) == 0
    assert len(ran) == len(diverged) and all(c["attention"] == "sharp" for c in ran)


# -- references that reproduce ------------------------------------------------------
def test_verify_reruns_cells_and_compares_stored_values_to_the_bit(fake_results, capsys):
    runner = ["--run-cell", "tests.test_leaderboard:fake_run_cell", "--jobs", "2"]
    assert bench_cli.main(_args("verify", str(fake_results), "--sample", "3", *runner)) == 0
    printed = capsys.readouterr().out
    assert printed.count("\nidentical  ") == 3 and "3 identical, 0 different of 3 cell(s)" in printed
    # one metric one ulp off, as an older build might have stored it
    rows = read_rows(fake_results)
    victim = next(r for r in rows if r["status"] == "ok")
    value = victim["metrics"]["test/exact_acc"]
    victim["metrics"]["test/exact_acc"] = float.fromhex(value.hex()) + 2 ** -52 * max(1.0, abs(value))
    (fake_results / RESULTS).write_text("".join(json.dumps(r) + "\n" for r in rows))
    code = bench_cli.main(_args("verify", str(fake_results), "--cells", victim["cell_id"], *runner))
    printed = capsys.readouterr().out
    assert code == 1 and "DIFFERENT" in printed and victim["cell_id"] in printed
    assert (f"metrics.test/exact_acc: committed {victim['metrics']['test/exact_acc']!r}, today {value!r}"
            in printed)
    assert bench_cli.main(_args("verify", str(fake_results), "--cells", "nosuchcell", *runner)) == 2


def test_verify_cheapest_sample_is_deterministic_and_spread_over_variants():
    from attnzoo.leaderboard.verify import choose

    rows = [{"cell_id": f"c{i}", "status": "ok", "cell": {"seed": i}, "backbone": "b", "variant": v,
             "provenance": {"cpu_s": float(10 - i)}} for i, v in enumerate(["a", "a", "b", "b", "c", "none"])]
    rows.append({"cell_id": "na", "status": "n/a", "cell": {"seed": 0}, "provenance": {"cpu_s": 0.0}})
    picked = [r["cell_id"] for r in choose(rows, sample=4, cheapest=True)]
    # the cheapest of each variant first, the baseline after the attention cells, never an n/a row
    assert picked == ["c4", "c3", "c1", "c5"]
    assert choose(rows, sample=2) == choose(list(reversed(rows)), sample=2)


# -- the Ray backend's equivalent (-m ray) ------------------------------------------
@pytest.mark.ray
@pytest.mark.parametrize("sig,group", [(signal.SIGINT, True), (signal.SIGTERM, False)])
def test_interrupt_ends_a_ray_run_with_a_worker_idle(tmp_path, sig, group):
    """`--backend ray` on an embedded Ray (its own temp dir, loopback, no usage stats): the same stop."""
    pytest.importorskip("ray")
    ray_tmp = Path(tempfile.mkdtemp(prefix="rz", dir="/tmp"))  # Ray's socket paths must stay short
    env = _env(RAY_TMPDIR=str(ray_tmp), RAY_USAGE_STATS_ENABLED="0", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    env.pop("RAY_ADDRESS", None)
    out = tmp_path / "out"
    proc = _start(_cmd(out, "--backend", "ray"), env)
    try:
        _wait_for(lambda: len(_ran(out)) >= 2, timeout=240)
        (os.killpg if group else os.kill)(proc.pid, sig)
        _, err = proc.communicate(timeout=60)
        _assert_clean_stop(proc, err, out)
        assert len(_ran(out)) == 2
    finally:
        if proc.poll() is None or _session(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(ray_tmp, ignore_errors=True)
