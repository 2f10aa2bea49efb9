"""The task contract: a seeded generator of (source, target) batches.

Tasks are plain Python + torch (no Lightning), so they can be listed, tested and
solved without the harness; :class:`attnzoo.harness.data.TaskDataModule` wraps
any task as a LightningDataModule.

Every task produces batches as a dict of tensors::

    src       long [N, S]   input token ids in [0, vocab_size)
    tgt       long [N, T]   target ids in [0, num_classes) (tokens, or positions into src
                            for pointer tasks)
    tgt_mask  bool [N, T]   (optional) which target positions are scored; default all
    slice     long [N]      (optional) per-example slice id, names in spec.slices

Token id 0 is padding and never a target; tasks choose the rest of their vocab.
Training batches are drawn fresh every step from a seeded ``torch.Generator``
(the task is infinite); validation/test sets are fixed by their own seeds.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from attnzoo.errors import SpecError
from attnzoo.spec import validate_name

__all__ = [
    "TaskSpec", "Task", "PAD", "Contrast", "CONTRAST_KINDS", "DEFAULT_SOLVE_THRESHOLD", "NO_ATTENTION",
    "attention_beats_baseline", "variant_beats", "solves", "fails_long", "degrades_with_length", "depth_helps",
    "gold_at", "gold_in_order",
]  # fmt: skip

PAD = 0

#: a seed "solved" a task when its main test metric reaches this (TaskSpec.solve_threshold's default,
#: and the report's fallback for rows of a task it cannot look up, e.g. a plugin's that is not installed)
DEFAULT_SOLVE_THRESHOLD = 0.9

#: the variant name of backbones run without attention (the leaderboard's baselines; = leaderboard.grid.BASELINE)
NO_ATTENTION = "none"

#: kinds of :class:`Contrast` that :mod:`attnzoo.leaderboard.report.findings` checks, with the parameters each takes
CONTRAST_KINDS: dict[str, tuple[str, ...]] = {
    # the best attention variant beats the best no-attention baseline by ``margin`` on ``split``
    "attention_beats_baseline": ("split", "backbone", "baseline_backbone", "margin"),
    # variant ``a`` (on ``backbone``) beats ``b`` (on ``b_backbone``, default the same) by ``margin``;
    # a negative margin reads "at least as good as, within -margin"
    "variant_beats": ("a", "b", "backbone", "b_backbone", "split", "metric", "margin"),
    # the median seed of ``variant`` reaches the task's solve threshold on ``split``
    "solves": ("variant", "backbone", "split"),
    # ``variant`` does not reach the threshold on test_long (or cannot run at another length at all)
    "fails_long": ("variant", "backbone"),
    # ``variant`` loses at least ``margin`` from test to test_long and ends below the best attention
    # variant on the same backbone there; ``metric`` overrides the main metric (e.g. token_acc, as BLEU
    # gives partial credit in Bahdanau et al.'s Fig. 2)
    "degrades_with_length": ("variant", "backbone", "metric", "margin"),
    # the best attention variant with ``deeper`` layers beats the best with ``shallower`` by ``margin``
    "depth_helps": ("backbone", "deeper", "shallower", "margin"),
}
_SPLITS = ("test", "test_long")


@dataclass(frozen=True)
class Contrast:
    """One claim a task exists to show, checked against the results by the leaderboard's findings.

    Build one with the helpers below (:func:`attention_beats_baseline`, :func:`variant_beats`,
    :func:`solves`, :func:`fails_long`, :func:`degrades_with_length`, :func:`depth_helps`), which
    name their parameters; the report prints each claim with its numbers and says whether the data
    support it.

    :param kind: one of :data:`CONTRAST_KINDS`.
    :param params: the kind's parameters as sorted ``(name, value)`` pairs (hashable, so a
        :class:`TaskSpec` stays hashable); read them with :meth:`get`.
    :param why: where the expectation comes from (a paper and the result in it).
    """

    kind: str
    params: tuple[tuple[str, Any], ...] = ()
    why: str = ""

    def __post_init__(self) -> None:
        if self.kind not in CONTRAST_KINDS:
            raise SpecError(f"Contrast.kind: expected one of {', '.join(CONTRAST_KINDS)}, got {self.kind!r}")
        params = dict(self.params.items() if isinstance(self.params, Mapping) else self.params)
        unknown = sorted(set(params) - set(CONTRAST_KINDS[self.kind]))
        if unknown:
            raise SpecError(f"Contrast({self.kind!r}): unknown parameter(s) {', '.join(unknown)}; "
                            f"it takes {', '.join(CONTRAST_KINDS[self.kind])}")
        if params.get("split", "test") not in _SPLITS:
            raise SpecError(f"Contrast({self.kind!r}).split: expected one of {_SPLITS}, got {params['split']!r}")
        margin = params.get("margin", 0.0)
        if not isinstance(margin, (int, float)) or not math.isfinite(margin):
            raise SpecError(f"Contrast({self.kind!r}).margin: expected a finite number, got {margin!r}")
        object.__setattr__(self, "params", tuple(sorted(params.items())))

    def get(self, name: str, default: Any = None) -> Any:
        """The parameter ``name``, or ``default`` when the contrast does not set it."""
        return dict(self.params).get(name, default)


def _contrast(kind: str, why: str, **params: Any) -> Contrast:
    return Contrast(kind, tuple((k, v) for k, v in params.items() if v is not None), why)


def attention_beats_baseline(*, split: str = "test", backbone: str | None = None,
                             baseline_backbone: str | None = None, margin: float = 0.1,
                             why: str = "") -> Contrast:
    """The best attention variant (on ``backbone``, default any) beats the best no-attention
    baseline (on ``baseline_backbone``, default any) by at least ``margin`` in median."""
    return _contrast("attention_beats_baseline", why, split=split, backbone=backbone,
                     baseline_backbone=baseline_backbone, margin=margin)


def variant_beats(a: str, b: str, *, backbone: str | None = None, b_backbone: str | None = None,
                  split: str = "test", metric: str | None = None, margin: float = 0.0, why: str = "") -> Contrast:
    """Variant ``a``'s median is at least ``b``'s plus ``margin`` (negative: "at least as good, within");
    ``metric`` (e.g. ``"token_acc"``) overrides the task's main metric."""
    return _contrast("variant_beats", why, a=a, b=b, backbone=backbone, b_backbone=b_backbone, split=split,
                     metric=metric, margin=margin)


