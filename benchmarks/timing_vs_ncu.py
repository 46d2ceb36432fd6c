"""Does kernelpro's cold timing agree with Nsight Compute's ``gpu__time_duration.sum``? (within 10%)

Usage (needs a CUDA GPU, CuPy, nvcc and Nsight Compute)::

    python3 benchmarks/timing_vs_ncu.py [TASK ...] [--tolerance 0.10] [--warmup 3] [--launches 5]
                                        [--flush clean|dirty|both]

TASK is a task file or the name of one in ``tasks/``. The default tasks run at least ~50 µs on an
H100 at their benchmark size, where one launch per CUDA event pair is timed reliably:
``vector_add`` (768 MiB moved, ~0.3 ms), ``softmax`` (256 MiB, >= 80 µs), ``transpose`` (512 MiB,
>= 0.15 ms) and ``sgemm`` (the naive 4096^3 FP32 GEMM, tens of ms).

For each task, the task's own (baseline) kernel with its default knobs is

1. timed by kernelpro's runner in *cold* mode, exactly as ``kernelpro bench`` does it
   (:meth:`~kernelpro.runner.evaluate.Evaluator.bench`: the correctness wall, then adaptive timing with
   L2 flushed before each sample), and
2. profiled by ncu collecting only ``gpu__time_duration.sum`` on the same cubin (the same compile
   request, so the compile cache hands back the same file), launched by a standalone ``launch-once``
   worker (:func:`kernelpro.runner.profiled_program.launch_once_program`) at the benchmark size:
   ``--warmup`` launches that ncu skips, then ``--launches`` profiled launches, whose median is taken.

ncu runs with two settings that make it measure what kernelpro measures:

* ``--clock-control none``: kernelpro times at the GPU's normal (boost) clocks, while ncu's default
  (``base``, what :mod:`kernelpro.profile` uses for diagnosis) locks the GPU to its base clock, which
  would make every ncu duration longer by the boost/base clock ratio;
* ``--cache-control all``: ncu flushes the caches before each profiled launch, like kernelpro's cold
  mode flushes L2 before each sample.

``--flush`` picks kernelpro's L2 flush: ``clean`` (the default of kernelpro's cold timing: write twice L2,
then read it back, so L2 holds no dirty line of the flush), ``dirty`` (the write pass only: the
flush's dirty lines are then written back during the timed kernel) or ``both`` (the
default here): each task is benched twice and the row shows the dirty-flush median and its excess over
the clean one, the cost of those write-backs (tens of µs on an H100 would show here). The verdict uses the
clean flush when it was measured.

Prints one row per task: kernelpro's median (p20-p80) in µs, ncu's median in µs over the profiled
launches, the ratio kernelpro / ncu and PASS or FAIL against the bound ``|ratio - 1| <= tolerance``.
Exit status: 0 when every task is within the bound; 1 when one is outside it or could not be measured
(a failed bench, an ncu error such as ERR_NVGPUCTRPERM); 2, with a one-line reason, when there is no
GPU, CuPy, ncu or nvcc here.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpu_check import gpu_missing

from kernelpro.errors import KernelproError
from kernelpro.ncu import parse_raw_csv

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TASKS = ("vector_add", "softmax", "transpose", "sgemm")
DURATION = "gpu__time_duration.sum"
DEFAULT_TOLERANCE = 0.10
# ncu's time units (with --print-units base it prints ns) in nanoseconds.
_NS_PER_UNIT = {"ns": 1.0, "nsecond": 1.0, "us": 1e3, "usecond": 1e3, "ms": 1e6, "msecond": 1e6,
                "s": 1e9, "second": 1e9}


# --- pure helpers (tested on CPU) -----------------------------------------------------------------
def durations_ns(csv_text: str, kernel: str | None = None) -> list[float]:
    """``gpu__time_duration.sum`` in ns of every launch in an ``ncu --csv --page raw`` report.

    Only the launches of ``kernel`` (its plain function name) when given. Raises ValueError when the
    report has no such launch, or a duration is missing or in a unit other than a time.
    """
    launches = [k for k in parse_raw_csv(csv_text) if kernel is None or k.name == kernel]
    if not launches:
        raise ValueError(f"no launch of {kernel or 'any kernel'} in the ncu report")
    values = []
    for launch in launches:
        unit = launch.units.get(DURATION, "ns")
        if unit not in _NS_PER_UNIT:
            raise ValueError(f"{DURATION} of {launch.name} is in {unit!r}, not a unit of time")
        values.append(float(launch.number(DURATION)) * _NS_PER_UNIT[unit])
    return values


def median_duration_ns(csv_text: str, kernel: str | None = None) -> float:
    """The median of :func:`durations_ns` over the report's launches (of ``kernel`` when given)."""
    return statistics.median(durations_ns(csv_text, kernel))


