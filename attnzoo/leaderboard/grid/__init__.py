"""Presets (YAML) -> a validated :class:`Preset` -> :class:`GridCell` entries, each holding a :class:`~attnzoo.cell.Cell`.

Two steps, one module each:

- :mod:`~attnzoo.leaderboard.grid.presets`: :func:`load_preset` reads a preset (a built-in name, a path or a
  mapping), applies overrides and checks it against the registries and the real signatures
  (:func:`validate_preset`: one :class:`PresetError` listing every mismatch);
- :mod:`~attnzoo.leaderboard.grid.expansion`: :func:`expand` turns it into cells, one per
  task x backbone x variant x seed x learning rate, plus one ``"n/a"`` entry per pair that does not fit,
  carrying the reason; :func:`shard` splits them by id.

Nothing here imports Lightning; task and backbone registries are plain torch.
"""

from __future__ import annotations

from attnzoo.cell import canonical_json
from attnzoo.resolve import Catalog
from attnzoo.leaderboard.grid.expansion import (BASELINE, FilterError, GridCell, cell_id, check_filters, expand,
                                             parse_shard, shard)
from attnzoo.leaderboard.grid.presets import (PRESET_DIR, TASK_KEYS, TOP_LEVEL_KEYS, TRAINING_KEYS, Budget, Preset,
                                              PresetError, TaskEntry, config_hash, list_presets, load_preset,
                                              preset_path, shipped_dir, validate_preset)

__all__ = [
    "PresetError",
    "FilterError",
    "Preset",
    "TaskEntry",
    "Budget",
    "GridCell",
    "Catalog",
    "PRESET_DIR",
    "TOP_LEVEL_KEYS",
    "TASK_KEYS",
    "TRAINING_KEYS",
    "shipped_dir",
    "preset_path",
    "list_presets",
    "load_preset",
    "validate_preset",
    "expand",
    "check_filters",
    "shard",
    "parse_shard",
    "config_hash",
    "cell_id",
    "canonical_json",
    "BASELINE",
]