def solves(variant: str, *, backbone: str | None = None, split: str = "test", why: str = "") -> Contrast:
    """The median seed of ``variant`` reaches the task's ``solve_threshold`` on ``split``."""
    return _contrast("solves", why, variant=variant, backbone=backbone, split=split)


def fails_long(variant: str, *, backbone: str | None = None, why: str = "") -> Contrast:
    """``variant`` stays below the solve threshold on ``test_long`` (or cannot run it at all)."""
    return _contrast("fails_long", why, variant=variant, backbone=backbone)


def degrades_with_length(variant: str, *, backbone: str, metric: str | None = None, margin: float = 0.1,
                         why: str = "") -> Contrast:
    """``variant`` loses at least ``margin`` from test to test_long and ends below the best attention
    variant on ``backbone`` there (``metric``: e.g. ``"token_acc"``; default the task's)."""
    return _contrast("degrades_with_length", why, variant=variant, backbone=backbone, metric=metric, margin=margin)


def depth_helps(*, backbone: str = "transformer", deeper: int = 2, shallower: int = 1, margin: float = 0.1,
                why: str = "") -> Contrast:
    """The best attention variant at ``num_layers=deeper`` beats the best at ``shallower`` by ``margin``."""
    return _contrast("depth_helps", why, backbone=backbone, deeper=deeper, shallower=shallower, margin=margin)


