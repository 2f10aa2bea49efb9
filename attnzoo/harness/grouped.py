"""``run_group``: cells that differ only in seed, learning rate or weight decay, trained as one model.

The E members of a group share everything that fixes the program (task and its knobs, backbone and
its kwargs, variant and its kwargs, steps, batch, schedule, Trainer options); their parameters are
stacked along a leading member dimension (:func:`torch.func.stack_module_state`) and one
``vmap(functional_call(model))`` runs every member's forward in one launch per op. Per member, as
:func:`attnzoo.harness.run.run_cell` does for one cell:

- **init**: ``seed_everything(seed)``, then the task and the model are built as ``AttnzooModule`` builds them;
- **data**: its own fresh stream, ``task.generate(batch_size, Generator(stream_seed(seed)))`` every step,
  and its own fixed val/test sets (``task.fixed_split(split, seed)``);
- **optimizer**: AdamW (decay on matrices only, eps 1e-8, betas 0.9/0.999) with its own learning rate and
  weight decay, the cell's warmup and schedule (:func:`~attnzoo.harness.module.lr_factor`), gradients
  clipped to norm :data:`~attnzoo.harness.module.GRAD_CLIP` per member: torch's single-tensor AdamW
  written once over the stacked tensors (:class:`_StackedAdamW`), a vector of learning rates broadcast
  over the member dimension;
- **validation** every ``cell.validation_interval()`` steps (and at the end when the last step is not on
  it), the curve's ``[step, mean train loss since the last point, val main metric]``, then the test
  splits and the attention map: each member evaluated alone, its parameters copied into one plain model
  (the one-cell path's code, so evaluation adds no vectorized-vs-single difference);
- **faults**: a member whose loss is not finite stops updating at that step (its gradient is zeroed on
  the device, so there is no host sync per step) and leaves its own ``diverged`` row; the others go on.

A member's row equals the one-cell row within float rounding (the batched matmuls round differently
from the single ones, so curves agree to ~1e-5 after a few steps; an accuracy can flip where a logit
tie sits at that level). Nothing in it depends on the other members: each member's forward, gradient,
clipping and update read only its own slice.

What does not group falls back to ``run_cell`` for each member (the row's ``execution`` says so,
with the reason): a variant that samples (its forward draws from the global generator, or emits
``log_prob`` for REINFORCE: the vectorized draw could not reproduce each cell's stream), several
devices or a strategy, gradient accumulation, a precision other than 32-true / bf16-mixed, and any
error of the vectorized step (an op without a batching rule, data-dependent Python control flow,
batches whose shapes differ between members). An out-of-memory group is split in halves and retried.

This is a plain loop beside the ``LightningModule``, not inside one: one Lightning module is one model
with one optimizer, and a group needs E optimizers' worth of state on one stacked set of parameters,
per-member divergence and per-member validation sets; what Lightning would add for one device (the loop,
the precision plugin) is a few lines here, and the per-step dispatch it costs is what grouping removes.
Several devices, strategies and loss scaling stay on the one-cell (Lightning) path.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

from attnzoo.cell import RUNTIME_FIELDS, Cell, Row, digest

__all__ = ["GROUP_FREE_FIELDS", "group_key", "group_problem", "run_group"]

#: cell fields the members of a group may differ in (besides the runtime fields)
GROUP_FREE_FIELDS = ("seed", "lr", "weight_decay")
#: Trainer precisions the grouped step runs (bf16-mixed as ``torch.autocast``)
_PRECISIONS = {"32-true": None, "32": None, 32: None, "bf16-mixed": "bf16"}
#: AdamW's defaults, as torch.optim.AdamW has them (build_optimizer does not change them)
_BETAS, _EPS = (0.9, 0.999), 1e-8


def group_key(cell: Cell) -> str:
    """What members of one group share: every field but :data:`GROUP_FREE_FIELDS` and the runtime ones."""
    data = cell.to_json()
    for name in (*GROUP_FREE_FIELDS, *RUNTIME_FIELDS):
        data.pop(name, None)
    return digest(data, 16)


def group_problem(cell: Cell) -> str | None:
    """Why cells like ``cell`` cannot train grouped (decided from the cell alone), or None."""
    trainer = cell.trainer
    if int(trainer.get("devices", 1) if str(trainer.get("devices", 1)).isdigit() else 2) != 1:
        return f"devices={trainer.get('devices')!r} (one device only)"
    if str(trainer.get("strategy", "auto")) not in ("auto", "single_device"):
        return f"strategy={trainer.get('strategy')!r}"
    if int(trainer.get("num_nodes") or 1) != 1:
        return "num_nodes > 1"
    if int(trainer.get("accumulate_grad_batches") or 1) != 1:
        return "accumulate_grad_batches > 1"
    if trainer.get("precision", "32-true") not in _PRECISIONS:
        return f"precision={trainer.get('precision')!r} (32-true or bf16-mixed only)"
    if str(trainer.get("accelerator", "cpu")) not in ("cpu", "gpu", "cuda", "auto"):
        return f"accelerator={trainer.get('accelerator')!r}"
    if cell.train_size is not None:  # the members' streams here draw fresh batches, never a finite pool
        return f"train_size={cell.train_size} (a finite training set: the one-cell path's data module)"
    return None


class _Fallback(Exception):
    """The group cannot train vectorized; ``reason`` says why (each member then runs alone)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def run_group(cells: Sequence[Cell | Mapping[str, Any]]) -> list[Row]:
    """Train cells that share :func:`group_key` as one vectorized model; one row per cell, in order.

    Never raises (Ctrl-C excepted), as ``run_cell``. Each row's ``execution`` says how it ran:
    ``{"path": "grouped", "members": E, "autocast": None | "bf16"}``, or ``{"path": "single",
    "fallback": reason}`` when the group fell back to ``run_cell``.

    :raises ValueError: the cells do not share one group key (a planner's bug, not a cell's fault).
    """
    from attnzoo.harness.run import _is_oom, run_cell

    cells = [Cell.from_json(c) for c in cells]
    if not cells:
        return []
    keys = {group_key(c) for c in cells}
    if len(keys) > 1:
        raise ValueError(f"cells: a group's cells may differ only in {', '.join(GROUP_FREE_FIELDS)}; "
                         f"got {len(keys)} different configurations")
    reason = group_problem(cells[0]) if len(cells) > 1 else "a group of one"
    if reason is None:
        rows: list[dict[str, Any]] = [{} for _ in cells]
        try:
            _train_in_context(cells, rows)
            return [Row(**r) for r in rows]
        except KeyboardInterrupt:
            raise
        except _Fallback as exc:
            reason = exc.reason
        except BaseException as exc:  # noqa: BLE001 - an OOM splits; anything else falls back
            if _is_oom(exc):
                _release_memory()
                half = len(cells) // 2
                return run_group(cells[:half]) + run_group(cells[half:])
            first = str(exc).strip().splitlines()
            reason = f"vectorized step failed: {type(exc).__name__}: {first[-1][:200] if first else ''}"
    return [run_cell(c).replace(execution={"path": "single", "fallback": reason}) for c in cells]


