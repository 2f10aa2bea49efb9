"""Presets (YAML) -> a validated grid of cells.

A preset names the tasks (with their knobs), the backbones (with their
kwargs), the variant patterns, the seeds and one training budget (steps, batch
size, a small learning-rate grid). :func:`load_preset` checks it against the
real signatures and raises one :class:`PresetError` listing every mismatch
(torchtune style); :func:`expand` turns it into cells, one per
task x backbone x variant x seed x learning rate, plus one ``"n/a"`` cell per
task x backbone x variant pair that does not fit, carrying the reason.

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
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnzoo.errors import AttnzooError, close_matches

__all__ = [
    "PresetError",
    "Preset",
    "GridCell",
    "Catalog",
    "PRESET_DIR",
    "preset_path",
    "list_presets",
    "load_preset",
    "validate_preset",
    "expand",
    "shard",
    "parse_shard",
    "config_hash",
    "cell_id",
    "canonical_json",
    "BASELINE",
    "empty_row",
]

#: the variant label of cells that run a backbone without attention
BASELINE = "none"

#: where the built-in presets live (the source tree's benchmarks/presets)
PRESET_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "presets"

#: cell keys a preset's ``training`` section may set (run_cell's other options)
TRAINING_KEYS = ("weight_decay", "eval_batch_size", "entropy_coef", "baseline_decay")

#: top-level preset keys and what they mean (also the error message's listing)
TOP_LEVEL_KEYS: dict[str, str] = {
    "name": "preset name (default: the file's stem)",
    "description": "one paragraph shown by --dry-run",
    "seeds": "number of seeds (0..N-1) or a list of seeds",
    "max_steps": "optimizer steps per cell (the budget; equal for every variant)",
    "batch_size": "training batch size",
    "lrs": "learning rates tried per variant; the report keeps the best by validation",
    "warmup_steps": "linear warmup steps",
    "val_every": "validate every N steps (learning curves)",
    "record_attention": "keep one attention map per cell for the report",
    "trainer": "Lightning Trainer options (accelerator, devices, precision, strategy)",
    "variants": "fnmatch patterns over registered variants ('*' = all, plugins included)",
    "baselines": "also run backbones without attention (variant 'none')",
    "attention_kwargs": "variant name -> keyword arguments for its constructor",
    "backbones": "backbone name -> kwargs (d_model, num_layers, num_heads, ...)",
    "tasks": "label -> {task, knobs, backbones, variants, max_steps, batch_size, lrs, warmup_steps, val_every}",
    "disabled_plugins": "plugins the workers must not load",
    "training": f"other run_cell options for every cell: {', '.join(TRAINING_KEYS)}",
}

#: keys a task entry may override (the budget stays equal across variants of one task)
TASK_KEYS = ("task", "knobs", "backbones", "variants", "max_steps", "batch_size", "lrs", "warmup_steps", "val_every")
_BUDGET_KEYS = ("max_steps", "batch_size", "lrs", "warmup_steps", "val_every")

#: Trainer options a preset may set (run_cell hands them to lightning.Trainer; it sets
#: max_steps, gradient clipping, logging and the progress bar itself)
TRAINER_KEYS = ("accelerator", "devices", "precision", "strategy", "num_nodes", "accumulate_grad_batches",
                "deterministic")
#: arguments every backbone factory takes besides its own kwargs
BACKBONE_COMMON_KWARGS = ("d_model", "num_layers", "num_heads")

DEFAULTS: dict[str, Any] = {
    "seeds": 1,
    "max_steps": 200,
    "batch_size": 32,
    "lrs": [3e-3],
    "warmup_steps": 10,
    "val_every": 50,
    "record_attention": True,
    "trainer": {"accelerator": "cpu", "devices": 1, "precision": "32-true", "strategy": "auto"},
    "variants": ["*"],
    "baselines": True,
    "attention_kwargs": {},
    "disabled_plugins": [],
}

#: cell keys that do not change what a cell computes (left out of its id)
_NON_IDENTITY_CELL_KEYS = ("threads", "record_attention", "progress")


class PresetError(AttnzooError, ValueError):
    """A preset that does not match the harness; ``problems`` lists every mismatch."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"preset {source}: {len(self.problems)} problem(s):\n{lines}")


