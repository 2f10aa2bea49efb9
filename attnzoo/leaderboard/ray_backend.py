"""``attnzoo bench --backend ray``: fan the grid's cells out over a Ray cluster.

The same pure cell function every backend calls
(:func:`attnzoo.leaderboard.backend.execute_cell` around the harness's
``run_cell``: a JSON-able cell in, a JSON-able row out) runs as one Ray core
task per cell (``ray.remote`` + ``ray.wait``; no Ray Tune, no second state
store). The worker builds its own plugin manager; only the cell and the row
cross the wire. Only the driver appends rows to ``results.jsonl``, so
``--resume`` works across backends (a grid started locally can finish on a
cluster and the other way round). Ray is imported only when a Ray executor
starts: ``import attnzoo`` never imports it. Install it with
``pip install -e ".[ray]"``.

One machine (no cluster)
------------------------
``attnzoo bench --preset default --backend ray --jobs 2`` starts an embedded
Ray with ``--jobs`` CPUs, bound to 127.0.0.1 only, without dashboard or usage
statistics, and shuts it down at the end. (The local backend does the same job
with less overhead; this mainly checks a setup before the cluster run.)

A cluster you start by hand
---------------------------
On the head node, then on every other node (same Python environment: same
attnzoo, torch and plugin versions; the preflight check below insists)::

    export RAY_AUTH_MODE=token RAY_AUTH_TOKEN=$(cat ~/.ray/auth_token)   # the same token everywhere
    ray start --head --port=6379 --num-cpus=32 --num-gpus=4              # head
    ray start --address=HEAD_IP:6379                                     # each other node

and from any node (or ``RAY_ADDRESS=HEAD_IP:6379`` in the environment)::

    attnzoo bench --preset paper --backend ray --ray-address HEAD_IP:6379 \\
        --cpus-per-cell 2 --gpus-per-cell 0.25 --accelerator gpu --out runs/paper

Ray 2.59+ enables token authentication for clusters: every node and the driver
need the same token, as ``RAY_AUTH_TOKEN`` (with ``RAY_AUTH_MODE=token``), in
``~/.ray/auth_token`` or in the file ``RAY_AUTH_TOKEN_PATH`` names
(``ray get-auth-token --generate`` writes one). A driver without it gets a
clear error saying so. On SLURM, start the head and the workers inside one
allocation as Ray's "Deploying on Slurm" guide shows (``srun ray start --head
--block`` on the first node, ``srun ray start --address=... --block`` on the
rest) and run ``attnzoo bench --backend ray --ray-address ...`` in the batch
script; on Kubernetes use KubeRay (a ``RayCluster``) and run the command in
the head pod or as a ``RayJob``. Without Ray, ``--shard I/N`` + ``bench merge``
still splits a grid over a SLURM array.

What the backend does
---------------------
- **Preflight**: before any cell, one tiny task per alive node reports its
  attnzoo version, plugin set (names, versions, loaded or not) and torch
  version; any difference from the driver stops the run with one error listing
  them all.
- **Resources**: each cell asks for ``--cpus-per-cell`` CPUs and
  ``--gpus-per-cell`` GPUs (fractions allowed: four cells share one GPU at
  0.25) and runs torch with ``ceil(cpus_per_cell)`` threads. At most
  ``--max-in-flight`` cells are submitted (default: as many as the cluster's
  nodes can run at once), so a Ctrl-C or a lost driver loses only those.
- **Failures**: a cell whose worker or node dies (node lost, OOM kill) is
  retried by Ray up to ``--retries`` times, then recorded as a failed row
  (``oom`` when Ray's memory monitor killed it) carrying the error; the grid
  goes on. Errors raised inside a cell never need a retry: the cell function
  turns them into rows itself.
- **Workers are reused** between cells (``max_calls=0``, also for GPU tasks):
  a fresh process per cell costs about 2x in wall time on small cells.

Multi-GPU cells
---------------
A cell that trains on several GPUs runs inside one Ray task that holds all of
them (``--gpus-per-cell 4 --devices 4``) and must use Lightning's
``ddp_spawn`` strategy (``--strategy ddp_spawn``). Plain ``ddp`` (and what
``strategy: auto`` picks for several devices) re-launches the current script
with ``sys.argv`` for every extra rank; inside a Ray worker that script is
Ray's ``default_worker.py``, so the ranks never start (or start a second Ray
worker). ``ddp_spawn`` starts its ranks with ``multiprocessing`` from inside
the task and works there. One task runs on one node, so ``num_nodes`` must be
1. :meth:`RayExecutor.check_cells` refuses grids that break these rules
before anything runs.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import math
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from attnzoo.errors import AttnzooError
from attnzoo.cell import Cell, Row
from attnzoo.leaderboard.backend import DEFAULT_RUN_CELL, Executor, RunCell, execute_cell
from attnzoo.leaderboard.grid import GridCell

__all__ = [
    "RayBackendError",
    "RayExecutor",
    "add_ray_arguments",
    "ray_executor_from_args",
    "fingerprint",
    "fingerprint_differences",
    "is_loopback",
]

#: environment variables that decide which attnzoo plugins a process loads (sent to the workers)
PLUGIN_ENV = ("ATTNZOO_DISABLE_PLUGIN_AUTOLOAD", "ATTNZOO_PLUGINS", "ATTNZOO_DISABLE_PLUGINS")

#: seconds the preflight tasks may take (a worker's first import of torch on a busy node is slow)
PREFLIGHT_TIMEOUT_S = 300.0

_SPAWN_STRATEGIES = ("ddp_spawn", "ddp_spawn_find_unused_parameters_true", "ddp_notebook")


class RayBackendError(AttnzooError, RuntimeError):
    """The Ray backend cannot run the grid: no connection, auth, mismatched workers, bad resources."""


# -- pure helpers (no ray) -------------------------------------------------------------
def is_loopback(address: str) -> bool:
    """``True`` for ``127.x.x.x``, ``::1`` and ``localhost``, with or without a ``:port``."""
    host = address.strip()
    if host.startswith("["):  # [::1]:6379
        host = host[1:host.index("]")] if "]" in host else host[1:]
    elif host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _plugin_state() -> dict[str, Any]:
    """How this process loads plugins: the ATTNZOO_* variables and ``plugins.configure``'s settings."""
    from attnzoo import plugins

    return {"env": {k: os.environ.get(k) for k in PLUGIN_ENV}, "config": plugins.current_config()}


