"""``attnzoo fit``: train one (task, backbone, attention) triple and print its metrics.

Example::

    attnzoo fit --task associative-recall --backbone transformer --attention scaled-dot \\
        --max-steps 2000 --batch-size 64 --lr 3e-3 --task-kwargs num_pairs=8
    attnzoo fit --task copy --backbone seq2seq --attention none --task-kwargs '{"length": 20}'

It runs the same code as a leaderboard cell (:func:`attnzoo.harness.run.run_cell`)
with Lightning's progress bar on a terminal (never in a pipe: no carriage returns
in a log), then prints a table of every metric with the task's chance level beside
the main one. Lightning's CSV logger records the run under
``--log-dir/<cell id>/`` unless ``--logger`` names others (or ``none``; see
:mod:`attnzoo.loggers`). Without ``--threads`` it takes the idle physical cores,
at most 4 (:func:`default_threads`), and says so on stderr.

Several GPUs need no code change: ``--accelerator gpu --devices 4 --strategy ddp``.
Lightning re-launches this command once per rank; each rank draws its own
training stream (the rank is mixed into the data seed, so the effective batch
is ``batch_size * devices``), evaluation batches are split across ranks and the
metrics are synced by torchmetrics. Only rank 0 prints.

Lightning is imported only inside :func:`main` (by the harness), so ``attnzoo --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any

from attnzoo.cell import Cell, Row

__all__ = ["build_cell", "configure_parser", "default_threads", "main", "parse_kwargs"]


def parse_kwargs(items: list[str] | None, what: str) -> dict[str, Any]:
    """``['{"a": 1}']`` or ``['a=1', 'b=x']`` -> dict; values parse as JSON when they can."""
    out: dict[str, Any] = {}
    for item in items or []:
        item = item.strip()
        if item.startswith("{"):
            try:
                value = json.loads(item)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{what}: not valid JSON ({exc.msg}): {item}") from None
            if not isinstance(value, dict):
                raise ValueError(f"{what}: expected a JSON object, got {item}")
            out.update(value)
            continue
        if "=" not in item:
            raise ValueError(f"{what}: expected key=value or a JSON object, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from attnzoo.cell import SCHEDULES, TRAINER_DEFAULTS, cell_default as d

    parser.description = ("Train one (task, backbone, attention) triple and print its metrics. Every default is "
                          "the attnzoo.cell.Cell field's, the same a leaderboard preset falls back to.")
    parser.add_argument("--task", required=True, help="task name (attnzoo list --tasks)")
    parser.add_argument("--backbone", default="transformer", help="backbone name (attnzoo list --backbones)")
    parser.add_argument("--attention", default=None,
                        help="attention variant, or 'none' for the backbone's no-attention baseline "
                             "[scaled-dot; none for backbones that take no attention, like mlp]")
    parser.add_argument("--task-kwargs", nargs="+", metavar="KW", help="task knobs: JSON object or key=value ...")
    parser.add_argument("--backbone-kwargs", nargs="+", metavar="KW", help="backbone options (d_model=64 ...)")
    parser.add_argument("--attention-kwargs", nargs="+", metavar="KW", help="variant options")
    parser.add_argument("--max-steps", type=int, default=d("max_steps"),
                        help=f"optimizer steps (fresh batch each) [{d('max_steps')}]")
    parser.add_argument("--batch-size", type=int, default=d("batch_size"),
                        help=f"examples per step (per device) [{d('batch_size')}]")
    parser.add_argument("--lr", type=float, default=d("lr"), help=f"peak AdamW learning rate [{d('lr'):g}]")
    parser.add_argument("--warmup-steps", type=int, default=d("warmup_steps"),
                        help=f"linear warmup steps [{d('warmup_steps')}]")
    parser.add_argument("--weight-decay", type=float, default=d("weight_decay"),
                        help=f"AdamW weight decay [{d('weight_decay'):g}]")
    parser.add_argument("--val-every", type=int, default=d("val_every"), help="validate every N steps [max_steps/10]")
    parser.add_argument("--seed", type=int, default=d("seed"), help=f"[{d('seed')}]")
    parser.add_argument("--schedule", default=d("schedule"), choices=SCHEDULES,
                        help=f"learning-rate schedule after warmup [{d('schedule')}]")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads [the idle physical cores, at most 4, shared among --devices "
                             "processes: a loaded machine gets 1]")
    for key, help_text in (("accelerator", "cpu, gpu, mps, auto"), ("devices", "number of devices, or a list like 0,1"),
                           ("strategy", "auto, ddp, fsdp ..."), ("precision", "32-true, bf16-mixed, 16-mixed ...")):
        parser.add_argument(f"--{key}", default=str(TRAINER_DEFAULTS[key]), help=f"{help_text} [{TRAINER_DEFAULTS[key]}]")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="show Lightning's progress bar [on when stdout is a terminal, off in a pipe]")
    parser.add_argument("--logger", action="append", default=None, metavar="NAME", dest="loggers",
                        help="Lightning logger: csv, tensorboard, mlflow, wandb (repeatable), or none "
                             "[csv]; each writes under LOG_DIR/<cell id>/")
    parser.add_argument("--log-dir", default="attnzoo-logs", metavar="LOG_DIR",
                        help="where the loggers write [attnzoo-logs]")
    parser.add_argument("--record-attention", action="store_true", help="print one attention map after training")
    parser.add_argument("--json", action="store_true",
                        help="print the result row as JSON (with the cell it ran) instead of a table")


def _devices(raw: str) -> Any:
    if raw == "auto":
        return raw
    if "," in raw:
        return [int(x) for x in raw.split(",") if x]
    return int(raw)


def _default_attention(backbone: str) -> str | None:
    """The backbone spec's ``default_attention`` (None for one that takes no attention); scaled-dot for
    an unknown name, which is reported later."""
    from attnzoo.backbones import backbone_registry

    if backbone in backbone_registry:
        return backbone_registry.get(backbone)[0].default_attention
    return "scaled-dot"


def _fmt(v: Any, digits: int = 4) -> str:
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _si(v: float | None, unit: str) -> str:
    """``123750.6`` -> ``124k tok/s``: three significant figures are all a timing means."""
    if v is None:
        return f"- {unit}"
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:.3g}{prefix} {unit}"
    return f"{v:.3g} {unit}"


def _print_table(row: Row, cell: Cell) -> None:
    main = row.main_metric
    rows = []
    for name, value in row.metrics.items():
        note = f"chance {row.chance:.3g}" if name == main and row.chance is not None else ""
        rows.append([name + (" *" if name == main else ""), _fmt(value), note])
    width = max([len(r[0]) for r in rows] + [6])
    print(f"\n{cell.task} / {cell.backbone} / {cell.variant} / seed {cell.seed} / lr {cell.lr:g}: {row.status}")
    for name, value, note in rows:
        print(f"  {name.ljust(width)}  {value:>8}  {note}")
    per_step = (row.train_time_s / row.steps) if row.train_time_s and row.steps else None
    mem = f"peak mem {row.peak_mem_mb:.0f} MiB" if row.peak_mem_mb is not None else "peak mem: not measured on CPU"
    params = f"{row.params:,}" if row.params is not None else "-"
    threads = f"  threads {cell.threads}" if cell.threads and cell.on_cpu() else ""
    print(f"  params {params}  steps {row.steps}  train {_fmt(row.train_time_s, 1)} s"
          + (f" ({per_step * 1000:.1f} ms/step)" if per_step else "")
          + f"  {_si(row.tokens_per_s, 'tok/s')}  {mem}{threads}")


def _loggers(names: list[str] | None) -> tuple[str, ...]:
    """``--logger`` values: csv when none is given, nothing for ``none``."""
    names = ["csv"] if names is None else [n.strip().lower() for v in names for n in v.split(",") if n.strip()]
    return tuple(n for n in names if n != "none")


def _physical_cores() -> int:
    """Physical cores this process may run on (hyper-threads counted once)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    try:
        with open("/proc/cpuinfo") as fh:
            blocks = [b for b in fh.read().split("\n\n") if "core id" in b]
        ids = {tuple(re.findall(r"(?:physical id|core id)\s*:\s*(\d+)", b)) for b in blocks}
        per_core = max(1, len(blocks) // len(ids)) if ids else 1
    except OSError:  # not Linux: count logical CPUs
        per_core = 1
    return max(1, usable // per_core)


def default_threads(processes: int = 1) -> tuple[int, str]:
    """torch threads for a run that did not ask: ``(n, why)``.

    The physical cores not already busy (one-minute load average), shared among the
    ``processes`` this run starts on this machine, at most 4 (small models gain
    little past that), at least 1. Threads beyond the free cores spin against other
    work: a loaded 2-core machine ran a small model's step 8x slower with 2 threads
    than with 1 (issue 21).
    """
    cores = _physical_cores()
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = 0.0
    free = max(1, int(cores - load + 0.5))
    n = max(1, min(4, free, cores // max(1, processes)))
    why = f"{cores} physical core(s), 1-min load {load:.1f}"
    if processes > 1:
        why += f", {processes} processes"
    return n, why


def build_cell(args: argparse.Namespace) -> Cell:
    """The :class:`~attnzoo.cell.Cell` ``attnzoo fit``'s flags describe (kwargs parsed, names not yet resolved).

    :raises ValueError: a ``--*-kwargs`` value that is neither ``key=value`` nor a JSON object.
    """
    attention = _default_attention(args.backbone) if args.attention is None else args.attention
    attention = None if str(attention).lower() in ("none", "null", "") else attention
    return Cell(
        task=args.task, task_kwargs=parse_kwargs(args.task_kwargs, "--task-kwargs"),
        backbone=args.backbone, backbone_kwargs=parse_kwargs(args.backbone_kwargs, "--backbone-kwargs"),
        attention=attention, attention_kwargs=parse_kwargs(args.attention_kwargs, "--attention-kwargs"),
        seed=args.seed, max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr,
        warmup_steps=args.warmup_steps, schedule=args.schedule, weight_decay=args.weight_decay,
        val_every=args.val_every, threads=args.threads, record_attention=args.record_attention,
        progress=sys.stdout.isatty() if args.progress is None else args.progress,
        loggers=_loggers(args.loggers),
        trainer={"accelerator": args.accelerator, "devices": _devices(args.devices),
                 "strategy": args.strategy, "precision": args.precision},
    )


def main(args: argparse.Namespace) -> int:
    from attnzoo.cell import CellError, PairDoesNotFit
    from attnzoo.resolve import resolve
    from attnzoo.errors import UnknownNameError

    from attnzoo.plugins import warn_failures

    warn_failures()
    from attnzoo.loggers import LoggerError, check_loggers

    try:
        cell = build_cell(args)
        resolve(cell)  # every name and kwarg checked before Lightning is imported
        check_loggers(cell.loggers)  # every missing extra named before anything trains
    except (ValueError, CellError, PairDoesNotFit, UnknownNameError, LoggerError) as exc:
        print(f"attnzoo fit: {exc}", file=sys.stderr)
        return 2
    if cell.loggers:
        cell = cell.replace(log_dir=os.path.join(args.log_dir, cell.id()))
    if cell.threads is None and cell.on_cpu():
        devices = cell.trainer.get("devices")
        threads, why = default_threads(devices if isinstance(devices, int) and devices > 1 else 1)
        cell = cell.replace(threads=threads)
        print(f"attnzoo fit: {threads} torch thread(s) ({why}; --threads N to choose)", file=sys.stderr)

    from attnzoo.harness.run import run_cell

    row = run_cell(cell)
    if int(os.environ.get("LOCAL_RANK", "0")) != 0 or int(os.environ.get("NODE_RANK", "0")) != 0:
        return 0 if row.status == "ok" else 1
    if args.json:
        out = row.replace(seed=cell.seed, lr=cell.lr, task=cell.task, task_name=cell.task, backbone=cell.backbone,
                          variant=cell.variant, cell=cell.to_json())
        print(json.dumps(out.to_json()))
    else:
        _print_table(row, cell)
        if cell.loggers:
            print(f"  logs ({', '.join(cell.loggers)}): {cell.log_dir}"
                  + (f"  (tensorboard --logdir {cell.log_dir})" if "tensorboard" in cell.loggers else ""))
        if row.error:
            print(f"\n{row.error}", file=sys.stderr)
        if args.record_attention and row.attention_map:
            am = row.attention_map
            print(f"\nattention map (src {am['src']}, tgt {am['tgt']}):")
            for r in am["weights"]:
                print("  " + " ".join(f"{w:.2f}" for w in r))
    return 0 if row.status == "ok" else 1


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="attnzoo fit")
    configure_parser(_parser)
    sys.exit(main(_parser.parse_args()))