# -- canonical JSON and ids ----------------------------------------------------
def canonical_json(obj: Any) -> str:
    """Sorted keys, no spaces: the same config always gives the same text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def _digest(obj: Any, n: int = 12) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:n]


def cell_id(cell: Mapping[str, Any]) -> str:
    """Stable id of a cell: a hash of its canonical config, without options that do not change results."""
    return _digest({k: v for k, v in cell.items() if k not in _NON_IDENTITY_CELL_KEYS})


# -- the catalog: what is registered --------------------------------------------
class Catalog:
    """Read access to the task, backbone and attention registries.

    The default reads the real registries (plugins included); tests pass a
    subclass with fakes.
    """

    def task_names(self) -> list[str]:
        from attnzoo.tasks import list_tasks

        return list_tasks()

    def task_class(self, name: str) -> Any:
        from attnzoo.tasks import get_task_class

        return get_task_class(name)

    def backbone_names(self) -> list[str]:
        from attnzoo.backbones import list_backbones

        return list_backbones()

    def backbone(self, name: str) -> tuple[Any, Any]:
        """``(BackboneSpec, factory)``."""
        from attnzoo.backbones import get_backbone

        return get_backbone(name)

    def variant_names(self) -> list[str]:
        from attnzoo.registry import list_attention

        return list_attention()

    def variant(self, name: str) -> tuple[Any, Any]:
        """``(AttentionSpec, factory)``."""
        from attnzoo.registry import get_entry

        entry = get_entry(name)
        return entry.spec, entry.factory


def _accepted(factory: Any, skip: Iterable[str] = ()) -> dict[str, Any] | None:
    from attnzoo.registry import accepted_kwargs

    accepted = accepted_kwargs(factory)
    if accepted is None:
        return None
    return {k: v for k, v in accepted.items() if k not in set(skip)}


# -- presets -------------------------------------------------------------------
@dataclass
class Preset:
    """A validated preset: plain data, JSON-able through :meth:`to_dict`."""

    name: str
    source: str
    data: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    @property
    def seeds(self) -> list[int]:
        return _seed_list(self.data["seeds"])

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
        tasks[label] = {k: v for k, v in dict(entry or {}).items() if k not in ("backbones", "variants")}
    keep["tasks"] = tasks
    return _digest(keep)


def list_presets() -> list[str]:
    """Names of the built-in presets (``benchmarks/presets/*.yaml``)."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def preset_path(name_or_path: str | Path) -> Path:
    """A built-in preset's file, or ``name_or_path`` itself when it is a file."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.exists():
            raise FileNotFoundError(f"preset file {p} does not exist")
        return p
    candidate = PRESET_DIR / f"{name_or_path}.yaml"
    if candidate.exists():
        return candidate
    known = list_presets()
    hint = close_matches(str(name_or_path), known)
    raise FileNotFoundError(
        f"unknown preset {str(name_or_path)!r}"
        + (f"; did you mean {', '.join(map(repr, hint))}?" if hint else "")
        + f" (built-in: {', '.join(known) or 'none found in ' + str(PRESET_DIR)}; or pass a path to a .yaml file)"
    )


def load_preset(
    name_or_path: str | Path | Mapping[str, Any],
    *,
    overrides: Mapping[str, Any] | None = None,
    catalog: Catalog | None = None,
) -> Preset:
    """Read a preset (built-in name, path, or mapping), apply ``overrides``, validate.

    :param overrides: top-level keys replacing the file's (the CLI's ``--steps``,
        ``--seeds``, trainer options merged into ``trainer``).
    :raises PresetError: listing every mismatch at once.
    """
    if isinstance(name_or_path, Mapping):
        raw = copy.deepcopy(dict(name_or_path))
        source = str(raw.get("name", "<mapping>"))
        stem = source
    else:
        import yaml

        path = preset_path(name_or_path)
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh) or {}
        if not isinstance(raw, dict):
            raise PresetError(str(path), [f"the file must hold a mapping of keys, got {type(raw).__name__}"])
        source = str(path)
        stem = path.stem
    data = {**copy.deepcopy(DEFAULTS), **raw}
    data["trainer"] = {**DEFAULTS["trainer"], **dict(raw.get("trainer") or {})}
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


def _check_kwargs(problems: list[str], where: str, given: Mapping[str, Any], accepted: Mapping[str, Any] | None) -> None:
    if accepted is None:  # the factory takes **kwargs: anything goes
        return
    for key in sorted(set(given) - set(accepted)):
        hint = close_matches(key, list(accepted))
        problems.append(
            f"{where}: unknown keyword {key!r}" + (f" (did you mean {', '.join(map(repr, hint))}?)" if hint else "")
            + f"; accepted: {', '.join(f'{k}={v!r}' for k, v in accepted.items()) or 'none'}"
        )


def _check_budget(problems: list[str], where: str, data: Mapping[str, Any]) -> None:
    for key in ("max_steps", "batch_size", "val_every"):
        if key in data and (not isinstance(data[key], int) or isinstance(data[key], bool) or data[key] < 1):
            problems.append(f"{where}{key}: expected a positive integer, got {data[key]!r}")
    if "warmup_steps" in data and (not isinstance(data["warmup_steps"], int) or data["warmup_steps"] < 0):
        problems.append(f"{where}warmup_steps: expected an integer >= 0, got {data['warmup_steps']!r}")
    if "lrs" in data:
        lrs = data["lrs"]
        if not isinstance(lrs, list) or not lrs or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 for x in lrs
        ):
            problems.append(f"{where}lrs: expected a non-empty list of positive numbers, got {lrs!r}")


def _patterns(value: Any) -> list[str] | None:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def validate_preset(data: Mapping[str, Any], *, source: str = "<preset>", catalog: Catalog | None = None) -> None:
    """Check a preset against the registries and the real signatures.

    :raises PresetError: with every mismatch found (unknown keys, tasks,
        backbones, variants, knobs, kwargs, bad budgets), not just the first.
    """
    catalog = catalog or Catalog()
    problems: list[str] = []
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
    _check_budget(problems, "", data)
    trainer = data.get("trainer") or {}
    if not isinstance(trainer, Mapping):
        problems.append(f"trainer: expected a mapping, got {trainer!r}")
    else:
        for key in sorted(set(trainer) - set(TRAINER_KEYS)):
            problems.append(f"trainer: unknown option {key!r}; accepted: {', '.join(TRAINER_KEYS)}")
    training = data.get("training") or {}
    if not isinstance(training, Mapping):
        problems.append(f"training: expected a mapping, got {training!r}")
    else:
        for key in sorted(set(training) - set(TRAINING_KEYS)):
            problems.append(f"training: unknown option {key!r}; accepted: {', '.join(TRAINING_KEYS)}")

    # variants
    try:
        known_variants = catalog.variant_names()
    except Exception as exc:  # registry broken: say so, keep checking the rest
        problems.append(f"cannot list attention variants: {type(exc).__name__}: {exc}")
        known_variants = []
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
        _check_kwargs(problems, f"attention_kwargs.{vname}", kwargs, _accepted(factory, ("need_weights",)))

    # backbones
    try:
        known_backbones = catalog.backbone_names()
    except Exception as exc:
        problems.append(f"cannot list backbones: {type(exc).__name__}: {exc}")
        known_backbones = []
    backbones = data.get("backbones")
    if not isinstance(backbones, Mapping) or not backbones:
        problems.append(f"backbones: expected a non-empty mapping backbone -> kwargs, got {backbones!r}")
        backbones = {}
    for bname, kwargs in backbones.items():
        if bname not in known_backbones:
            problems.append(_unknown("backbone", bname, known_backbones))
            continue
        if kwargs is not None and not isinstance(kwargs, Mapping):
            problems.append(f"backbones.{bname}: expected a mapping of kwargs, got {kwargs!r}")
            continue
        _spec, factory = catalog.backbone(bname)
        accepted = _accepted(factory, ("task", "attention", "attention_kwargs"))
        if accepted is not None:
            accepted = {**{k: None for k in BACKBONE_COMMON_KWARGS}, **accepted}
        _check_kwargs(problems, f"backbones.{bname}", kwargs or {}, accepted)

    # tasks
    try:
        known_tasks = catalog.task_names()
    except Exception as exc:
        problems.append(f"cannot list tasks: {type(exc).__name__}: {exc}")
        known_tasks = []
    tasks = data.get("tasks")
    if not isinstance(tasks, Mapping) or not tasks:
        problems.append(f"tasks: expected a non-empty mapping label -> task entry, got {tasks!r}")
        tasks = {}
    for label, entry in tasks.items():
        where = f"tasks.{label}"
        entry = {} if entry is None else entry
        if not isinstance(entry, Mapping):
            problems.append(f"{where}: expected a mapping (knobs, backbones, ...), got {entry!r}")
            continue
        for key in sorted(set(entry) - set(TASK_KEYS)):
            hint = close_matches(key, list(TASK_KEYS))
            problems.append(f"{where}: unknown key {key!r}" + (f" (did you mean {', '.join(map(repr, hint))}? "
                                                                 "task knobs go under 'knobs')" if hint else
                                                                 " (task knobs go under 'knobs')")
                            + f"; known: {', '.join(TASK_KEYS)}")
        _check_budget(problems, f"{where}.", entry)
        tname = entry.get("task", label)
        for key in ("backbones", "variants"):
            if key in entry:
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
        if tname not in known_tasks:
            problems.append(f"{where}: " + _unknown("task", str(tname), known_tasks))
            continue
        knobs = entry.get("knobs") or {}
        if not isinstance(knobs, Mapping):
            problems.append(f"{where}.knobs: expected a mapping, got {knobs!r}")
            continue
        _check_kwargs(problems, f"{where}.knobs (task {tname!r})", knobs, _accepted(catalog.task_class(tname)))
    if problems:
        raise PresetError(source, problems)


# -- expansion -----------------------------------------------------------------
@dataclass
class GridCell:
    """One entry of the grid: a runnable cell, or an ``n/a`` pair with its reason.

    ``cell`` is exactly what :func:`attnzoo.harness.run.run_cell` takes.
    """

    id: str
    task: str              # the preset's label (usually the task name)
    backbone: str
    variant: str           # attention name, or "none" for baselines
    seed: int | None
    lr: float | None
    cell: dict[str, Any]
    status: str = "pending"  # "pending" or "n/a"
    reason: str | None = None

    @property
    def runnable(self) -> bool:
        return self.status != "n/a"

    def label(self) -> str:
        base = f"{self.task} / {self.backbone} / {self.variant}"
        if not self.runnable:
            return base
        return f"{base} / seed {self.seed} / lr {self.lr:g}"

    def na_row(self) -> dict[str, Any]:
        """The results row an ``n/a`` pair leaves behind (the report prints its reason)."""
        return empty_row("n/a", self.reason)


def empty_row(status: str, error: str | None) -> dict[str, Any]:
    """A results row with no measurements: an n/a pair, or a cell whose worker died."""
    return {"status": status, "error": error, "metrics": {}, "main_metric": None, "main_value": None,
            "chance": None, "params": None, "steps": 0, "train_time_s": 0.0, "tokens_per_s": None,
            "peak_mem_mb": None, "curve": [], "attention_map": None}


def _matches(name: str, patterns: Iterable[str] | None) -> bool:
    if patterns is None:
        return True
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _fit_reason(backbone_spec: Any, task_spec: Any, attention_spec: Any) -> str | None:
    fits = getattr(backbone_spec, "fits", None)
    if fits is None:
        return None
    try:
        return fits(task_spec, attention_spec)
    except Exception as exc:  # a plugin's broken fits() must not drop the pair silently
        return f"fits() raised {type(exc).__name__}: {exc}"


def expand(
    preset: Preset,
    *,
    variants: Iterable[str] | None = None,
    tasks: Iterable[str] | None = None,
    backbones: Iterable[str] | None = None,
    catalog: Catalog | None = None,
) -> list[GridCell]:
    """Every cell of the preset, n/a pairs included, in a stable order.

    Order: seed-major (a grid stopped half-way still has whole seeds), then
    task, backbone, variant, learning rate, as the preset lists them.

    :param variants, tasks, backbones: extra fnmatch filters (the CLI's
        ``--variants`` etc.); ``"none"`` selects the baselines.
    """
    catalog = catalog or Catalog()
    data = preset.data
    variant_filter = list(variants) if variants is not None else None
    task_filter = list(tasks) if tasks is not None else None
    backbone_filter = list(backbones) if backbones is not None else None
    all_variants = catalog.variant_names()
    top_patterns = _patterns(data.get("variants", ["*"])) or []
    att_kwargs = dict(data.get("attention_kwargs") or {})
    trainer = dict(data.get("trainer") or {})
    seeds = preset.seeds

    # (task label, backbone, variant label, cell without seed/lr, learning rates, n/a reason)
    pairs: list[tuple[str, str, str, dict[str, Any], list[float], str | None]] = []
    for label, entry in (data.get("tasks") or {}).items():
        entry = dict(entry or {})
        if not _matches(label, task_filter) and not _matches(entry.get("task", label), task_filter):
            continue
        tname = entry.get("task", label)
        task_spec = catalog.task_class(tname).spec
        task_backbones = _patterns(entry.get("backbones"))
        task_variants = _patterns(entry.get("variants"))
        budget = {k: entry.get(k, data.get(k)) for k in _BUDGET_KEYS}
        for bname, bkwargs in (data.get("backbones") or {}).items():
            if not _matches(bname, task_backbones) or not _matches(bname, backbone_filter):
                continue
            bspec, _factory = catalog.backbone(bname)
            mode = getattr(bspec, "attention", "required")
            names: list[str | None] = []
            if mode != "none":
                names += [v for v in all_variants
                          if _matches(v, top_patterns) and _matches(v, task_variants) and _matches(v, variant_filter)]
            if mode in ("none", "optional") and data.get("baselines", True) and _matches(BASELINE, variant_filter):
                names.append(None)
            for vname in names:
                vspec = catalog.variant(vname)[0] if vname is not None else None
                reason = _fit_reason(bspec, task_spec, vspec)
                base = {
                    "task": tname,
                    "task_kwargs": dict(entry.get("knobs") or {}),
                    "backbone": bname,
                    "backbone_kwargs": dict(bkwargs or {}),
                    "attention": vname,
                    "attention_kwargs": dict(att_kwargs.get(vname) or {}) if vname else {},
                    "max_steps": budget["max_steps"],
                    "batch_size": budget["batch_size"],
                    "warmup_steps": budget["warmup_steps"],
                    "val_every": budget["val_every"],
                    "trainer": dict(trainer),
                    "disabled_plugins": list(data.get("disabled_plugins") or []),
                    "record_attention": bool(data.get("record_attention", True)),
                    "threads": None,
                    "progress": False,
                    **dict(data.get("training") or {}),
                }
                pairs.append((label, bname, vname or BASELINE, base, list(budget["lrs"]), reason))

    out: list[GridCell] = []
    for label, bname, vlabel, base, _lrs, reason in pairs:
        if reason is not None:
            cell = {**base, "seed": None, "lr": None}
            ident = {"na": True, "task_label": label, **{k: cell[k] for k in
                                                         ("task", "task_kwargs", "backbone", "attention")}}
            out.append(GridCell(_digest(ident), label, bname, vlabel, None, None, cell, "n/a", reason))
    for seed in seeds:
        for label, bname, vlabel, base, lrs, reason in pairs:
            if reason is not None:
                continue
            for lr in lrs:
                cell = {**base, "seed": int(seed), "lr": float(lr)}
                out.append(GridCell(cell_id({**cell, "task_label": label}), label, bname, vlabel, int(seed),
                                    float(lr), cell))
    return out


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)`` with ``0 <= I < N`` (e.g. ``$SLURM_ARRAY_TASK_ID/4``)."""
    try:
        i_str, n_str = text.split("/")
        i, n = int(i_str), int(n_str)
    except ValueError:
        raise ValueError(f"--shard: expected I/N such as 0/4, got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard: need N >= 1 and 0 <= I < N (shards are numbered from 0), got {text!r}")
    return i, n


def shard(cells: list[GridCell], index: int, count: int) -> list[GridCell]:
    """The cells of shard ``index`` of ``count``: decided by each cell's id alone,

    so the split is deterministic, the shards are disjoint and their union is
    the grid, and a cell keeps its shard when the grid grows.
    """
    if count == 1:
        return list(cells)
    return [c for c in cells if int(c.id, 16) % count == index]
