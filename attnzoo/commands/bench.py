"""``attnzoo bench``: run the leaderboard grid, and its ``report``, ``merge``, ``verify``, ``export`` and
``export-attention`` sub-commands.

A grid run goes :func:`plan_bench` (flags -> preset -> cells -> folder; writes nothing) ->
:func:`check_bench` (every reason not to start, at once) -> :func:`execute_bench` (executor ->
:func:`~attnzoo.leaderboard.runner.run_grid` -> results store -> report). Lightning is imported only by the workers that run cells (through
:func:`attnzoo.harness.run.run_cell`), never when this module is imported.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attnzoo.errors import AttnzooError
from attnzoo.leaderboard.grid import (FilterError, GridCell, Preset, PresetError, expand, list_presets,
                                      load_preset, parse_shard, shard)
from attnzoo.leaderboard.lock import LOCK_NAME, OutDirLocked, OutLock
from attnzoo.leaderboard.store import RESULTS, ResultStore, finished_ids, merge, read_rows

__all__ = ["BenchPlan", "BenchProblems", "check_bench", "configure_parser", "execute_bench", "executor_from_args",
           "main", "plan_bench", "run_bench"]

EPILOG = """\
examples:
  attnzoo bench --preset smoke                   seconds per cell: check the install
  attnzoo bench                                  the main job: the default preset, one worker per core
  attnzoo bench --preset default --dry-run       print the grid, n/a pairs with their reasons
  attnzoo bench --preset default --resume        after Ctrl-C or a crash: run only what is missing
  attnzoo bench --variants '*dot*,none' --tasks copy --seeds 3 --out bench-out/dots
  attnzoo bench --variants my-score --against default   train only my-score's cells, rank it among the
                                                 shipped reference rows (leaderboard + ranking.md in --out)
  attnzoo bench --preset paper --accelerator gpu --devices 1 --shard 0/4 --out runs/paper-0
  attnzoo bench merge runs/paper runs/paper-0 runs/paper-1 runs/paper-2 runs/paper-3
  attnzoo bench report bench-out/default         rebuild tables and figures from results.jsonl
  attnzoo bench export bench-out/default --format lm-eval   one lm-evaluation-harness results JSON per model
  attnzoo bench export-attention bench-out/default CELL_ID   one cell's maps for bertviz (torch.save)
