"""``attnzoo fit``: train one (task, backbone, attention) triple and print its metrics.

Example::

    attnzoo fit --task associative-recall --backbone transformer --attention scaled-dot \\
        --max-steps 2000 --batch-size 64 --lr 3e-3 --task-kwargs num_pairs=8
    attnzoo fit --task copy --backbone seq2seq --attention none --task-kwargs '{"length": 20}'

It runs the same code as a leaderboard cell (:func:`attnzoo.harness.run.run_cell`)
with Lightning's progress bar on, then prints a table of every metric with the
task's chance level beside the main one.

Several GPUs need no code change: ``--accelerator gpu --devices 4 --strategy ddp``.
Lightning re-launches this command once per rank; each rank draws its own
training stream (the rank is mixed into the data seed, so the effective batch
is ``batch_size * devices``), evaluation batches are split across ranks and the
metrics are synced by torchmetrics. Only rank 0 prints.

Lightning is imported only inside :func:`main`, so ``attnzoo --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

__all__ = ["configure_parser", "main", "parse_kwargs"]


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
    parser.description = "Train one (task, backbone, attention) triple and print its metrics."
    parser.add_argument("--task", required=True, help="task name (attnzoo list --tasks)")
    parser.add_argument("--backbone", default="transformer", help="backbone name (attnzoo list --backbones)")
    parser.add_argument("--attention", default=None,
                        help="attention variant, or 'none' for the backbone's no-attention baseline "
                             "[scaled-dot; none for backbones that take no attention, like mlp]")
    parser.add_argument("--task-kwargs", nargs="+", metavar="KW", help="task knobs: JSON object or key=value ...")
    parser.add_argument("--backbone-kwargs", nargs="+", metavar="KW", help="backbone options (d_model=64 ...)")
    parser.add_argument("--attention-kwargs", nargs="+", metavar="KW", help="variant options")
    parser.add_argument("--max-steps", type=int, default=1000, help="optimizer steps (fresh batch each) [1000]")
    parser.add_argument("--batch-size", type=int, default=64, help="examples per step (per device) [64]")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate [1e-3]")
    parser.add_argument("--warmup-steps", type=int, default=100, help="linear warmup steps [100]")
    parser.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay [0.01]")
    parser.add_argument("--val-every", type=int, default=None, help="validate every N steps [max_steps/10]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--accelerator", default="auto", help="cpu, gpu, mps, auto [auto]")
    parser.add_argument("--devices", default="1", help="number of devices, or a list like 0,1 [1]")
    parser.add_argument("--strategy", default="auto", help="auto, ddp, fsdp ... [auto]")
    parser.add_argument("--precision", default="32-true", help="32-true, bf16-mixed, 16-mixed ... [32-true]")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                        help="show Lightning's progress bar [on]")
    parser.add_argument("--record-attention", action="store_true", help="print one attention map after training")
    parser.add_argument("--json", action="store_true", help="print the result row as JSON instead of a table")


def _devices(raw: str) -> Any:
    if raw == "auto":
        return raw
    if "," in raw:
        return [int(x) for x in raw.split(",") if x]
    return int(raw)


def _default_attention(backbone: str) -> str | None:
    """scaled-dot, or None for a backbone that takes no attention (an unknown name is reported later)."""
    from attnzoo.backbones import backbone_registry

    if backbone in backbone_registry and backbone_registry.get(backbone)[0].attention == "none":
        return None
    return "scaled-dot"


def _check(task: str, task_kwargs: dict, backbone: str, attention: str | None) -> str | None:
    """Resolve the names before any training; a human error message, or None."""
    from attnzoo.errors import UnknownNameError
    from attnzoo.harness.module import PairDoesNotFit, resolve

    try:
        resolve(task, task_kwargs, backbone, attention)
    except (UnknownNameError, PairDoesNotFit, TypeError, ValueError) as exc:
        return str(exc)
    return None


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _print_table(row: dict[str, Any], cell: dict[str, Any]) -> None:
    main = row["main_metric"]
    rows = []
    for name, value in row["metrics"].items():
        note = f"chance {row['chance']:.4g}" if name == main and row["chance"] is not None else ""
        rows.append([name + (" *" if name == main else ""), _fmt(value), note])
    width = max([len(r[0]) for r in rows] + [6])
    att = cell["attention"] if cell["attention"] is not None else "none"
    print(f"\n{cell['task']} / {cell['backbone']} / {att}: {row['status']}")
    for name, value, note in rows:
        print(f"  {name.ljust(width)}  {value:>8}  {note}")
    per_step = (row["train_time_s"] / row["steps"]) if row["train_time_s"] and row["steps"] else None
    print(f"  params {row['params']:,}  steps {row['steps']}  train {_fmt(row['train_time_s'])} s"
          + (f" ({per_step * 1000:.1f} ms/step)" if per_step else "")
          + f"  {_fmt(row['tokens_per_s'])} tok/s  peak mem {_fmt(row['peak_mem_mb'])} MiB ({row['peak_mem_kind']})")


def main(args: argparse.Namespace) -> int:
    try:
        task_kwargs = parse_kwargs(args.task_kwargs, "--task-kwargs")
        backbone_kwargs = parse_kwargs(args.backbone_kwargs, "--backbone-kwargs")
        attention_kwargs = parse_kwargs(args.attention_kwargs, "--attention-kwargs")
    except ValueError as exc:
        print(f"attnzoo fit: {exc}", file=sys.stderr)
        return 2
    attention = _default_attention(args.backbone) if args.attention is None else args.attention
    attention = None if str(attention).lower() in ("none", "null", "") else attention
    problem = _check(args.task, task_kwargs, args.backbone, attention)
    if problem:
        print(f"attnzoo fit: {problem}", file=sys.stderr)
        return 2

    from attnzoo.harness.run import run_cell

    cell = {
        "task": args.task, "task_kwargs": task_kwargs,
        "backbone": args.backbone, "backbone_kwargs": backbone_kwargs,
        "attention": attention, "attention_kwargs": attention_kwargs,
        "seed": args.seed, "max_steps": args.max_steps, "batch_size": args.batch_size, "lr": args.lr,
        "warmup_steps": args.warmup_steps, "weight_decay": args.weight_decay, "val_every": args.val_every,
        "threads": args.threads, "record_attention": args.record_attention, "progress": args.progress,
        "trainer": {"accelerator": args.accelerator, "devices": _devices(args.devices),
                    "strategy": args.strategy, "precision": args.precision},
    }
    row = run_cell(cell)
    if int(os.environ.get("LOCAL_RANK", "0")) != 0 or int(os.environ.get("NODE_RANK", "0")) != 0:
        return 0 if row["status"] == "ok" else 1
    if args.json:
        print(json.dumps(row))
    else:
        _print_table(row, cell)
        if row["error"]:
            print(f"\n{row['error']}", file=sys.stderr)
        if row["attention_map"]:
            am = row["attention_map"]
            print(f"\nattention map (src {am['src']}, tgt {am['tgt']}):")
            for r in am["weights"]:
                print("  " + " ".join(f"{w:.2f}" for w in r))
    return 0 if row["status"] == "ok" else 1


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="attnzoo fit")
    configure_parser(_parser)
    sys.exit(main(_parser.parse_args()))
