"""Peer comparison: Kernel Tuner's random sampling, genetic algorithm and Bayesian optimization against
kernelpro's offline MCTS, on the same recorded knob spaces.

Two steps, so the GPU is used once and every strategy sees the same measurements:

1. ``sweep`` (GPU): every constrained configuration of each task, checked and timed through kernelpro's
   runner, is written to ``<out>/<task>-<gpu>.json``; the fastest is the best configuration known.
2. ``compare`` (CPU): each strategy replays the recorded tables for several seeds with the same evaluation
   budget (Kernel Tuner in its simulation mode on the table converted to its cache format; kernelpro's
   MCTS with a table evaluator and its knob tuner). The report gives, per table and strategy, the
   evaluations and GPU seconds needed to reach within 5% of the optimum and the best found at equal
   budgets, and per table whether kernelpro met the bar against Kernel Tuner's best strategy; printed and
   written to ``<out>/vs_kernel_tuner-<gpu>-<date>.md`` and ``.json``.

``compare`` also reads Kernel Tuner cache files directly (``.json`` or ``.json.gz``: public brute-force
caches of real GPUs), e.g. the development set beside the repository:

    python benchmarks/vs_kernel_tuner.py sweep --tasks tasks/sgemm.cu tasks/hgemm.cu \
        tasks/transpose.cu tasks/stencil2d.cu --out results/peer
    python benchmarks/vs_kernel_tuner.py compare --tables ../shared/autotuning-caches/*.json.gz \
        --seeds 10 --budget 200 --out results/peer

Kernel Tuner is a benchmark-only extra: ``pip install 'kernelpro[bench]'``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one core per run: runs go to parallel processes instead

import argparse
import platform
import shlex
import sys
import time
from pathlib import Path

from peer.kt import KernelTunerMissing, kernel_tuner_version
from peer.table import Table, TableError

from kernelpro.errors import KernelproError

REPORT_PREFIX = "vs_kernel_tuner-"
DEFAULT_AT = [25, 50, 100, 200]
DEFAULT_TASKS = ["tasks/sgemm.cu", "tasks/hgemm.cu", "tasks/transpose.cu", "tasks/stencil2d.cu"]


def _command() -> str:
    return " ".join(["python", *(shlex.quote(a) for a in sys.argv)])


def cmd_sweep(args: argparse.Namespace) -> None:
    from peer.sweep import sweep

    for path in args.tasks:
        if not Path(path).is_file():
            raise TableError(f"task {path} not found")
    sweep(args.tasks, Path(args.out), _command())


def cmd_compare(args: argparse.Namespace) -> None:
    from peer.report import compare, default_strategies, header_for, render_markdown, write

    if not args.tables:
        raise TableError("no tables given: record them with `python benchmarks/vs_kernel_tuner.py sweep` first")
    paths = [p for p in args.tables if not Path(p).name.startswith(REPORT_PREFIX)]  # `*.json` globs reports too
    if not paths:
        raise TableError("only reports given, no tables: pass <task>-<gpu>.json tables or Kernel Tuner caches")
    started = time.monotonic()
    tables = [Table.load(path) for path in paths]
    at = sorted(set(b for b in (args.at or DEFAULT_AT) if b <= args.budget) | {args.budget})
    if args.seeds < 1 or args.budget < 1 or min(at) < 1 or args.workers < 1:
        raise ValueError("need --seeds >= 1, --budget >= 1, --workers >= 1 and every --at >= 1")
    strategies = default_strategies()
    header = header_for(tables, _command(), args.seeds, args.budget, kernel_tuner_version())
    rows = compare(tables, strategies, args.seeds, args.budget, at, workers=args.workers)
    header["wall_s"] = time.monotonic() - started
    header["machine"] = f"{platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, " \
                        f"{args.workers} worker processes, no GPU used"
    print(render_markdown(rows, tables, header))
    md, js = write(rows, tables, header, Path(args.out) if args.out else Path(paths[0]).parent)
    print(f"wrote {md} and {js}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sweep", help="measure every configuration of each task on the GPU")
    s.add_argument("--tasks", nargs="+", default=DEFAULT_TASKS)
    s.add_argument("--out", default="results/peer")
    s.set_defaults(func=cmd_sweep)
    c = sub.add_parser("compare", help="replay every strategy on recorded tables (no GPU)")
    c.add_argument("--tables", nargs="+", required=True)
    c.add_argument("--seeds", type=int, default=10)
    c.add_argument("--budget", type=int, default=200, help="evaluations per run (the start counts)")
    c.add_argument("--at", type=int, nargs="*", help="budgets for 'best found' (default: 25 50 100 200, "
                                                     "those within the budget, and the budget)")
    c.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel processes (default: one "
                                                                           "per CPU)")
    c.add_argument("--out", help="report folder (default: the first table's)")
    c.set_defaults(func=cmd_compare)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except (KernelTunerMissing, TableError, KernelproError, ValueError) as exc:
        text = exc.message if isinstance(exc, KernelproError) else str(exc)
        message = text.splitlines()[0] if text else type(exc).__name__
        fix = getattr(exc, "fix", None)
        print(f"error: {message}" + (f" ({fix})" if fix else ""), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