def _release_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _train_in_context(cells: list[Cell], rows: list[dict[str, Any]]) -> None:
    from attnzoo.harness.run import _keep_determinism, _plugins, _quiet, _threads

    cell = cells[0]
    with _quiet(not cell.verbose), _plugins(list(cell.disabled_plugins)), _threads(cell.threads), _keep_determinism():
        _GroupTrainer(cells, rows).fit()


class _Member:
    """One member's own state: its cell, task, data stream, evaluation sets and bookkeeping."""

    def __init__(self, cell: Cell, task: Any, test_splits: tuple[str, ...]) -> None:
        import torch

        from attnzoo.harness.data import FixedBatches, stream_seed

        self.cell = cell
        self.task = task
        self.stream = torch.Generator().manual_seed(stream_seed(cell.seed, 0, 0))
        eval_batch = cell.eval_batch_size or max(cell.batch_size, 256)
        self.eval_sets = {s: FixedBatches(task.fixed_split(s, cell.seed), eval_batch).batches
                          for s in ("val", *test_splits)}
        self.curve: list[list[Any]] = []
        self.results: dict[str, float] = {}
        self.tokens = 0

    def next_batch(self) -> dict[str, Any]:
        return self.task.generate(self.cell.batch_size, self.stream)


class _GroupTrainer:
    """The group's training loop.

    :param clocks: started and stopped around the training steps (validation left out), as
        ``benchmarks/overhead.py``'s ``Clocks``; the row's ``train_time_s`` times the same stretch.
    """

    def __init__(self, cells: list[Cell], rows: list[dict[str, Any]], clocks: Any = None) -> None:
        import lightning as L
        import torch

        from attnzoo.resolve import resolve
        from attnzoo.harness.data import default_test_splits
        from attnzoo.harness.module import build_model, build_task

        self.cells, self.rows, self.clocks = cells, rows, clocks
        cell = cells[0]
        self.device = torch.device("cpu") if cell.on_cpu() else torch.device("cuda", torch.cuda.current_device())
        self.autocast = _PRECISIONS[cell.trainer.get("precision", "32-true")]
        models, self.members = [], []
        for c, row in zip(cells, rows):
            resolved = resolve(c)  # CellError / PairDoesNotFit: the fallback's run_cell writes their rows
            L.seed_everything(c.seed, workers=True, verbose=False)  # as run.build, so the init is the cell's
            task = build_task(resolved)
            model = build_model(resolved, task)
            splits = tuple(s for s in default_test_splits(task) if resolved.backbone_spec.fits_split(s) is None)
            self.members.append(_Member(c, task, splits))
            row["main_metric"] = f"test/{task.spec.metric}"
            row["chance"] = float(task.chance())
            row["params"] = int(sum(p.numel() for p in model.parameters()))
            models.append(model.to(self.device))
        self.test_splits = splits
        self.model = models[0]  # the skeleton functional_call runs; evaluation loads a member into it
        self._check_program(models)
        params, buffers = torch.func.stack_module_state(models)
        self.params = {k: v.detach() for k, v in params.items()}  # [E, ...] each
        self.buffers = {k: v.detach() for k, v in buffers.items()}
        trainable = {name for name, p in self.model.named_parameters() if p.requires_grad}
        self.names = [n for n in self.params if n in trainable]
        # Decay on matrices only, as build_optimizer decides it (one member's dim = stacked dim - 1).
        self.decays = {n: self.params[n].dim() - 1 >= 2 for n in self.names}

    def _check_program(self, models: list[Any]) -> None:
        """Fall back for what cannot be vectorized faithfully: a forward that samples, or unequal shapes."""
        import torch

        shapes = [[tuple(p.shape) for p in m.state_dict().values()] for m in models]
        if any(s != shapes[0] for s in shapes):
            raise _Fallback("members' parameter shapes differ")
        probe = copy.deepcopy(self.model).train()
        batch = self.members[0].task.generate(2, torch.Generator().manual_seed(1))
        cpu_state = torch.get_rng_state()
        cuda_state = torch.cuda.get_rng_state() if self.device.type == "cuda" else None
        with torch.no_grad():
            out = probe(batch["src"].to(self.device), batch["tgt"].to(self.device))
        sampled = not torch.equal(cpu_state, torch.get_rng_state()) or (
            cuda_state is not None and not torch.equal(cuda_state, torch.cuda.get_rng_state()))
        torch.set_rng_state(cpu_state)
        if cuda_state is not None:
            torch.cuda.set_rng_state(cuda_state)
        if sampled or "log_prob" in (out.aux or {}):
            raise _Fallback("the variant samples in training (each cell's random stream is its own)")

    # -- the vectorized step -------------------------------------------------
    def _losses(self, params: dict[str, Any], src: Any, tgt: Any, mask: Any) -> Any:
        """Every member's training loss: src ``[E, N, S]``, tgt and mask ``[E, N, T]`` -> ``[E]``."""
        import torch
        from torch.func import functional_call, vmap

        from attnzoo.harness.module import masked_cross_entropy

        model = self.model

        def one(p: dict[str, Any], b: dict[str, Any], s: Any, t: Any, m: Any) -> Any:
            return masked_cross_entropy(functional_call(model, (p, b), (s, t)).logits, t, m)[0]

        with self._precision():
            return vmap(one, randomness="error")(params, self.buffers, src, tgt, mask)

    def _precision(self) -> Any:
        """bf16-mixed as Lightning's precision plugin runs it (autocast around forward, in training and evaluation)."""
        import torch

        if self.autocast == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _stack(self, batches: list[dict[str, Any]]) -> tuple[Any, Any, Any]:
        import torch

        try:
            src = torch.stack([b["src"] for b in batches])  # (E, N, S)
            tgt = torch.stack([b["tgt"] for b in batches])  # (E, N, T)
            mask = torch.stack([b["tgt_mask"] if "tgt_mask" in b else torch.ones_like(b["tgt"], dtype=torch.bool)
                                for b in batches])
        except RuntimeError as exc:
            raise _Fallback(f"members' batches differ in shape ({exc})") from exc
        return src.to(self.device), tgt.to(self.device), mask.to(self.device)

    def fit(self) -> None:
        import torch

        from attnzoo.harness.run import CPU_PEAK_KIND

        cell, members, E = self.cells[0], self.members, len(self.members)
        dev = self.device
        torch.use_deterministic_algorithms(bool(cell.trainer.get("deterministic", cell.on_cpu())))
        cuda = dev.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats(dev)
        total = max(1, int(cell.max_steps))
        val_every = cell.validation_interval()
        leaves = {n: self.params[n].requires_grad_(True) for n in self.names}
        optimizer = _StackedAdamW(self, leaves, total)
        alive = torch.ones(E, dtype=torch.bool, device=dev)
        died_at = torch.full((E,), -1, dtype=torch.long, device=dev)
        died_loss = torch.zeros(E, device=dev)
        loss_sum = torch.zeros(E, device=dev)
        count = 0
        step = 0
        train_time = 0.0
        clock = _Clock(dev, self.clocks)
        t0 = clock.start()
        for step in range(total):
            batches = [m.next_batch() for m in members]
            for m, b in zip(members, batches):
                m.tokens += b["src"].numel() + b["tgt"].numel()
            src, tgt, mask = self._stack(batches)
            params = {**self.params, **leaves}
            losses = self._losses(params, src, tgt, mask).float()  # (E,)
            detached = losses.detach()
            finite = torch.isfinite(detached)
            newly = alive & ~finite
            died_at = torch.where(newly, step, died_at)
            died_loss = torch.where(newly, detached, died_loss)
            alive = alive & finite
            loss_sum = loss_sum + detached
            count += 1
            # A dead member's slice may hold NaN from here on: nothing reads it again (its row is
            # "diverged"), and no op mixes members, so the others cannot see it.
            optimizer.step(step, losses)
            if (step + 1) % val_every == 0:
                train_time += clock.stop(t0)
                self._validate(step + 1, loss_sum, count, alive, died_at)
                loss_sum = torch.zeros(E, device=dev)
                count = 0
                t0 = clock.start()
        train_time += clock.stop(t0)
        steps_done = step + 1
        self._finish_rows(steps_done, train_time, alive, died_at, died_loss, loss_sum, count, cuda, CPU_PEAK_KIND)

    # -- evaluation, one member at a time -----------------------------------------
    def _load(self, e: int) -> Any:
        """The skeleton model holding member ``e``'s parameters and buffers."""
        import torch

        with torch.no_grad():
            for name, p in self.model.named_parameters():
                p.copy_(self.params[name][e])
            for name, b in self.model.named_buffers():
                if name in self.buffers:
                    b.copy_(self.buffers[name][e])
        return self.model

    def _evaluate(self, e: int, split: str) -> dict[str, float]:
        """Member ``e``'s metrics on ``split``, as ``AttnzooModule`` computes them (float32 weighted means)."""
        import torch

        from attnzoo.harness.module import example_scores

        model, member = self._load(e), self.members[e]
        slices = member.task.spec.slices
        sums: dict[str, list[Any]] = {}

        def add(name: str, value: Any, weight: Any) -> None:
            acc = sums.setdefault(name, [torch.zeros(()), torch.zeros(())])
            acc[0] += (value * weight).sum().cpu()
            acc[1] += weight.sum().cpu()

        model.eval()
        try:
            with torch.no_grad(), self._precision():
                for batch in member.eval_sets[split]:
                    src, tgt = batch["src"].to(self.device), batch["tgt"].to(self.device)
                    mask = batch.get("tgt_mask")
                    mask = torch.ones_like(tgt, dtype=torch.bool) if mask is None else mask.to(self.device)
                    token_acc, tokens, exact = example_scores(model(src, tgt).logits, tgt, mask)
                    add(f"{split}/token_acc", token_acc, tokens)
                    add(f"{split}/exact_acc", exact, torch.ones_like(exact))
                    if "slice" in batch:
                        sl = batch["slice"].to(self.device)
                        for i, name in enumerate(slices):
                            sel = sl == i
                            add(f"{split}/{name}/token_acc", token_acc[sel], tokens[sel])
                            add(f"{split}/{name}/exact_acc", exact[sel], torch.ones_like(exact[sel]))
        finally:
            model.train()
        out = {}
        for name, (num, den) in sums.items():
            value = float(num / den)
            if not math.isnan(value):  # a slice with no examples in this split
                out[name] = value
        return out

    def _validate(self, step: int, loss_sum: Any, count: int, alive: Any, died_at: Any) -> None:
        sums = loss_sum.cpu().tolist()
        alive_now = alive.cpu().tolist()
        for e, member in enumerate(self.members):
            if not alive_now[e]:
                continue
            values = self._evaluate(e, "val")
            member.results.update(values)
            train_loss = sums[e] / count if count else None
            point = [step, train_loss, values.get("val/" + member.task.spec.metric)]
            if not member.curve or member.curve[-1][0] != point[0]:
                member.curve.append(point)

    def _finish_rows(self, steps: int, train_time: float, alive: Any, died_at: Any, died_loss: Any,
                     loss_sum: Any, count: int, cuda: bool, cpu_peak_kind: str) -> None:
        import torch

        from attnzoo.diagnostics import DIAGNOSTIC_BATCH
        from attnzoo.harness.data import first_examples
        from attnzoo.harness.module import TrainingDiverged, alignment_diagnostics, attention_map

        E = len(self.members)
        if count:  # the last step is not on the validation interval: validate once more, as run_cell does
            self._validate(steps, loss_sum, count, alive, died_at)
        died = died_at.cpu().tolist()
        died_values = died_loss.cpu().tolist()
        share = train_time / E  # each member's share of the group's train time
        peak = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 2) if cuda else None
        for e, (member, row) in enumerate(zip(self.members, self.rows)):
            row["curve"] = member.curve
            row["execution"] = {"path": "grouped", "members": E, "autocast": self.autocast}
            row["peak_mem_mb"] = peak
            row["peak_mem_kind"] = f"cuda_max_allocated (group of {E})" if cuda else cpu_peak_kind
            if died[e] >= 0:
                row.update(status="diverged", steps=int(died[e]), metrics={}, main_value=None,
                           error=str(TrainingDiverged(int(died[e]), float(died_values[e]))),
                           train_time_s=round(share, 4) if share else None)
                continue
            row["steps"] = steps
            row["train_time_s"] = round(share, 4) if share else None
            if share:
                row["tokens_per_s"] = round(member.tokens / share, 1)
            for split in self.test_splits:
                member.results.update(self._evaluate(e, split))
            metrics = {k: float(v) for k, v in sorted(member.results.items())}
            row["metrics"] = metrics
            value = metrics.get(row["main_metric"])
            row["main_value"] = value if value is not None and math.isfinite(value) else None
            if member.cell.record_attention:
                with self._precision():
                    model = self._load(e)
                    row["attention_map"] = attention_map(model, member.task, member.cell.seed, self.device)
                    row["alignment"] = alignment_diagnostics(
                        model, member.task, first_examples(member.eval_sets["test"], DIAGNOSTIC_BATCH), self.device)
            row["status"] = "ok"
            row["error"] = None