"""


def _patterns(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    out = [p.strip() for v in values for p in v.split(",") if p.strip()]
    return out or None


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _devices(text: str) -> Any:
    return int(text) if text.lstrip("-").isdigit() else text


def _references() -> list[str]:
    from attnzoo.leaderboard.against import list_references

    return list_references()


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add ``bench``'s options and its sub-commands (``report``, ``merge``, ``verify``, ``export``,
    ``export-attention``) to ``parser``."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    _add_grid_options(parser)
    g = parser.add_argument_group("Lightning Trainer options (reach every cell)")
    g.add_argument("--accelerator", help="cpu, gpu, mps, auto")
    g.add_argument("--devices", type=_devices, help="number of devices, or a list such as 0,1")
    g.add_argument("--strategy", help="auto, ddp, ddp_spawn, fsdp ...")
    g.add_argument("--precision", help="32-true, 16-mixed, bf16-mixed ...")
    parser.add_argument("--group", choices=("auto", "on", "off"), default="auto",
                        help="train cells that differ only in seed, lr or weight decay as one vectorized model "
                             "(auto: on CUDA for the backbones that vectorize, one cell at a time on the CPU; "
                             "the rows are the one-cell rows within float rounding)")
    parser.add_argument("--group-size", type=_positive, default=None, metavar="N",
                        help="at most N cells per group (default 16)")
    parser.add_argument("--progress", action="store_true", help="also show Lightning's progress bar in each cell")
    parser.add_argument("--logger", action="append", default=[], metavar="NAME", dest="loggers",
                        help="also log each cell with Lightning's NAME logger (csv, tensorboard, mlflow, wandb; "
                             "repeatable) under OUT/logs/<cell_id>/; none by default")
    parser.add_argument("--dry-run", action="store_true", help="print the grid (n/a pairs and reasons) and exit")
    parser.add_argument("--no-report", action="store_true", help="do not build the report at the end")
    # tests and other backends inject a cell runner: MODULE:FUNCTION taking a cell dict, returning a row
    parser.add_argument("--run-cell", default=None, help=argparse.SUPPRESS)
    from attnzoo.leaderboard.ray_backend import add_ray_arguments  # imports no ray

    add_ray_arguments(parser)
    _add_sub_commands(parser)


def _add_grid_options(parser: argparse.ArgumentParser) -> None:
    """What to run and where: preset, filters, budget overrides, jobs, folder, resume, ``--against``, shard."""
    parser.add_argument("--preset", default="default", metavar="NAME|PATH",
                        help=f"built-in preset ({', '.join(list_presets()) or 'none found'}) or a YAML file "
                             "(default: default)")
    parser.add_argument("--variants", action="append", metavar="PATTERNS",
                        help="only these variants: comma-separated fnmatch patterns; 'none' = baselines")
    parser.add_argument("--tasks", action="append", metavar="PATTERNS", help="only these of the preset's tasks (patterns)")
    parser.add_argument("--backbones", action="append", metavar="PATTERNS", help="only these backbones (patterns)")
    parser.add_argument("--seeds", type=int, metavar="N", help="seeds 0..N-1 (overrides the preset)")
    parser.add_argument("--steps", type=int, metavar="N", help="optimizer steps per cell, every task (overrides)")
    parser.add_argument("--jobs", "-j", type=int, default=None, metavar="N",
                        help="worker processes, each with cores/N torch threads (default: one per core on "
                             "the CPU, 1 with an accelerator)")
    parser.add_argument("--out", metavar="DIR", help="output directory (default: bench-out/<preset>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue in a non-empty DIR: run only cells without a row")
    parser.add_argument("--retry-diverged", action="store_true",
                        help="with --resume: also rerun cells whose row says diverged (same seed, same code: "
                             "the same result, unless the code or the machine changed)")
    parser.add_argument("--retry-failed", action="store_true",
                        help="with --resume: also rerun cells whose row says failed or oom")
    parser.add_argument("--against", metavar="REF",
                        help="rank --variants among reference results: REF is a results directory or a shipped "
                             "reference (" + (", ".join(_references()) or "none found") + "); its rows are copied "
                             "into --out, only the new cells train, with the reference's preset, seeds and config "
                             "hash (refused when they or the attnzoo version differ), and --out gets the "
                             "leaderboard plus ranking.md")
    parser.add_argument("--shard", metavar="I/N", help="run only shard I of N (0 <= I < N), split by cell id")


def _add_sub_commands(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench_command", metavar="{report,merge,verify,export,export-attention}", title="sub-commands")
    sub.required = False
    p = sub.add_parser("report", help="rebuild tables and figures of DIR from its results.jsonl alone",
                       description="Rebuild leaderboard.md/.csv/.html and the figures from DIR/results.jsonl.")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--config", metavar="HASH", help="report only the rows of this config hash (a folder that "
                                                     "mixes configurations is refused otherwise)")
    p = sub.add_parser("verify", help="rerun cells of committed results with today's code; compare exactly",
                       description="Rerun cells of DIR/results.jsonl (each row's own recorded cell) and report, "
                                   "per cell, identical or different (the fields and both values). rc 1 when "
                                   "any cell differs.")
    _verify_parser(p)
    p = sub.add_parser("merge", help="join results of several runs (shards) into OUT and report",
                       description="Join DIR.../results.jsonl into OUT/results.jsonl (one row per cell), "
                                   "then build OUT's report.")
    p.add_argument("out", metavar="OUT")
    p.add_argument("dirs", metavar="DIR", nargs="+")
    p.add_argument("--no-report", action="store_true", help="only merge")
    p = sub.add_parser("export", help="write DIR's results in another tool's format (lm-eval)",
                       description="One JSON per (variant, backbone) in lm-evaluation-harness's results layout: "
                                   "the mean over seeds at the best lr and its standard error, per task.")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--format", default="lm-eval", choices=["lm-eval"], help="output format [lm-eval]")
    p.add_argument("--out", metavar="OUTDIR", help="where to write (default: DIR/lm-eval)")
    p = sub.add_parser("export-attention", help="write one cell's attention maps in bertviz's layout",
                       description="Write CELL_ID's stored attention maps (every layer and head, example 0 of "
                                   "its diagnostics batch) with torch.save: payload['bertviz'] holds "
                                   "cross_attention [(1, heads, q, k) per layer], encoder_tokens and "
                                   "decoder_tokens, so bertviz's head_view(**payload['bertviz']) opens it.")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("cell_id", metavar="CELL_ID", help="the cell's id (or a unique prefix), as in results.jsonl")
    p.add_argument("--out", metavar="FILE", help="default: DIR/attention-<cell_id>.pt")


def _err(msg: str) -> None:
    print(f"attnzoo bench: {msg}", file=sys.stderr)


def _print_grid(cells: list[GridCell], done: set[str]) -> None:
    groups: dict[tuple[str, str, str], list[GridCell]] = {}
    for gc in cells:
        groups.setdefault((gc.task, gc.backbone, gc.variant), []).append(gc)
    width = max((len(f"{t} / {b} / {v}") for t, b, v in groups), default=10)
    n_run = n_na = n_done = 0
    for (task, backbone, variant), gcs in groups.items():
        name = f"{task} / {backbone} / {variant}".ljust(width)
        if not gcs[0].runnable:
            n_na += 1
            print(f"n/a   {name}  {gcs[0].reason}")
            continue
        seeds = sorted({gc.seed for gc in gcs})
        lrs = sorted({gc.lr for gc in gcs})
        finished = sum(gc.id in done for gc in gcs)
        n_run += len(gcs)
        n_done += finished
        steps = gcs[0].cell.max_steps
        extra = f", {finished} done" if finished else ""
        print(f"run   {name}  seeds {','.join(map(str, seeds))} x lr {','.join(f'{x:g}' for x in lrs)} "
              f"x {steps} steps ({len(gcs)} cell(s){extra})")
    print(f"\n{n_run} cell(s) to train ({n_done} already done), {n_na} n/a pair(s)")


def _unwritable(out: Path) -> str | None:
    """Why results cannot be written under ``out`` (checked before any cell trains), or None."""
    for parent in (out, *out.parents):
        if parent.exists():
            if not parent.is_dir():
                what = "is" if parent == out else f"has {parent}, which is"
                return f"--out {out}: {what} a file, not a directory; pick another --out"
            probe = parent / f".attnzoo-write-test-{os.getpid()}"
            try:
                if parent == out:
                    probe.write_bytes(b"")
                    probe.unlink()
                else:
                    out.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                return f"--out {out}: cannot write there ({exc.strerror or exc}); pick another --out"
            return None
    return None


def _is_empty(d: Path) -> bool:
    return not d.exists() or all(p.name == LOCK_NAME for p in d.iterdir())


def _record_run(out: Path, entry: dict[str, Any]) -> None:
    path = out / "runs.json"
    try:
        runs = json.loads(path.read_text()) if path.exists() else []
    except json.JSONDecodeError:
        runs = []
    runs.append(entry)
    tmp = path.with_suffix(".json.tmp")
    try:  # the run's log; the results are in results.jsonl whatever happens here
        tmp.write_text(json.dumps(runs, indent=2))
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        _err(f"warning: could not record this run in {path}: {exc.strerror or exc}")


@contextlib.contextmanager
def _interrupts(resume: str = "") -> Iterator[None]:
    """Ctrl-C and SIGTERM (``kill``, a scheduler's time limit) raise KeyboardInterrupt once, so the
    command stops as cleanly as it can; a second one while it stops ends the process at once
    (finished rows are already on disk, and the workers exit when their driver is gone).

    :param resume: the command that resumes, printed on that second signal too.
    """
    last_words = ("\nattnzoo bench: interrupted again: exiting now"
                  + (f"; finished cells are saved. Resume with:\n  {resume}" if resume else "") + "\n").encode()

    def again(signum: int, frame: Any) -> None:
        os.write(2, last_words)
        os._exit(130)

    def first(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGINT, again)
        signal.signal(signal.SIGTERM, again)
        raise KeyboardInterrupt

    try:
        previous = {sig: signal.signal(sig, first) for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread (embedded use): leave the signals alone
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():  # None: a handler not set from Python; the default then
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


def _interrupted(out: Path | None, argv: list[str] | None) -> int:
    from attnzoo.leaderboard.runner import resume_hint

    if out is None or not (out / RESULTS).exists():
        _err("interrupted before any cell finished" + (f"; start again with:\n  {resume_hint(argv)}"
                                                      if out is not None else ""))
        return 130
    rows = read_rows(out)
    ran = sum(r.get("status") != "n/a" for r in rows)
    _err(f"interrupted: {ran} finished cell(s) (and {len(rows) - ran} n/a row(s)) are saved in {out / RESULTS}; "
         f"cells in flight were stopped and will run again. Resume with:\n  {resume_hint(argv)}")
    return 130


@dataclass
class BenchPlan:
    """What ``attnzoo bench`` will do, decided from its flags before anything is written.

    :ivar preset: the loaded preset (with the flags' overrides).
    :ivar cells: the grid after ``--variants/--tasks/--backbones`` and ``--shard``.
    :ivar out: the results folder.
    :ivar jobs: worker processes (the flag, else one per core on the CPU, 1 with an accelerator).
    :ivar reference: the ``--against`` reference, or None.
    """

    preset: Preset
    cells: list[GridCell]
    out: Path
    jobs: int
    reference: Any = None

    def variants(self) -> list[str]:
        """The variants this run trains (``--against`` ranks them among the reference rows)."""
        return sorted({gc.variant for gc in self.cells}) if self.reference is not None else []


class BenchProblems(AttnzooError):
    """Why ``attnzoo bench`` will not run, every reason found at once (printed one a line, rc 2)."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def run_bench(args: argparse.Namespace, *, executor: Any = None, catalog: Any = None,
              argv: list[str] | None = None) -> int:
    """The grid command: :func:`plan_bench` -> :func:`check_bench` -> :func:`execute_bench`.

    ``executor`` and ``catalog`` are for tests and other backends. It holds ``--out``'s lock
    (:class:`~attnzoo.leaderboard.lock.OutLock`) from before it looks at the folder until it
    exits, and stops on Ctrl-C or SIGTERM at any moment with rc 130 and the command that resumes.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    state: dict[str, Any] = {}
    from attnzoo.leaderboard.runner import resume_hint

    with contextlib.ExitStack() as stack, _interrupts(resume_hint(argv)):
        try:
            return _run_bench(args, executor, catalog, argv, stack, state)
        except KeyboardInterrupt:
            if state.get("executor") is not None:
                state["executor"].close(cancel=True)
            return _interrupted(state.get("out"), argv)


def _run_bench(args: argparse.Namespace, executor: Any, catalog: Any, argv: list[str],
               stack: contextlib.ExitStack, state: dict[str, Any]) -> int:
    from attnzoo.plugins import warn_failures

    warn_failures()  # a plugin that failed to load would otherwise just be missing from the grid
    try:
        plan = plan_bench(args, catalog=catalog)
        if args.dry_run:
            _print_plan(plan, args)
            return 0
        problem = _unwritable(plan.out)  # may create the folder: the probe needs somewhere to write
        if problem:
            raise BenchProblems([problem])
        lock = OutLock(plan.out, command=shlex.join(["attnzoo", *argv]))
        stack.callback(lock.release)  # registered first: a Ctrl-C that lands as acquire() returns still releases
        state["out"] = plan.out
        try:  # before the folder is looked at: a second writer is refused before it decides anything
            lock.acquire()
        except OutDirLocked as exc:
            raise BenchProblems([str(exc)]) from None
        check_bench(plan, args)
    except BenchProblems as exc:
        for problem in exc.problems:
            _err(problem)
        return 2
    return execute_bench(plan, args, executor=executor, argv=argv, state=state)


def plan_bench(args: argparse.Namespace, *, catalog: Any = None) -> BenchPlan:
    """The preset, the grid and the folder ``args`` ask for; writes nothing.

    :raises BenchProblems: every problem with the flags found before the grid could be built.
    """
    problems = _flag_problems(args)
    reference = _load_reference(args, problems)
    overrides = {"seeds": args.seeds, "max_steps": args.steps,
                 "trainer": {k: getattr(args, k, None) for k in ("accelerator", "devices", "strategy", "precision")}}
    preset_arg = args.preset
    if reference is not None:  # the reference's own preset, unless one is named (a run from a preset file)
        preset_arg = args.preset if args.preset not in (None, "default") else reference.presets[0]
        if args.seeds is None:
            overrides["seeds"] = reference.seeds or None
    try:
        preset = load_preset(preset_arg, overrides=overrides, catalog=catalog)
        cells = expand(preset, variants=_patterns(args.variants), tasks=_patterns(args.tasks),
                       backbones=_patterns(args.backbones), catalog=catalog)
    except (PresetError, FileNotFoundError) as exc:
        hint = ""
        if reference is not None and isinstance(exc, FileNotFoundError) and preset_arg != args.preset:
            hint = (f"\n  (--against {args.against}: its rows were trained with preset {preset_arg!r}, which is not "
                    f"built in; pass that preset's file with --preset)")
        raise BenchProblems([*problems, str(exc) + hint]) from None
    except FilterError as exc:
        raise BenchProblems([*problems, str(exc)]) from None
    if reference is not None:
        problems += _comparability(args, reference, preset, catalog)
    shard_tag = ""
    if args.shard and not problems:
        i, n = parse_shard(args.shard)  # checked by _flag_problems
        cells = shard(cells, i, n)
        shard_tag = f"-shard{i}of{n}"
    if problems:
        raise BenchProblems(problems)
    if reference is not None:
        from attnzoo.leaderboard import against

        out = Path(args.out or against.default_out(reference, _patterns(args.variants) or []))
    else:
        out = Path(args.out or Path("bench-out") / f"{preset.name}{shard_tag}")
    jobs = args.jobs
    if jobs is None:  # small models train best as one single-threaded cell per core
        from attnzoo.leaderboard.backend import cpu_count

        jobs = cpu_count() if preset.trainer.get("accelerator") == "cpu" else 1
    return BenchPlan(preset=preset, cells=cells, out=out, jobs=jobs, reference=reference)


def _flag_problems(args: argparse.Namespace) -> list[str]:
    """Flags that contradict each other, whatever the preset holds."""
    problems = []
    if getattr(args, "against", None):
        if not _patterns(args.variants):
            problems.append("--against needs --variants NAME: the variant(s) to train and rank among the "
                            "reference rows")
        if args.shard:
            problems.append("--against trains only the new variants' cells; it does not take --shard")
    elif args.shard:
        try:
            parse_shard(args.shard)
        except ValueError as exc:
            problems.append(str(exc))
    return problems


def _load_reference(args: argparse.Namespace, problems: list[str]) -> Any:
    """The ``--against`` reference (None without the flag); a flag problem stops here, as nothing else is checked."""
    if not getattr(args, "against", None):
        return None
    if problems:
        raise BenchProblems(problems)
    from attnzoo.leaderboard import against

    try:
        return against.load_reference(args.against)
    except AttnzooError as exc:
        raise BenchProblems([str(exc)]) from None


def _comparability(args: argparse.Namespace, reference: Any, preset: Preset, catalog: Any) -> list[str]:
    from attnzoo import __version__
    from attnzoo.leaderboard import against

    problems = against.comparability_problems(reference, preset, expand(preset, catalog=catalog), __version__)
    if not problems:
        return []
    return [f"--against {args.against}: the reference rows cannot be ranked with this run:\n"
            + "\n".join(f"  - {p}" for p in problems)]


def _print_plan(plan: BenchPlan, args: argparse.Namespace) -> None:
    """``--dry-run``: the preset, the grid and what the folder already holds."""
    preset, out = plan.preset, plan.out
    existing = read_rows(out) if out.exists() else []
    if plan.reference is not None and _is_empty(out):
        existing = plan.reference.rows
    print(f"preset {preset.name} ({preset.source}), config hash {preset.config_hash()}, out {out}")
    if preset.description:
        print(preset.description)
    print()
    _print_grid(plan.cells, finished_ids(existing, retry_failed=args.retry_failed,
                                         retry_diverged=getattr(args, "retry_diverged", False)))


def _resumes(plan: BenchPlan, args: argparse.Namespace) -> bool:
    """``--resume``, or ``--against`` into an empty folder (its reference rows go in first: only missing
    cells train)."""
    return bool(args.resume) or (plan.reference is not None and _is_empty(plan.out))


def check_bench(plan: BenchPlan, args: argparse.Namespace) -> None:
    """Every reason the planned run cannot start in its (locked) folder, all at once.

    :raises BenchProblems: one line per problem.
    """
    problems = []
    out, resume = plan.out, _resumes(plan, args)
    if not plan.cells:
        problems.append("the grid is empty: no task x backbone x variant matches the filters")
    if not resume and not _is_empty(out):
        problems.append(f"{out} is not empty. Starting a new grid there would mix it with what it holds. "
                        f"Continue that run with --resume (same options), or pick another --out.")
    existing = read_rows(out) if out.exists() and args.resume else []
    other = sorted({r.get("config_hash") for r in existing} - {plan.preset.config_hash(), None})
    if other:
        problems.append(f"{out} holds results of another configuration (config hash {', '.join(other)}; this run: "
                        f"{plan.preset.config_hash()}): a budget, knob, kwarg or trainer option differs. Resume "
                        f"with the options that run used, or pick another --out.")
    for flag in ("retry_failed", "retry_diverged"):
        if getattr(args, flag, False) and not resume:
            problems.append(f"--{flag.replace('_', '-')} only makes sense with --resume")
    loggers = tuple(getattr(args, "loggers", None) or ())
    if loggers:
        from attnzoo.loggers import LoggerError, check_loggers

        try:  # every missing extra named before any cell trains
            check_loggers(loggers)
        except LoggerError as exc:
            problems.append(str(exc))
    if plan.jobs < 1:
        problems.append(f"--jobs must be >= 1, got {plan.jobs}")
    if problems:
        raise BenchProblems(problems)


def execute_bench(plan: BenchPlan, args: argparse.Namespace, *, executor: Any = None,
                  argv: Sequence[str] = (), state: dict[str, Any] | None = None) -> int:
    """Run the checked plan: seed an ``--against`` folder, train the missing cells, record the run,
    build the report (and the ranking). ``state`` receives the executor, so an interrupt can stop it."""
    from attnzoo.leaderboard.backend import DEFAULT_RUN_CELL
    from attnzoo.leaderboard.progress import make_progress
    from attnzoo.leaderboard.runner import run_grid

    state = {} if state is None else state
    out, preset, cells = plan.out, plan.preset, plan.cells
    if plan.reference is not None and _is_empty(out):
        from attnzoo.leaderboard import against

        against.seed_out(out, plan.reference)
    _configure_cells(plan, args)
    if executor is None:
        try:
            executor = executor_from_args(args, jobs=plan.jobs, run_cell=args.run_cell or DEFAULT_RUN_CELL)
        except AttnzooError as exc:
            _err(str(exc))
            return 2
    state["executor"] = executor
    backend = getattr(args, "backend", "local") or "local"
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f"attnzoo bench: preset {preset.name}, {sum(c.runnable for c in cells)} cell(s) + "
          f"{sum(not c.runnable for c in cells)} n/a, jobs {plan.jobs}, backend {backend}, "
          f"group {getattr(args, 'group', None) or 'off'}, out {out}", file=sys.stderr)
    try:
        summary = run_grid(cells, ResultStore(out), executor, preset, retry_failed=args.retry_failed,
                           retry_diverged=getattr(args, "retry_diverged", False), progress=make_progress())
    except AttnzooError as exc:  # e.g. the Ray backend refusing a grid before any cell ran
        executor.close(cancel=True)
        _err(str(exc))
        return 2
    _record_run(out, {"argv": ["attnzoo", *argv], "preset": preset.name, "config_hash": preset.config_hash(),
                      "started": started, "wall_s": round(summary.wall_s, 1), "cells_cpu_s": round(summary.cpu_s, 1),
                      "jobs": plan.jobs, "cores": _cores(), "backend": backend,
                      "ran": summary.ran, "skipped": summary.skipped, "statuses": summary.statuses,
                      "interrupted": summary.interrupted})
    return _finish(plan, args, summary, list(argv))


def _cores() -> int:
    from attnzoo.leaderboard.backend import cpu_count

    return cpu_count()


def _configure_cells(plan: BenchPlan, args: argparse.Namespace) -> None:
    """The run-wide cell options: the progress bar, and each cell's loggers under ``OUT/logs/<cell id>``."""
    loggers = tuple(getattr(args, "loggers", None) or ())
    if loggers:
        from attnzoo.loggers import check_loggers

        loggers = check_loggers(loggers)  # normalised; check_bench has seen that they load
        print(f"attnzoo bench: each cell logs to {', '.join(loggers)} under {plan.out / 'logs'}/<cell id>/",
              file=sys.stderr)
    for gc in plan.cells:
        logs = {"loggers": loggers, "log_dir": str(plan.out / "logs" / gc.id)} if loggers and gc.runnable else {}
        gc.cell = gc.cell.replace(progress=bool(args.progress), **logs)


def _finish(plan: BenchPlan, args: argparse.Namespace, summary: Any, argv: list[str]) -> int:
    """After the grid: say what stopped it or failed, then the report and the ``--against`` ranking."""
    from attnzoo.leaderboard.runner import resume_hint

    out = plan.out
    if summary.write_error:
        rows = read_rows(out)
        _err(f"{summary.write_error}. The {len(rows)} row(s) already in {out / RESULTS} are intact (no partial "
             f"line); the grid stopped. Free some space, then resume with:\n  {resume_hint(argv)}")
        return 1
    if summary.interrupted:
        return _interrupted(out, argv)
    if summary.failed:
        print(f"{summary.failed} cell(s) did not finish ok: "
              + ", ".join(f"{n} {s}" for s, n in sorted(summary.statuses.items()) if s != "ok")
              + f" (their rows hold the errors). {retry_hint(summary.statuses)}", file=sys.stderr)
    mine = plan.variants()
    rc = _report(out, highlight=mine) if not args.no_report else 0
    if plan.reference is not None:
        from attnzoo.leaderboard import against

        rows = read_rows(out)
        lines = against.where_it_ranks(rows, mine)
        improvements = against.improvement_lines(rows, mine)
        path = against.write_ranking(out, plan.reference, lines, improvements)
        print(f"where it ranks against {plan.reference.name} ({path}):")
        for line in [*lines, *improvements]:
            print(f"  {line}")
    return rc


def executor_from_args(args: argparse.Namespace, *, jobs: int | None = None, run_cell: Any = None,
                       start: bool = True) -> Any:
    """The executor ``attnzoo bench``'s options ask for: the ``--backend`` row of
    :data:`~attnzoo.leaderboard.executors.BACKENDS` (``local``: ``jobs`` worker processes; ``ray``: a
    :class:`~attnzoo.leaderboard.ray_backend.RayExecutor`, started at once when ``start`` (connection,
    address and preflight checks), so problems surface before the grid runs and ``slots`` is the cluster's).

    :param jobs: local workers / embedded Ray CPUs (default ``args.jobs``, else one per core).
    :raises RayBackendError: Ray missing, no connection, auth, mismatched workers.
    :raises ValueError: a ``--backend`` that is not a row of the table.
    """
    from attnzoo.leaderboard.backend import DEFAULT_RUN_CELL, cpu_count
    from attnzoo.leaderboard.executors import BACKENDS
    from attnzoo.leaderboard.grouping import GroupPolicy

    run_cell = run_cell or getattr(args, "run_cell", None) or DEFAULT_RUN_CELL
    if jobs is None:  # the caller's resolved --jobs wins; else the flag; else one per core
        jobs = getattr(args, "jobs", None) or cpu_count()
    name = getattr(args, "backend", None) or "local"
    if name not in BACKENDS:
        raise ValueError(f"--backend: expected one of {', '.join(BACKENDS)}, got {name!r}")
    executor = BACKENDS[name](args, jobs=int(jobs), run_cell=run_cell, start=start)
    if getattr(args, "group", None) is not None:
        executor.group = GroupPolicy(args.group, getattr(args, "group_size", None))
    return executor


def retry_hint(statuses: dict[str, int]) -> str:
    """How to rerun the cells that did not finish ok: the flag that reruns each status."""
    from attnzoo.leaderboard.store import RETRYABLE

    flags = (["--retry-failed"] if any(statuses.get(s) for s in RETRYABLE) else []) \
        + (["--retry-diverged"] if statuses.get("diverged") else [])
    return f"Rerun them with --resume {' '.join(flags)}" if flags else ""


def _report(out: Path, config: str | None = None, highlight: Sequence[str] = ()) -> int:
    """Build ``out``'s report; a failure (disk full, a plugin's bad text, Ctrl-C) leaves the results
    as they are and says how to build it again, without a traceback (``ATTNZOO_DEBUG=1`` shows it)."""
    from attnzoo.leaderboard.report import build_report
    from attnzoo.leaderboard.store import MixedConfigError, one_config

    again = shlex.join(["attnzoo", "bench", "report", str(out)] + (["--config", config] if config else []))
    try:
        rows = one_config(read_rows(out), where=str(out / RESULTS), config=config)
        paths = build_report(out, rows=rows, highlight=highlight)
    except (FileNotFoundError, MixedConfigError) as exc:
        _err(str(exc))
        return 2
    except KeyboardInterrupt:
        _err(f"interrupted while writing the report; the results in {out / RESULTS} are intact. "
             f"Build the report with:\n  {again}")
        return 130
    except Exception as exc:
        if os.environ.get("ATTNZOO_DEBUG"):
            raise
        what = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0][:300]
        _err(f"the report could not be written ({type(exc).__name__}: {what}); the results in {out / RESULTS} "
             f"are intact. Build the report again with:\n  {again}")
        return 1
    print(f"wrote {len(paths)} file(s) in {out}: " + ", ".join(p.name for p in paths))
    return 0