def ratio(kernelpro_s: float, ncu_s: float) -> float:
    """kernelpro's time over ncu's (1.0: they agree)."""
    if ncu_s <= 0:
        raise ValueError(f"ncu time must be positive, not {ncu_s}")
    return kernelpro_s / ncu_s


def within(value: float, tolerance: float) -> bool:
    """Whether a ratio is within ``tolerance`` of 1 (0.10: 10%)."""
    return abs(value - 1.0) <= tolerance


@dataclass(frozen=True)
class Comparison:
    """One task: kernelpro's cold timing and ncu's durations of the same kernel, in seconds."""

    task: str
    median_s: float
    p20_s: float
    p80_s: float
    ncu_s: tuple[float, ...]  # one per profiled launch
    dirty_median_s: float | None = None  # the median with the dirty flush, when both were measured
    flush: str = "clean"  # the flush of median_s

    @property
    def ncu_median_s(self) -> float:
        return statistics.median(self.ncu_s)

    @property
    def ratio(self) -> float:
        return ratio(self.median_s, self.ncu_median_s)

    def ok(self, tolerance: float) -> bool:
        return within(self.ratio, tolerance)


HEADER = (f"{'task':<16} {'kernelpro median us (p20-p80)':>34} {'ncu median us (launches)':>26} "
          f"{'kp/ncu':>7}  verdict")
DIRTY_HEADER = f"{'dirty-flush median us (vs clean)':>34}"


def header(with_dirty: bool) -> str:
    """The table header; with the dirty-flush column when both flushes were measured."""
    return HEADER.replace(" verdict", f" verdict  {DIRTY_HEADER.strip()}") if with_dirty else HEADER


def format_row(row: Comparison, tolerance: float) -> str:
    """One table row: both medians in µs, the ratio and PASS/FAIL against ``tolerance`` (and the dirty-flush
    median with its difference to the clean one, when measured)."""
    us = 1e6
    kernelpro = f"{row.median_s * us:.2f} ({row.p20_s * us:.2f}-{row.p80_s * us:.2f})"
    if row.flush != "clean":
        kernelpro = f"[{row.flush}] {kernelpro}"
    ncu = f"{row.ncu_median_s * us:.2f} ({len(row.ncu_s)})"
    verdict = "PASS" if row.ok(tolerance) else f"FAIL (off by {abs(row.ratio - 1):.1%} > {percent(tolerance)})"
    text = f"{row.task:<16} {kernelpro:>34} {ncu:>26} {row.ratio:>7.3f}  {verdict}"
    if row.dirty_median_s is not None:
        excess = (row.dirty_median_s - row.median_s) * us
        text += f"  {row.dirty_median_s * us:.2f} ({excess:+.2f} us, {row.dirty_median_s / row.median_s - 1:+.1%})"
    return text


def percent(fraction: float) -> str:
    """0.1 -> ``10%``, 0.125 -> ``12.5%``."""
    return f"{fraction * 100:g}%"


def format_error(task: str, message: str) -> str:
    """The row of a task that could not be measured."""
    return f"{task:<16} ERROR: {' | '.join(message.splitlines())}"


def resolve_task(name: str) -> Path:
    """A task file path as given, else ``tasks/<name>.cu`` (``name`` may omit ``.cu``)."""
    path = Path(name)
    if path.is_file():
        return path
    for candidate in (ROOT / "tasks" / name, ROOT / "tasks" / f"{name}.cu"):
        if candidate.is_file():
            return candidate
    raise KernelproError(f"no task file {name!r}", fix=f"give a .cu task path or one of {', '.join(DEFAULT_TASKS)}")


# --- the GPU part ---------------------------------------------------------------------------------
def ncu_durations_s(program: Sequence[str], kernel: str, warmup: int, launches: int) -> tuple[float, ...]:
    """``gpu__time_duration.sum`` of ``launches`` launches of ``kernel`` after ``warmup`` skipped ones, in s.

    :func:`kernelpro.profile.collect` checks ncu's output (permission, unknown metric, no kernel) but
    returns only the first launch, so the recorded output is parsed again for all of them.
    """
    from kernelpro.profile import NcuOptions, RunResult, collect, subprocess_runner

    outputs: list[RunResult] = []

    def recording_runner(argv: Sequence[str], timeout: float) -> RunResult:
        result = subprocess_runner(argv, timeout)
        outputs.append(result)
        return result

    options = NcuOptions(kernel=kernel, launch_skip=warmup, launch_count=launches, clock_control="none",
                         cache_control="all")
    collect(program, [DURATION], options, runner=recording_runner)
    return tuple(ns * 1e-9 for ns in durations_ns(outputs[-1].stdout, kernel))


