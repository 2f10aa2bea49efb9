"""Presets (YAML) -> a validated :class:`Preset`: reading, defaults, overrides and every check at once.

A preset names the tasks (with their knobs), the backbones (with their
kwargs), the variant patterns, the seeds and one training budget per task
(steps, batch size, a small learning-rate grid). :func:`load_preset` checks it
against the real signatures and raises one :class:`PresetError` listing every
mismatch (torchtune style): :func:`validate_preset` runs a few checkers (top level,
variants, backbones, each task entry), each collecting every problem of its part.
:mod:`attnzoo.leaderboard.grid.expansion` turns a preset into cells.

A key a preset leaves out takes the :class:`~attnzoo.cell.Cell` field's
default (the one place defaults live), so ``attnzoo fit`` and ``attnzoo bench``
cannot disagree on one.

Example preset::

    name: smoke
    seeds: 1                 # or a list: [0, 1, 2]
    max_steps: 40
    batch_size: 32
    lrs: [3.0e-3]            # best of these per variant, chosen on validation
    variants: ["*"]          # fnmatch patterns over every registered variant, plugins included
    baselines: true          # mlp, and seq2seq without attention (variant "none")
    backbones:
      transformer: {d_model: 32, num_layers: 1, num_heads: 2}
      seq2seq: {d_model: 32}
    tasks:
      copy: {knobs: {length: 6}, backbones: [seq2seq]}
      copy-long: {task: copy, knobs: {length: 24}}   # a label of its own for another setting

Nothing here imports Lightning; task and backbone registries are plain torch.
"""

from __future__ import annotations

import copy
import fnmatch
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from attnzoo.cell import TRAINER_DEFAULTS, Cell, budget_problems, cell_default, digest
from attnzoo.errors import AttnzooError, close_matches
from attnzoo.registry import accepted_kwargs, kwarg_problems
from attnzoo.resolve import Catalog, backbone_kwarg_problems


__all__ = ["PresetError", "Preset", "TaskEntry", "Budget", "PRESET_DIR", "TOP_LEVEL_KEYS", "TASK_KEYS",
           "TRAINING_KEYS", "shipped_dir", "preset_path", "list_presets", "load_preset", "validate_preset",
           "config_hash"]

#: kind -> (folder in the source tree, the package a wheel ships it as; see pyproject.toml's package-dir)
_SHIPPED: dict[str, tuple[str, str]] = {
    "presets": ("benchmarks/presets", "attnzoo._presets"),
    "results": ("benchmarks/results", "attnzoo._results"),
}


def shipped_dir(kind: str) -> Path | None:
    """The folder of attnzoo's built-in ``kind`` (``"presets"`` or ``"results"``), or None when absent.

    A checkout (or an editable install of one) reads the project's own
    ``benchmarks/presets`` and ``benchmarks/results``; an installed wheel carries
    them as the data packages ``attnzoo._presets`` and ``attnzoo._results``
    (namespace packages, so the spec's search location is a plain directory).
    This is the one place either is looked up.
    """
    import importlib.util

    try:
        rel, package = _SHIPPED[kind]
    except KeyError:
        raise ValueError(f"kind: expected one of {', '.join(map(repr, _SHIPPED))}, got {kind!r}") from None
    source = Path(__file__).resolve().parents[3] / rel  # the checkout: attnzoo/leaderboard/grid/ is 3 below
    if source.is_dir():
        return source
    try:
        spec = importlib.util.find_spec(package)
    except ModuleNotFoundError:
        spec = None
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        if Path(location).is_dir():
            return Path(location)
    return None


#: where the built-in presets live (benchmarks/presets in a checkout, attnzoo/_presets in a wheel); None: nowhere
PRESET_DIR: Path | None = shipped_dir("presets")

#: Cell fields a preset's ``training`` section may set for every cell
TRAINING_KEYS = ("weight_decay", "eval_batch_size", "val_size", "test_size", "entropy_coef", "baseline_decay")

