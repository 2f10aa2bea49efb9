#!/usr/bin/env python
"""Harness overhead: the Lightning harness against a plain PyTorch loop doing the same work.

For each backbone of the default preset (transformer, seq2seq, pointer, mlp) plus ntm, the same
model is trained for a fixed number of steps three ways:

- **harness**: exactly what ``run_cell`` trains with (:func:`attnzoo.harness.run.build`: the
  :class:`~attnzoo.harness.module.AttnzooModule`, the :class:`~attnzoo.harness.data.TaskDataModule`
  and the Lightning ``Trainer`` with its options, several optimizer steps per ``training_step``
  call as ``Cell.call_steps()`` chooses), timed over the same hooks as ``run_cell``'s
  ``train_time_s`` (first training step to last, validation excluded);
- **plain**: a ``for`` loop over the same model construction (:func:`attnzoo.harness.module.build_model`
  after the same ``seed_everything``), the same batches (the task's generator seeded with
  :func:`attnzoo.harness.data.stream_seed`), the same masked cross-entropy, AdamW with the same
  parameter groups and schedule (:func:`attnzoo.harness.module.build_optimizer`), the same
  gradient clipping (``clip_grad_norm_(1.0)``), in Lightning's order;
- **bare Lightning**: the plain loop's step as the ``training_step`` of a LightningModule that
  does nothing else (automatic optimization, one step per call), on a Trainer with the harness's options. harness / bare is what the harness's
  own bookkeeping costs, bare / plain what Lightning's loop costs by itself;
- **grouped**: the grouped path's plain loop (``attnzoo.harness.grouped``, what ``--group`` runs) with a
  group of one, where the cell vectorizes: the vmapped step's own cost per member against the plain
  loop (``benchmarks/grouped.py`` measures what a group of several buys).

All run in this one process on one torch thread, interleaved (the order alternates between
repeats), and each ratio is a ratio of medians over the repeats. The headline clock is the main
thread's CPU time (``time.thread_time``): on a shared machine it moves much less with the load
than the wall clock (also reported). The work is the same, not only the same shape: after the same
steps the harness's and the plain loop's models hold bit-identical parameters
(``tests/test_overhead.py``), so the ratio is the harness's cost and nothing else.
A last line measures Lightning's fixed cost per step with a one-weight model.

Example (the committed figures, ``benchmarks/results/overhead-cpu/``)::

    python benchmarks/overhead.py --steps 200 --repeats 5 --out benchmarks/results/overhead-cpu

``--profile NAME`` prints the top of a cProfile of the harness's training steps for one backbone
(what the fixes in the harness were chosen from).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import logging
import platform
import pstats
import statistics
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from attnzoo.cell import Cell
from attnzoo.resolve import resolve

__all__ = ["CONFIGS", "bench_cells", "plain_loop", "harness_loop", "grouped_loop", "main"]

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PRESET = REPO / "benchmarks" / "presets" / "default.yaml"

#: name -> (backbone, task entry of the default preset it trains on there, variant, fraction of --steps).
#: The issue's measurements: the Transformer on selective-copy, seq2seq + dot on copy, seq2seq +
#: additive on associative-recall, the MLP; plus the pointer network on sort and the NTM on the
#: preset's copy-ntm entry (falling back to copy), for a fifth of the steps (a step costs about
#: 10x the others' and the harness's cost per step is fixed).
CONFIGS: dict[str, tuple[str, str, str | None, float]] = {
    "transformer": ("transformer", "selective-copy", "scaled-dot", 1.0),
    "seq2seq": ("seq2seq", "copy", "dot", 1.0),
    "seq2seq-additive": ("seq2seq", "associative-recall", "additive", 1.0),
    "pointer": ("pointer", "sort", "pointer", 1.0),
    "mlp": ("mlp", "copy", None, 1.0),
    "ntm": ("ntm", "copy-ntm", "ntm", 0.2),
}


def bench_cells(steps: int, preset: Path = DEFAULT_PRESET, seed: int = 0) -> dict[str, Cell]:
    """One :class:`Cell` per entry of :data:`CONFIGS`, with the preset's knobs, sizes and batch.

    Validation runs once, at the last step (it is excluded from both timings anyway), so the
    harness's cost is its per-step bookkeeping.
    """
    import yaml

    data = yaml.safe_load(preset.read_text())
    backbones = data.get("backbones", {})
    cells = {}
    tasks = data["tasks"]
    for name, (backbone, label, attention, fraction) in CONFIGS.items():
        if label not in tasks and label == "copy-ntm":
            label = "copy"  # presets before the copy-ntm entry
        entry = tasks[label]
        kwargs = dict(backbones.get(backbone, backbones.get("seq2seq", {})))  # ntm: the RNN backbones' width
        kwargs.update((entry.get("backbone_kwargs") or {}).get(backbone, {}))
        n = max(10, round(steps * fraction))
        cells[name] = Cell(
            task=entry.get("task", label), backbone=backbone, attention=attention,
            task_kwargs=dict(entry.get("knobs", {})), backbone_kwargs=kwargs,
            seed=seed, max_steps=n, batch_size=int(entry.get("batch_size", data.get("batch_size", 64))),
            lr=float(entry.get("lrs", data.get("lrs", [1e-3]))[0]),
            warmup_steps=int(entry.get("warmup_steps", data.get("warmup_steps", 25))),
            schedule=str(entry.get("schedule", data.get("schedule", "cosine"))),
            val_every=n, trainer=dict(data.get("trainer", {})), record_attention=False,
        )
    return cells


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    from attnzoo.harness.run import _quiet as quiet

    with quiet(True):
        yield


class Clocks:
    """Wall and CPU seconds of a stretch of work, pausable (validation is left out).

    CPU time is the calling thread's (``time.thread_time``): with one torch thread all the work
    runs there, and on a shared machine it moves much less with the load than the wall time does.
    """

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0
        self._at: tuple[float, float] | None = None

    def start(self) -> None:
        self._at = (time.perf_counter(), time.thread_time())

    def stop(self) -> None:
        if self._at is not None:
            self.wall += time.perf_counter() - self._at[0]
            self.cpu += time.thread_time() - self._at[1]
            self._at = None


def _clock_callback(clocks: Clocks) -> Any:
    import lightning as L

    class ClockCallback(L.Callback):
        """Runs ``clocks`` over the training steps as ``run_cell``'s timer does (validation excluded)."""

        def on_train_start(self, trainer, pl_module) -> None:
            clocks.start()

        def on_validation_start(self, trainer, pl_module) -> None:
            clocks.stop()

        def on_validation_end(self, trainer, pl_module) -> None:
            if not trainer.sanity_checking and trainer.global_step < trainer.max_steps:
                clocks.start()

        def on_train_end(self, trainer, pl_module) -> None:
            clocks.stop()

    return ClockCallback()