@dataclass(frozen=True)
class TaskSpec:
    """What the zoo knows about a task without building it.

    :param name: registry name (public API), e.g. ``"copy"``.
    :param summary: one line.
    :param paper: where the task comes from.
    :param metric: the leaderboard's main metric: ``"exact_acc"`` (whole target
        right) or ``"token_acc"`` (per scored position).
    :param output: ``"tokens"`` (classes are vocabulary ids) or ``"pointers"``
        (classes are positions in ``src``).
    :param length_generalization: has a ``test_long`` split longer than training.
    :param content_addressed: the answer needs lookup by content (recall, induction);
        a fixed-window MLP is expected to fail here.
    :param slices: names of per-example slices (``batch["slice"]`` indexes them).
    :param solve_threshold: a seed *solved* the task when its main test metric reaches this; the
        leaderboard reports "k/n solved" beside the median. Say in the task why if it is not
        :data:`DEFAULT_SOLVE_THRESHOLD`.
    :param contrasts: the claims the task exists to show (:class:`Contrast`), checked against the
        results and printed, supported or not, in the report's ``findings.md``.
    :param suite: the benchmark suite the task belongs to (``"mad"`` for the six MAD tasks), or ``""``.
        Every suite in the results gets a score table of its own, computed as MAD's
        (:mod:`attnzoo.leaderboard.report.mad`); its columns are the suite's tasks in registration order.
        Metadata only: it enters no cell id or config hash.
    """

    name: str
    summary: str
    paper: str = ""
    url: str = ""
    metric: str = "exact_acc"
    output: str = "tokens"
    length_generalization: bool = False
    content_addressed: bool = False
    #: ``tgt`` is aligned with ``src`` (T == S: position t of the input is where tgt_t is answered,
    #: as a language model is scored), so a Transformer reads its answers in place (``readout="aligned"``)
    aligned: bool = False
    slices: tuple[str, ...] = ()
    solve_threshold: float = DEFAULT_SOLVE_THRESHOLD
    contrasts: tuple[Contrast, ...] = ()
    suite: str = ""

    def __post_init__(self) -> None:
        validate_name(self.name, "TaskSpec.name")
        if self.metric not in ("exact_acc", "token_acc"):
            raise SpecError(f"TaskSpec.metric must be 'exact_acc' or 'token_acc', got {self.metric!r}")
        if self.output not in ("tokens", "pointers"):
            raise SpecError(f"TaskSpec.output must be 'tokens' or 'pointers', got {self.output!r}")
        object.__setattr__(self, "slices", tuple(self.slices))
        t = self.solve_threshold
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 < t <= 1.0:
            raise SpecError(f"TaskSpec.solve_threshold: expected a number in (0, 1], got {t!r}")
        object.__setattr__(self, "contrasts", tuple(self.contrasts))
        bad = [c for c in self.contrasts if not isinstance(c, Contrast)]
        if bad:
            raise SpecError(f"TaskSpec.contrasts: expected Contrast objects (attnzoo.tasks.base), got {bad[0]!r}")
        if not isinstance(self.suite, str):
            raise SpecError(f"TaskSpec.suite: expected a suite name (str, \"\" for none), got {self.suite!r}")
        if self.suite:
            validate_name(self.suite, "TaskSpec.suite")


