"""Cell and Row: the typed unit of work and its result, JSON in and out.

A :class:`Cell` is one (task, backbone, attention, seed, learning rate) run with
its whole training budget. ``attnzoo bench`` expands a preset into Cells,
``attnzoo fit`` builds one from its flags, and
:func:`attnzoo.harness.run.run_cell` trains one; all three read the same
fields with the same defaults, which live here and nowhere else. A
:class:`Row` is what a cell leaves behind: metrics, timings, curve, attention
map, and (once the leaderboard stores it) the cell's identity and provenance.

Both are frozen dataclasses with ``to_json``/``from_json``. Rows carry a
schema version; rows written before it existed (schema 1) still load.

Turning a cell's names into the objects that build it is the next step,
:func:`attnzoo.resolve.resolve` (which raises :class:`CellError` for names and kwargs
that do not match, and :class:`~attnzoo.errors.PairDoesNotFit` for a pair that does
not fit). This module imports neither torch nor Lightning at import time.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any

from attnzoo.errors import AttnzooError, PairDoesNotFit, close_matches

__all__ = [
    "MAX_STEPS_PER_CALL",
    "SCHEDULES",
    "SCHEMA_VERSION",
    "TRAINER_DEFAULTS",
    "TRAINER_KEYS",
    "Cell",
    "CellError",
    "cell_default",
    "PairDoesNotFit",  # attnzoo.errors', re-exported: the error of a cell whose pair does not fit
    "Row",
    "budget_problems",
    "canonical_json",
    "digest",
]

#: version of the row layout written by this attnzoo; rows without one are schema 1
SCHEMA_VERSION = 2

#: the Lightning Trainer options every cell starts from (a preset or ``fit`` may override each)
TRAINER_DEFAULTS: Mapping[str, Any] = {"accelerator": "cpu", "devices": 1, "precision": "32-true", "strategy": "auto"}
#: Trainer options a cell may set (run_cell sets max_steps, clipping, logging and the progress bar itself)
TRAINER_KEYS = ("accelerator", "devices", "precision", "strategy", "num_nodes", "accumulate_grad_batches",
                "deterministic")

#: the most optimizer steps ``steps_per_call=None`` puts in one ``training_step`` call
MAX_STEPS_PER_CALL = 50

#: learning-rate schedules after the linear warmup (see :func:`attnzoo.harness.module.lr_factor`)
SCHEDULES = ("cosine", "wsd", "constant")
#: fraction of the steps the "wsd" schedule spends decaying to zero at the end
WSD_DECAY_FRACTION = 0.2

#: cell fields that do not change what a cell computes: left out of its id
RUNTIME_FIELDS = ("threads", "record_attention", "progress", "verbose", "steps_per_call", "loggers", "log_dir")
#: fields always in a cell's id; every other field counts only when it differs from its default,
#: so a field added later with a default leaves every existing id (and --resume) intact
_ID_FIELDS = ("task", "task_kwargs", "backbone", "backbone_kwargs", "attention", "attention_kwargs", "seed", "lr",
              "max_steps", "batch_size", "warmup_steps", "val_every", "trainer", "disabled_plugins")


class CellError(AttnzooError, ValueError):
    """A cell that does not match the registries or the real signatures; ``problems`` lists every mismatch."""

    def __init__(self, what: str, problems: list[str]):
        self.what = what
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{what}: {len(self.problems)} problem(s):\n{lines}" if len(self.problems) > 1
                         else f"{what}: {self.problems[0]}")


def canonical_json(obj: Any) -> str:
    """Sorted keys, no spaces: the same config always gives the same text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def digest(obj: Any, n: int = 12) -> str:
    """A short stable hash of ``obj``'s canonical JSON."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:n]


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def budget_problems(data: Mapping[str, Any], where: str = "") -> list[str]:
    """Type problems of the budget keys present in ``data`` (a preset section or a cell), one line each.

    The one place that says what a valid budget is: :class:`Cell` raises on these,
    the preset loader collects them with everything else it finds.
    """
    problems = []
    for key in ("max_steps", "batch_size"):
        if key in data and not (_is_int(data[key]) and data[key] >= 1):
            problems.append(f"{where}{key}: expected a positive integer, got {data[key]!r}")
    for key in ("val_every", "eval_batch_size", "val_size", "test_size", "train_size", "threads", "steps_per_call"):
        if key in data and data[key] is not None and not (_is_int(data[key]) and data[key] >= 1):
            problems.append(f"{where}{key}: expected a positive integer or null, got {data[key]!r}")
    if "warmup_steps" in data and not (_is_int(data["warmup_steps"]) and data["warmup_steps"] >= 0):
        problems.append(f"{where}warmup_steps: expected an integer >= 0, got {data['warmup_steps']!r}")
    if "lr" in data and not (_is_num(data["lr"]) and data["lr"] > 0):
        problems.append(f"{where}lr: expected a positive number, got {data['lr']!r}")
    if "lrs" in data:
        lrs = data["lrs"]
        if not isinstance(lrs, list) or not lrs or not all(_is_num(x) and x > 0 for x in lrs):
            problems.append(f"{where}lrs: expected a non-empty list of positive numbers, got {lrs!r}")
    if "weight_decays" in data:
        wds = data["weight_decays"]
        if not isinstance(wds, list) or not wds or not all(_is_num(x) and x >= 0 for x in wds):
            problems.append(f"{where}weight_decays: expected a non-empty list of numbers >= 0, got {wds!r}")
    for key in ("weight_decay", "entropy_coef"):
        if key in data and not (_is_num(data[key]) and data[key] >= 0):
            problems.append(f"{where}{key}: expected a number >= 0, got {data[key]!r}")
    if "baseline_decay" in data and not (_is_num(data["baseline_decay"]) and 0 <= data["baseline_decay"] < 1):
        problems.append(f"{where}baseline_decay: expected a number in [0, 1), got {data['baseline_decay']!r}")
    if "schedule" in data and data["schedule"] not in SCHEDULES:
        problems.append(f"{where}schedule: expected one of {', '.join(SCHEDULES)}, got {data['schedule']!r}")
    if "seed" in data and not _is_int(data["seed"]):
        problems.append(f"{where}seed: expected an integer, got {data['seed']!r}")
    trainer = data.get("trainer")
    if trainer is not None:
        if not isinstance(trainer, Mapping):
            problems.append(f"{where}trainer: expected a mapping, got {trainer!r}")
        else:
            for key in sorted(set(trainer) - set(TRAINER_KEYS)):
                hint = close_matches(key, TRAINER_KEYS)
                problems.append(f"{where}trainer: unknown option {key!r}"
                                + (f" (did you mean {', '.join(map(repr, hint))}?)" if hint else "")
                                + f"; accepted: {', '.join(TRAINER_KEYS)}")
    return problems


def _plain(obj: Any) -> Any:
    """A deep copy made of dicts and lists only (JSON-shaped, picklable, safe to hand out)."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return copy.deepcopy(obj)


