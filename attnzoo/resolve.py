"""Resolve once: a :class:`~attnzoo.cell.Cell`'s names -> the registry entries that build it.

:func:`resolve` looks every name of a cell up once (task, backbone, variant), checks
every kwarg against the real signatures (one :class:`~attnzoo.cell.CellError` listing
every mismatch) and decides whether the pair fits (one error type,
:class:`~attnzoo.errors.PairDoesNotFit`, carrying the backbone spec's reason). What
it returns, a :class:`Resolved`, carries the entries themselves: the harness hands
the backbone the variant's :class:`~attnzoo.registry.AttentionEntry`, not its name,
so nothing below this step looks a name up again (a 2-layer Transformer cell looks
its variant up once, not five times)::

    resolved = resolve(Cell(task="copy", backbone="transformer", attention="scaled-dot"))
    model = resolved.backbone_factory(task, resolved.attention, **cell.backbone_kwargs)

:class:`Catalog` is the read access to the registries this step (and the preset
loader) uses; tests pass a subclass with fakes. This module imports neither torch
nor Lightning at import time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from attnzoo.cell import Cell, CellError
from attnzoo.errors import UnknownNameError, fit_reason, pair_does_not_fit

__all__ = ["Catalog", "Resolved", "backbone_kwarg_problems", "resolve"]


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
        """``(BackboneSpec, factory)``: the backbone registry's entry."""
        from attnzoo.backbones import get_backbone

        return get_backbone(name)

    def variant_names(self) -> list[str]:
        from attnzoo.registry import list_attention

        return list_attention()

    def attention_entry(self, name: str) -> Any:
        """The variant's :class:`~attnzoo.registry.AttentionEntry` (spec, factory, source)."""
        from attnzoo.registry import get_entry

        return get_entry(name)

    def variant(self, name: str) -> tuple[Any, Any]:
        """``(AttentionSpec, factory)``."""
        entry = self.attention_entry(name)
        return entry.spec, entry.factory


@dataclass(frozen=True)
class Resolved:
    """A cell with every name looked up and every kwarg checked (see :func:`resolve`).

    :ivar cell: the cell itself.
    :ivar task_class: the registered task class (``task_class.spec`` is its spec).
    :ivar backbone_spec, backbone_factory: the backbone registry's entry.
    :ivar attention: the variant's :class:`~attnzoo.registry.AttentionEntry`; None for a baseline.
    """

    cell: Cell
    task_class: Any
    backbone_spec: Any
    backbone_factory: Callable[..., Any]
    attention: Any | None

    @property
    def task_spec(self) -> Any:
        return self.task_class.spec

    @property
    def attention_spec(self) -> Any | None:
        return None if self.attention is None else self.attention.spec

    @property
    def attention_factory(self) -> Callable[..., Any] | None:
        return None if self.attention is None else self.attention.factory


#: arguments the harness passes itself, not the user's to give
_BACKBONE_SKIP = ("task", "attention", "attention_kwargs")


def backbone_kwarg_problems(where: str, factory: Callable[..., Any], kwargs: Mapping[str, Any]) -> list[str]:
    """Unknown kwargs of a backbone factory; the options every backbone is given
    (:data:`attnzoo.backbones.base.COMMON_OPTIONS`: ``d_model``, ``num_layers``, ``num_heads``) always pass."""
    from attnzoo.backbones.base import COMMON_OPTIONS
    from attnzoo.registry import accepted_kwargs, kwarg_problems

    accepted = accepted_kwargs(factory)
    if accepted is None:
        return []
    accepted = {**{k: None for k in COMMON_OPTIONS}, **accepted}
    return kwarg_problems(where, accepted, kwargs, skip=_BACKBONE_SKIP)


def _lookup(catalog: Catalog, cell: Cell, problems: list[str]) -> tuple[Any, Any, Any]:
    """``(task_class, (backbone_spec, factory), attention entry)``, None where a name is unknown (noted)."""
    found: list[Any] = []
    for name, look in ((cell.task, catalog.task_class), (cell.backbone, catalog.backbone),
                       (cell.attention, catalog.attention_entry)):
        try:
            found.append(None if name is None else look(name))
        except UnknownNameError as exc:
            problems.append(str(exc))
            found.append(None)
    return found[0], found[1], found[2]


def resolve(cell: Cell, catalog: Catalog | None = None) -> Resolved:
    """Look the cell's names up and check it, all problems at once.

    :raises CellError: unknown names (with close matches) and unknown kwargs (listing the accepted ones).
    :raises PairDoesNotFit: the backbone cannot host (task, attention); the message is its spec's reason.
    """
    from attnzoo.registry import accepted_kwargs, kwarg_problems

    catalog = catalog or Catalog()
    problems: list[str] = []
    task_class, backbone, entry = _lookup(catalog, cell, problems)
    if task_class is not None:
        problems += kwarg_problems(f"task_kwargs (task {cell.task!r})", accepted_kwargs(task_class),
                                   cell.task_kwargs)
    if backbone is not None:
        problems += backbone_kwarg_problems(f"backbone_kwargs (backbone {cell.backbone!r})", backbone[1],
                                            cell.backbone_kwargs)
    if entry is not None:
        problems += kwarg_problems(f"attention_kwargs (variant {cell.attention!r})", accepted_kwargs(entry.factory),
                                   cell.attention_kwargs, skip=("need_weights",))
    if problems:
        raise CellError(f"cell {cell.task} / {cell.backbone} / {cell.variant}", problems)
    reason = fit_reason(backbone[0], task_class.spec, None if entry is None else entry.spec)
    if reason is not None:
        raise pair_does_not_fit(cell.backbone, cell.task, cell.attention, reason)
    return Resolved(cell, task_class, backbone[0], backbone[1], entry)