class Task:
    """Base class of every task. Subclasses set ``spec`` and implement :meth:`generate`.

    Subclass ``__init__`` takes the task's knobs as typed keyword arguments with
    defaults that train in seconds to a minute on a CPU, calls
    ``super().__init__()``, and sets:

    - ``vocab_size``: ids in ``src`` lie in ``[0, vocab_size)``;
    - ``num_classes``: ids in ``tgt`` lie in ``[0, num_classes)``;
    - ``src_len`` / ``tgt_len``: S and T of training batches;
    - ``long_src_len`` / ``long_tgt_len``: S and T of the ``test_long`` split
      (tasks with ``spec.length_generalization``).
    """

    spec: ClassVar[TaskSpec]

    vocab_size: int
    num_classes: int
    src_len: int
    tgt_len: int
    long_src_len: int | None = None
    long_tgt_len: int | None = None

    #: sizes of the fixed evaluation splits
    val_size: int = 512
    test_size: int = 1024

    def __init__(self) -> None:
        pass

    # -- to implement ------------------------------------------------------
    def generate(self, n: int, generator: torch.Generator, *, long: bool = False) -> dict[str, Tensor]:
        """Draw ``n`` examples. ``long=True`` draws the length-generalization split.

        Must be vectorised (no Python loop per example where avoidable): it
        runs every training step.
        """
        raise NotImplementedError

    def solve(self, src: list[int]) -> list[int]:
        """Plain-Python reference answer for one example's ``src`` (tests check ``generate`` with it):
        the whole ``tgt`` row, with PAD at positions ``tgt_mask`` leaves unscored."""
        raise NotImplementedError

    def chance(self) -> float:
        """Expected main metric of a model that cannot look anything up in the input
        (e.g. 1/num_kv_pairs for recall, not 1/vocab). Reported beside the metric."""
        raise NotImplementedError

    def gold_alignment(self, batch: Mapping[str, Tensor]) -> Tensor | None:
        """Which source positions each scored target position should read: bool ``[N, T, S]``, or None
        when the task has no gold alignment (the default; e.g. ListOps, whose answer depends on every token).

        Positions index ``src`` as the batch holds it, whatever the backbone: the encoder states of the
        seq2seq and pointer backbones, the source block ``[0, S)`` of the Transformer's one sequence (the
        key columns its recorded maps keep), the source steps of the NTM's controller. Row ``(n, t)`` is
        all False where ``tgt_mask`` leaves ``t`` unscored or no source position holds what ``tgt_t``
        needs (the separators of an ISO date). Reading the token at a gold position answers the task
        (tests/test_alignment.py checks it per task): the answer itself, or for a pointer task the
        pointed-at position, or for date-format the field being written.

        :param batch: a batch of :meth:`generate` (``src`` ``[N, S]``, ``tgt`` ``[N, T]``, ``tgt_mask``).
        """
        return None

    def token_names(self) -> list[str]:
        """Display names of the source ids ``[0, vocab_size)`` (plots and exports); id 0 is ``"·"`` (PAD)."""
        return ["·", *map(str, range(1, self.vocab_size))]

    def target_names(self) -> list[str]:
        """Display names of the target classes ``[0, num_classes)``: positions ``"@i"`` for a pointer task,
        else the source names where the ids coincide."""
        if self.spec.output == "pointers":
            return [f"@{i}" for i in range(self.num_classes)]
        names = self.token_names()
        return [names[i] if i < len(names) else str(i) for i in range(self.num_classes)]

    def decode(self, ids: list[int] | Tensor, *, target: bool = False) -> list[str]:
        """``ids`` (one example's ``src``, or ``tgt`` with ``target=True``) as display names."""
        names = self.target_names() if target else self.token_names()
        ids = ids.tolist() if isinstance(ids, Tensor) else list(ids)
        return [names[i] if 0 <= i < len(names) else str(i) for i in ids]

    # -- provided ----------------------------------------------------------
    def knobs(self) -> dict[str, Any]:
        """The constructor's keyword arguments and their current values."""
        out = {}
        for name in inspect.signature(type(self).__init__).parameters:
            if name != "self" and hasattr(self, name):
                out[name] = getattr(self, name)
        return out

    def fixed_split(self, split: str, seed: int) -> dict[str, Tensor]:
        """A fixed evaluation set: ``"val"``, ``"test"`` or ``"test_long"``, from its own seed."""
        offsets = {"val": 1_000_003, "test": 2_000_003, "test_long": 3_000_017}
        if split not in offsets:
            raise ValueError(f"split: expected one of {', '.join(offsets)}, got {split!r}")
        if split == "test_long" and not self.spec.length_generalization:
            raise ValueError(f"split: task {self.spec.name!r} has no 'test_long' split")
        g = torch.Generator().manual_seed(seed + offsets[split])
        n = self.val_size if split == "val" else self.test_size
        return self.generate(n, g, long=split == "test_long")

    def check_batch(self, batch: dict[str, Tensor], *, long: bool = False) -> None:
        """Raise ``ValueError`` naming what is wrong when ``batch`` breaks the batch contract
        (keys, dtypes, shapes, id ranges, PAD at a scored target). For plugin authors' tests."""
        problems = []
        src, tgt = batch.get("src"), batch.get("tgt")
        if not isinstance(src, Tensor) or not isinstance(tgt, Tensor):
            raise ValueError(f"batch must hold tensors 'src' and 'tgt', got keys {sorted(batch)}")
        s, t = (self.long_src_len, self.long_tgt_len) if long else (self.src_len, self.tgt_len)
        n = src.shape[0]
        for key, x, dtype, shape in (
            ("src", src, torch.long, (n, s)),
            ("tgt", tgt, torch.long, (n, t)),
            ("tgt_mask", batch.get("tgt_mask"), torch.bool, (n, t)),
            ("slice", batch.get("slice"), torch.long, (n,)),
        ):
            if x is None:
                continue
            if x.dtype != dtype or tuple(x.shape) != shape:
                problems.append(f"{key}: expected {dtype} {list(shape)}, got {x.dtype} {list(x.shape)}")
        if problems:
            raise ValueError("; ".join(problems))
        mask = batch.get("tgt_mask")
        scored = tgt if mask is None else tgt[mask]
        if src.numel() and not (0 <= int(src.min()) and int(src.max()) < self.vocab_size):
            problems.append(f"src ids must lie in [0, vocab_size={self.vocab_size})")
        if tgt.numel() and not (0 <= int(tgt.min()) and int(tgt.max()) < self.num_classes):
            problems.append(f"tgt ids must lie in [0, num_classes={self.num_classes})")
        if self.spec.output == "pointers" and tgt.numel() and int(tgt.max()) >= s:
            problems.append(f"pointer targets must be positions in src, below S={s}")
        if bool((scored == PAD).any()):
            problems.append("a scored target is PAD (0)")
        if "slice" in batch and batch["slice"].numel():
            sl = batch["slice"]
            if int(sl.min()) < 0 or int(sl.max()) >= len(self.spec.slices):
                problems.append(f"slice ids must index spec.slices={self.spec.slices}")
        if problems:
            raise ValueError("; ".join(problems))

    def __repr__(self) -> str:
        knobs = ", ".join(f"{k}={v!r}" for k, v in self.knobs().items())
        return f"{type(self).__name__}({knobs})"


def gold_at(positions: Tensor, src_len: int, scored: Tensor | None = None) -> Tensor:
    """One gold position per target position as a :meth:`Task.gold_alignment` tensor.

    :param positions: long ``[N, T]``, the source position each target position reads; ``-1`` = none.
    :param src_len: S.
    :param scored: bool ``[N, T]`` (``tgt_mask``); unscored rows stay all False.
    :returns: bool ``[N, T, S]``.
    """
    has = positions >= 0  # (N, T)
    if scored is not None:
        has = has & scored
    gold = torch.zeros(*positions.shape, src_len, dtype=torch.bool, device=positions.device)
    gold.scatter_(2, positions.clamp_min(0)[..., None], has[..., None])
    return gold


def gold_in_order(content: Tensor, count: int) -> Tensor:
    """long ``[N, count]``: the positions of the first ``count`` True entries of ``content`` ``[N, S]``, in
    order (selective copying's alignment: output j reads the j-th content token); ``-1`` past the last."""
    n, s = content.shape
    order = torch.sort((~content).to(torch.uint8), dim=1, stable=True).indices[:, :count]  # (N, count)
    found = content.gather(1, order)
    return torch.where(found, order, torch.full_like(order, -1))