def harness_loop(cell: Cell) -> tuple[Clocks, torch.nn.Module]:
    """Train ``cell`` through the harness; -> (clocks over the training steps, the trained model).

    The wall clock agrees with the row's ``train_time_s`` (same hooks).
    """
    from attnzoo.harness.run import _keep_determinism, build

    clocks = Clocks()
    with _quiet(), _keep_determinism():
        module, dm, trainer, _ = build(cell, callbacks=[_clock_callback(clocks)])
        trainer.fit(module, datamodule=dm)
    if trainer.global_step != cell.max_steps:
        raise RuntimeError(f"harness ran {trainer.global_step} steps, expected {cell.max_steps}")
    return clocks, module.model


def plain_loop(cell: Cell) -> tuple[Clocks, torch.nn.Module]:
    """Train ``cell`` with a plain loop doing the harness's work; -> (clocks over all steps, model).

    Seeds, model, batches, loss, optimiser, schedule and clipping as the harness has them; no
    hooks, no logging, no metric objects.
    """
    import lightning as L

    from attnzoo.harness.data import stream_seed
    from attnzoo.harness.module import build_model, build_optimizer, build_task

    resolved = resolve(cell)
    with _keep_deterministic(cell.on_cpu()):
        L.seed_everything(cell.seed, workers=True, verbose=False)
        task = build_task(resolved)
        model = build_model(resolved, task)
        model.train()
        opt, sched = build_optimizer(model, cell)
        g = torch.Generator().manual_seed(stream_seed(cell.seed, 0, 0))
        clocks = Clocks()
        clocks.start()
        for _ in range(cell.max_steps):
            batch = task.generate(cell.batch_size, g)
            src, tgt = batch["src"], batch["tgt"]
            mask = batch.get("tgt_mask")
            if mask is None:
                mask = torch.ones_like(tgt, dtype=torch.bool)
            logits = model(src, tgt).logits  # (N, T, C)
            ce = F.cross_entropy(logits.flatten(0, 1).float(), tgt.flatten(), reduction="none").view_as(tgt)
            loss = (ce * mask).sum() / mask.sum().clamp_min(1)
            # Lightning's order (forward, zero_grad, backward, clip, step): where the gradients are
            # freed changes what the allocator reuses, which moves the step time by a few percent.
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for grp in opt.param_groups for p in grp["params"]], 1.0)
            opt.step()
            sched.step()
        clocks.stop()
    return clocks, model