def _norm_config(config: Any) -> dict[str, Any]:
    """``plugins.current_config()`` in one comparable form (unset = configure()'s defaults)."""
    out: dict[str, Any] = {"disabled": (), "only": None, "autoload": None}
    for key, value in dict(config or {}).items():
        out[key] = tuple(value) if isinstance(value, (list, tuple)) else value
    return out


def _apply_plugin_state(state: dict[str, Any] | None) -> None:
    """Make a worker load plugins as the driver does (a reused worker keeps it between cells)."""
    if not state:
        return
    from attnzoo import plugins

    changed = False
    for key, value in (state.get("env") or {}).items():
        if os.environ.get(key) != value:
            changed = True
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    want = _norm_config(state.get("config"))
    if changed or _norm_config(plugins.current_config()) != want:
        plugins.configure(**want)


def fingerprint(plugin_state: dict[str, Any] | None = None) -> dict[str, Any]:
    """What must match between driver and workers: attnzoo, torch, the plugin set."""
    _apply_plugin_state(plugin_state)
    import attnzoo
    from attnzoo.plugins import get_host

    try:
        import torch

        torch_version = torch.__version__
    except ImportError:  # pragma: no cover - torch is a dependency
        torch_version = None
    found = {}
    for info in get_host().plugins():
        found[info.name] = {"version": info.version, "loaded": bool(info.loaded and not info.errors)}
    return {"hostname": socket.gethostname(), "python": sys.version.split()[0], "attnzoo": attnzoo.__version__,
            "torch": torch_version, "plugins": found}


