"""The group planner: which of a grid's cells train together as one vectorized model.

A group is a scheduling detail of the executors, not a results format: the planner puts grid cells
that differ only in seed, learning rate or weight decay (:func:`attnzoo.harness.grouped.group_key`)
into :class:`GridGroup` units, an executor runs a unit with :func:`execute_group` in one worker, and
yields one ``(grid cell, Row)`` per member as before; the driver still writes every row itself and
``--resume`` still skips finished cells by id (so a resumed group trains only its missing members).

``--group auto`` (the default) groups on CUDA the backbones that vectorize (:data:`VECTORIZED_BACKBONES`),
and on the CPU only :data:`CPU_GROUPED_BACKBONES` (none: see there for the measurement that decided it).
``--group on`` groups everywhere, ``--group off`` never; ``--group-size N`` caps a group.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from attnzoo.cell import Cell, Row

if TYPE_CHECKING:
    from attnzoo.leaderboard.grid import GridCell

__all__ = ["CPU_GROUPED_BACKBONES", "GROUP_MODES", "VECTORIZED_BACKBONES", "GridGroup", "GroupPolicy",
           "execute_group", "plan"]

GROUP_MODES = ("auto", "on", "off")
#: backbones ``--group auto`` groups on the CPU: none. benchmarks/grouped.py on the 2-core VM (under load,
#: benchmarks/results/grouped-cpu/) measured the Transformer 5-10% cheaper grouped (CPU ratio 0.93-0.95 on MQAR
#: at its 400 steps, 0.90 over four tasks at 100) and the MLP 19% dearer; but vmap's batched matmuls round
#: differently, and on a task at its phase transition that moves a seed's outcome (MQAR general at 400
#: steps: one member's test accuracy differs by 0.053 from its one-cell run). The CPU default keeps the
#: committed reference numbers (and --against comparisons) exact; ``--group on`` takes the 7-10%.
CPU_GROUPED_BACKBONES: frozenset[str] = frozenset()
#: backbones whose models vectorize (tests/test_grouped.py names the pairs): ``auto`` groups these on CUDA.
#: seq2seq, pointer and ntm are built on GRU/LSTM layers, which have no batching rule in torch.func: a
#: group of them would only fall back and run its members one after another in one worker, where
#: ungrouped they spread over the workers
VECTORIZED_BACKBONES = frozenset({"transformer", "mlp", "bottleneck"})
#: the cap of ``--group-size`` when none is given (a default-preset task has 3 seeds x 1-3 lrs)
DEFAULT_GROUP_SIZE = 16


@dataclass(frozen=True)
class GroupPolicy:
    """``mode`` (:data:`GROUP_MODES`) and ``size`` (most members per group; None: :data:`DEFAULT_GROUP_SIZE`)."""

    mode: str = "auto"
    size: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in GROUP_MODES:
            raise ValueError(f"group: expected one of {', '.join(GROUP_MODES)}, got {self.mode!r}")
        if self.size is not None and (not isinstance(self.size, int) or self.size < 1):
            raise ValueError(f"group size: expected a positive integer, got {self.size!r}")

    def groups(self, cell: Cell) -> bool:
        """Whether ``cell`` may share a group (its backbone and device under this mode)."""
        from attnzoo.harness.grouped import group_problem

        if self.mode == "off" or (self.size or DEFAULT_GROUP_SIZE) < 2 or group_problem(cell) is not None:
            return False
        if self.mode == "on":
            return True
        if cell.on_cpu():
            return cell.backbone in CPU_GROUPED_BACKBONES
        return cell.backbone in VECTORIZED_BACKBONES

    def plan(self, cells: Sequence[GridCell]) -> list[GridCell | GridGroup]:
        """:func:`plan` under this policy (what :meth:`attnzoo.leaderboard.backend.Executor.units` calls)."""
        return plan(cells, self)


@dataclass
class GridGroup:
    """Grid cells that train as one group (each keeps its own id, row and resume entry)."""

    members: list[GridCell]

    @property
    def id(self) -> str:
        return "+".join(gc.id for gc in self.members)

    def label(self) -> str:
        first = self.members[0]
        return f"group of {len(self.members)}: {first.task} / {first.backbone} / {first.variant}"


def plan(cells: Sequence[GridCell], policy: GroupPolicy | None) -> list[GridCell | GridGroup]:
    """The units to run, in the order of each unit's first cell: a :class:`GridGroup` per set of
    cells sharing a group key (at most ``policy.size`` each), the rest one grid cell each.

    Nothing is grouped without a policy, for a runner other than the harness's, or under ``off``.
    """
    from attnzoo.harness.grouped import group_key

    if policy is None or policy.mode == "off":
        return list(cells)
    cap = policy.size or DEFAULT_GROUP_SIZE
    units: list[Any] = []
    open_groups: dict[str, GridGroup] = {}
    for gc in cells:
        if not gc.runnable or not policy.groups(gc.cell):
            units.append(gc)
            continue
        key = group_key(gc.cell)
        group = open_groups.get(key)
        if group is None or len(group.members) >= cap:
            group = open_groups[key] = GridGroup([])
            units.append(group)
        group.members.append(gc)
    # a group of one is just a cell
    return [u.members[0] if isinstance(u, GridGroup) and len(u.members) == 1 else u for u in units]


def execute_group(cells: list[Cell]) -> list[Row]:
    """Run one group where we are (a worker); each row gets the worker's provenance with its share
    of the group's wall and CPU time (so summed ``cpu_s`` stays the work done) and ``group_size``.
    Never raises: a crash of the group trainer gives each member a failed row."""
    from attnzoo.leaderboard.backend import worker_provenance

    t0, c0 = time.perf_counter(), time.process_time()
    try:
        from attnzoo.harness.grouped import run_group

        rows = run_group(cells)
    except Exception as exc:  # run_group promises not to raise
        rows = [Row.empty("failed", f"{type(exc).__name__}: {exc}") for _ in cells]
    n = len(cells)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    out = []
    for cell, row in zip(cells, rows):
        prov = worker_provenance(row, cell, wall / n, cpu / n)
        prov.update(group_size=n, group_wall_s=round(wall, 3))
        out.append(row.replace(provenance=prov))
    return out
