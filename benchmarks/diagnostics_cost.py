"""What the alignment diagnostics add to a preset's cells: their time against each cell's own.

For every finished row of a reference results file (default: the committed default preset), builds the
cell's model untrained (the diagnostics' cost does not depend on the weights: the same two forward passes
on the same 64 examples), draws the held-out batch as ``run_cell`` does, and times
:meth:`AttnzooModule.alignment_diagnostics`. Prints per (task, backbone, variant) the diagnostics' seconds
beside the reference cell's wall seconds, and the preset-level ratio sum(diagnostics) / sum(cell wall).

The reference rows were timed on their own machine (the committed default: an idle 2-core CPU); the
diagnostics are timed here, so on a loaded machine the ratio is an upper bound. Say so when you quote it::

    python benchmarks/diagnostics_cost.py                       # every group of the default preset
    python benchmarks/diagnostics_cost.py --tasks copy,mqar --repeat 3
"""

from __future__ import annotations

import argparse
import fnmatch
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
DEFAULT = ROOT / "results" / "default" / "results.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default=str(DEFAULT), help="reference results.jsonl (default: the committed default)")
    ap.add_argument("--tasks", default="*", help="comma-separated fnmatch patterns of task labels")
    ap.add_argument("--repeat", type=int, default=1, help="timings per group (the median is kept)")
    args = ap.parse_args()
    torch.set_num_threads(1)

    from attnzoo.cell import Cell
    from attnzoo.diagnostics import DIAGNOSTIC_BATCH
    from attnzoo.harness.data import TaskDataModule
    from attnzoo.harness.module import AttnzooModule
    from attnzoo.leaderboard.store import latest_rows, read_rows

    patterns = [p.strip() for p in args.tasks.split(",") if p.strip()]
    rows = [r for r in latest_rows(read_rows(args.results)) if r.get("status") == "ok"
            and any(fnmatch.fnmatch(r.get("task") or "", p) for p in patterns)]
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["task"], r["backbone"], r["variant"]), []).append(r)
    total_diag = total_wall = 0.0
    print(f"{'task':22} {'backbone':12} {'variant':11} {'diag s':>7} {'cell s':>7} {'ratio':>6}")
    for (task, backbone, variant), rs in groups.items():
        cell = Cell.from_json(rs[0]["cell"])
        module = AttnzooModule(cell)
        dm = TaskDataModule(module.task, cell.batch_size, cell.seed, eval_batch_size=cell.eval_batch_size,
                            test_splits=module.test_splits)
        times = []
        for _ in range(max(1, args.repeat)):
            start = time.perf_counter()
            out = module.alignment_diagnostics(dm.held_out("test", DIAGNOSTIC_BATCH))
            times.append(time.perf_counter() - start)
        diag = statistics.median(times) if out is not None else 0.0
        wall = statistics.median(r["provenance"]["wall_s"] for r in rs)
        total_diag += diag * len(rs)
        total_wall += sum(r["provenance"]["wall_s"] for r in rs)
        print(f"{task:22} {backbone:12} {variant:11} {diag:7.3f} {wall:7.1f} {diag / wall:6.1%}"
              + ("" if out is not None else "  (no diagnostics: no source attention)"))
    print(f"\n{len(rows)} cells: diagnostics {total_diag:.1f} s over cells of {total_wall:.1f} s wall "
          f"({total_diag / max(total_wall, 1e-9):.2%}); the diagnostics timed on this machine, the cells on the "
          "reference's")


if __name__ == "__main__":
    main()
