"""The Ray backend of ``attnzoo bench`` (``-m ray``; needs the [ray] extra).

Every cluster here lives on 127.0.0.1, in its own temp dir, without usage
statistics or dashboard, and is torn down by the test that started it (by
process group or through Ray's own handles; never ``ray stop``, which would
stop every Ray on the machine).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from attnzoo.cell import Cell  # noqa: E402
from attnzoo.commands import bench as bench_cli  # noqa: E402
from attnzoo.leaderboard.grid import GridCell, Preset, expand, load_preset  # noqa: E402
from attnzoo.commands.bench import executor_from_args  # noqa: E402
from attnzoo.leaderboard.executors import InlineExecutor, LocalExecutor  # noqa: E402
from attnzoo.leaderboard.ray_backend import (RayBackendError, RayExecutor, add_ray_arguments,  # noqa: E402
                                             fingerprint_differences, is_loopback)
from attnzoo.leaderboard.runner import run_grid  # noqa: E402
from attnzoo.leaderboard.store import ResultStore, read_rows  # noqa: E402

pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def ray_env(monkeypatch):
    """Loopback only, no usage stats, a private temp dir (no stranger finds these clusters)."""
    tmp = tempfile.mkdtemp(prefix="rz", dir="/tmp")  # short: Ray's socket paths must stay < 108 chars
    monkeypatch.setenv("RAY_TMPDIR", tmp)
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    # ray read the variable when this file imported it: apply it to Ray's own test helpers too
    monkeypatch.setattr(ray._private.ray_constants, "ENABLE_RAY_CLUSTER", False)
    yield tmp
    if ray.is_initialized():
        ray.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)


def _cells(n: int, **task_kwargs) -> list[GridCell]:
    out = []
    for i in range(n):
        cell = Cell(task="fake", task_kwargs=dict(task_kwargs), backbone="b", attention="a", seed=i, lr=1e-3,
                    max_steps=1, trainer={"accelerator": "cpu", "devices": 1})
        out.append(GridCell(f"cell{i:03d}", "fake", "b", "a", cell))
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(t0, 1) for t0, _ in intervals] + [(t1, -1) for _, t1 in intervals], key=lambda e: (e[0], e[1]))
    cur = best = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


# -- pure parts ---------------------------------------------------------------------
def test_loopback_and_fingerprint_differences():
    assert is_loopback("127.0.0.1:6379") and is_loopback("localhost") and is_loopback("[::1]:1")
    assert not is_loopback("192.0.2.2:6379") and not is_loopback("ray://head:10001")
    driver = {"attnzoo": "0.1.0", "torch": "2.13", "plugins": {"a": {"version": "1", "loaded": True},
                                                                "b": {"version": "2", "loaded": True}}}
    worker = {"hostname": "w1", "attnzoo": "0.2.0", "torch": "2.13",
              "plugins": {"a": {"version": "1.1", "loaded": True}, "c": {"version": "3", "loaded": True}}}
    problems = fingerprint_differences(driver, {"n1": worker, "n2": dict(driver, hostname="w2")})
    text = "\n".join(problems)
    assert len(problems) == 4, text
    assert "attnzoo 0.2.0 (driver: 0.1.0)" in text and "plugin a 1.1 (driver: 1)" in text
    assert "plugin b 2 is missing" in text and "plugin c 3 is not on the driver" in text


def test_check_cells_refuses_ddp_and_missing_gpus():
    ex = RayExecutor(gpus_per_cell=0.0)
    gc = _cells(1)[0]
    gc.cell = gc.cell.replace(trainer={"accelerator": "gpu", "devices": 2, "strategy": "ddp"})
    with pytest.raises(RayBackendError) as info:
        ex.check_cells([gc])
    msg = str(info.value)
    assert "--gpus-per-cell is 0" in msg and "ddp_spawn" in msg and "--gpus-per-cell 2" in msg
    gc.cell = gc.cell.replace(trainer={"accelerator": "gpu", "devices": 2, "strategy": "ddp_spawn"})
    RayExecutor(gpus_per_cell=2).check_cells([gc])  # fine


# -- (1) embedded Ray gives the local backend's rows ------------------------------------
def test_embedded_ray_matches_inline_on_real_smoke_cells():
    preset = load_preset("smoke")
    runnable = [c for c in expand(preset, tasks=["copy"]) if c.runnable]
    # two cheap cells of different backbones: the mlp baseline and one dot-product variant
    cells = [c for c in runnable if c.backbone == "mlp"][:1]
    cells += sorted((c for c in runnable if c.backbone != "mlp"),
                    key=lambda c: (c.variant not in ("scaled-dot", "dot"), c.backbone != "transformer"))[:1]
    assert len(cells) == 2, [c.label() for c in runnable]
    for gc in cells:
        gc.cell = gc.cell.replace(threads=1)
    local = {gc.id: row for gc, row in InlineExecutor().run(cells)}
    ex = RayExecutor(jobs=2)
    try:
        remote = {gc.id: row for gc, row in ex.run(cells)}
    finally:
        ex.close(cancel=True)
    assert ex.mode == "embedded" and ex.capacity == 2
    assert all(is_loopback(a) for a in [ex.addresses["gcs"], *ex.addresses["nodes"]]), ex.addresses
    assert not ray.is_initialized()  # the embedded Ray is gone
    assert set(remote) == set(local)
    for cid, row in remote.items():
        assert row["status"] == local[cid]["status"] == "ok", row.get("error")
        assert row["provenance"]["backend"] == "ray"
        assert row["metrics"].keys() == local[cid]["metrics"].keys()
        for key, value in local[cid]["metrics"].items():
            assert row["metrics"][key] == pytest.approx(value, abs=1e-6), key
        assert row["params"] == local[cid]["params"] and row["steps"] == local[cid]["steps"]


# -- (2) a real cluster started by hand, reached by --ray-address ------------------------
#: `attnzoo bench ARGS` through executor_from_args (what commands/bench.py calls); prints what the executor saw
DRIVER = """
import argparse, json, sys
from attnzoo.commands import bench as cli
from attnzoo.commands.bench import executor_from_args
from attnzoo.leaderboard.ray_backend import RayBackendError, add_ray_arguments
p = argparse.ArgumentParser()
cli.configure_parser(p)
if "--backend" not in p._option_string_actions:
    add_ray_arguments(p)
