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
  stepped every optimizer step. Gradient clipping is the
  Trainer's (``gradient_clip_val``).
- Metrics (torchmetrics, synced under DDP): token accuracy over scored
  positions and exact-sequence accuracy (every scored position right), for
  ``val``, ``test`` and ``test_long`` (a second test dataloader), and per slice
  (``"test/<slice>/token_acc"``) where batches carry ``"slice"``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric

from attnzoo.cell import WSD_DECAY_FRACTION, Cell, PairDoesNotFit, Resolved, resolve
from attnzoo.errors import AttnzooError
from attnzoo.harness.data import default_test_splits
from attnzoo.tasks import Task

__all__ = ["AttnzooModule", "TrainingDiverged", "PairDoesNotFit", "build_model", "resolve"]


class TrainingDiverged(AttnzooError, FloatingPointError):
    """The training loss became NaN or infinite (``run_cell`` reports status ``"diverged"``)."""

    def __init__(self, step: int, loss: float) -> None:
        self.step = step
        self.loss = loss
        super().__init__(f"training loss became {loss} at step {step}")


def build_task(resolved: Resolved) -> Task:
    """The cell's task object: its knobs (checked by :func:`attnzoo.cell.resolve`) and split sizes."""
    cell = resolved.cell
    task = resolved.task_class(**cell.task_kwargs)
    for key in ("val_size", "test_size"):  # instance attributes shadow the class defaults
        value = getattr(cell, key)
        if value:
            setattr(task, key, int(value))
    return task


def build_model(resolved: Resolved, task: Task) -> nn.Module:
    """The backbone with the cell's variant, from the already resolved factory (kwargs checked once)."""
    cell = resolved.cell
    return resolved.backbone_factory(task, cell.attention, attention_kwargs=dict(cell.attention_kwargs),
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


def _sanitize(name: str) -> str:
    return name.replace(".", "_").replace("/", "__")


class AttnzooModule(L.LightningModule):
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
        self._loss_sum = torch.zeros(())
        self._loss_count = 0
        self.tokens_seen = 0

    # -- model ------------------------------------------------------------
    def forward(self, src: Tensor, tgt: Tensor) -> Any:
        return self.model(src, tgt)

    def _loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor, dict[str, Tensor], Tensor]:
        """-> (mean loss over scored tokens, per-example loss [N], logits, aux, mask [N,T])."""
        src, tgt = batch["src"], batch["tgt"]
        mask = batch.get("tgt_mask")
        if mask is None:
            mask = torch.ones_like(tgt, dtype=torch.bool)
        out = self.model(src, tgt)
        logits = out.logits  # (N, T, C)
        ce = F.cross_entropy(logits.flatten(0, 1).float(), tgt.flatten(), reduction="none").view_as(tgt)  # (N, T)
        ce = ce * mask
        scored = mask.sum(dim=1).clamp_min(1)  # (N,)
        per_example = ce.sum(dim=1) / scored
        loss = ce.sum() / mask.sum().clamp_min(1)
        return loss, per_example, logits, dict(out.aux or {}), mask

    def _reinforce(self, per_example: Tensor, aux: dict[str, Tensor]) -> Tensor:
        """The score-function term for sampled attention (zero when aux has no log_prob)."""
        log_prob = aux["log_prob"]  # (N,)
        reward = -per_example.detach()  # (N,)
        if not bool(self.baseline_ready):
            self.baseline.copy_(reward.mean())
            self.baseline_ready.fill_(True)
        advantage = reward - self.baseline
        term = -(advantage * log_prob).mean()
        if "entropy" in aux and self.cell.entropy_coef:
            term = term - self.cell.entropy_coef * aux["entropy"].mean()
        decay = self.cell.baseline_decay
        self.baseline.mul_(decay).add_((1 - decay) * reward.mean())
        return term

    # -- training ---------------------------------------------------------
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss, per_example, _, aux, _ = self._loss(batch)
        ce = loss
        if "log_prob" in aux:
            loss = loss + self._reinforce(per_example, aux)
        bad = ~torch.isfinite(loss)
        if self.trainer.world_size > 1:
            bad = torch.as_tensor(self.trainer.strategy.reduce_boolean_decision(bool(bad), all=False))
        if bool(bad):
            raise TrainingDiverged(self.global_step, float(loss.detach()))
        self._loss_sum = self._loss_sum.to(ce.device) + ce.detach()
        self._loss_count += 1
        self.tokens_seen += batch["src"].numel() + batch["tgt"].numel()
        self.log("train/loss", ce, prog_bar=True)
        return loss

    def configure_optimizers(self) -> Any:
        hp = self.cell
        decay = [p for p in self.parameters() if p.requires_grad and p.dim() >= 2]
        no_decay = [p for p in self.parameters() if p.requires_grad and p.dim() < 2]
        groups = [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        opt = torch.optim.AdamW([g for g in groups if g["params"]], lr=hp.lr)
        warmup, total, schedule = max(0, int(hp.warmup_steps)), max(1, int(hp.max_steps)), hp.schedule
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, schedule, warmup, total))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}

    # -- evaluation -------------------------------------------------------
    def _update(self, split: str, batch: dict[str, Tensor]) -> None:
        _, _, logits, _, mask = self._loss(batch)
        tgt = batch["tgt"]
        correct = (logits.argmax(dim=-1) == tgt) & mask  # (N, T)
        tokens = mask.sum(dim=1).float()  # (N,)
        token_acc = correct.sum(dim=1).float() / tokens.clamp_min(1)  # (N,)
        exact = (correct | ~mask).all(dim=1).float()  # (N,)
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
        train_loss = None
        if self._loss_count:
            train_loss = float(self._loss_sum) / self._loss_count
        self._loss_sum = torch.zeros(())
        self._loss_count = 0
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
    @torch.no_grad()
    def attention_maps(self, sample: dict[str, Tensor] | None = None) -> dict[str, Any] | None:
        """The backbone's representative attention map for one fixed test example.

        :param sample: a batch to use (default: example 0 of a batch drawn from
            the test distribution with ``seed``).
        :returns: ``{"src": [ids], "tgt": [ids], "weights": [[...] * Tk] * Tq}``
            for sample 0, or None when the backbone records no attention.
        """
        if sample is None:
            g = torch.Generator().manual_seed(int(self.cell.seed) + 4_000_037)
            sample = self.task.generate(1, g)
        src = sample["src"][:1].to(self.device)
        tgt = sample["tgt"][:1].to(self.device)
        was_training = self.model.training
        before = getattr(self.model, "record_attention", False)
        try:
            self.model.eval()
            self.model.record_attention = True
            out = self.model(src, tgt)
        finally:
            self.model.record_attention = before
            self.model.train(was_training)
        if out.attention is None:
            return None
        return {
            "src": src[0].tolist(),
            "tgt": tgt[0].tolist(),
            "weights": out.attention[0].float().cpu().tolist(),
        }
