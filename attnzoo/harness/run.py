"""``run_cell``: one (task, backbone, attention, seed) cell in, one JSON-able row out.

This is what the leaderboard calls for every cell of its grid. It never raises:
an unknown name or an exception becomes ``status="failed"`` with the last lines
of the traceback, a NaN/inf training loss stops training at once and gives
``"diverged"``, out-of-memory gives ``"oom"``, and a pair the backbone cannot
host gives ``"n/a"`` with the spec's reason. Lightning is imported only when a
cell runs, and its info logs and warnings are silenced while it does.

Cell keys (all but ``task`` and ``backbone`` optional)::

    task, task_kwargs, backbone, backbone_kwargs, attention, attention_kwargs,
    seed (0), max_steps (1000), batch_size (64), lr (1e-3), warmup_steps (100),
    weight_decay (0.01), val_every (max_steps // 10), eval_batch_size, val_size and
    test_size (override the task's fixed split sizes, e.g. 64 in smoke tests), entropy_coef,
    baseline_decay, trainer ({"accelerator", "devices", "precision", "strategy", ...}
    passed to lightning.Trainer), disabled_plugins ([]), record_attention (False),
    threads (None: leave torch's thread count), progress (False: Lightning's bar),
    verbose (False: Lightning's info logs and warnings are silenced)

Row keys: see ``attnzoo/.notes``/INTERFACES.md and :func:`run_cell`. Memory:
``peak_mem_mb`` is CUDA ``max_memory_allocated`` on a GPU; on CPU it is how far
the process's resident set rose above its size at the start of the cell (Linux
``VmHWM`` after resetting it through ``/proc/self/clear_refs``; elsewhere the
growth of ``ru_maxrss``, which reads 0 once an earlier cell peaked higher).
``peak_mem_kind`` says which.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
import traceback
import warnings
from collections.abc import Iterator
from typing import Any

__all__ = ["run_cell", "DEFAULTS"]

#: defaults for missing cell keys
DEFAULTS: dict[str, Any] = {
    "task_kwargs": {},
    "backbone_kwargs": {},
    "attention": None,
    "attention_kwargs": {},
    "seed": 0,
    "max_steps": 1000,
    "batch_size": 64,
    "lr": 1e-3,
    "warmup_steps": 100,
    "weight_decay": 0.01,
    "val_every": None,
    "eval_batch_size": None,
    "val_size": None,
    "test_size": None,
    "entropy_coef": 1e-3,
    "baseline_decay": 0.9,
    "trainer": {},
    "disabled_plugins": [],
    "record_attention": False,
    "threads": None,
    "progress": False,
    "verbose": False,
}

_TRAINER_DEFAULTS = {"accelerator": "cpu", "devices": 1, "precision": "32-true", "strategy": "auto"}
_ERROR_LINES = 12


def _empty_row() -> dict[str, Any]:
    return {
        "status": "failed",
        "error": None,
        "metrics": {},
        "main_metric": None,
        "main_value": None,
        "chance": None,
        "params": None,
        "steps": 0,
        "train_time_s": None,
        "tokens_per_s": None,
        "peak_mem_mb": None,
        "peak_mem_kind": None,
        "curve": [],
        "attention_map": None,
    }


def _tail(exc: BaseException) -> str:
    lines = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip().splitlines()
    return "\n".join(lines[-_ERROR_LINES:])


def _is_oom(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


@contextlib.contextmanager
def _quiet(enabled: bool = True) -> Iterator[None]:
    """Silence Lightning's info logs and warnings (the leaderboard prints its own progress)."""
    if not enabled:
        yield
        return
    import lightning.pytorch  # noqa: F401 - it sets its loggers' levels on import; set ours after

    loggers = [logging.getLogger(n) for n in ("lightning", "lightning.pytorch", "lightning.fabric",
                                               "pytorch_lightning", "lightning_fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lvl in zip(loggers, levels):
            lg.setLevel(lvl)


@contextlib.contextmanager
def _plugins(disabled: list[str]) -> Iterator[None]:
    """Build the plugin host with ``disabled`` for the duration of the cell, then restore it."""
    from attnzoo import plugins

    before = dict(plugins._config)
    if set(before.get("disabled", ())) == set(disabled):
        yield
        return
    plugins.configure(disabled=disabled, only=before.get("only"), autoload=before.get("autoload"))
    try:
        yield
    finally:
        plugins.configure(**before) if before else plugins.reset()


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    import torch

    if not n:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _keep_determinism() -> Iterator[None]:
    """``Trainer(deterministic=True)`` flips a process-wide torch flag; put it back afterwards."""
    import torch

    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


class _CpuPeak:
    """Peak resident memory of this process during a block, minus its size at the start (MiB)."""

    def __init__(self) -> None:
        import resource  # POSIX only; imported here so this module imports anywhere

        self._resource = resource
        self.kind = "cpu_rss_peak_delta"
        self.start_rss = self._status("VmRSS")
        self.start_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.reset_ok = False
        if self.start_rss is not None:
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
                self.reset_ok = True
            except OSError:
                pass

    @staticmethod
    def _status(field: str) -> float | None:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        return float(line.split()[1]) / 1024  # kB -> MiB
        except OSError:
            return None
        return None

    def peak_mb(self) -> float:
        if self.reset_ok:
            hwm = self._status("VmHWM")
            if hwm is not None and self.start_rss is not None:
                return max(0.0, hwm - self.start_rss)
        scale = 2**20 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux -> MiB
        maxrss = self._resource.getrusage(self._resource.RUSAGE_SELF).ru_maxrss
        return max(0.0, (maxrss - self.start_maxrss) / scale)


def _make_timer_callback():
    import lightning as L

    class TrainTimer(L.Callback):
        """Wall time spent training (fit minus validation), and tokens seen."""

        def __init__(self) -> None:
            self.fit_start = self.val_start = 0.0
            self.val_time = 0.0
            self.train_time = 0.0

        def _sync(self, pl_module: Any) -> None:
            import torch

            if pl_module.device.type == "cuda":
                torch.cuda.synchronize(pl_module.device)

        def on_train_start(self, trainer, pl_module) -> None:
            self._sync(pl_module)
            self.fit_start = time.perf_counter()

        def on_validation_start(self, trainer, pl_module) -> None:
            self._sync(pl_module)
            self.val_start = time.perf_counter()

        def on_validation_end(self, trainer, pl_module) -> None:
            if trainer.state.fn == "fit" and self.fit_start:
                self.val_time += time.perf_counter() - self.val_start

        def on_train_end(self, trainer, pl_module) -> None:
            self._sync(pl_module)
            self.train_time = time.perf_counter() - self.fit_start - self.val_time

    return TrainTimer()


def run_cell(cell: dict[str, Any]) -> dict[str, Any]:
    """Train and evaluate one cell; return its row. Never raises.

    :param cell: see the module docstring (INTERFACES.md "Harness").
    :returns: ``{"status", "error", "metrics", "main_metric", "main_value",
        "chance", "params", "steps", "train_time_s", "tokens_per_s",
        "peak_mem_mb", "peak_mem_kind", "curve", "attention_map"}``.
    """
    row = _empty_row()
    try:
        cfg = {**DEFAULTS, **{k: v for k, v in cell.items() if v is not None or k == "attention"}}
        with (
            _quiet(not cfg["verbose"]),
            _plugins(list(cfg["disabled_plugins"])),
            _threads(cfg["threads"]),
            _keep_determinism(),
        ):
            _run(cfg, row)
    except BaseException as exc:  # noqa: BLE001 - a row, never a crash (KeyboardInterrupt re-raised below)
        if isinstance(exc, KeyboardInterrupt):
            raise
        _fail(row, exc)
    return row


def _fail(row: dict[str, Any], exc: BaseException) -> None:
    row["error"] = _tail(exc)
    try:  # the module imports Lightning; if that is what failed, the row is plainly "failed"
        from attnzoo.harness.module import PairDoesNotFit, TrainingDiverged
    except Exception:  # noqa: BLE001
        row["status"] = "failed"
        return
    if isinstance(exc, TrainingDiverged):
        row["status"] = "diverged"
        row["error"] = str(exc)
    elif isinstance(exc, PairDoesNotFit):
        row["status"] = "n/a"
        row["error"] = str(exc)
    elif _is_oom(exc):
        row["status"] = "oom"
    else:
        row["status"] = "failed"


def _run(cfg: dict[str, Any], row: dict[str, Any]) -> None:
    import lightning as L
    import torch

    from attnzoo.harness.data import TaskDataModule
    from attnzoo.harness.module import AttnzooModule

    seed = int(cfg["seed"])
    max_steps = int(cfg["max_steps"])
    val_every = int(cfg["val_every"] or max(1, max_steps // 10))
    val_every = min(val_every, max_steps)
    L.seed_everything(seed, workers=True, verbose=False)

    module = AttnzooModule(
        cfg["task"], cfg["task_kwargs"], cfg["backbone"], cfg["backbone_kwargs"],
        cfg["attention"], cfg["attention_kwargs"],
        lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"]), warmup_steps=int(cfg["warmup_steps"]),
        max_steps=max_steps, baseline_decay=float(cfg["baseline_decay"]),
        entropy_coef=float(cfg["entropy_coef"]), seed=seed,
    )
    task = module.task
    for key in ("val_size", "test_size"):  # instance attributes shadow the class defaults
        if cfg[key]:
            setattr(task, key, int(cfg[key]))
    row["main_metric"] = module.main_metric
    row["chance"] = float(task.chance())
    row["params"] = int(sum(p.numel() for p in module.model.parameters()))
    dm = TaskDataModule(task, int(cfg["batch_size"]), seed, eval_batch_size=cfg["eval_batch_size"],
                        test_splits=module.test_splits)

    trainer_opts = {**_TRAINER_DEFAULTS, **(cfg["trainer"] or {})}
    accel = str(trainer_opts.get("accelerator", "cpu"))
    on_cpu = accel == "cpu" or (accel == "auto" and not torch.cuda.is_available())
    trainer_opts.setdefault("deterministic", on_cpu)
    timer = _make_timer_callback()
    callbacks = [timer, *trainer_opts.pop("callbacks", [])]
    trainer = L.Trainer(
        max_steps=max_steps,
        val_check_interval=val_every,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        enable_progress_bar=bool(cfg["progress"]),
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        gradient_clip_val=1.0,
        callbacks=callbacks,
        **trainer_opts,
    )

    cuda = not on_cpu and torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        cpu_peak = None
    else:
        cpu_peak = _CpuPeak()

    try:
        trainer.fit(module, datamodule=dm)
    finally:
        row["steps"] = int(trainer.global_step)
        row["curve"] = module.curve
        row["train_time_s"] = round(timer.train_time, 4) if timer.train_time else None
        world = max(1, int(trainer.world_size))
        if timer.train_time:
            row["tokens_per_s"] = round(module.tokens_seen * world / timer.train_time, 1)
    if not module.curve or module.curve[-1][0] != trainer.global_step:
        trainer.validate(module, datamodule=dm, verbose=False)
    trainer.test(module, datamodule=dm, verbose=False)

    if cuda:
        row["peak_mem_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 2)
        row["peak_mem_kind"] = "cuda_max_allocated"
    else:
        row["peak_mem_mb"] = round(cpu_peak.peak_mb(), 2)
        row["peak_mem_kind"] = cpu_peak.kind

    metrics = {k: float(v) for k, v in sorted(module.results.items())}
    row["metrics"] = metrics
    row["main_value"] = metrics.get(module.main_metric)
    if cfg["record_attention"]:
        row["attention_map"] = module.attention_maps()
    row["status"] = "ok"
    row["error"] = None
    if row["main_value"] is not None and not math.isfinite(row["main_value"]):
        row["main_value"] = None
