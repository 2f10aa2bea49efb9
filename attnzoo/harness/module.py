"""The one LightningModule that trains any (task, backbone, attention) triple.

The *system* lives here (loss, estimator, optimiser, metrics); the *model* is a
plain ``nn.Module`` built by the backbone's factory from the backbone registry
(Lightning's style guide: system separate from model).

- Loss: cross-entropy over the scored target positions (``tgt_mask``).
- Hard attention: when the backbone's ``aux`` has ``"log_prob"`` (per-example
  sum over the sampled choices), REINFORCE with a moving-average baseline is
  added (Williams 1992; Mnih et al. 2014; Xu et al. 2015, Sec. 4.1)::

      reward   = -per_example_loss            (detached)
      loss    += -((reward - baseline) * log_prob).mean() - entropy_coef * entropy.mean()
      baseline = decay * baseline + (1 - decay) * reward.mean()

- Optimiser: AdamW (weight decay on matrices only) with linear warmup and the
  cell's schedule (cosine decay to zero, warmup-stable-decay, or constant; :func:`lr_factor`),
  stepped every optimizer step; gradients clipped to norm :data:`GRAD_CLIP` first.
- Steps per call: the module optimises by hand, so one ``training_step`` call can run
  ``cell.call_steps()`` optimizer steps, every update the same, bit for bit, as one step per
  call. That machinery (and what it skips of Lightning's per-step dispatch) is
  :class:`~attnzoo.harness.throughput.FastSteps`, this module's base class.
- Metrics (torchmetrics, synced under DDP): token accuracy over scored
  positions and exact-sequence accuracy (every scored position right), for
  ``val``, ``test`` and ``test_long`` (a second test dataloader), and per slice
  (``"test/<slice>/token_acc"``) where batches carry ``"slice"``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric

from attnzoo.cell import WSD_DECAY_FRACTION, Cell
from attnzoo.errors import PairDoesNotFit
from attnzoo.resolve import Resolved, resolve
from attnzoo.harness.data import default_test_splits
from attnzoo.harness.throughput import FastSteps, TrainingDiverged, move_batch
from attnzoo.tasks import Task

__all__ = ["AttnzooModule", "TrainingDiverged", "PairDoesNotFit", "attention_map", "build_model", "build_optimizer",
           "example_scores", "masked_cross_entropy", "resolve"]


def build_task(resolved: Resolved) -> Task:
    """The cell's task object: its knobs (checked by :func:`attnzoo.resolve.resolve`) and split sizes."""
    cell = resolved.cell
    task = resolved.task_class(**cell.task_kwargs)
    for key in ("val_size", "test_size"):  # instance attributes shadow the class defaults
        value = getattr(cell, key)
        if value:
            setattr(task, key, int(value))
    return task


def build_model(resolved: Resolved, task: Task) -> nn.Module:
    """The backbone with the cell's variant, from the already resolved factory and entry (kwargs checked
    once; the backbone receives the variant's entry, so it looks no name up)."""
    cell = resolved.cell
    return resolved.backbone_factory(task, resolved.attention, attention_kwargs=dict(cell.attention_kwargs),
                                     **dict(cell.backbone_kwargs))


def lr_factor(step: int, schedule: str, warmup: int, total: int) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step`` (0-based).

    Linear warmup over ``warmup`` steps, then ``"cosine"``: ``0.5 (1 + cos(pi p))`` with ``p`` the
    fraction of the remaining steps done; ``"wsd"`` (warmup-stable-decay, Hu et al. 2024, MiniCPM):
    1 until the last :data:`~attnzoo.cell.WSD_DECAY_FRACTION` of the steps, then linear to 0;
    ``"constant"``: 1.
    """
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    if schedule == "wsd":
        decay = max(1, round(WSD_DECAY_FRACTION * total))
        start = max(warmup, total - decay)
        return 1.0 if step < start else max(0.0, (total - step) / max(1, total - start))
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(model: nn.Module, cell: Cell) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW (weight decay on matrices only) and the cell's schedule, stepped once per optimizer step.

    :param model: whose trainable parameters to optimise (the module or its model: same parameters).
    :returns: ``(optimizer, scheduler)``; the learning rate at step ``s`` is ``cell.lr * lr_factor(s, ...)``.
    """
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cell.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    opt = torch.optim.AdamW([g for g in groups if g["params"]], lr=cell.lr)
    warmup, total, schedule = max(0, int(cell.warmup_steps)), max(1, int(cell.max_steps)), cell.schedule
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, schedule, warmup, total))
    return opt, sched