#: top-level preset keys and what they mean (also the error message's listing)
TOP_LEVEL_KEYS: dict[str, str] = {
    "name": "preset name (default: the file's stem)",
    "description": "one paragraph shown by --dry-run",
    "seeds": "number of seeds (0..N-1) or a list of seeds",
    "max_steps": "optimizer steps per cell (the budget; equal for every variant)",
    "batch_size": "training batch size",
    "lrs": "learning rates tried per variant; the report keeps the best by validation",
    "weight_decays": "AdamW weight decays tried per variant (a grid with lrs, as MAD's); default: training.weight_decay",
    "warmup_steps": "linear warmup steps",
    "schedule": "learning-rate schedule after warmup: cosine (to 0), wsd (warmup-stable-decay) or constant",
    "val_every": "validate every N steps (learning curves)",
    "record_attention": "keep one attention map per cell for the report",
    "trainer": "Lightning Trainer options (accelerator, devices, precision, strategy)",
    "variants": "fnmatch patterns over registered variants ('*' = all, plugins included)",
    "baselines": "also run backbones without attention (variant 'none')",
    "attention_kwargs": "variant name -> keyword arguments for its constructor",
    "backbones": "backbone name -> kwargs (d_model, num_layers, num_heads, ...)",
    "tasks": "label -> {task, knobs, backbones, backbone_kwargs, backbone_sweep, train_size, variants, "
             "exclude_variants, max_steps, batch_size, lrs, warmup_steps, schedule, val_every}",
    "disabled_plugins": "plugins the workers must not load",
    "training": f"other Cell options for every cell: {', '.join(TRAINING_KEYS)}",
}

#: keys a task entry may override (the budget stays equal across variants of one task)
TASK_KEYS = ("task", "knobs", "backbones", "backbone_kwargs", "backbone_sweep", "train_size", "variants",
             "exclude_variants", "max_steps", "batch_size", "lrs", "weight_decays", "warmup_steps", "schedule",
             "val_every")
#: task-entry keys that select cells rather than change what a cell computes (not in the config hash)
_SELECTION_KEYS = ("backbones", "variants", "exclude_variants")
_BUDGET_KEYS = ("max_steps", "batch_size", "lrs", "weight_decays", "warmup_steps", "schedule", "val_every")


#: the budget keys that are Cell fields take the field's default when a preset leaves them out
_CELL_FIELDS = frozenset(f.name for f in fields(Cell))


def _preset_defaults() -> dict[str, Any]:
    """What a preset's missing keys mean: the budget from Cell's defaults, plus the preset's own selection keys."""
    return {
        "seeds": 1,
        "max_steps": cell_default("max_steps"),
        "batch_size": cell_default("batch_size"),
        "lrs": [cell_default("lr")],
        "warmup_steps": cell_default("warmup_steps"),
        "val_every": cell_default("val_every"),
        "record_attention": cell_default("record_attention"),
        "trainer": dict(TRAINER_DEFAULTS),
        "variants": ["*"],
        "baselines": True,
        "attention_kwargs": {},
        "disabled_plugins": [],
    }


class PresetError(AttnzooError, ValueError):
    """A preset that does not match the harness; ``problems`` lists every mismatch."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"preset {source}: {len(self.problems)} problem(s):\n{lines}")



@dataclass(frozen=True)
class Budget:
    """One task's training budget: the same for every variant in it."""

    max_steps: int
    batch_size: int
    lrs: tuple[float, ...]
    weight_decays: tuple[float, ...] | None  # None: the training section's (or the Cell's) weight decay
    warmup_steps: int
    schedule: str
    val_every: int | None