def bare_lightning_loop(cell: Cell) -> tuple[Clocks, torch.nn.Module]:
    """The plain loop's work inside a bare ``LightningModule`` (training_step = loss, nothing else)
    on a Trainer with the harness's options: what Lightning's loop costs by itself.

    harness / bare is the harness's own bookkeeping; bare / plain is Lightning's.
    """
    import lightning as L

    from attnzoo.harness.data import FreshBatches
    from attnzoo.harness.module import build_model, build_optimizer, build_task

    class Bare(L.LightningModule):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def training_step(self, batch, batch_idx):
            src, tgt = batch["src"], batch["tgt"]
            mask = batch.get("tgt_mask")
            if mask is None:
                mask = torch.ones_like(tgt, dtype=torch.bool)
            logits = self.model(src, tgt).logits
            ce = F.cross_entropy(logits.flatten(0, 1).float(), tgt.flatten(), reduction="none").view_as(tgt)
            return (ce * mask).sum() / mask.sum().clamp_min(1)

        def configure_optimizers(self):
            opt, sched = build_optimizer(self, cell)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}

    from attnzoo.harness.run import _keep_determinism

    resolved = resolve(cell)
    clocks = Clocks()
    with _quiet(), _keep_determinism():
        L.seed_everything(cell.seed, workers=True, verbose=False)
        task = build_task(resolved)
        model = build_model(resolved, task)
        trainer = L.Trainer(max_steps=cell.max_steps, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                            limit_val_batches=0, gradient_clip_val=1.0, callbacks=[_clock_callback(clocks)],
                            deterministic=cell.on_cpu(), **{k: v for k, v in cell.trainer_options().items()
                                                            if k != "deterministic"})
        loader = torch.utils.data.DataLoader(FreshBatches(task, cell.batch_size, cell.seed), batch_size=None)
        trainer.fit(Bare(model), train_dataloaders=loader)
    return clocks, model


@contextlib.contextmanager
def _keep_deterministic(enabled: bool) -> Iterator[None]:
    """The harness trains with ``deterministic=True`` on the CPU; the plain loop does too."""
    before, warn_only = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(enabled)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_only)


