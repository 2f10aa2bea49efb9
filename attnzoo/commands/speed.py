"""``attnzoo speed``: forward+backward time and peak memory of every variant vs. SDPA and a naive reference.

What is measured and how is :mod:`attnzoo.speed`'s (:func:`~attnzoo.speed.run_speed`); this module
parses the flags, picks the device and threads, prints the tables and writes the files.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Sequence

import torch

from attnzoo.speed import (DEFAULT_CPU_LENGTHS, DEFAULT_CUDA_LENGTHS, _errors, _select, additive_memory_target,
                           cliff_target, format_table, hard_target, local_target, parse_option, run_speed,
                           sdpa_target, write_outputs)

__all__ = ["configure_parser", "main"]


def _int_list(text: str) -> list[int]:
    try:
        vals = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints like 64,128,256, got {text!r}") from None
    if not vals or any(v <= 0 for v in vals):
        raise argparse.ArgumentTypeError(f"expected positive ints, got {text!r}")
    return vals


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``attnzoo speed``."""
    parser.add_argument("--lengths", type=_int_list, default=None,
                        help="comma-separated sequence lengths (default CPU: 64,...,4096 with --max-seconds; CUDA: 128,...,8192)")
    parser.add_argument("--batch", type=int, default=4, help="batch size B (default 4)")
    parser.add_argument("--dim", type=int, default=64, help="model/feature size D (default 64)")
    parser.add_argument("--heads", type=int, default=1,
                        help="heads; >1 wraps multihead-capable variants in MultiHeadAttention and gives the references the same projections (default 1)")
    parser.add_argument("--variants", default="*", metavar="PATTERN",
                        help="fnmatch pattern(s), comma-separated, e.g. '*dot*,additive' (default all)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per cell, best reported (default 3)")
    parser.add_argument("--out", default="bench-out/speed", metavar="DIR", help="where speed.md/csv/png go (default bench-out/speed)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default: cuda if available)")
    parser.add_argument("--max-seconds", type=float, default=60.0,
                        help="skip a cell predicted to take longer than this (default 60)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for the run")
    parser.add_argument("--no-baselines", action="store_true", help="do not run the SDPA and naive references")
    parser.add_argument("--option", "-o", action="append", type=parse_option, default=[], metavar="PATTERN:KEY=VALUE",
                        help="constructor kwargs for matching variants, repeatable, e.g. -o 'local-*:window=32' "
                             "(values are Python literals)")
    parser.add_argument("--min-sample-ms", type=float, default=100.0,
                        help="each timed sample repeats a short step until it lasts this long, mean per step "
                             "(default 100; 0: one step per sample)")
    parser.add_argument("--no-flush-denormal", action="store_true",
                        help="keep denormal floats (default: flush them to zero for the run; an unscaled dot "
                             "score on random inputs underflows exp() into denormals, which x86 CPUs compute "
                             "~5x slower, so the figure would time the CPU's slow path, not the mechanism)")
    parser.add_argument("--no-targets", action="store_true",
                        help="skip the target checks (SDPA parity; additive B=4,T=4096 memory)")


def main(args: argparse.Namespace) -> int:
    """Run the benchmark, print the tables, write the files. 0 on success (error cells included), 2 on bad options."""
    device = getattr(args, "device", "auto") or "auto"
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("CUDA is not available")
    except (RuntimeError, ValueError) as exc:
        print(f"attnzoo speed: --device {device!r}: {exc}", file=sys.stderr)
        return 2
    threads_before = torch.get_num_threads()
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    flush = not getattr(args, "no_flush_denormal", False)
    # set_flush_denormal reports whether the CPU supports it; there is no getter, so put back "off".
    flushed = torch.set_flush_denormal(True) if flush else False
    try:
        return _main(args, dev, flushed)
    finally:
        torch.set_num_threads(threads_before)
        if flushed:
            torch.set_flush_denormal(False)


def _main(args: argparse.Namespace, dev: torch.device, flushed: bool = False) -> int:
    lengths = args.lengths or list(DEFAULT_CUDA_LENGTHS if dev.type == "cuda" else DEFAULT_CPU_LENGTHS)
    try:
        names = _select(getattr(args, "variants", "*"), dev)
    except ValueError as exc:
        print(f"attnzoo speed: --variants: {exc}", file=sys.stderr)
        return 2
    if not names:
        from attnzoo.registry import list_attention

        print(f"attnzoo speed: no variant matches {args.variants!r} (known: {', '.join(list_attention())})", file=sys.stderr)
        return 2
    if args.heads > 1 and args.dim % args.heads:
        print(f"attnzoo speed: --dim {args.dim} is not divisible by --heads {args.heads}", file=sys.stderr)
        return 2
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    log(f"attnzoo speed: {len(names)} variant(s) x {len(lengths)} length(s) on {dev}")
    t0 = time.perf_counter()
    load_start = " ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    options = list(getattr(args, "option", None) or [])
    rows = run_speed(names, lengths, batch=args.batch, dim=args.dim, heads=args.heads, repeats=args.repeats,
                     device=dev, max_seconds=args.max_seconds, baselines=not args.no_baselines, log=log,
                     options=options, min_sample_ms=getattr(args, "min_sample_ms", 100.0))
    targets: list[str] = []
    if not args.no_targets:
        targets = sdpa_target(rows) + local_target(rows) + cliff_target(rows) + hard_target(rows)
        if getattr(args, "variants", "*") in ("*", None) or "additive" in names:
            log("  additive memory target (B=4, T=4096, hidden=64) ...")
            targets.append(additive_memory_target(dev))
    meta = {
        "command": (f"attnzoo speed --lengths {','.join(map(str, lengths))} --batch {args.batch} --dim {args.dim} "
                    f"--heads {args.heads} --variants '{args.variants}' --repeats {args.repeats} --device {dev} "
                    f"--max-seconds {args.max_seconds:g} --min-sample-ms {getattr(args, 'min_sample_ms', 100.0):g}"
                    + (" --no-baselines" if args.no_baselines else "")
                    + (" --no-targets" if args.no_targets else "")
                    + "".join(f" -o '{p}:" + ",".join(f"{k}={v!r}" for k, v in kw.items()) + "'" for p, kw in options)
                    + (" --no-flush-denormal" if getattr(args, "no_flush_denormal", False) else "")),
        "flush_denormal": flushed,
        "device": str(dev) + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else f" ({platform.processor() or platform.machine()})"),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_average_start": load_start,
        "load_average_end": " ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a",
        "cpus": os.cpu_count(),
        "batch": args.batch, "dim": args.dim, "heads": args.heads, "repeats": args.repeats,
        "lengths": ",".join(map(str, lengths)),
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    paths = write_outputs(rows, args.out, meta=meta, targets=targets)
    print(f"forward+backward time, ms (ours/SDPA x / ours/naive x), B={args.batch} D={args.dim} heads={args.heads} {dev}")
    print(format_table(rows, "time"))
    print()
    print("peak memory of the step, MiB")
    print(format_table(rows, "memory"))
    if targets:
        print()
        print("targets:")
        print("\n".join(targets))
    errs = _errors(rows)
    if errs:
        print()
        print("not measured:")
        print("\n".join(f"  {e}" for e in errs))
    print()
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _standalone(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="attnzoo speed", description=__doc__.splitlines()[0])
    configure_parser(parser)
    return main(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(_standalone())