FLUSHES = {"clean": ("clean",), "dirty": ("dirty",), "both": ("clean", "dirty")}


def measure(task_paths: Iterable[Path], warmup: int, launches: int,
            flush: str = "both") -> tuple[list[Comparison | str], str]:
    """Bench every task cold (once per flush of ``FLUSHES[flush]``), then profile each with ncu; a
    :class:`Comparison` or an error row per task, and the GPU's name. The benches run first and their
    worker is closed before ncu starts."""
    from kernelpro.compiler import CompileRequest
    from kernelpro.runner.evaluate import Evaluator, WallOptions, kernel_symbol
    from kernelpro.runner.profiled_program import launch_once_program
    from kernelpro.runner.timing import TimingOptions
    from kernelpro.task_loader import load_task

    tasks = [load_task(path) for path in task_paths]
    modes = FLUSHES[flush]
    verdicts: dict[tuple[str, str], Any] = {}
    device = "unknown GPU"
    with Evaluator() as evaluator:
        for task in tasks:
            for mode in modes:
                options = WallOptions(timing=TimingOptions(warm=False, l2_flush=mode))
                verdict = evaluator.bench(task, options=options)
                verdicts[task.name, mode] = verdict
                if verdict.device is not None:
                    device = verdict.device.name
    rows: list[Comparison | str] = []
    for task in tasks:
        verdict = verdicts[task.name, modes[0]]
        dirty = verdicts.get((task.name, "dirty")) if len(modes) > 1 else None
        if not verdict.ok or verdict.timing is None:
            why = "; ".join(str(f) for f in verdict.failures) or "no timing"
            rows.append(format_error(task.name, f"kernelpro bench failed: {why}"))
            continue
        knobs = task.default_knobs()  # what Evaluator.bench compiles the task's kernel with
        result = evaluator.compiler.compile(CompileRequest(task.source, evaluator.arch, task.defines(knobs), (),
                                                           source_name=str(task.path)))
        symbol = kernel_symbol(result, task.kernel) if result.ok else None
        if symbol is None:
            rows.append(format_error(task.name, f"no kernel {task.kernel!r} in the compiled cubin"))
            continue
        try:
            with launch_once_program(task, result.cubin, symbol, knobs, warmup + launches) as program:
                ncu_s = ncu_durations_s(program, task.kernel, warmup, launches)
        except (KernelproError, ValueError) as exc:
            rows.append(format_error(task.name, f"ncu failed: {exc}"))
            continue
        timing = verdict.timing
        dirty_s = dirty.timing.median_s if dirty is not None and dirty.ok and dirty.timing else None
        rows.append(Comparison(task.name, timing.median_s, timing.p20_s, timing.p80_s, ncu_s, dirty_s, modes[0]))
    return rows, device


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("tasks", nargs="*", metavar="TASK", help=f"default: {' '.join(DEFAULT_TASKS)}")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                        help="largest allowed |kernelpro / ncu - 1| (default 0.10)")
    parser.add_argument("--warmup", type=int, default=3, help="launches ncu skips before profiling (default 3)")
    parser.add_argument("--launches", type=int, default=5, help="launches ncu profiles (default 5)")
    parser.add_argument("--flush", choices=sorted(FLUSHES), default="both",
                        help="kernelpro's L2 flush: clean, dirty, or both to compare them (default both)")
    args = parser.parse_args(argv)
    if args.warmup < 0 or args.launches < 1:
        parser.error("--warmup must be >= 0 and --launches >= 1")

    missing = gpu_missing(need_cupy=True)
    if missing:
        print(f"timing_vs_ncu: cannot run here: {missing} (needs a CUDA GPU, CuPy, nvcc and Nsight Compute)",
              file=sys.stderr)
        return 2
    paths = [resolve_task(name) for name in (args.tasks or DEFAULT_TASKS)]
    rows, device = measure(paths, args.warmup, args.launches, args.flush)
    print(f"{device}: kernelpro cold timing ({args.flush} L2 flush) vs ncu {DURATION} (--clock-control none "
          f"--cache-control all, {args.launches} launches after {args.warmup}); bound {percent(args.tolerance)}")
    print(header(args.flush == "both"))
    for row in rows:
        print(format_row(row, args.tolerance) if isinstance(row, Comparison) else row)
    passed = sum(isinstance(row, Comparison) and row.ok(args.tolerance) for row in rows)
    print(f"{passed}/{len(rows)} within {percent(args.tolerance)}")
    return 0 if passed == len(rows) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KernelproError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