def _recorded_on(rows: Sequence[dict[str, Any]]) -> str:
    """The machines and torch builds the rows record (bit-exact results need the same CPU kernels)."""
    seen = sorted({f"{(r.get('provenance') or {}).get('device') or '?'}, torch "
                   f"{(r.get('provenance') or {}).get('torch_version') or '?'}" for r in rows})
    return "; ".join(seen) or "?"


def _here() -> str:
    from attnzoo.leaderboard.backend import _cpu_model

    try:
        import torch

        version = torch.__version__
    except ImportError:  # pragma: no cover
        version = "?"
    return f"cpu: {_cpu_model()}, torch {version}"


def _verify_parser(p: argparse.ArgumentParser) -> None:
    """``bench verify``'s options."""
    p.add_argument("dirs", metavar="DIR", nargs="+", help="results folder(s) with a results.jsonl")
    p.add_argument("--sample", type=int, metavar="N", help="rerun N cells of each DIR (default: every cell)")
    p.add_argument("--cheapest", action="store_true",
                   help="with --sample: the N cells with the least recorded CPU time (what CI runs)")
    p.add_argument("--cells", nargs="+", metavar="ID", help="rerun these cell ids (one DIR)")
    p.add_argument("--jobs", "-j", type=int, default=None, metavar="N", help="worker processes (default: one per core)")
    p.add_argument("--run-cell", default=None, help=argparse.SUPPRESS)