@dataclass(frozen=True)
class TaskEntry:
    """One entry of a preset's ``tasks``: a label, the registered task, its knobs and budget."""

    label: str
    task: str
    knobs: dict[str, Any]
    budget: Budget
    backbones: tuple[str, ...] | None = None  # patterns over the preset's backbones
    #: backbone name -> kwargs merged over the preset's for this task only (a 1-layer Transformer)
    backbone_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    variants: tuple[str, ...] | None = None   # patterns over registered variants
    exclude_variants: tuple[str, ...] = ()    # ... and the ones to leave out (a duplicate of another row)
    #: backbone name -> {kwarg: [values]}: one setting per combination (the product), each over the
    #: backbone's kwargs; e.g. an MLP over depth x width. Every setting is an ordinary cell.
    backbone_sweep: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    #: None: fresh training data every step; N: a finite training set of N examples (Cell.train_size)
    train_size: int | None = None

    def backbone_settings(self, backbone: str, kwargs: Mapping[str, Any]) -> list[dict[str, Any]]:
        """``kwargs`` (the preset's, this entry's overrides merged) once per combination of the sweep."""
        import itertools

        sweep = self.backbone_sweep.get(backbone) or {}
        keys = list(sweep)
        return [{**kwargs, **dict(zip(keys, combo))} for combo in itertools.product(*(sweep[k] for k in keys))]


@dataclass(frozen=True)
class Preset:
    """A validated preset: typed sections, plus the mapping they came from (``data``, for the hash and --dry-run)."""

    name: str
    source: str
    data: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    @property
    def description(self) -> str:
        return str(self.data.get("description") or "").strip()

    @property
    def seeds(self) -> list[int]:
        return _seed_list(self.data["seeds"])

    @property
    def trainer(self) -> dict[str, Any]:
        return {**TRAINER_DEFAULTS, **dict(self.data.get("trainer") or {})}

    @property
    def variants(self) -> list[str]:
        return _patterns(self.data.get("variants", ["*"])) or []

    @property
    def baselines(self) -> bool:
        return bool(self.data.get("baselines", True))

    @property
    def backbones(self) -> dict[str, dict[str, Any]]:
        return {name: dict(kw or {}) for name, kw in (self.data.get("backbones") or {}).items()}

    @property
    def tasks(self) -> list[TaskEntry]:
        out = []
        for label, entry in (self.data.get("tasks") or {}).items():
            entry = dict(entry or {})
            budget = {k: entry.get(k, self.data.get(k, cell_default(k) if k in _CELL_FIELDS else None))
                      for k in _BUDGET_KEYS}
            budget["lrs"] = tuple(float(x) for x in budget["lrs"])
            if budget["weight_decays"] is not None:
                budget["weight_decays"] = tuple(float(x) for x in budget["weight_decays"])
            pats = {k: _patterns(entry.get(k)) for k in _SELECTION_KEYS}
            out.append(TaskEntry(
                label, entry.get("task", label), dict(entry.get("knobs") or {}), Budget(**budget),
                backbones=tuple(pats["backbones"]) if pats["backbones"] is not None else None,
                variants=tuple(pats["variants"]) if pats["variants"] is not None else None,
                exclude_variants=tuple(pats["exclude_variants"] or ()),
                backbone_kwargs={b: dict(kw) for b, kw in dict(entry.get("backbone_kwargs") or {}).items()},
                backbone_sweep={b: {k: list(v) for k, v in dict(sw).items()}
                                for b, sw in dict(entry.get("backbone_sweep") or {}).items()},
                train_size=entry.get("train_size"),
            ))
        return out

    def cell_options(self) -> dict[str, Any]:
        """The Cell fields every cell of this preset shares (trainer, plugins, training section)."""
        return {
            "trainer": self.trainer,
            "disabled_plugins": tuple(self.data.get("disabled_plugins") or ()),
            "record_attention": bool(self.data.get("record_attention", cell_default("record_attention"))),
            **dict(self.data.get("training") or {}),
        }

    def config_hash(self) -> str:
        return config_hash(self.data)


def _seed_list(seeds: Any) -> list[int]:
    if isinstance(seeds, bool):
        raise TypeError("seeds must be an int or a list of ints")
    if isinstance(seeds, int):
        return list(range(seeds))
    return [int(s) for s in seeds]