def _sanitize(name: str) -> str:
    return name.replace(".", "_").replace("/", "__")


#: gradient norm clipping before every optimizer step (Pascanu et al. 2013)
GRAD_CLIP = 1.0


class AttnzooModule(FastSteps):
    """Train and evaluate a backbone with an attention variant on a task: one :class:`~attnzoo.cell.Cell`.

    Everything it reads (names, kwargs, learning rate, schedule, estimator
    options) comes from the cell, so ``attnzoo fit``, ``attnzoo bench`` and a
    checkpoint reload all train the same thing::

        AttnzooModule(Cell(task="copy", backbone="seq2seq", attention="additive", lr=3e-3))

    :param cell: the cell (or its JSON mapping; stored as the checkpoint's hyperparameters).
    :param task: an already built task to use instead of building ``cell.task`` (tests, notebooks);
        its spec name must be ``cell.task``.
    :raises CellError: unknown names or kwargs (every mismatch listed).
    :raises PairDoesNotFit: the backbone cannot host the pair (its spec's reason).
    """

    def __init__(self, cell: Cell | Mapping[str, Any], *, task: Task | None = None) -> None:
        super().__init__()
        cell = Cell.from_json(cell)
        resolved = resolve(cell)
        if task is not None and task.spec.name != cell.task:
            raise ValueError(f"task: the built task is {task.spec.name!r} but the cell says {cell.task!r}")
        task_obj = task if task is not None else build_task(resolved)
        self.save_hyperparameters({"cell": cell.to_json()})
        self.cell = cell
        self.task = task_obj
        self.backbone_spec = resolved.backbone_spec
        self.attention_spec = resolved.attention_spec
        self.model = build_model(resolved, task_obj)
        #: test dataloaders in order (dataloader_idx -> split); no test_long for fixed-length models
        self.test_splits: tuple[str, ...] = tuple(
            s for s in default_test_splits(task_obj) if resolved.backbone_spec.fits_split(s) is None
        )
        if cell.train_size is not None:  # score the finite training set too: memorization shows as such
            self.test_splits += ("train",)
        self.main_metric = f"test/{task_obj.spec.metric}"

        self.register_buffer("baseline", torch.zeros(()), persistent=True)
        self.register_buffer("baseline_ready", torch.zeros((), dtype=torch.bool), persistent=True)

        # metric name -> MeanMetric; the ModuleDict moves them with the model and syncs them under DDP.
        names = []
        for split in ("val", *self.test_splits):
            for s in ("", *(f"{sl}/" for sl in task_obj.spec.slices)):
                names += [f"{split}/{s}token_acc", f"{split}/{s}exact_acc"]
        self._metric_names = {_sanitize(n): n for n in names}
        self.metrics = nn.ModuleDict({k: MeanMetric() for k in self._metric_names})

        #: latest computed value of every metric, by public name ("val/exact_acc": 0.93)
        self.results: dict[str, float] = {}
        #: [[step, mean train loss since the last point, val main metric], ...]
        self.curve: list[list[float | int | None]] = []
        # Per-step counters live in a plain dict: assigning module attributes every step goes
        # through nn.Module.__setattr__, and the loss sum stays on the device (no host sync per step).
        self._train = {"loss_sum": None, "loss_count": 0, "tokens": 0}
        #: micro-batches per optimizer step (the Trainer's accumulate_grad_batches, which Lightning
        #: leaves to the module under manual optimization)
        self.accumulate = int(cell.trainer.get("accumulate_grad_batches") or 1)

    @property
    def tokens_seen(self) -> int:
        """Source and target tokens of every training batch so far (this rank)."""
        return self._train["tokens"]

    # -- model ------------------------------------------------------------
    def forward(self, src: Tensor, tgt: Tensor) -> Any:
        return self.model(src, tgt)

    def _loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor, dict[str, Tensor], Tensor]:
        """-> (mean loss over scored tokens, masked token losses [N, T], logits, aux, mask [N, T])."""
        src, tgt = batch["src"], batch["tgt"]
        mask = batch.get("tgt_mask")
        if mask is None:
            mask = torch.ones_like(tgt, dtype=torch.bool)
        out = self.model(src, tgt)
        loss, ce = masked_cross_entropy(out.logits, tgt, mask)
        return loss, ce, out.logits, dict(out.aux or {}), mask

    @staticmethod
    def _per_example(ce: Tensor, mask: Tensor) -> Tensor:
        """Mean loss over each example's scored positions: ce [N, T], mask [N, T] -> [N]."""
        return ce.sum(dim=1) / mask.sum(dim=1).clamp_min(1)

    def _reinforce(self, per_example: Tensor, aux: dict[str, Tensor]) -> Tensor:
        """The score-function term for sampled attention (zero when aux has no log_prob)."""
        log_prob = aux["log_prob"]  # (N,)
        reward = -per_example.detach()  # (N,)
        mean_reward = reward.mean()
        # The first batch starts the baseline at its own mean reward; chosen on the device, so
        # there is no host sync per step (bool(baseline_ready) was one).
        self.baseline.copy_(torch.where(self.baseline_ready, self.baseline, mean_reward))
        self.baseline_ready.fill_(True)
        advantage = reward - self.baseline
        term = -(advantage * log_prob).mean()
        if "entropy" in aux and self.cell.entropy_coef:
            term = term - self.cell.entropy_coef * aux["entropy"].mean()
        decay = self.cell.baseline_decay
        self.baseline.mul_(decay).add_((1 - decay) * mean_reward)
        return term

    # -- training ---------------------------------------------------------
    def _train_loss(self, batch: dict[str, Tensor], step: int) -> Tensor:
        """The training loss of one batch (cross-entropy, plus REINFORCE's term) at optimizer step ``step``,
        with the bookkeeping."""
        loss, token_ce, _, aux, mask = self._loss(batch)
        ce = loss
        if "log_prob" in aux:
            loss = loss + self._reinforce(self._per_example(token_ce, mask), aux)
        self._check_finite(loss, step)
        stats = self._train
        detached = ce.detach()
        stats["loss_sum"] = detached.clone() if stats["loss_sum"] is None else stats["loss_sum"].add_(detached)
        stats["loss_count"] += 1
        stats["tokens"] += batch["src"].numel() + batch["tgt"].numel()
        if self._log_train_loss:
            self._last_ce = ce
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Called by the precision plugin after it unscales the gradients (16-mixed), so the norm is the
        # true one. The optimizer's parameters in its order, as Lightning's clip_gradients takes them
        # (same numbers), without its dispatch, which costs a small model's step a few percent.
        params = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)

    def configure_optimizers(self) -> Any:
        opt, sched = build_optimizer(self, self.cell)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}

    # -- evaluation -------------------------------------------------------
    def _update(self, split: str, batch: dict[str, Tensor]) -> None:
        _, _, logits, _, mask = self._loss(batch)
        token_acc, tokens, exact = example_scores(logits, batch["tgt"], mask)
        self._metric(f"{split}/token_acc").update(token_acc, tokens)
        self._metric(f"{split}/exact_acc").update(exact)
        slices = batch.get("slice")
        if slices is not None:
            for i, name in enumerate(self.task.spec.slices):
                sel = slices == i
                # Always update (possibly with nothing) so every rank calls the same metrics.
                self._metric(f"{split}/{name}/token_acc").update(token_acc[sel], tokens[sel])
                self._metric(f"{split}/{name}/exact_acc").update(exact[sel])

    def _metric(self, name: str) -> MeanMetric:
        return self.metrics[_sanitize(name)]

    def _compute(self, split: str) -> dict[str, float]:
        out = {}
        for key, name in self._metric_names.items():
            if not name.startswith(split + "/"):
                continue
            metric = self.metrics[key]
            if metric.update_count == 0:
                continue
            value = float(metric.compute())  # synced across ranks; 0/0 = NaN when nothing was scored
            metric.reset()
            if math.isnan(value):  # a slice with no examples in this split
                continue
            out[name] = value
        return out

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._update("val", batch)

    def on_validation_epoch_end(self) -> None:
        values = self._compute("val")
        self.results.update(values)
        for name, v in values.items():
            self.log(name, v, prog_bar=name == "val/" + self.task.spec.metric, sync_dist=False)
        if self.trainer.sanity_checking:
            return
        stats = self._train
        train_loss = None
        if stats["loss_count"]:
            train_loss = float(stats["loss_sum"]) / stats["loss_count"]
        stats["loss_sum"], stats["loss_count"] = None, 0
        point = [int(self.global_step), train_loss, values.get("val/" + self.task.spec.metric)]
        if not self.curve or self.curve[-1][0] != point[0]:
            self.curve.append(point)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._update(self.test_splits[dataloader_idx], batch)

    def on_test_epoch_end(self) -> None:
        for split in self.test_splits:
            values = self._compute(split)
            self.results.update(values)
            for name, v in values.items():
                self.log(name, v, sync_dist=False, add_dataloader_idx=False)

    # -- inspection -------------------------------------------------------
    def alignment_diagnostics(self, batch: dict[str, Tensor]) -> dict[str, Any] | None:
        """:func:`alignment_diagnostics` of this module's model on ``batch`` (held-out test examples)."""
        return alignment_diagnostics(self.model, self.task, batch, self.device)

    def attention_maps(self, sample: dict[str, Tensor] | None = None) -> dict[str, Any] | None:
        """The backbone's representative attention map for one fixed test example (:func:`attention_map`)."""
        return attention_map(self.model, self.task, self.cell.seed, self.device, sample)


