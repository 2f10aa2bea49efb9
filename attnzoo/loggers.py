"""Which of Lightning's experiment loggers a cell may name: ``--logger csv|tensorboard|mlflow|wandb``.

A cell that names loggers (``Cell.loggers``, a runtime field: it never enters a
cell's id) gets them on its Trainer, each writing under ``Cell.log_dir``::

    LOG_DIR/csv/version_N/metrics.csv           CSVLogger (no extra package)
    LOG_DIR/tensorboard/version_N/events.out.*  TensorBoardLogger   pip install attnzoo[tensorboard]
    LOG_DIR/mlruns/                             MLFlowLogger        pip install attnzoo[mlflow]
    LOG_DIR/wandb/offline-run-*/                WandbLogger         pip install attnzoo[wandb]

The metric names are the row's (``train/loss``, ``val/token_acc``,
``test/exact_acc`` ...): the module logs what it stores. Nothing leaves the
machine unless asked: MLflow writes a file store under ``LOG_DIR/mlruns``
unless ``MLFLOW_TRACKING_URI`` names another, and W&B runs offline unless
``WANDB_MODE`` says otherwise (``wandb sync LOG_DIR/wandb/offline-run-*``
uploads later). A cell without loggers builds its Trainer with
``logger=False``, as it always did.

:func:`check_loggers` needs neither Lightning nor the logger packages
(``find_spec`` only), so commands call it before anything trains; the harness
builds the loggers (:func:`attnzoo.harness.run.build_loggers`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Sequence
from typing import Any

from attnzoo.errors import AttnzooError, close_matches

__all__ = ["LOGGERS", "LoggerError", "check_loggers", "logger_problems"]

#: logger name -> (the attnzoo extra that installs it or None, modules any one of which is enough)
LOGGERS: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "csv": (None, ()),
    # tensorboard's own writer: Lightning falls back to tensorboardX without it, whose event file name
    # (time in seconds, host) lets the test stage's file overwrite fit's when both start in one second
    "tensorboard": ("tensorboard", ("tensorboard",)),
    "mlflow": ("mlflow", ("mlflow",)),
    "wandb": ("wandb", ("wandb",)),
}


class LoggerError(AttnzooError, ValueError):
    """Unknown logger names or missing logger packages; the message lists every one."""


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def logger_problems(names: Iterable[str], *, installed: bool = True) -> list[str]:
    """One line per unknown name (with close matches), and with ``installed`` per missing package.

    :param installed: also check that each logger's package is importable here.
    """
    problems = []
    for name in names:
        if name not in LOGGERS:
            hint = close_matches(name, list(LOGGERS))
            problems.append(f"--logger {name!r}: unknown" + (f" (did you mean {', '.join(map(repr, hint))}?)"
                                                             if hint else "") + f"; choose from {', '.join(LOGGERS)}")
            continue
        extra, modules = LOGGERS[name]
        if installed and modules and not any(_installed(m) for m in modules):
            problems.append(f"--logger {name}: needs the {modules[0]!r} package, which is not installed here; "
                            f"pip install 'attnzoo[{extra}]'")
    return problems


def check_loggers(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` without repeats, in order, once every one is known and installed.

    :raises LoggerError: naming every unknown logger and every missing extra at once.
    """
    problems = logger_problems(names)
    if problems:
        raise LoggerError("\n".join(problems) if len(problems) == 1 else
                          f"{len(problems)} logger problems:\n" + "\n".join(f"  - {p}" for p in problems))
    return tuple(dict.fromkeys(names))