def config_hash(data: Mapping[str, Any]) -> str:
    """Hash of what makes results comparable: budgets, knobs, kwargs, trainer.

    Selection (which variants, tasks, backbones, seeds) and presentation keys
    are left out, so a grid that grows (a new plugin, more seeds) keeps its hash
    and can be resumed in the same directory; a changed budget cannot.
    """
    keep = {k: v for k, v in data.items() if k not in ("name", "description", "variants", "seeds", "baselines",
                                                         "record_attention", "disabled_plugins")}
    tasks = {}
    for label, entry in dict(keep.get("tasks") or {}).items():
        tasks[label] = {k: v for k, v in dict(entry or {}).items() if k not in _SELECTION_KEYS}
    keep["tasks"] = tasks
    return digest(keep)


def list_presets() -> list[str]:
    """Names of the built-in presets (``*.yaml`` in :func:`shipped_dir` ``("presets")``)."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml")) if PRESET_DIR is not None else []


def preset_path(name_or_path: str | Path) -> Path:
    """A built-in preset's file, or ``name_or_path`` itself when it is a file."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.exists():
            raise FileNotFoundError(f"preset file {p} does not exist")
        if p.is_dir():
            raise FileNotFoundError(f"preset {p} is a directory; pass a .yaml file or a built-in name")
        return p
    candidate = PRESET_DIR / f"{name_or_path}.yaml" if PRESET_DIR is not None else None
    if candidate is not None and candidate.exists():
        return candidate
    known = list_presets()
    hint = close_matches(str(name_or_path), known)
    where = str(PRESET_DIR) if PRESET_DIR is not None else "this install (no benchmarks/presets, no attnzoo/_presets)"
    raise FileNotFoundError(
        f"unknown preset {str(name_or_path)!r}"
        + (f"; did you mean {', '.join(map(repr, hint))}?" if hint else "")
        + f" (built-in: {', '.join(known) or 'none found in ' + where}; or pass a path to a .yaml file)"
    )


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PresetError(str(path), [f"not valid YAML: {where}{problem}"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PresetError(str(path), [f"cannot read the file: {exc}"]) from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise PresetError(str(path), [f"the file must hold a mapping of keys, got {type(raw).__name__}"])
    return raw


def load_preset(
    name_or_path: str | Path | Mapping[str, Any],
    *,
    overrides: Mapping[str, Any] | None = None,
    catalog: Catalog | None = None,
) -> Preset:
    """Read a preset (built-in name, path, or mapping), apply ``overrides``, validate.

    :param overrides: top-level keys replacing the file's (the CLI's ``--steps``,
        ``--seeds``, trainer options merged into ``trainer``).
    :raises PresetError: listing every mismatch at once (a file that is not valid YAML included).
    :raises FileNotFoundError: an unknown preset name (with close matches) or a missing file.
    """
    if isinstance(name_or_path, Mapping):
        raw = copy.deepcopy(dict(name_or_path))
        source = str(raw.get("name", "<mapping>"))
        stem = source
    else:
        path = preset_path(name_or_path)
        raw = _read_yaml(path)
        source = str(path)
        stem = path.stem
    defaults = _preset_defaults()
    data = {**defaults, **raw}
    data["trainer"] = {**defaults["trainer"], **dict(raw.get("trainer") or {})}
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key == "trainer":
            data["trainer"] = {**data["trainer"], **{k: v for k, v in value.items() if v is not None}}
        elif key in _BUDGET_KEYS:
            # a budget given on the command line applies to every task (equal budgets)
            data[key] = value
            for entry in (data.get("tasks") or {}).values():
                if isinstance(entry, dict):
                    entry.pop(key, None)
        else:
            data[key] = value
    name = str(data.pop("name", None) or stem)
    validate_preset(data, source=source, catalog=catalog)
    return Preset(name=name, source=source, data=data)


def _unknown(kind: str, name: str, known: Iterable[str]) -> str:
    known = sorted(known)
    hint = close_matches(name, known)
    return (f"unknown {kind} {name!r}" + (f" (did you mean {', '.join(map(repr, hint))}?)" if hint else "")
            + f"; known: {', '.join(known) or 'none'}")


def _patterns(value: Any) -> list[str] | None:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    return None



def _names(kind: str, list_names: Any, problems: list[str]) -> list[str]:
    """A registry's names, or ``[]`` with a problem saying why it could not be listed (the checks go on)."""
    try:
        return list(list_names())
    except Exception as exc:  # registry broken: say so, keep checking the rest
        problems.append(f"cannot list {kind}: {type(exc).__name__}: {exc}")
        return []


def _top_level_problems(data: Mapping[str, Any]) -> list[str]:
    """Unknown top-level keys, the seeds, the budget and the ``training`` section."""
    problems = []
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            hint = close_matches(key, list(TOP_LEVEL_KEYS))
            problems.append(f"unknown top-level key {key!r}" + (f" (did you mean {', '.join(map(repr, hint))}?)"
                                                                if hint else "")
                            + f"; known: {', '.join(TOP_LEVEL_KEYS)}")
    try:
        _seed_list(data.get("seeds", 1))
        if not _seed_list(data.get("seeds", 1)):
            problems.append("seeds: at least one seed is needed")
    except (TypeError, ValueError):
        problems.append(f"seeds: expected an int or a list of ints, got {data.get('seeds')!r}")
    problems += budget_problems(data)
    training = data.get("training") or {}
    if not isinstance(training, Mapping):
        problems.append(f"training: expected a mapping, got {training!r}")
    else:
        for key in sorted(set(training) - set(TRAINING_KEYS)):
            problems.append(f"training: unknown option {key!r}; accepted: {', '.join(TRAINING_KEYS)}")
        problems += budget_problems({k: training[k] for k in TRAINING_KEYS if k in training}, "training.")
    return problems


def _variant_problems(data: Mapping[str, Any], catalog: Catalog, known_variants: list[str]) -> list[str]:
    """The top-level ``variants`` patterns and ``attention_kwargs`` (checked against each variant's signature)."""
    problems = []
    top_patterns = _patterns(data.get("variants", ["*"]))
    if top_patterns is None:
        problems.append(f"variants: expected a pattern or a list of patterns, got {data.get('variants')!r}")
        top_patterns = []
    for pat in top_patterns:
        if known_variants and not fnmatch.filter(known_variants, pat):
            problems.append(_unknown("variant pattern (matches nothing)", pat, known_variants))
    att_kwargs = data.get("attention_kwargs") or {}
    if not isinstance(att_kwargs, Mapping):
        problems.append(f"attention_kwargs: expected a mapping variant -> kwargs, got {att_kwargs!r}")
        att_kwargs = {}
    for vname, kwargs in att_kwargs.items():
        if vname not in known_variants:
            problems.append(_unknown("variant in attention_kwargs", vname, known_variants))
            continue
        if not isinstance(kwargs, Mapping):
            problems.append(f"attention_kwargs.{vname}: expected a mapping, got {kwargs!r}")
            continue
        spec, factory = catalog.variant(vname)
        problems += kwarg_problems(f"attention_kwargs.{vname}", accepted_kwargs(factory), kwargs,
                                   skip=("need_weights",), noun="keyword")
    return problems


def _backbone_problems(backbones: Any, catalog: Catalog, known_backbones: list[str]) -> list[str]:
    """The ``backbones`` section: registered names, each one's kwargs checked against its factory."""
    if not isinstance(backbones, Mapping) or not backbones:
        return [f"backbones: expected a non-empty mapping backbone -> kwargs, got {backbones!r}"]
    problems = []
    for bname, kwargs in backbones.items():
        if bname not in known_backbones:
            problems.append(_unknown("backbone", bname, known_backbones))
            continue
        if kwargs is not None and not isinstance(kwargs, Mapping):
            problems.append(f"backbones.{bname}: expected a mapping of kwargs, got {kwargs!r}")
            continue
        _spec, factory = catalog.backbone(bname)
        problems += backbone_kwarg_problems(f"backbones.{bname}", factory, kwargs or {})
    return problems


def _selection_problems(where: str, entry: Mapping[str, Any], backbones: Mapping[str, Any],
                        known_variants: list[str]) -> list[str]:
    """A task entry's unknown keys, budget, and ``backbones`` / ``variants`` / ``exclude_variants`` patterns."""
    problems = []
    for key in sorted(set(entry) - set(TASK_KEYS)):
        hint = close_matches(key, list(TASK_KEYS))
        problems.append(f"{where}: unknown key {key!r}" + (f" (did you mean {', '.join(map(repr, hint))}? "
                                                             "task knobs go under 'knobs')" if hint else
                                                             " (task knobs go under 'knobs')")
                        + f"; known: {', '.join(TASK_KEYS)}")
    problems += budget_problems(entry, f"{where}.")
    for key in _SELECTION_KEYS:
        if key not in entry:
            continue
        pats = _patterns(entry[key])
        if pats is None:
            problems.append(f"{where}.{key}: expected a pattern or a list of patterns, got {entry[key]!r}")
            continue
        pool = list(backbones) if key == "backbones" else known_variants
        for pat in pats:
            if pool and not fnmatch.filter(pool, pat):
                what = "backbone pattern (matches none of the preset's backbones)" if key == "backbones" \
                    else "variant pattern (matches nothing)"
                problems.append(f"{where}.{key}: " + _unknown(what, pat, pool))
    return problems


def _task_entry_problems(label: str, entry: Mapping[str, Any], data: Mapping[str, Any], catalog: Catalog,
                         backbones: Mapping[str, Any], known_variants: list[str], known_tasks: list[str]) -> list[str]:
    """Entry ``label`` of ``tasks``: its keys and patterns, the task, its backbone overrides and sweep, its knobs
    (against the task's signature) and whether one batch fits this machine's memory."""
    where = f"tasks.{label}"
    problems = _selection_problems(where, entry, backbones, known_variants)
    tname = entry.get("task", label)
    if tname not in known_tasks:
        return problems + [f"{where}: " + _unknown("task", str(tname), known_tasks)]
    overrides = entry.get("backbone_kwargs") or {}
    if not isinstance(overrides, Mapping) or not all(isinstance(v, Mapping) for v in overrides.values()):
        problems.append(f"{where}.backbone_kwargs: expected a mapping backbone -> kwargs, got {overrides!r}")
    else:
        for bname, kwargs in overrides.items():
            if bname not in backbones:
                problems.append(f"{where}.backbone_kwargs: " + _unknown("backbone (not in the preset's backbones)",
                                                                       bname, list(backbones)))
                continue
            _spec, factory = catalog.backbone(bname)
            problems += backbone_kwarg_problems(f"{where}.backbone_kwargs.{bname}", factory, kwargs)
    problems += _sweep_problems(f"{where}.backbone_sweep", entry.get("backbone_sweep") or {}, backbones, catalog)
    knobs = entry.get("knobs") or {}
    if not isinstance(knobs, Mapping):
        return problems + [f"{where}.knobs: expected a mapping, got {knobs!r}"]
    problems += kwarg_problems(f"{where}.knobs (task {tname!r})", accepted_kwargs(catalog.task_class(tname)),
                               knobs, noun="keyword")
    return problems + _memory_problems(where, catalog.task_class(tname), knobs, entry, data, backbones)


def validate_preset(data: Mapping[str, Any], *, source: str = "<preset>", catalog: Catalog | None = None) -> None:
    """Check a preset against the registries and the real signatures.

    Each checker returns every problem of its part (top level, variants, backbones, each task entry); a
    registry that cannot be listed is one more problem, and the other parts are still checked.

    :raises PresetError: with every mismatch found (unknown keys, tasks,
        backbones, variants, knobs, kwargs, bad budgets), not just the first.
    """
    catalog = catalog or Catalog()
    problems = _top_level_problems(data)
    known_variants = _names("attention variants", catalog.variant_names, problems)
    problems += _variant_problems(data, catalog, known_variants)
    known_backbones = _names("backbones", catalog.backbone_names, problems)
    backbones = data.get("backbones")
    problems += _backbone_problems(backbones, catalog, known_backbones)
    backbones = backbones if isinstance(backbones, Mapping) and backbones else {}
    known_tasks = _names("tasks", catalog.task_names, problems)
    tasks = data.get("tasks")
    if not isinstance(tasks, Mapping) or not tasks:
        problems.append(f"tasks: expected a non-empty mapping label -> task entry, got {tasks!r}")
        tasks = {}
    for label, entry in tasks.items():
        entry = {} if entry is None else entry
        if not isinstance(entry, Mapping):
            problems.append(f"tasks.{label}: expected a mapping (knobs, backbones, ...), got {entry!r}")
            continue
        problems += _task_entry_problems(label, entry, data, catalog, backbones, known_variants, known_tasks)
    if problems:
        raise PresetError(source, problems)


#: tokens per example below which a batch's estimate is not worth building the task for
_PLAUSIBLE_TOKENS = 4096


def _machine_memory() -> int | None:
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return None


def _memory_problems(where: str, task_class: Any, knobs: Mapping[str, Any], entry: Mapping[str, Any],
                     data: Mapping[str, Any], backbones: Mapping[str, Any]) -> list[str]:
    """A batch that cannot fit this machine's memory, refused before a worker tries to allocate it.

    The estimate is a lower bound of one training step: the batch's int64 tokens plus one
    fp32 activation of width ``d_model`` per token (the smallest ``d_model`` of the task's
    backbones). A task that cannot be built here is left to the cell (it says why).
    """
    total = _machine_memory()
    batch = entry.get("batch_size", data.get("batch_size", cell_default("batch_size")))
    if not total or not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        return []
    names = _patterns(entry.get("backbones")) or list(backbones)
    widths = [int(kw["d_model"]) for name, kw in backbones.items()
              if any(fnmatch.fnmatch(name, pat) for pat in names) and isinstance(kw, Mapping)
              and isinstance(kw.get("d_model"), int)]
    per_token = 8 + 4 * min(widths, default=0)
    if batch * per_token * _PLAUSIBLE_TOKENS <= total:
        return []  # fits even at that many tokens per example: no need to build the task (some take seconds)
    try:
        import torch

        example = task_class(**dict(knobs)).generate(1, torch.Generator().manual_seed(0))
        tokens = sum(int(t.numel()) for t in example.values() if isinstance(t, torch.Tensor))
    except Exception:  # noqa: BLE001 - the cell reports a task it cannot build
        return []
    need = batch * tokens * per_token
    if need <= total:
        return []
    return [f"{where}: batch_size {batch} needs at least {need / 2**30:,.1f} GiB for one training step "
            f"({tokens} token(s) per example x (8 bytes + 4 x d_model {min(widths, default=0)})), more than this "
            f"machine's {total / 2**30:,.1f} GiB of memory; lower batch_size"]


def _sweep_problems(where: str, sweep: Any, backbones: Mapping[str, Any], catalog: Catalog) -> list[str]:
    """Problems of a task entry's ``backbone_sweep``: backbone -> {kwarg: non-empty list}, every value checked."""
    if not isinstance(sweep, Mapping) or not all(isinstance(v, Mapping) for v in sweep.values()):
        return [f"{where}: expected a mapping backbone -> {{kwarg: [values]}}, got {sweep!r}"]
    problems = []
    for bname, axes in sweep.items():
        if bname not in backbones:
            problems.append(f"{where}: " + _unknown("backbone (not in the preset's backbones)", bname, list(backbones)))
            continue
        _spec, factory = catalog.backbone(bname)
        for key, values in axes.items():
            if not isinstance(values, list) or not values:
                problems.append(f"{where}.{bname}.{key}: expected a non-empty list of values, got {values!r}")
                continue
            for value in values:
                problems += backbone_kwarg_problems(f"{where}.{bname}.{key}", factory, {key: value})
    return problems