@dataclass(frozen=True)
class Cell:
    """One training run: what to build, how long to train it, and where.

    Every default of the harness lives on these fields (``attnzoo fit``'s flags
    and a preset's missing keys read them). Example::

        Cell(task="copy", backbone="seq2seq", attention="additive",
             task_kwargs={"length": 12}, max_steps=300, lr=3e-3, seed=0)

    :param task: registered task name; :param task_kwargs: its knobs.
    :param backbone: registered backbone name; :param backbone_kwargs: its factory's options.
    :param attention: registered variant name, or None for a backbone's no-attention baseline.
    :param attention_kwargs: the variant's constructor options (its spec's defaults fill the rest).
    :param seed: seeds the model, the training stream and the sample attention map.
    :param max_steps: optimizer steps (each on a freshly drawn batch): the budget.
    :param batch_size: training examples per step (per device).
    :param lr: peak AdamW learning rate; :param warmup_steps: linear warmup steps.
    :param schedule: after warmup, ``"cosine"`` decay to 0 over the rest, ``"wsd"`` (warmup-stable-decay:
        constant, then linear to 0 over the last :data:`WSD_DECAY_FRACTION` of the steps) or ``"constant"``.
        A task whose solution appears after a long plateau needs a rate that is still high when the jump comes.
    :param weight_decay: AdamW weight decay on matrices.
    :param val_every: validate every N steps (None: max_steps // 10).
    :param eval_batch_size: evaluation batch size (None: the task's choice).
    :param val_size, test_size: override the task's fixed split sizes (smoke tests).
    :param train_size: None (default): a fresh training batch every step. N: a finite training set, the
        same N examples drawn once per seed (batches sample them with replacement), and a ``train``
        test split scoring the model on (up to ``test_size`` of) those N, so memorization shows as
        ``train/...`` near 1 beside ``test/...`` at chance.
    :param entropy_coef, baseline_decay: REINFORCE's entropy bonus and moving-average baseline
        (Xu et al. 2015, Sec. 4.1) for variants that emit ``log_prob``.
    :param trainer: Lightning Trainer options (:data:`TRAINER_KEYS`) over :data:`TRAINER_DEFAULTS`.
    :param disabled_plugins: plugins the process running the cell must not load.
    :param record_attention: keep one attention map in the row (runtime option).
    :param threads: torch CPU threads (None: leave as is); :param progress: Lightning's bar;
        :param verbose: Lightning's own logs.
    :param steps_per_call: optimizer steps per call of ``training_step`` (Keras's ``steps_per_execution``):
        Lightning's loop costs about 0.3 ms per call on a CPU, over 10% of a small model's step, and
        running K steps per call pays it once per K. None: the largest K <= :data:`MAX_STEPS_PER_CALL`
        dividing both ``max_steps`` and the validation interval (1 with a progress bar, which counts
        calls). The batches, their order and every update are the same for any K, bit for bit.
    :param loggers: Lightning experiment loggers to attach (:data:`attnzoo.loggers.LOGGERS`: ``csv``,
        ``tensorboard``, ``mlflow``, ``wandb``); empty: the Trainer gets ``logger=False``.
    :param log_dir: where the loggers write (None: ``./attnzoo-logs``).
        These six do not change results.
    """

    task: str
    backbone: str
    attention: str | None = None
    task_kwargs: dict[str, Any] = field(default_factory=dict)
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    attention_kwargs: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    max_steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 100
    schedule: str = "cosine"
    weight_decay: float = 0.01
    val_every: int | None = None
    eval_batch_size: int | None = None
    val_size: int | None = None
    test_size: int | None = None
    train_size: int | None = None
    entropy_coef: float = 1e-3
    baseline_decay: float = 0.9
    trainer: dict[str, Any] = field(default_factory=lambda: dict(TRAINER_DEFAULTS))
    disabled_plugins: tuple[str, ...] = ()
    record_attention: bool = True
    threads: int | None = None
    progress: bool = False
    verbose: bool = False
    steps_per_call: int | None = None
    loggers: tuple[str, ...] = ()
    log_dir: str | None = None

    def __post_init__(self) -> None:
        problems = []
        for name in ("task", "backbone"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                problems.append(f"{name}: expected a registered name, got {getattr(self, name)!r}")
        if self.attention is not None and not isinstance(self.attention, str):
            problems.append(f"attention: expected a registered variant name or None, got {self.attention!r}")
        for name in ("task_kwargs", "backbone_kwargs", "attention_kwargs"):
            if not isinstance(getattr(self, name), Mapping):
                problems.append(f"{name}: expected a mapping of keyword arguments, got {getattr(self, name)!r}")
        problems += budget_problems({f.name: getattr(self, f.name) for f in fields(self)})
        if isinstance(self.loggers, str) or not all(isinstance(x, str) for x in self.loggers):
            problems.append(f"loggers: expected a list of logger names, got {self.loggers!r}")
        else:
            from attnzoo.loggers import logger_problems

            problems += logger_problems(self.loggers, installed=False)  # installed: checked where it runs
        k = self.steps_per_call
        if not problems and k is not None and (self.max_steps % k or self.validation_interval() % k):
            problems.append(f"steps_per_call: expected a divisor of max_steps ({self.max_steps}) and of the "
                            f"validation interval ({self.validation_interval()} steps), got {k}")
        if problems:
            raise CellError("Cell", problems)
        # Copies: a cell is a value; editing the dict it was built from must not change it.
        for name in ("task_kwargs", "backbone_kwargs", "attention_kwargs"):
            object.__setattr__(self, name, _plain(getattr(self, name)))
        object.__setattr__(self, "trainer", {**TRAINER_DEFAULTS, **_plain(self.trainer)})
        object.__setattr__(self, "disabled_plugins", tuple(str(p) for p in self.disabled_plugins))
        object.__setattr__(self, "loggers", tuple(dict.fromkeys(self.loggers)))
        object.__setattr__(self, "log_dir", None if self.log_dir is None else str(self.log_dir))
        object.__setattr__(self, "lr", float(self.lr))
        object.__setattr__(self, "weight_decay", float(self.weight_decay))
        object.__setattr__(self, "entropy_coef", float(self.entropy_coef))
        object.__setattr__(self, "baseline_decay", float(self.baseline_decay))

    __hash__ = None  # type: ignore[assignment]  # holds dicts: compare, don't hash

    # -- schedule of a run ---------------------------------------------------
    def validation_interval(self) -> int:
        """Optimizer steps between validations: ``val_every`` or a tenth of ``max_steps``, at most ``max_steps``."""
        return min(self.val_every or max(1, self.max_steps // 10), self.max_steps)

    def call_steps(self) -> int:
        """Optimizer steps per ``training_step`` call: ``steps_per_call``, or the largest K <=
        :data:`MAX_STEPS_PER_CALL` dividing ``max_steps`` and the validation interval (1 with a progress bar)."""
        if self.steps_per_call is not None:
            return self.steps_per_call
        if self.progress:
            return 1
        both = math.gcd(self.max_steps, self.validation_interval())
        return max(k for k in range(1, MAX_STEPS_PER_CALL + 1) if both % k == 0)

    # -- JSON ----------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """Every field as plain JSON data (lists for tuples)."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Cell:
        """Build from a mapping (a stored row's ``cell``, a JSON cell).

        :raises CellError: unknown keys (with close matches) or bad values, all at once.
        """
        if isinstance(data, Cell):
            return data
        if not isinstance(data, Mapping):
            raise CellError("Cell", [f"expected a mapping of cell fields, got {type(data).__name__}"])
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known - {"task_label"})
        if unknown:
            problems = []
            for key in unknown:
                hint = close_matches(key, sorted(known))
                problems.append(f"unknown field {key!r}" + (f" (did you mean {', '.join(map(repr, hint))}?)"
                                                             if hint else ""))
            raise CellError("Cell", problems + [f"known fields: {', '.join(sorted(known))}"])
        missing = [k for k in ("task", "backbone") if k not in data]
        if missing:
            raise CellError("Cell", [f"missing required field {k!r}" for k in missing])
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data:
                continue
            value = data[f.name]
            if value is None and f.default is not None:
                continue  # an explicit null means "the default" (None itself where None is the default)
            kwargs[f.name] = value
        return cls(**kwargs)

    def replace(self, **changes: Any) -> Cell:
        """A copy with ``changes`` (checked like a new cell)."""
        return replace(self, **changes)

    # Read access by key, as cells were dicts before they had a type (custom run_cell functions).
    def __getitem__(self, key: str) -> Any:
        if key not in {f.name for f in fields(self)}:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    # -- identity ------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        """What makes two cells compute the same thing: the id fields, plus any other
        non-runtime field that differs from its default."""
        data = self.to_json()
        out = {k: data[k] for k in _ID_FIELDS}
        for f in fields(self):
            if f.name in _ID_FIELDS or f.name in RUNTIME_FIELDS:
                continue
            if data[f.name] != _plain(cell_default(f.name)):
                out[f.name] = data[f.name]
        return out

    def id(self, label: str | None = None) -> str:
        """Stable id of the cell (``label``: the preset's name for the task entry, when it has one)."""
        return digest({**self.identity(), "task_label": label or self.task})

    @property
    def variant(self) -> str:
        """The variant as the leaderboard labels it: its name, or ``"none"`` for a baseline."""
        return self.attention if self.attention is not None else "none"

    def label(self) -> str:
        return f"{self.task} / {self.backbone} / {self.variant} / seed {self.seed} / lr {self.lr:g}"

    def trainer_options(self) -> dict[str, Any]:
        """The Trainer options this cell asks for (a fresh dict)."""
        return dict(self.trainer)

    def on_cpu(self) -> bool:
        """Whether the cell trains on the CPU (``accelerator`` cpu, or auto without CUDA)."""
        accel = str(self.trainer.get("accelerator", "cpu"))
        if accel == "cpu":
            return True
        if accel != "auto":
            return False
        import torch

        return not torch.cuda.is_available()


def cell_default(name: str) -> Any:
    """The default of Cell field ``name`` (a fresh copy): what a preset's or a flag's absence means."""
    f = {f.name: f for f in fields(Cell)}[name]
    return f.default_factory() if f.default_factory is not MISSING else f.default  # type: ignore[misc]


def _row_fields() -> tuple[str, ...]:
    return tuple(f.name for f in fields(Row) if f.name != "extra")


@dataclass(frozen=True)
class Row:
    """The result of one cell, as stored in ``results.jsonl`` (one JSON object a line).

    The harness fills the measurements; the leaderboard adds the cell's identity
    (``cell_id``, ``task`` label, ``variant``, ``preset``, ``config_hash``,
    ``cell``) and ``provenance``. Columns a plugin adds through
    ``extend_result_row`` live in ``extra`` and are written flat beside the others.

    :ivar status: ``ok``, ``failed``, ``oom``, ``diverged`` or ``n/a``.
    :ivar metrics: ``{"test/exact_acc": ..., "val/token_acc": ..., "test_long/...": ...}``.
    :ivar peak_mem_mb: CUDA peak allocation of the cell (``peak_mem_kind`` ``cuda_max_allocated``);
        None on the CPU, where a reused worker has no per-cell peak to read.
    :ivar curve: ``[[step, mean train loss since the previous point, val main metric], ...]``.
    :ivar alignment: gold mass, alignment accuracy, AER, entropy per layer and head, the uniform-attention
        ablation and example 0's maps (:func:`attnzoo.diagnostics.diagnose`); optional (None in older rows).
    :ivar execution: how the cell trained: None (the one-cell path, as every row before grouping),
        ``{"path": "grouped", "members": E, "autocast": None | "bf16"}`` (one vectorized group,
        :func:`attnzoo.harness.grouped.run_group`) or ``{"path": "single", "fallback": reason}``.
    :ivar schema: row layout version (:data:`SCHEMA_VERSION`; 1 for rows older than it).
    """

    status: str = "failed"
    error: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    main_metric: str | None = None
    main_value: float | None = None
    chance: float | None = None
    params: int | None = None
    steps: int = 0
    train_time_s: float | None = None
    tokens_per_s: float | None = None
    peak_mem_mb: float | None = None
    peak_mem_kind: str | None = None
    curve: list[Any] = field(default_factory=list)
    attention_map: dict[str, Any] | None = None
    #: alignment diagnostics on one held-out test batch (:func:`attnzoo.diagnostics.diagnose`), None
    #: when the cell records no attention or its backbone has none over the source
    alignment: dict[str, Any] | None = None
    execution: dict[str, Any] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    cell_id: str | None = None
    task: str | None = None
    task_name: str | None = None
    backbone: str | None = None
    variant: str | None = None
    seed: int | None = None
    lr: float | None = None
    preset: str | None = None
    config_hash: str | None = None
    cell: dict[str, Any] | None = None
    schema: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def empty(cls, status: str, error: str | None = None) -> Row:
        """A row with no measurements: an n/a pair, a failure before training, a dead worker."""
        return cls(status=status, error=error)

    def to_json(self) -> dict[str, Any]:
        """Flat JSON object: the fields, then ``extra``'s columns (which never shadow a field)."""
        out = {name: _plain(getattr(self, name)) for name in _row_fields()}
        for k, v in self.extra.items():
            out.setdefault(k, _plain(v))
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Row:
        """Read a stored row of any schema; unknown columns go to ``extra``."""
        if isinstance(data, Row):
            return data
        if not isinstance(data, Mapping):
            raise TypeError(f"Row.from_json: expected a mapping, got {type(data).__name__}")
        names = set(_row_fields())
        kwargs = {k: v for k, v in data.items() if k in names}
        kwargs.setdefault("schema", 1)  # written before rows had a version
        extra = {k: v for k, v in data.items() if k not in names and k != "extra"}
        extra.update(dict(data.get("extra") or {}))
        return cls(**kwargs, extra=extra)

    def replace(self, **changes: Any) -> Row:
        """A copy with ``changes``; a name that is not a field goes to ``extra``."""
        names = set(_row_fields())
        extra = {k: v for k, v in changes.items() if k not in names and k != "extra"}
        own = {k: v for k, v in changes.items() if k in names or k == "extra"}
        if extra:
            own["extra"] = {**self.extra, **own.get("extra", {}), **extra}
        return replace(self, **own)

    # Read access by column name, as rows were dicts before they had a type.
    def __getitem__(self, key: str) -> Any:
        if key in _row_fields():
            return getattr(self, key)
        return self.extra[key]

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default