def lightning_floor(steps: int = 1000, repeats: int = 3) -> dict[str, float]:
    """Lightning's own cost per step: a one-weight model trained by a bare ``LightningModule``
    (automatic optimisation, clipping, nothing logged) against the same plain loop.

    What is left of the harness's overhead once its own bookkeeping is gone is about this much.
    :returns: median CPU ms per step of each way and their difference.
    """
    import lightning as L

    class Ones(torch.utils.data.IterableDataset):
        def __iter__(self):
            while True:
                yield {"x": torch.ones(4, 1)}

    class Bare(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(1, 1)

        def training_step(self, batch, batch_idx):
            return self.lin(batch["x"]).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    bare, plain = [], []
    for _ in range(repeats):
        clocks = Clocks()
        trainer = L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
                            gradient_clip_val=1.0, accelerator="cpu", devices=1,
                            callbacks=[_clock_callback(clocks)])
        with _quiet():
            trainer.fit(Bare(), train_dataloaders=torch.utils.data.DataLoader(Ones(), batch_size=None))
        bare.append(clocks.cpu)
        model = torch.nn.Linear(1, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.0)
        batches = iter(Ones())
        clocks = Clocks()
        clocks.start()
        for _ in range(steps):
            model(next(batches)["x"]).sum().backward()
            torch.nn.utils.clip_grad_norm_(list(model.parameters()), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
        clocks.stop()
        plain.append(clocks.cpu)
    b, p = 1e3 * statistics.median(bare) / steps, 1e3 * statistics.median(plain) / steps
    return {"lightning_ms_per_step": round(b, 4), "plain_ms_per_step": round(p, 4), "floor_ms_per_step": round(b - p, 4)}


def profile_harness(cell: Cell, top: int = 30) -> str:
    """cProfile of one harness run of ``cell``, sorted by own time (tottime)."""
    prof = cProfile.Profile()
    prof.enable()
    harness_loop(cell)
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def grouped_loop(cell: Cell) -> tuple[Clocks, torch.nn.Module]:
    """Train ``cell`` on the grouped path (``attnzoo.harness.grouped``) as a group of one: the vectorized
    step's own cost against the plain loop. -> (clocks over the training steps, the trained model).

    :raises RuntimeError: the cell does not vectorize (the grid would run it on the one-cell path).
    """
    from attnzoo.harness.grouped import _Fallback, _GroupTrainer
    from attnzoo.harness.run import _keep_determinism

    clocks = Clocks()
    with _quiet(), _keep_determinism():
        try:
            trainer = _GroupTrainer([cell], [{}], clocks=clocks)
            trainer.fit()
        except (_Fallback, RuntimeError) as exc:
            raise RuntimeError(f"{cell.backbone}/{cell.attention}: no grouped path ({exc})") from exc
    return clocks, trainer._load(0)


def measure(cells: dict[str, Cell], repeats: int, warmup: int = 1) -> dict[str, dict[str, Any]]:
    """Interleaved timings, ``repeats`` of each way per backbone after ``warmup`` untimed pairs.

    The ratio of each clock is median(harness) / median(plain); ``pairs`` is the spread of the
    per-pair ratios (each pair ran back to back, so it saw nearly the same load).
    """
    results = {}
    grouped: dict[str, list[Clocks]] = {}
    grouped_ok: dict[str, bool] = {}
    for name, cell in cells.items():
        runs: dict[str, list[Clocks]] = {"plain": [], "bare": [], "harness": []}
        for i in range(warmup + repeats):
            # Alternate the order so a slow phase of the shared machine hits every side.
            order = [("plain", plain_loop), ("bare", bare_lightning_loop), ("harness", harness_loop)]
            for side, fn in order if i % 2 == 0 else order[::-1]:
                clocks = fn(cell)[0]
                if i >= warmup:
                    runs[side].append(clocks)
            if grouped_ok.setdefault(name, True):  # the grouped path's loop, where the cell vectorizes
                try:
                    clocks = grouped_loop(cell)[0]
                    if i >= warmup:
                        grouped.setdefault(name, []).append(clocks)
                except RuntimeError:
                    grouped_ok[name] = False
        entry: dict[str, Any] = {"task": cell.task, "backbone": cell.backbone, "attention": cell.attention,
                                 "steps": cell.max_steps, "batch_size": cell.batch_size}
        for clock in ("cpu", "wall"):
            times = {side: [getattr(c, clock) for c in runs[side]] for side in runs}
            med = {side: statistics.median(v) for side, v in times.items()}
            pairs = sorted(h / p for h, p in zip(times["harness"], times["plain"]))
            entry[clock] = {
                **{f"{side}_s": [round(t, 4) for t in v] for side, v in times.items()},
                **{f"{side}_ms_per_step": round(1e3 * m / cell.max_steps, 3) for side, m in med.items()},
                "ratio": round(med["harness"] / med["plain"], 4), "pair_ratios": [round(r, 4) for r in pairs],
                "lightning_ratio": round(med["bare"] / med["plain"], 4),
                "own_ratio": round(med["harness"] / med["bare"], 4),
                # the grouped path's loop for one member (None: the cell falls back to the one-cell path)
                "grouped_ratio": (round(statistics.median(getattr(c, clock) for c in grouped[name]) / med["plain"], 4)
                                  if grouped_ok.get(name) and grouped.get(name) else None),
            }
        results[name] = entry
        cpu = entry["cpu"]
        print(f"{name:18s} CPU ms/step: plain {cpu['plain_ms_per_step']:7.3f} bare Lightning "
              f"{cpu['bare_ms_per_step']:7.3f} harness {cpu['harness_ms_per_step']:7.3f}  harness/plain "
              f"{cpu['ratio']:.3f} (wall {entry['wall']['ratio']:.3f})", flush=True)
    return results


def _table(results: dict[str, dict[str, Any]], target: float) -> str:
    lines = ["| backbone | task | variant | CPU ms/step: plain | bare Lightning | harness | **harness/plain** "
             "| per-pair min-max | bare/plain (Lightning) | harness/bare (ours) | harness/plain (wall) | <= target "
             "| grouped path, 1 member / plain |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|:---:|---:|"]
    for name, r in results.items():
        cpu, wall = r["cpu"], r["wall"]
        ok = "yes" if cpu["ratio"] <= target else "NO"
        lines.append(f"| {name} | {r['task']} | {r['attention'] or 'none'} | {cpu['plain_ms_per_step']:.3f} | "
                     f"{cpu['bare_ms_per_step']:.3f} | {cpu['harness_ms_per_step']:.3f} | **{cpu['ratio']:.3f}** | "
                     f"{cpu['pair_ratios'][0]:.3f}-{cpu['pair_ratios'][-1]:.3f} | {cpu['lightning_ratio']:.3f} | "
                     f"{cpu['own_ratio']:.3f} | {wall['ratio']:.3f} | {ok} | "
                     + (f"{cpu['grouped_ratio']:.3f} |" if cpu.get("grouped_ratio") is not None else "falls back |"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=200, help="optimizer steps per run (default 200)")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs of each way per backbone (default 5)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs of each way first (default 1)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--only", default="", help="comma-separated backbones of CONFIGS (default all)")
    ap.add_argument("--target", type=float, default=1.05, help="ratio to report against (default 1.05)")
    ap.add_argument("--profile", metavar="NAME", help="print a cProfile of the harness on NAME and exit")
    ap.add_argument("--out", type=Path, help="write results.json and table.md here")
    ap.add_argument("--logger", action="append", default=[], metavar="NAME",
                    help="give the harness Lightning's NAME logger (repeatable; default none, as every cell "
                         "without --logger runs): what logging costs per step")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    logging.getLogger("lightning").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    cells = bench_cells(args.steps)
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in cells]
        if unknown:
            ap.error(f"--only: unknown {unknown}; known: {', '.join(cells)}")
        cells = {n: cells[n] for n in wanted}
    if args.logger:
        import tempfile

        logs = tempfile.mkdtemp(prefix="attnzoo-overhead-logs-")
        cells = {n: c.replace(loggers=tuple(args.logger), log_dir=logs) for n, c in cells.items()}
    if args.profile:
        if args.profile not in cells:
            ap.error(f"--profile: unknown {args.profile!r}; known: {', '.join(cells)}")
        harness_loop(cells[args.profile])  # warm caches and imports outside the profile
        print(profile_harness(cells[args.profile]))
        return 0

    results = measure(cells, args.repeats, args.warmup)
    floor = lightning_floor()
    table = _table(results, args.target)
    floor_line = (f"Lightning's own floor (a one-weight model, bare LightningModule vs plain loop, CPU time): "
                  f"{floor['lightning_ms_per_step']:.3f} vs {floor['plain_ms_per_step']:.3f} ms/step, "
                  f"+{floor['floor_ms_per_step']:.3f} ms per step")
    print()
    print(table)
    print()
    print(floor_line)
    worst = max(r["cpu"]["ratio"] for r in results.values())
    print(f"\nworst ratio {worst:.3f} (target <= {args.target}); medians over {args.repeats} interleaved "
          f"repeats, {args.steps} steps, {args.threads} thread(s)")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        meta = {"command": "python benchmarks/overhead.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                "torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
                "threads": args.threads, "steps": args.steps, "repeats": args.repeats,
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        try:
            import lightning

            meta["lightning"] = lightning.__version__
        except Exception:  # noqa: BLE001
            pass
        (args.out / "results.json").write_text(json.dumps({"meta": meta, "results": results,
                                                           "lightning_floor": floor}, indent=2) + "\n")
        (args.out / "table.md").write_text(table + "\n\n" + floor_line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
