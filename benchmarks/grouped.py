#!/usr/bin/env python
"""Grouped vs one cell at a time: a preset's cells on the device at hand.

For every group the planner would form (cells of one task / backbone / variant differing only in
seed, learning rate or weight decay), the same cells train twice in this one process, interleaved
(the order alternates between groups so load hits both alike):

- **single**: :func:`attnzoo.harness.run.run_cell` on each member in turn (what ``--group off`` runs);
- **grouped**: :func:`attnzoo.harness.grouped.run_group` on all of them (what ``--group on`` runs).

Each is timed end to end (build, train, validate, test: what a grid pays per cell), wall clock and
this process's CPU seconds. A line per group: members, the path the group took (``grouped`` or the
fallback's reason), cells/s both ways and the ratio grouped / single of the time (< 1: grouping is
faster), and the largest difference between a member's metrics both ways (the equivalence check on
real budgets). A summary line per backbone sums them. Writes ``grouped.md`` and ``grouped.json``.

Example (the CPU figures: ``benchmarks/results/grouped-cpu/``)::

    python benchmarks/grouped.py --tasks mqar,selective-copy --steps 100 --out benchmarks/results/grouped-cpu

On a GPU add ``--accelerator gpu``. Threads: one torch thread unless ``--threads``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch


def _time(fn: Any) -> tuple[Any, float, float]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - t0, time.process_time() - c0


def _metric_gap(a: Any, b: Any) -> float | None:
    if a.status != "ok" or b.status != "ok" or a.metrics.keys() != b.metrics.keys():
        return None
    return max((abs(a.metrics[k] - b.metrics[k]) for k in a.metrics), default=0.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--tasks", help="comma-separated patterns of the preset's task entries")
    parser.add_argument("--variants", help="comma-separated patterns")
    parser.add_argument("--backbones", help="comma-separated patterns")
    parser.add_argument("--steps", type=int, help="optimizer steps per cell (overrides the preset)")
    parser.add_argument("--seeds", type=int, help="seeds per cell (overrides the preset)")
    parser.add_argument("--accelerator", default=None, help="cpu (the preset's) or gpu")
    parser.add_argument("--precision", default=None, help="e.g. bf16-mixed")
    parser.add_argument("--group-size", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="write grouped.md and grouped.json here")
    args = parser.parse_args(argv)

    from attnzoo.harness.grouped import run_group
    from attnzoo.harness.run import run_cell
    from attnzoo.leaderboard.grid import expand, load_preset
    from attnzoo.leaderboard.grouping import GridGroup, GroupPolicy, plan

    torch.set_num_threads(args.threads)
    trainer = {k: v for k, v in (("accelerator", args.accelerator), ("precision", args.precision)) if v}
    preset = load_preset(args.preset, overrides={"max_steps": args.steps, "seeds": args.seeds,
                                                 "trainer": trainer or None})
    split = (lambda s: s.split(",") if s else None)  # noqa: E731
    cells = expand(preset, tasks=split(args.tasks), variants=split(args.variants), backbones=split(args.backbones))
    units = [u for u in plan([gc for gc in cells if gc.runnable], GroupPolicy("on", args.group_size))
             if isinstance(u, GridGroup)]
    results = []
    for i, unit in enumerate(units):
        members = [gc.cell.replace(threads=args.threads) for gc in unit.members]
        runs = {
            "single": lambda m=members: [run_cell(c) for c in m],
            "grouped": lambda m=members: run_group(m),
        }
        order = ["single", "grouped"] if i % 2 == 0 else ["grouped", "single"]
        timed = {name: _time(runs[name]) for name in order}
        single_rows, t_single, c_single = timed["single"]
        group_rows, t_group, c_group = timed["grouped"]
        ex = group_rows[0].execution or {}
        path = "grouped" if ex.get("path") == "grouped" else f"single ({ex.get('fallback', '?')[:60]})"
        gaps = [g for g in (_metric_gap(a, b) for a, b in zip(group_rows, single_rows)) if g is not None]
        first = unit.members[0]
        results.append({
            "task": first.task, "backbone": first.backbone, "variant": first.variant, "members": len(members),
            "steps": members[0].max_steps, "path": path,
            "single_s": round(t_single, 3), "grouped_s": round(t_group, 3),
            "single_cpu_s": round(c_single, 3), "grouped_cpu_s": round(c_group, 3),
            "ratio": round(t_group / t_single, 3), "cpu_ratio": round(c_group / c_single, 3),
            "max_metric_gap": max(gaps) if gaps else None,
        })
        r = results[-1]
        print(f"{r['task']:<22} {r['backbone']:<11} {r['variant']:<11} x{r['members']}  single {t_single:7.2f}s  "
              f"grouped {t_group:7.2f}s  ratio {r['ratio']:.3f}  cpu ratio {r['cpu_ratio']:.3f}  "
              f"gap {r['max_metric_gap']}  {path}", flush=True)

    device = (f"cuda: {torch.cuda.get_device_name(0)}" if trainer.get("accelerator") in ("gpu", "cuda")
              and torch.cuda.is_available() else f"cpu: {platform.processor() or platform.machine()}, "
              f"{args.threads} thread(s)")
    lines = [f"# Grouped vs one cell at a time ({args.preset}, {device})", "",
             f"`python benchmarks/grouped.py {' '.join(argv if argv is not None else sys.argv[1:])}`", "",
             "| task | backbone | variant | members | path | single cells/s | grouped cells/s | ratio (time) | "
             "CPU ratio | max metric gap |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['task']} | {r['backbone']} | {r['variant']} | {r['members']} | {r['path']} | "
                     f"{r['members'] / r['single_s']:.3f} | {r['members'] / r['grouped_s']:.3f} | {r['ratio']:.3f} | "
                     f"{r['cpu_ratio']:.3f} | {r['max_metric_gap']} |")
    lines += ["", "| backbone | groups | cells | ratio (summed time) | CPU ratio |", "|---|---|---|---|---|"]
    for backbone in sorted({r["backbone"] for r in results}):
        rs = [r for r in results if r["backbone"] == backbone]
        lines.append(f"| {backbone} | {len(rs)} | {sum(r['members'] for r in rs)} | "
                     f"{sum(r['grouped_s'] for r in rs) / sum(r['single_s'] for r in rs):.3f} | "
                     f"{sum(r['grouped_cpu_s'] for r in rs) / sum(r['single_cpu_s'] for r in rs):.3f} |")
    if results:
        lines.append(f"| all | {len(results)} | {sum(r['members'] for r in results)} | "
                     f"{sum(r['grouped_s'] for r in results) / sum(r['single_s'] for r in results):.3f} | "
                     f"{sum(r['grouped_cpu_s'] for r in results) / sum(r['single_cpu_s'] for r in results):.3f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "grouped.md").write_text(text)
        (args.out / "grouped.json").write_text(json.dumps({"device": device, "torch": torch.__version__,
                                                           "rows": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
