"""Run-to-run repeatability of ``kernelpro bench``: five back-to-back benches of one kernel.

Usage (needs a CUDA GPU and CuPy)::

    python benchmarks/bench_repeatability.py [TASK] [--runs 5] [--warm]

TASK defaults to ``tasks/vector_add.cu`` (about 0.4 ms on an H100: well above the 50 µs where
per-launch event timing is reliable). Each run is a full ``Evaluator.bench`` (correctness wall
with fresh seeds, then adaptive timing) in the same worker process. Prints every run's median,
p20-p80 and sample count, then the relative spread of the medians, (max - min) / mean, which is
the smallest speed-up two benches of this kernel can be trusted to resolve.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from kernelpro.errors import KernelproError
from kernelpro.runner.evaluate import Evaluator, WallOptions
from kernelpro.runner.timing import TimingOptions
from kernelpro.task_loader import load_task

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("task", nargs="?", default=str(ROOT / "tasks" / "vector_add.cu"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warm", action="store_true", help="do not flush L2 before each sample")
    args = parser.parse_args(argv)

    task = load_task(args.task)
    options = WallOptions(timing=TimingOptions(warm=args.warm))
    medians = []
    with Evaluator() as evaluator:
        for run in range(1, args.runs + 1):
            verdict = evaluator.bench(task, options=options)
            if not verdict.ok or verdict.timing is None:
                print(f"run {run}: FAILED: {'; '.join(str(f) for f in verdict.failures)}", file=sys.stderr)
                return 1
            timing = verdict.timing
            medians.append(timing.median_s)
            print(f"run {run}: median {timing.median_s * 1e6:10.3f} us  p20 {timing.p20_s * 1e6:10.3f}  "
                  f"p80 {timing.p80_s * 1e6:10.3f}  n {timing.n:5d}  ({timing.method}, L2 {timing.l2}, "
                  f"{timing.stop_reason})")
    mean = statistics.fmean(medians)
    spread = (max(medians) - min(medians)) / mean
    device = verdict.device.name if verdict.device else "unknown GPU"
    print(f"{task.name} on {device}: {args.runs} runs, mean median {mean * 1e6:.3f} us, "
          f"relative spread (max - min) / mean = {spread:.2%}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KernelproError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