def _verify(args: argparse.Namespace) -> int:
    """``bench verify``: rerun the chosen rows' cells and compare; rc 1 when any differs."""
    from attnzoo.leaderboard.backend import cpu_count
    from attnzoo.leaderboard.store import latest_rows, one_config
    from attnzoo.leaderboard.verify import VERIFIABLE, choose, verify

    if args.cells and len(args.dirs) > 1:
        print("attnzoo bench verify: --cells takes one DIR", file=sys.stderr)
        return 2
    if args.sample is not None and args.sample < 1:
        print(f"attnzoo bench verify: --sample must be >= 1, got {args.sample}", file=sys.stderr)
        return 2
    chosen: list[dict[str, Any]] = []
    for d in args.dirs:
        path = Path(d) / "results.jsonl"
        if not path.exists():
            print(f"attnzoo bench verify: no results.jsonl in {d}", file=sys.stderr)
            return 2
        try:
            rows = latest_rows(one_config(read_rows(path), where=str(path)))
            picked = choose(rows, sample=args.sample, cells=args.cells, cheapest=args.cheapest)
        except AttnzooError as exc:
            print(f"attnzoo bench verify: {exc}", file=sys.stderr)
            return 2
        print(f"{d}: rerunning {len(picked)} of {sum(r.get('status') in VERIFIABLE for r in rows)} cell(s) "
              f"(config {rows[0].get('config_hash') if rows else '?'}); recorded on {_recorded_on(picked)}",
              flush=True)
        chosen += picked
    print(f"today: {_here()}", flush=True)
    results = verify(chosen, jobs=args.jobs or cpu_count(), run_cell=args.run_cell)
    differ = sum(bool(d) for _, _, d in results)
    print(f"{len(results) - differ} identical, {differ} different of {len(results)} cell(s)")
    if differ:
        print("today's code does not reproduce these results: regenerate the folder with the command in its "
              "README (or find the change that altered the numerics)", file=sys.stderr)
    return 1 if differ else 0


