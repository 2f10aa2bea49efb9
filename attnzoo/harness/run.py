"""``run_cell``: one :class:`~attnzoo.cell.Cell` in, one :class:`~attnzoo.cell.Row` out.

This is what the leaderboard calls for every cell of its grid and what
``attnzoo fit`` calls for its one cell. It never raises: an unknown name or a
bad kwarg (:class:`~attnzoo.cell.CellError`) or an exception becomes
``status="failed"`` with the last lines of the traceback, a NaN/inf training
loss stops training at once and gives ``"diverged"``, out-of-memory gives
``"oom"``, and a pair the backbone cannot host gives ``"n/a"`` with the spec's
reason. Lightning is imported only when a cell runs, and its info logs and
warnings are silenced while it does (unless ``cell.verbose``).

Memory: ``peak_mem_mb`` is CUDA ``max_memory_allocated`` on a GPU
(``peak_mem_kind="cuda_max_allocated"``). On the CPU it is left empty
(``peak_mem_kind="none (CPU)"``): the process's resident set in a worker that
is reused between cells rises once and then stays, so neither its growth nor
its high-water mark is the cell's own peak.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import traceback
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from attnzoo.cell import Cell, CellError, PairDoesNotFit, Row

__all__ = ["build_loggers", "run_cell"]

_ERROR_LINES = 12
#: what peak_mem_kind says on the CPU, where no per-cell peak is measured (see the module docstring)
CPU_PEAK_KIND = "none (CPU)"


def _tail(exc: BaseException) -> str:
    """``Type: message`` first (what a one-line display shows), then the traceback's last lines."""
    lines = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip().splitlines()
    head = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return head + "\n" + "\n".join(lines[-_ERROR_LINES:])


def _is_oom(exc: BaseException) -> bool:
    import torch

    from attnzoo.errors import is_oom_message

    if isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)):
        return True
    return isinstance(exc, RuntimeError) and is_oom_message(str(exc))



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

    before = plugins.current_config()
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


def run_cell(cell: Cell | Mapping[str, Any]) -> Row:
    """Train and evaluate one cell; return its row. Never raises (Ctrl-C excepted).

    :param cell: a :class:`~attnzoo.cell.Cell`, or its JSON mapping (checked by ``Cell.from_json``).
    :returns: the :class:`~attnzoo.cell.Row`: status, error, metrics, main metric and value, chance,
        params, steps, train time, tokens/s, peak memory, curve and attention map.
    """
    row: dict[str, Any] = {}
    try:
        cell = Cell.from_json(cell)
        with (
            _quiet(not cell.verbose),
            _plugins(list(cell.disabled_plugins)),
            _threads(cell.threads),
            _keep_determinism(),
        ):
            _run(cell, row)
    except BaseException as exc:  # noqa: BLE001 - a row, never a crash (KeyboardInterrupt re-raised below)
        if isinstance(exc, KeyboardInterrupt):
            raise
        _fail(row, exc)
    return Row(**row)


def _fail(row: dict[str, Any], exc: BaseException) -> None:
    row["error"] = _tail(exc)
    row["status"] = "failed"
    if isinstance(exc, (CellError, PairDoesNotFit)):
        row["status"] = "n/a" if isinstance(exc, PairDoesNotFit) else "failed"
        row["error"] = str(exc)
        return
    try:  # the module imports Lightning; if that is what failed, the row is plainly "failed"
        from attnzoo.harness.module import TrainingDiverged
    except Exception:  # noqa: BLE001
        return
    if isinstance(exc, TrainingDiverged):
        row["status"] = "diverged"
        row["error"] = str(exc)
    elif _is_oom(exc):
        row["status"] = "oom"
    else:
        row["status"] = "failed"


def build_loggers(names: Sequence[str], log_dir: str, run_name: str) -> list[Any]:
    """Lightning loggers for ``names``, each writing under ``log_dir`` (layout in :mod:`attnzoo.loggers`).

    :param run_name: what MLflow and W&B call the run (the cell's label).
    """
    import os

    import lightning.pytorch.loggers as pl_loggers

    from attnzoo.loggers import check_loggers

    check_loggers(names)
    out: list[Any] = []
    for name in dict.fromkeys(names):
        if name == "csv":
            out.append(pl_loggers.CSVLogger(save_dir=log_dir, name="csv"))
        elif name == "tensorboard":
            out.append(pl_loggers.TensorBoardLogger(save_dir=log_dir, name="tensorboard", default_hp_metric=False))
        elif name == "mlflow":
            uri = os.environ.get("MLFLOW_TRACKING_URI")
            if not uri:  # an offline file store; MLflow >= 3.7 refuses one unless this says it is wanted
                uri = "file:" + os.path.abspath(os.path.join(log_dir, "mlruns"))
                os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            out.append(pl_loggers.MLFlowLogger(experiment_name="attnzoo", run_name=run_name, tracking_uri=uri))
        elif name == "wandb":
            offline = os.environ.get("WANDB_MODE", "offline") in ("offline", "dryrun")
            os.makedirs(log_dir, exist_ok=True)
            out.append(pl_loggers.WandbLogger(name=run_name, save_dir=log_dir, project="attnzoo", offline=offline))
    return out