def alignment_diagnostics(model: nn.Module, task: Task, batch: dict[str, Tensor],
                          device: torch.device) -> dict[str, Any] | None:
    """:func:`attnzoo.diagnostics.diagnose` on ``batch`` (held-out test examples) on ``device``, with the
    global RNG forked so a sampling variant leaves every later draw as it was; ``time_s`` added."""
    import time

    from attnzoo.diagnostics import diagnose

    start = time.perf_counter()
    devices = [device] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        out = diagnose(model, task, move_batch(batch, device), task.spec.metric)
    if out is not None:
        out["time_s"] = round(time.perf_counter() - start, 4)
    return out


def masked_cross_entropy(logits: Tensor, tgt: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """The training loss: mean cross-entropy over the scored positions.

    :param logits: ``[N, T, C]``; :param tgt: ``[N, T]`` class ids; :param mask: ``[N, T]`` bool, True = scored.
    :returns: ``(loss [], masked token losses [N, T])``.
    """
    ce = F.cross_entropy(logits.flatten(0, 1).float(), tgt.flatten(), reduction="none").view_as(tgt)  # (N, T)
    ce = ce * mask
    return ce.sum() / mask.sum().clamp_min(1), ce


def example_scores(logits: Tensor, tgt: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-example scores: logits ``[N, T, C]``, tgt and mask ``[N, T]`` ->
    ``(token accuracy [N], scored tokens [N] (its weight), exact match [N])``, floats."""
    correct = (logits.argmax(dim=-1) == tgt) & mask  # (N, T)
    tokens = mask.sum(dim=1).float()  # (N,)
    token_acc = correct.sum(dim=1).float() / tokens.clamp_min(1)  # (N,)
    exact = (correct | ~mask).all(dim=1).float()  # (N,)
    return token_acc, tokens, exact


@torch.no_grad()
def attention_map(model: nn.Module, task: Task, seed: int, device: torch.device | str,
                  sample: dict[str, Tensor] | None = None) -> dict[str, Any] | None:
    """A backbone's representative attention map for one fixed test example.

    :param sample: a batch to use (default: example 0 of a batch drawn from
        the test distribution with ``seed``).
    :returns: ``{"src": [ids], "tgt": [ids], "weights": [[...] * Tk] * Tq}``
        for sample 0, or None when the backbone records no attention.
    """
    if sample is None:
        g = torch.Generator().manual_seed(int(seed) + 4_000_037)
        sample = task.generate(1, g)
    src = sample["src"][:1].to(device)
    tgt = sample["tgt"][:1].to(device)
    was_training = model.training
    before = getattr(model, "record_attention", False)
    try:
        model.eval()
        model.record_attention = True
        out = model(src, tgt)
    finally:
        model.record_attention = before
        model.train(was_training)
    if out.attention is None:
        return None
    return {
        "src": src[0].tolist(),
        "tgt": tgt[0].tolist(),
        "weights": out.attention[0].float().cpu().tolist(),
    }