def fingerprint_differences(driver: dict[str, Any], workers: dict[str, dict[str, Any]]) -> list[str]:
    """Every way the workers' fingerprints (by node label) differ from the driver's, one line each."""
    problems: list[str] = []
    for node, fp in workers.items():
        where = f"node {node} ({fp.get('hostname', '?')})"
        for key in ("attnzoo", "torch"):
            if fp.get(key) != driver.get(key):
                problems.append(f"{where}: {key} {fp.get(key)} (driver: {driver.get(key)})")
        mine, theirs = driver.get("plugins") or {}, fp.get("plugins") or {}
        for name in sorted(set(mine) | set(theirs)):
            a, b = mine.get(name), theirs.get(name)
            if a == b:
                continue
            if b is None:
                problems.append(f"{where}: plugin {name} {a.get('version') or ''} is missing".replace("  ", " "))
            elif a is None:
                problems.append(f"{where}: plugin {name} {b.get('version') or ''} is not on the driver"
                                .replace("  ", " "))
            elif a.get("version") != b.get("version"):
                problems.append(f"{where}: plugin {name} {b.get('version')} (driver: {a.get('version')})")
            else:
                state = {True: "loads", False: "fails to load"}
                problems.append(f"{where}: plugin {name} {state[b.get('loaded')]} there "
                                f"but {state[a.get('loaded')]} on the driver (see `attnzoo plugins` on both)")
    return problems


def _n_devices(devices: Any) -> int | None:
    """Lightning's ``devices`` as a count (None: "auto"/-1, decided at run time)."""
    if isinstance(devices, bool):
        return None
    if isinstance(devices, int):
        return None if devices < 0 else devices
    if isinstance(devices, (list, tuple)):
        return len(devices)
    if isinstance(devices, str):
        text = devices.strip()
        if text in ("auto", "-1"):
            return None
        if "," in text:
            return len([x for x in text.split(",") if x.strip()])
        if text.isdigit():
            return int(text)
    return None


# -- the remote side ------------------------------------------------------------------
def _run_remote_cell(cell: Cell, run_cell: RunCell | str, plugin_state: dict[str, Any]) -> Row:
    """The Ray task: :func:`execute_cell` in a (reused) worker, plus where it ran."""
    _apply_plugin_state(plugin_state)
    return _ray_provenance(execute_cell(cell, run_cell))


def _run_remote_group(cells: list[Cell], plugin_state: dict[str, Any]) -> list[Row]:
    """The Ray task of a group (:mod:`attnzoo.leaderboard.grouping`): one row per member."""
    from attnzoo.leaderboard.grouping import execute_group

    _apply_plugin_state(plugin_state)
    return [_ray_provenance(row) for row in execute_group(cells)]


def _ray_provenance(row: Row) -> Row:
    prov = {**row.provenance, "backend": "ray"}
    try:
        import ray

        ctx = ray.get_runtime_context()
        prov["ray_node_id"] = ctx.get_node_id()
        gpus = ctx.get_accelerator_ids().get("GPU") or []
        if gpus:
            prov["ray_gpu_ids"] = list(gpus)
    except Exception:  # provenance is best effort
        pass
    return row.replace(provenance=prov)


def _remote_fingerprint(plugin_state: dict[str, Any]) -> dict[str, Any]:
    return fingerprint(plugin_state)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayBackendError("--backend ray needs Ray: pip install -e \".[ray]\" (or pip install 'ray>=2.9')") \
            from None
    return ray