def _finish_runs(trainer: Any) -> None:
    """End the W&B run of this cell: Lightning leaves it open, and the next cell in this worker would
    log into it (and an offline run's history reaches its file only when it ends)."""
    for logger in trainer.loggers:
        if type(logger).__name__ == "WandbLogger" and logger._experiment is not None:
            logger.experiment.finish()


def build(cell: Cell, row: dict[str, Any] | None = None,
          callbacks: list[Any] | None = None) -> tuple[Any, Any, Any, Any]:
    """The objects ``run_cell`` trains with: ``(module, datamodule, trainer, timer)``, seeded as it seeds them.

    The overhead benchmark (``benchmarks/overhead.py``) builds the harness side through this, so
    what it measures is what a leaderboard cell runs.

    :param row: filled with what is known once the model exists (main metric, chance, params), so a
        Trainer that cannot be built (no GPU for ``accelerator="gpu"``) still leaves them in the row.
    :param callbacks: extra Lightning callbacks, after the timer and the cell's own.
    """
    import lightning as L

    from attnzoo.harness.data import TaskDataModule
    from attnzoo.harness.module import AttnzooModule

    max_steps = cell.max_steps
    val_every = cell.validation_interval()
    k = cell.call_steps()  # optimizer steps per training_step call; divides val_every (Cell checks)
    L.seed_everything(cell.seed, workers=True, verbose=False)

    module = AttnzooModule(cell)
    task = module.task
    if row is not None:
        row["main_metric"] = module.main_metric
        row["chance"] = float(task.chance())
        row["params"] = int(sum(p.numel() for p in module.model.parameters()))
    trainer_opts = cell.trainer_options()
    trainer_opts.pop("accumulate_grad_batches", None)  # the module accumulates (manual optimization)
    dm = TaskDataModule(task, cell.batch_size, cell.seed, eval_batch_size=cell.eval_batch_size,
                        test_splits=module.test_splits, train_per_item=k * module.accumulate,
                        train_size=cell.train_size)

    trainer_opts.setdefault("deterministic", cell.on_cpu())
    timer = _make_timer_callback()
    callbacks = [timer, *trainer_opts.pop("callbacks", []), *(callbacks or [])]
    if cell.loggers:  # without loggers the Trainer is built as it always was (logger=False): no cost per step
        trainer_opts["logger"] = build_loggers(cell.loggers, cell.log_dir or "attnzoo-logs", cell.label())
        # the train loss every 50 optimizer steps or once per validation interval, whichever is sooner;
        # Lightning counts calls, k steps each
        trainer_opts["log_every_n_steps"] = max(1, min(50, val_every) // k)
    trainer = L.Trainer(
        max_steps=max_steps,  # optimizer steps, k per call
        val_check_interval=val_every // k,  # counted in calls
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        enable_progress_bar=cell.progress,
        logger=trainer_opts.pop("logger", False),
        enable_checkpointing=False,
        enable_model_summary=False,
        callbacks=callbacks,
        **trainer_opts,
    )
    return module, dm, trainer, timer


def _run(cell: Cell, row: dict[str, Any]) -> None:
    import torch

    module, dm, trainer, timer = build(cell, row)
    on_cpu = cell.on_cpu()

    cuda = not on_cpu and torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()

    try:
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
    finally:  # a diverged or failed cell too: its W&B run must not stay open for the next cell
        _finish_runs(trainer)

    if cuda:
        row["peak_mem_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 2)
        row["peak_mem_kind"] = "cuda_max_allocated"
    else:
        row["peak_mem_mb"] = None
        row["peak_mem_kind"] = CPU_PEAK_KIND

    metrics = {k: float(v) for k, v in sorted(module.results.items())}
    row["metrics"] = metrics
    row["main_value"] = metrics.get(module.main_metric)
    if cell.record_attention:
        row["attention_map"] = module.attention_maps()
        from attnzoo.diagnostics import DIAGNOSTIC_BATCH

        row["alignment"] = module.alignment_diagnostics(dm.held_out("test", DIAGNOSTIC_BATCH))
    row["status"] = "ok"
    row["error"] = None
    if row["main_value"] is not None and not math.isfinite(row["main_value"]):
        row["main_value"] = None


def __getattr__(name: str) -> Any:
    if name == "DEFAULTS":  # the old untyped defaults table; the defaults now live on Cell's fields
        import warnings

        from attnzoo.cell import Cell, cell_default

        warnings.warn("attnzoo.harness.run.DEFAULTS is deprecated: the defaults are attnzoo.cell.Cell's fields "
                      "(attnzoo.cell.cell_default(name))", DeprecationWarning, stacklevel=2)
        from dataclasses import fields

        return {f.name: cell_default(f.name) for f in fields(Cell) if f.name not in ("task", "backbone")}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