args = p.parse_args(sys.argv[1:])
try:
    ex = executor_from_args(args)
except RayBackendError as exc:
    print(f"RayBackendError: {exc}", file=sys.stderr)
    sys.exit(2)
info = {"mode": ex.mode, "slots": ex.slots, "addresses": ex.addresses}
info["rc"] = cli.run_bench(args, executor=ex, argv=sys.argv[1:])
print(json.dumps(info))
"""


def test_bench_on_a_cluster_started_by_ray_start(tmp_path, ray_env, monkeypatch):
    port = _free_port()
    token = secrets.token_hex(32)
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", token)
    ray_bin = str(Path(sys.executable).with_name("ray"))
    log = open(tmp_path / "ray-start.log", "wb")
    head = subprocess.Popen(
        [ray_bin, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
         "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={ray_env}/ray"],
        env=dict(os.environ), start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert head.poll() is None, (tmp_path / "ray-start.log").read_text()[-2000:]
                assert time.time() < deadline, "ray start --head did not come up"
                time.sleep(0.5)
        out = tmp_path / "bench"
        bench_args = ["--preset", "smoke", "--tasks", "copy", "--backbones", "mlp,seq2seq", "--variants", "dot,none",
                      "--out", str(out),
                      "--no-report", "--backend", "ray", "--ray-address", f"127.0.0.1:{port}",
                      "--run-cell", "tests.ray_cells:slow_cell"]
        # a fresh driver process, as `attnzoo bench` is: Ray reads RAY_AUTH_* when it loads
        done = subprocess.run([sys.executable, "-c", DRIVER, *bench_args], env=dict(os.environ), cwd=REPO,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        report = json.loads(done.stdout.strip().splitlines()[-1])
        assert report["mode"] == "connected" and report["slots"] == 2 and report["rc"] == 0, (report, done.stderr[-3000:])
        reported = [report["addresses"]["gcs"], *report["addresses"]["nodes"]]
        assert reported and all(is_loopback(a) for a in reported), reported
        rows = read_rows(out)
        expected = expand(load_preset("smoke"), tasks=["copy"], backbones=["mlp", "seq2seq"], variants=["dot", "none"])
        assert sorted(r["cell_id"] for r in rows) == sorted(c.id for c in expected)
        ran = [r for r in rows if r["status"] != "n/a"]
        assert ran and all(r["status"] == "ok" and r["provenance"]["backend"] == "ray" for r in ran)

        # the same cluster without the token: one clear error saying what to set
        env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_TOKEN"}
        env["RAY_AUTH_TOKEN_PATH"] = str(tmp_path / "no-token")
        failed = subprocess.run([sys.executable, "-c", DRIVER, *bench_args[:-2], "--out", str(tmp_path / "x")],
                                env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert failed.returncode == 2, failed.stderr[-3000:]
        assert "RayBackendError" in failed.stderr and "RAY_AUTH_TOKEN" in failed.stderr, failed.stderr[-3000:]
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # `ray start --block` stops what it started
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        log.close()


# -- (3) a node lost mid-grid ----------------------------------------------------------
def test_node_loss_mid_grid_every_cell_one_row():
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1",
                                                            "include_dashboard": False})
    try:
        worker = cluster.add_node(num_cpus=2, node_ip_address="127.0.0.1")
        ray.init(address=cluster.address, log_to_driver=False)
        cells = _cells(6, sleep=3.0)
        ex = RayExecutor(run_cell="tests.ray_cells:slow_cell", retries=3)
        rows = []
        capacity = None
        for gc, row in ex.run(cells):
            rows.append((gc.id, row))
            if capacity is None:
                capacity = ex.capacity  # both nodes: 1 + 2 cells at once
                cluster.remove_node(worker, allow_graceful=False)
        assert ex.mode == "existing" and capacity == 3
        ids = [cid for cid, _ in rows]
        assert sorted(ids) == [gc.id for gc in cells]  # every cell, none twice
        assert all(row["status"] == "ok" for _, row in rows), [r.get("error") for _, r in rows]
    finally:
        ray.shutdown()
        cluster.shutdown()


# -- (4) stopped after k rows, resumed: only the missing cells run --------------------------
def test_stop_after_k_rows_then_resume_runs_only_missing(tmp_path):
    cells = _cells(6, sleep=0.5)
    preset = Preset(name="fake", source="fake", data={})
    store = ResultStore(tmp_path / "out")
    ex = RayExecutor(jobs=2, run_cell="tests.ray_cells:slow_cell")
    first = run_grid(cells, store, ex, preset, max_cells=2)
    assert first.interrupted and first.ran == 2 and not ray.is_initialized()
    before = {r["cell_id"] for r in read_rows(store.path)}
    assert len(before) == 2
    # resume on the other backend: results.jsonl is the only state
    second = run_grid(cells, store, LocalExecutor(2, "tests.ray_cells:slow_cell"), preset)
    assert second.skipped == 2 and second.ran == 4 and not second.interrupted
    rows = read_rows(store.path)
    ids = [r["cell_id"] for r in rows]
    assert len(ids) == len(set(ids)) == 6 and set(ids) == {gc.id for gc in cells}
    assert {r["cell_id"] for r in rows if r["provenance"].get("backend") == "ray"} == before


# -- (5) fractional logical GPUs ------------------------------------------------------------
def test_half_gpu_cells_share_two_logical_gpus_four_at_once(tmp_path):
    gate = tmp_path / "gate"
    gate.mkdir()
    cells = _cells(8, gate_dir=str(gate), gate=4, hold=1.0, timeout=60)
    ex = RayExecutor(jobs=4, num_gpus=2, gpus_per_cell=0.5, run_cell="tests.ray_cells:gate_cell")
    rows = [row for _, row in ex.run(cells)]
    assert ex.capacity == 4 and ex.slots == 4
    assert all(r["status"] == "ok" for r in rows), [r.get("error") for r in rows]
    assert _max_overlap([(r["t0"], r["t1"]) for r in rows]) == 4
    assert all(len(r["gpu_ids"]) == 1 for r in rows)  # half a GPU each: one GPU id per cell
    assert {g for r in rows for g in r["gpu_ids"]} == {"0", "1"}