def main(args: argparse.Namespace) -> int:
    """Entry point of ``attnzoo bench`` (after :func:`configure_parser`)."""
    command = getattr(args, "bench_command", None)
    if command is None:
        try:
            return run_bench(args)
        except KeyboardInterrupt:  # before run_bench took the signals over
            _err("interrupted")
            return 130
    with _interrupts():  # SIGTERM as Ctrl-C: no traceback, rows whole
        try:
            return _subcommand(command, args)
        except KeyboardInterrupt:
            _err("interrupted" + ("; the results are as they were" if command != "merge" else
                                  f"; {Path(args.out) / RESULTS} holds whole rows only: run the merge again"))
            return 130


def _subcommand(command: str, args: argparse.Namespace) -> int:
    if command == "report":
        return _report(Path(args.dir), getattr(args, "config", None))
    if command == "verify":
        return _verify(args)
    if command == "export":
        from attnzoo.leaderboard.export import export

        try:
            paths = export(args.dir, args.format, args.out)
        except (FileNotFoundError, ValueError) as exc:
            _err(str(exc))
            return 2
        print(f"wrote {len(paths)} {args.format} file(s) under {Path(args.out or Path(args.dir) / 'lm-eval')}")
        return 0
    if command == "export-attention":
        from attnzoo.leaderboard.report.alignment import export_attention

        try:
            path = export_attention(args.dir, args.cell_id, args.out)
        except (KeyError, ValueError, FileNotFoundError) as exc:
            _err(str(exc.args[0] if isinstance(exc, KeyError) else exc))
            return 2
        print(f"wrote {path}")
        return 0
    from attnzoo.leaderboard.store import MixedConfigError

    missing = [d for d in args.dirs if not (Path(d) / RESULTS).exists()]
    if missing:
        _err(f"no {RESULTS} in: {', '.join(missing)}")
        return 2
    try:
        with OutLock(args.out, command=shlex.join(["attnzoo", "bench", "merge", args.out, *args.dirs])):
            counts = merge(args.out, args.dirs)
    except (OutDirLocked, MixedConfigError) as exc:
        _err(str(exc))
        return 2
    print(f"merged {counts['read']} row(s) from {len(args.dirs)} dir(s): {counts['added']} added, "
          f"{counts['total']} cell(s) in {Path(args.out) / RESULTS}")
    return 0 if args.no_report else _report(Path(args.out))