def _auth_error(exc: BaseException | None) -> BaseException | None:
    """The authentication failure behind ``exc`` (Ray wraps it in a ConnectionError), if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if type(exc).__name__ == "AuthenticationError" or "InvalidAuthToken" in str(exc) \
                or "auth token" in str(exc).lower():
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


# -- the executor ---------------------------------------------------------------------
class RayExecutor(Executor):
    """Runs each cell as a Ray core task; yields ``(cell, row)`` as cells finish.

    :param address: a running cluster (``HOST:PORT``, ``"auto"``, ``ray://...``);
        default ``RAY_ADDRESS`` or, without it, an embedded local Ray with
        ``jobs`` CPUs on 127.0.0.1, shut down by :meth:`close`. If this process
        is already connected to Ray (``ray.init`` done by the caller), that
        connection is used and left open.
    :param jobs: CPUs of the embedded Ray (ignored with an address).
    :param cpus_per_cell: CPUs each cell reserves; its torch threads are ``ceil`` of it.
    :param gpus_per_cell: GPUs each cell reserves; fractions share a GPU.
    :param max_in_flight: cells submitted at once (default: what the cluster's
        nodes can run at once).
    :param retries: times Ray reruns a cell whose worker or node died; then a failed row.
    :param run_cell: the cell runner, ``"module:function"`` importable on the
        workers (default: the harness's) or a picklable callable.
    :param threads: torch threads per cell (default ``ceil(cpus_per_cell)``).
    :param num_gpus: logical GPUs of the embedded Ray (tests on a CPU box).
    :param runtime_env: Ray runtime environment of every task (``env_vars``,
        ``working_dir``, ...).
    :param require_loopback: fail unless every address Ray reports is loopback
        (default: for the embedded Ray, and for a loopback ``address``).
    :param preflight: run the version/plugin check before the first cell.
    :param init_kwargs: more ``ray.init`` keyword arguments.
    """

    def __init__(
        self,
        *,
        address: str | None = None,
        jobs: int = 2,
        cpus_per_cell: float = 1.0,
        gpus_per_cell: float = 0.0,
        max_in_flight: int | None = None,
        retries: int = 2,
        run_cell: RunCell | str = DEFAULT_RUN_CELL,
        threads: int | None = None,
        num_gpus: float | None = None,
        runtime_env: dict[str, Any] | None = None,
        require_loopback: bool | None = None,
        preflight: bool = True,
        init_kwargs: dict[str, Any] | None = None,
    ):
        if jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {jobs}")
        if cpus_per_cell < 0 or gpus_per_cell < 0 or (cpus_per_cell == 0 and gpus_per_cell == 0):
            raise ValueError(f"a cell needs some CPUs or GPUs, got cpus_per_cell={cpus_per_cell}, "
                             f"gpus_per_cell={gpus_per_cell}")
        if gpus_per_cell > 1 and gpus_per_cell != int(gpus_per_cell):
            raise ValueError(f"gpus_per_cell above 1 must be a whole number (Ray's rule), got {gpus_per_cell}")
        if max_in_flight is not None and max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.address = address if address is not None else (os.environ.get("RAY_ADDRESS") or None)
        self.jobs = jobs
        self.cpus_per_cell = float(cpus_per_cell)
        self.gpus_per_cell = float(gpus_per_cell)
        self.max_in_flight = max_in_flight
        self.retries = retries
        self.run_cell = run_cell
        self.threads = threads or max(1, math.ceil(self.cpus_per_cell))
        self.num_gpus = num_gpus
        self.runtime_env = runtime_env
        self.preflight = preflight
        self.init_kwargs = dict(init_kwargs or {})
        if require_loopback is None:
            require_loopback = self.address is None or is_loopback(self.address)
        self.require_loopback = require_loopback
        #: "embedded" (we started Ray), "connected" (we connected), "existing" (the caller did)
        self.mode: str | None = None
        #: addresses Ray reported at start: {"gcs": ..., "nodes": [...]}
        self.addresses: dict[str, Any] = {}
        self.capacity = 0
        self._ray: Any = None
        self._inflight: dict[Any, GridCell] = {}
        self._plugin_state: dict[str, Any] = {}
        self._restore_constant = False

    # -- connection ----------------------------------------------------------
    @property
    def slots(self) -> int:  # type: ignore[override]
        if self.max_in_flight:
            return self.max_in_flight
        if self.capacity:
            return self.capacity
        return self.jobs if self.address is None else 1

    @property
    def started(self) -> bool:
        return self._ray is not None

    def start(self) -> "RayExecutor":
        """Connect (or start the embedded Ray), check addresses, resources and the workers. Idempotent."""
        if self._ray is not None:
            return self
        loopback = self.address is None or is_loopback(self.address)
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if loopback:
            # Loopback only. Without this Ray binds and reports the host's interface address
            # (it even turns an explicit 127.0.0.1 into it). Ray reads the variable when it is
            # imported; Ray's own processes started from here inherit it.
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        ray = _import_ray()
        if loopback and os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") == "0":
            self._force_loopback(ray)
        if ray.is_initialized():
            self.mode = "existing"
        else:
            kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False,
                                          logging_level=logging.WARNING)
            if self.runtime_env:
                kwargs["runtime_env"] = self.runtime_env
            if self.address is None:
                self.mode = "embedded"
                # "local": a new Ray even if this machine runs another one (never join a stranger's cluster)
                kwargs.update(address="local", num_cpus=self.jobs, _node_ip_address="127.0.0.1",
                              object_store_memory=256 * 1024 * 1024)
                if self.num_gpus is not None:
                    kwargs["num_gpus"] = self.num_gpus
            else:
                self.mode = "connected"
                kwargs["address"] = self.address
            kwargs.update(self.init_kwargs)
            try:
                with _python_keeps_sigterm():
                    ray.init(**kwargs)
            except Exception as exc:
                raise self._connect_error(exc) from exc
        self._ray = ray
        try:
            self._check_addresses()
            self._plugin_state = _plugin_state()
            self.capacity = self._capacity()
            if self.preflight:
                self._preflight()
        except BaseException:
            self._shutdown()
            raise
        return self

    def _force_loopback(self, ray: Any) -> None:
        """Ray was imported before the variable was set (a test, a notebook): apply it now."""
        try:
            constants = ray._private.ray_constants
        except AttributeError:  # a Ray without it: the address check below still guards
            return
        if getattr(constants, "ENABLE_RAY_CLUSTER", False):
            constants.ENABLE_RAY_CLUSTER = False
            self._restore_constant = True

    def _connect_error(self, exc: Exception) -> RayBackendError:
        where = f"the Ray cluster at {self.address}" if self.address else "an embedded Ray"
        auth = _auth_error(exc)
        if auth is not None:
            said = str(auth).split(". Ensure")[0].strip().splitlines()[-1][:400]
            return RayBackendError(
                f"could not connect to {where}: it requires an authentication token and this process has "
                f"none or a different one (Ray 2.59+ token auth). Use the cluster's token here: "
                f"export RAY_AUTH_MODE=token RAY_AUTH_TOKEN=<token> (or put it in ~/.ray/auth_token, or "
                f"point RAY_AUTH_TOKEN_PATH at a file holding it); `ray get-auth-token` on the head node "
                f"prints it, and every node must be started with the same token. Ray said: {said}")
        hint = (" Is `ray start --head` running there, and is the port right (default 6379)?"
                if self.address else "")
        return RayBackendError(f"could not start or connect to {where}: {type(exc).__name__}: {exc}.{hint}")

    def _check_addresses(self) -> None:
        ray = self._ray
        gcs = ray.get_runtime_context().gcs_address
        nodes = sorted({n.get("NodeManagerAddress", "?") for n in ray.nodes() if n.get("Alive")})
        self.addresses = {"gcs": gcs, "nodes": nodes}
        if self.require_loopback:
            bad = [a for a in [gcs, *nodes] if not is_loopback(a)]
            if bad:
                raise RayBackendError(
                    f"Ray reports non-loopback address(es) {', '.join(bad)} for a cluster that must stay on this "
                    f"machine (GCS {gcs}, nodes {', '.join(nodes)}): it may be listening on the network. Set "
                    f"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 before Ray starts (and `ray start "
                    f"--node-ip-address=127.0.0.1` for a hand-started head), or pass a non-loopback "
                    f"--ray-address for a real cluster.")

    def _node_capacity(self, resources: dict[str, float]) -> int:
        fits = []
        if self.cpus_per_cell > 0:
            fits.append(math.floor(resources.get("CPU", 0.0) / self.cpus_per_cell + 1e-9))
        if self.gpus_per_cell > 0:
            fits.append(math.floor(resources.get("GPU", 0.0) / self.gpus_per_cell + 1e-9))
        return max(0, min(fits)) if fits else 0

    def _capacity(self) -> int:
        nodes = [n for n in self._ray.nodes() if n.get("Alive")]
        total = sum(self._node_capacity(n.get("Resources") or {}) for n in nodes)
        if total == 0:
            have = "; ".join(f"{n.get('NodeManagerAddress')}: {n.get('Resources', {}).get('CPU', 0):g} CPU, "
                             f"{n.get('Resources', {}).get('GPU', 0):g} GPU" for n in nodes) or "no alive nodes"
            msg = (f"no node of the Ray cluster can hold one cell ({self.cpus_per_cell:g} CPU, "
                   f"{self.gpus_per_cell:g} GPU per cell; cluster: {have}); cells would wait forever")
            if self.max_in_flight is None:
                raise RayBackendError(msg + ". Lower --cpus-per-cell/--gpus-per-cell, or, on an autoscaling "
                                            "cluster, pass --max-in-flight to submit anyway.")
            print(f"attnzoo bench: warning: {msg}; submitting anyway (--max-in-flight)", file=sys.stderr)
        return total

    def _preflight(self) -> None:
        ray = self._ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        driver = fingerprint()
        task = ray.remote(_remote_fingerprint)
        refs = {}
        for node in ray.nodes():
            if not node.get("Alive"):
                continue
            label = f"{node.get('NodeManagerAddress')}/{node['NodeID'][:8]}"
            opts: dict[str, Any] = dict(num_cpus=0, max_retries=1, scheduling_strategy=NodeAffinitySchedulingStrategy(
                node["NodeID"], soft=False))
            if self.runtime_env:
                opts["runtime_env"] = self.runtime_env
            refs[label] = task.options(**opts).remote(self._plugin_state)
        ready, pending = ray.wait(list(refs.values()), num_returns=len(refs), timeout=PREFLIGHT_TIMEOUT_S)
        late = [label for label, ref in refs.items() if ref in pending]
        if late:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise RayBackendError(f"preflight: no answer from node(s) {', '.join(late)} within "
                                  f"{PREFLIGHT_TIMEOUT_S:.0f}s (can a worker there import attnzoo?)")
        found, problems = {}, []
        for label, ref in refs.items():
            try:
                found[label] = ray.get(ref)
            except ray.exceptions.NodeDiedError:
                continue  # gone meanwhile: it will run no cells
            except Exception as exc:
                problems.append(f"node {label}: the check failed: {type(exc).__name__}: {str(exc)[:500]}")
        problems += fingerprint_differences(driver, found)
        if problems:
            lines = "\n".join(f"  - {p}" for p in problems)
            raise RayBackendError(
                f"preflight: the Ray workers do not run the same code as this driver (attnzoo "
                f"{driver['attnzoo']}, torch {driver['torch']}, {len(driver['plugins'])} plugin(s)); "
                f"{len(problems)} difference(s):\n{lines}\nInstall the same versions on every node "
                f"(or --disable-plugin the odd ones) and run again.")

    # -- the grid -------------------------------------------------------------
    def check_cells(self, cells: Sequence[GridCell]) -> None:
        """Refuse cells this backend cannot run as configured (one error listing every problem)."""
        problems: dict[str, None] = {}
        for gc in cells:
            trainer = gc.cell.trainer_options()
            accel = str(trainer.get("accelerator", "cpu")).lower()
            strategy = str(trainer.get("strategy", "auto")).lower()
            n = _n_devices(trainer.get("devices", 1))
            if accel in ("gpu", "cuda") and self.gpus_per_cell == 0:
                problems[f"cells use accelerator={accel} but --gpus-per-cell is 0: Ray would give them no GPU "
                         f"(pass --gpus-per-cell, e.g. 1 or 0.25)"] = None
            if int(trainer.get("num_nodes", 1) or 1) > 1:
                problems["num_nodes > 1: one cell is one Ray task on one node; use devices on one node"] = None
            if accel not in ("cpu",) and (n is None or n > 1):
                if strategy not in _SPAWN_STRATEGIES:
                    problems[f"devices={trainer.get('devices')!r} with strategy={strategy!r}: inside a Ray task "
                             f"a multi-device cell must use --strategy ddp_spawn (plain ddp re-launches the "
                             f"script, which inside a Ray worker is Ray's own)"] = None
                if accel in ("gpu", "cuda") and n is not None and self.gpus_per_cell < n:
                    problems[f"devices={n} but --gpus-per-cell {self.gpus_per_cell:g}: a cell sees only the GPUs "
                             f"its task holds (pass --gpus-per-cell {n})"] = None
        if problems:
            lines = "\n".join(f"  - {p}" for p in problems)
            raise RayBackendError(f"--backend ray cannot run this grid as configured:\n{lines}")

    def run(self, cells: Sequence[GridCell]) -> Iterator[tuple[GridCell, Row]]:
        cells = list(cells)
        self.check_cells(cells)
        if not cells:
            self.close()
            return
        self.start()
        ray = self._ray
        opts: dict[str, Any] = dict(num_cpus=self.cpus_per_cell, num_gpus=self.gpus_per_cell,
                                    max_retries=self.retries, retry_exceptions=False, max_calls=0)
        if self.runtime_env:
            opts["runtime_env"] = self.runtime_env
        task = ray.remote(**opts)(_run_remote_cell)  # max_calls is a decorator-only option
        group_task = ray.remote(**opts)(_run_remote_group)
        queue = list(reversed(self.units(cells)))  # pop() from the end keeps the grid's order
        inflight = self._inflight
        refreshed = time.monotonic()
        while queue or inflight:
            while queue and len(inflight) < self.slots:
                gc = queue.pop()
                if hasattr(gc, "members"):  # a GridGroup: one task, one row per member
                    group = [m.cell.replace(threads=m.cell.threads or self.threads) for m in gc.members]
                    inflight[group_task.remote(group, self._plugin_state)] = gc
                    continue
                cell = gc.cell.replace(threads=gc.cell.threads or self.threads)
                inflight[task.remote(cell, self.run_cell, self._plugin_state)] = gc
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=5.0)
            for ref in ready:
                gc = inflight.pop(ref, None)
                if gc is None:  # cancelled by close()
                    continue
                got = self._row(ref)
                if hasattr(gc, "members"):  # a failed group task is each member's failure
                    yield from zip(gc.members, [got] * len(gc.members) if isinstance(got, Row) else got)
                    continue
                yield gc, got
            if self.max_in_flight is None and time.monotonic() - refreshed > 15.0:
                # nodes come and go (autoscaling, lost nodes): submit what the cluster can run now
                refreshed = time.monotonic()
                try:
                    self.capacity = max(1, sum(self._node_capacity(n.get("Resources") or {})
                                               for n in ray.nodes() if n.get("Alive")))
                except Exception:
                    pass
        self.close()

    def _row(self, ref: Any) -> Row:
        ray = self._ray
        try:
            return ray.get(ref)
        except ray.exceptions.OutOfMemoryError as exc:
            return Row.empty("oom", f"ray: the worker running this cell was killed for memory "
                                      f"({self.retries} retries spent): {str(exc)[:2000]}")
        except ray.exceptions.RayTaskError as exc:  # the task itself raised (attnzoo not importable there?)
            return Row.empty("failed", f"ray: the cell's task raised: {str(exc)[:2000]}")
        except ray.exceptions.TaskCancelledError as exc:
            return Row.empty("failed", f"ray: the cell was cancelled: {exc}")
        except ray.exceptions.RayError as exc:
            return Row.empty("failed", f"ray: {type(exc).__name__} after {self.retries} retries (worker or "
                                         f"node died): {str(exc)[:2000]}")
        except Exception as exc:  # unpickling and the like
            return Row.empty("failed", f"{type(exc).__name__}: {str(exc)[:2000]}")

    def close(self, *, cancel: bool = False) -> None:
        """Cancel cells in flight (``cancel``: Ctrl-C, a stopped grid) and let go of Ray.

        An embedded Ray is shut down; a cluster we connected to is only
        disconnected from; a connection the caller made is left open.
        """
        if self._ray is None:
            self._inflight.clear()
            return
        if cancel:
            for ref in list(self._inflight):
                try:
                    self._ray.cancel(ref, force=True)
                except Exception:  # already finished or gone
                    pass
        self._inflight.clear()
        self._shutdown()

    def _shutdown(self) -> None:
        ray, self._ray = self._ray, None
        if ray is not None and self.mode in ("embedded", "connected"):
            try:
                ray.shutdown()
            except Exception:
                pass
            if self._restore_constant:
                ray._private.ray_constants.ENABLE_RAY_CLUSTER = True
                self._restore_constant = False


@contextlib.contextmanager
def _python_keeps_sigterm() -> Iterator[None]:
    """Ray's core installs a C-level SIGTERM handler in the driver that dumps a stack and aborts
    (rc -6); put Python's handler back, so ``kill`` stops the grid as cleanly as Ctrl-C."""
    handler = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        if handler is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, handler)


# -- the command line -----------------------------------------------------------------
def add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--backend`` and the Ray options to ``attnzoo bench``'s parser."""
    g = parser.add_argument_group(
        "backend (where cells run)",
        "local: --jobs worker processes on this machine. ray: Ray core tasks, one per cell, on an embedded "
        "Ray (--jobs CPUs) or the cluster at --ray-address / RAY_ADDRESS; needs pip install -e \".[ray]\". "
        "Results, --resume and the report are the same for both.")
    g.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="where cells run (default: local)")
    g.add_argument("--ray-address", metavar="HOST:PORT",
                   help="a running Ray cluster (`ray start --head` prints it; 'auto' = the one on this machine); "
                        "default: $RAY_ADDRESS, else an embedded Ray with --jobs CPUs on 127.0.0.1. Token auth: "
                        "set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN as on the cluster")
    g.add_argument("--cpus-per-cell", type=float, default=1.0, metavar="N",
                   help="CPUs each cell reserves; torch gets ceil(N) threads (default: 1)")
    g.add_argument("--gpus-per-cell", type=float, default=0.0, metavar="F",
                   help="GPUs each cell reserves; fractions share a GPU (0.25 = four cells per GPU); a "
                        "multi-GPU cell also needs --devices F --strategy ddp_spawn (default: 0)")
    g.add_argument("--max-in-flight", type=int, metavar="N",
                   help="cells submitted at once (default: as many as the cluster can run at once)")
    g.add_argument("--retries", type=int, default=2, metavar="N",
                   help="reruns of a cell whose worker or node died before it is recorded as failed (default: 2)")


def ray_executor_from_args(args: argparse.Namespace, *, jobs: int, run_cell: RunCell | str,
                           start: bool = True) -> RayExecutor:
    """The :class:`RayExecutor` ``--backend ray`` and its options ask for: the ``ray`` row of
    :data:`attnzoo.leaderboard.executors.BACKENDS` (:func:`attnzoo.commands.bench.executor_from_args` picks it)."""
    _import_ray()
    executor = RayExecutor(
        address=getattr(args, "ray_address", None),
        jobs=jobs,
        cpus_per_cell=float(getattr(args, "cpus_per_cell", 1.0) or 0.0),
        gpus_per_cell=float(getattr(args, "gpus_per_cell", 0.0) or 0.0),
        max_in_flight=getattr(args, "max_in_flight", None),
        retries=int(getattr(args, "retries", 2)),
        run_cell=run_cell,
    )
    return executor.start() if start else executor
