"""The training-step machinery of :class:`~attnzoo.harness.module.AttnzooModule`: what keeps
Lightning's per-step cost off a small model's step, without changing a single update.

- **Steps per call.** The module optimises by hand (Lightning's manual optimization), so one
  ``training_step`` call can run ``cell.call_steps()`` optimizer steps on as many consecutive
  batches of the stream. Lightning's loop costs about 0.3 ms per call on a CPU, over 10% of a
  small model's step. Each step still goes through ``manual_backward`` and the Lightning
  optimizer (precision plugins, loss scaling and DDP work as before), in automatic
  optimization's order (forward, zero_grad, backward, clip, step, schedule), so every update is
  the same, bit for bit, for any number of steps per call.
- **Direct calls** (:func:`dispatch_is_empty`): where Lightning's backward and optimizer step would
  call nothing but ``loss.backward()`` and ``optimizer.step()``, the module calls those itself.
- **A late finiteness check**: on an accelerator a NaN/inf loss is noticed a step late (:class:`_Pending`),
  so the host does not wait for the device every step; on the CPU, and under DDP, at once.
- **Flat batches** (dicts of tensors) move to the device without Lightning's generic collection walk.

It reaches into Lightning internals (the optimizer wrapper's step callbacks, the precision plugin's
type, ``_current_fx_name``); each place says so and falls back to Lightning's own path where a
Lightning built differently would not match.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from torch import Tensor

from attnzoo.errors import AttnzooError

__all__ = ["FastSteps", "TrainingDiverged", "dispatch_is_empty", "move_batch"]


class TrainingDiverged(AttnzooError, FloatingPointError):
    """The training loss became NaN or infinite (``run_cell`` reports status ``"diverged"``)."""

    def __init__(self, step: int, loss: float) -> None:
        self.step = step
        self.loss = loss
        super().__init__(f"training loss became {loss} at step {step}")


#: attributes set on the module many times a step that are never parameters, buffers or submodules:
#: Lightning's ``_current_fx_name`` (set around every hook call, ~50 times a step). They skip
#: ``nn.Module.__setattr__``'s checks, as Lightning's own ``_ResultMetric`` does.
PLAIN_ATTRIBUTES = frozenset({"_current_fx_name"})
#: devices where ``Tensor.to(..., non_blocking=True)`` is not asynchronous (as Lightning's batch_to)
_BLOCKING_DEVICE_TYPES = ("cpu", "mps")


_BACKWARD_HOOKS = ("on_before_backward", "on_after_backward")
_STEP_HOOKS = ("on_before_optimizer_step",)


def dispatch_is_empty(module: L.LightningModule, trainer: L.Trainer, optimizer: Any) -> bool:
    """Whether Lightning's backward and optimizer step would do nothing but ``loss.backward()``, the
    module's ``on_before_optimizer_step`` (the clipping) and ``optimizer.step()``: one device, a
    precision plugin that does not scale the loss, no callback hook on either, no module hook on the
    backward. Then the module makes those calls itself, between the step-progress callbacks Lightning's
    manual loop gives the optimizer (so ``global_step`` counts as before); on a small model's CPU step
    the dispatch it skips is about 4%.
    """
    from lightning.pytorch.plugins.precision import MixedPrecision, Precision
    from lightning.pytorch.strategies import SingleDeviceStrategy

    precision = trainer.precision_plugin
    plain = type(precision) is Precision or (type(precision) is MixedPrecision and precision.scaler is None)
    if type(trainer.strategy) is not SingleDeviceStrategy or not plain:
        return False
    if not (callable(getattr(optimizer, "_on_before_step", None)) and callable(getattr(optimizer, "_on_after_step", None))
            and hasattr(optimizer, "optimizer")):
        return False  # a Lightning whose optimizer wrapper is built differently: keep its own path
    if any(getattr(type(module), h) is not getattr(L.LightningModule, h) for h in (*_BACKWARD_HOOKS, "backward")):
        return False
    return not any(getattr(type(cb), h) is not getattr(L.Callback, h) for cb in trainer.callbacks
                   for h in (*_BACKWARD_HOOKS, *_STEP_HOOKS))


def is_flat(batch: Any) -> bool:
    return type(batch) is dict and all(isinstance(v, Tensor) for v in batch.values())


def move_batch(batch: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    if all(v.device == device for v in batch.values()):
        return batch
    if device.type in _BLOCKING_DEVICE_TYPES:
        return {k: v.to(device) for k, v in batch.items()}
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


class _Pending:
    """A finiteness flag of a training loss, read one step later so the host does not wait for the device.

    ``flag`` is a host copy (pinned, written asynchronously) of ``~isfinite(loss)``; ``event``
    marks when that copy is done.
    """

    __slots__ = ("step", "flag", "loss", "event")

    def __init__(self, step: int, bad: Tensor, loss: Tensor) -> None:
        self.step = step
        self.loss = loss
        self.event = None
        if bad.device.type == "cuda":
            self.flag = torch.empty((), dtype=torch.bool, pin_memory=True)
            self.flag.copy_(bad, non_blocking=True)
            self.event = torch.cuda.Event()
            self.event.record()
        else:
            self.flag = bad

    def check(self) -> None:
        """:raises TrainingDiverged: the loss of ``step`` was not finite."""
        if self.event is not None:
            self.event.synchronize()
        if bool(self.flag):
            raise TrainingDiverged(self.step, float(self.loss))


class FastSteps(L.LightningModule):
    """A LightningModule base whose ``training_step`` runs several optimizer steps per call (module docstring).

    A subclass provides ``_train_loss(batch, step) -> Tensor`` (one batch's training loss at optimizer
    step ``step``; it calls :meth:`_check_finite` on it and stores the logged value in ``_last_ce``),
    sets ``accumulate`` (micro-batches per optimizer step) and clips in ``on_before_optimizer_step``.
    """

    def __init__(self) -> None:
        super().__init__()
        #: steps a non-finite loss may go unnoticed: 0 reads the flag at once (CPU: free); on an
        #: accelerator the flag is read a step late, so the host does not wait for the device every step
        self.divergence_lag: int | None = None
        self._pending: list[_Pending] = []
        self._log_train_loss = True
        self._last_ce: Tensor | None = None  # the last step's train loss, logged once per call
        self._world = 1
        self._direct: bool | None = False
        # By hand, so one call can run several steps (module docstring); clipping is ours as well.
        self.automatic_optimization = False
        #: micro-batches per optimizer step (the Trainer's accumulate_grad_batches, which Lightning
        #: leaves to the module under manual optimization)
        self.accumulate = 1

    def __setattr__(self, name: str, value: Any) -> None:
        if name in PLAIN_ATTRIBUTES:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def on_train_start(self) -> None:
        trainer = self.trainer
        # Nothing reads a logged train loss without a progress bar or a logger; self.log costs
        # about as much per step as a small model's optimizer step, so log only for a reader.
        self._log_train_loss = trainer.progress_bar_callback is not None or bool(trainer.loggers)
        self._world = int(trainer.world_size)
        self._direct = None  # decided at the first step, once the optimizer is wrapped
        if self.divergence_lag is None:
            self.divergence_lag = 0 if self.device.type == "cpu" else 1

    def training_step(self, batch: dict[str, Tensor] | list[dict[str, Tensor]], batch_idx: int) -> None:
        """One call: an optimizer step on each ``accumulate`` consecutive batches of ``batch``.

        :param batch: one batch (a dict of ``[N, T]`` tensors) or a list of them (``FreshBatches``'
            ``per_item``); a list's batches are used in order, and a step the budget has no room
            for is not taken.
        """
        batches = [batch] if isinstance(batch, dict) else batch
        opt = self.optimizers()
        sched = self.lr_schedulers()
        a = self.accumulate
        step = self.global_step
        steps = -(-len(batches) // a)
        max_steps = self.trainer.max_steps
        if max_steps >= 0:
            steps = min(steps, max_steps - step)
        if self._direct is None:
            self._direct = dispatch_is_empty(self, self.trainer, opt)
        direct = self._direct
        for s in range(steps):
            group = batches[s * a:(s + 1) * a]
            for i, micro in enumerate(group):
                loss = self._train_loss(micro, step + s)
                if i == 0:
                    opt.zero_grad()  # after the first forward, as automatic optimization orders it
                loss = loss / len(group) if len(group) > 1 else loss
                if direct:
                    loss.backward()
                else:
                    self.manual_backward(loss)
            if direct:  # what opt.step() would call here, in its order (see dispatch_is_empty)
                opt._on_before_step()
                self.on_before_optimizer_step(opt.optimizer)
                opt.optimizer.step()
                opt._on_after_step()
            else:
                opt.step()
            sched.step()
        if self._log_train_loss and steps > 0:  # once per call: Lightning keeps only a call's last value
            self.log("train/loss", self._last_ce, prog_bar=True)

    def _train_loss(self, batch: dict[str, Tensor], step: int) -> Tensor:
        """The training loss of one batch at optimizer step ``step`` (the subclass's)."""
        raise NotImplementedError

    def _check_finite(self, loss: Tensor, step: int) -> None:
        """Stop at a NaN/inf loss: at once (lag 0, and always under DDP), else ``divergence_lag`` steps late.

        :raises TrainingDiverged: with the step whose loss was not finite.
        """
        if self._world > 1:  # every rank must stop at the same step: decide together now
            bad = not math.isfinite(loss.detach().item())
            if self.trainer.strategy.reduce_boolean_decision(bad, all=False):
                raise TrainingDiverged(step, float(loss.detach()))
            return
        lag = self.divergence_lag or 0
        if not lag:  # on the CPU reading the value costs nothing: stop at this very step
            value = loss.detach().item()
            if not math.isfinite(value):
                raise TrainingDiverged(step, value)
            return
        bad = ~torch.isfinite(loss.detach())
        self._pending.append(_Pending(step, bad, loss.detach()))
        while len(self._pending) > lag:
            self._pending.pop(0).check()

    def _flush_pending(self) -> None:
        """Read every flag still unread (before validation and at the end of training)."""
        pending, self._pending = self._pending, []
        for p in pending:
            p.check()

    def on_validation_start(self) -> None:
        self._flush_pending()

    def on_train_end(self) -> None:
        self._flush_pending()

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        # The tasks' batches are flat dicts of tensors (a list of them for several steps per call);
        # Lightning's generic collection walk costs more per step than moving them. Anything else
        # goes the generic way.
        if type(batch) is list and all(is_flat(b) for b in batch):
            return [move_batch(b, device) for b in batch]
        if is_flat(batch):
            return move_batch(batch, device)
        return super().transfer_batch_to_device(batch, device, dataloader_idx)