class _Clock:
    """Training time without validation: wall-clock seconds (device synchronised first), and the
    group's CPU clocks (``clocks.start()``/``stop()``) around the same spans."""

    def __init__(self, device: Any, clocks: Any) -> None:
        self.device = device
        self.clocks = clocks

    def _sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def start(self) -> float:
        self._sync()
        if self.clocks is not None:
            self.clocks.start()
        return time.perf_counter()

    def stop(self, since: float) -> float:
        self._sync()
        if self.clocks is not None:
            self.clocks.stop()
        return time.perf_counter() - since


class _StackedAdamW:
    """torch's single-tensor AdamW written once over the stacked parameters: per member its own learning
    rate and weight decay (vectors broadcast over the member dimension), its own gradient clipping."""

    def __init__(self, trainer: Any, leaves: dict[str, Any], total: int) -> None:
        import torch

        cell = trainer.cells[0]
        self.leaves = leaves
        self.decays = trainer.decays
        self.device = trainer.device
        self.schedule, self.warmup, self.total = cell.schedule, max(0, int(cell.warmup_steps)), total
        self.lrs = torch.tensor([c.lr for c in trainer.cells], dtype=torch.float64)
        self.wds = torch.tensor([c.weight_decay for c in trainer.cells], dtype=torch.float64)
        self.exp_avg = {n: torch.zeros_like(p) for n, p in leaves.items()}
        self.exp_avg_sq = {n: torch.zeros_like(p) for n, p in leaves.items()}

    def step(self, step: int, losses: Any) -> None:
        """Backpropagate the members' ``losses`` [E] and update every member's parameters (0-based ``step``)."""
        import torch

        from attnzoo.harness.module import GRAD_CLIP, lr_factor

        leaves, dev = self.leaves, self.device
        beta1, beta2 = _BETAS
        # A parameter the loss does not reach (location's key projection) gets no gradient and, as
        # in torch's AdamW, no update and no decay either. vmap's weight gradients come transposed
        # (stride 1 on the member's input dim): made contiguous once, the elementwise updates run
        # at full speed.
        grads = [None if g is None else g.contiguous()
                 for g in torch.autograd.grad(losses.sum(), list(leaves.values()), allow_unused=True)]
        # clip_grad_norm_ per member: the norm of the per-tensor norms
        norms = torch.stack([torch.linalg.vector_norm(g, dim=tuple(range(1, g.dim()))) for g in grads
                             if g is not None]).norm(2, dim=0)  # (E,)
        coef = (GRAD_CLIP / (norms + 1e-6)).clamp(max=1.0)
        t = step + 1
        bc1, bc2_sqrt = 1 - beta1 ** t, math.sqrt(1 - beta2 ** t)
        lr_now = self.lrs * lr_factor(step, self.schedule, self.warmup, self.total)  # float64, as LambdaLR's group["lr"]
        step_size = (-(lr_now / bc1)).to(dev, torch.float32)
        shrink = (1 - lr_now * self.wds).to(dev, torch.float32)
        with torch.no_grad():
            for (n, p), g in zip(leaves.items(), grads):
                if g is None:
                    continue
                g.mul_(_member_view(coef, g))
                if self.decays[n]:
                    p.mul_(_member_view(shrink, p))
                self.exp_avg[n].lerp_(g, 1 - beta1)
                self.exp_avg_sq[n].mul_(beta2).addcmul_(g, g, value=1 - beta2)
                denom = self.exp_avg_sq[n].sqrt().div_(bc2_sqrt).add_(_EPS)
                p.add_(self.exp_avg[n].mul(_member_view(step_size, p)).div_(denom))  # addcdiv's order: (value * t1) / t2


def _member_view(x: Any, like: Any) -> Any:
    """[E] -> [E, 1, ...] against a stacked tensor."""
    return x.view(-1, *([1] * (like.dim() - 1)))
