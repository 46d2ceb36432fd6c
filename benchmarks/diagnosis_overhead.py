"""What does diagnosing one candidate cost?

Two parts:

* CPU: parsing an ncu raw CSV and running the diagnosis (context, roofline, every tool, ranking,
  rendering) on the real H100 capture in tests/fixtures/ncu-h100 -- runs anywhere.
* GPU: seconds of ncu per candidate for stage 1 (speed of light) and stage 2 (the tools' metrics), on the
  five planted kernels compiled from the same fixture's planted.cu. Needs ncu, nvcc and a GPU; where one
  is missing it says which and exits with status 2 (after the CPU part). ``--cpu-only`` skips it.

    python benchmarks/diagnosis_overhead.py [--repeats 20] [--cpu-only] [--show]

``--show`` also prints each kernel's rendered diagnosis from the GPU run.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gpu_check import gpu_missing

from kernelpro.diagnosis import build_context, diagnose
from kernelpro.errors import KernelproError
from kernelpro.ncu import parse_raw_csv
from kernelpro.toolchain import find_tool

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "ncu-h100"


def cpu_seconds(repeats: int) -> tuple[float, float, int]:
    """Median seconds to parse the capture, and per kernel to diagnose it; and the number of kernels."""
    text = (FIXTURE / "planted_raw.csv").read_text()
    parse, per_kernel = [], []
    kernels = parse_raw_csv(text)
    for _ in range(repeats):
        start = time.perf_counter()
        kernels = parse_raw_csv(text)
        parse.append(time.perf_counter() - start)
        start = time.perf_counter()
        for kernel in kernels:
            diagnose(build_context(kernel)).render()
        per_kernel.append((time.perf_counter() - start) / len(kernels))
    return statistics.median(parse), statistics.median(per_kernel), len(kernels)


def _metrics_asked(profile) -> int:
    argv = profile.commands[0]
    return len(argv[argv.index("--metrics") + 1].split(","))


def gpu_seconds(show: bool) -> None:
    from kernelpro.compiler import default_arch
    from kernelpro.profile import NcuOptions, profile_two_stage

    names = [k.name for k in parse_raw_csv((FIXTURE / "planted_raw.csv").read_text())]
    with tempfile.TemporaryDirectory() as tmp:
        binary = Path(tmp) / "planted"
        nvcc = str(find_tool("nvcc"))
        subprocess.run([nvcc, "-O3", f"-arch={default_arch()}", "-lineinfo", str(FIXTURE / "planted.cu"), "-o",
                        str(binary)], check=True)
        print(f"{'kernel':<16} {'bound':<8} {'stage 1 s':>10} {'stage 2 s':>10} {'metrics 1+2':>12}")
        for name in names:
            result = profile_two_stage([str(binary)], NcuOptions(kernel=name))
            stage2 = result.stage2.seconds if result.stage2 else 0.0
            count = f"{_metrics_asked(result.stage1)}+{_metrics_asked(result.stage2) if result.stage2 else 0}"
            print(f"{name:<16} {result.bound:<8} {result.stage1.seconds:>10.2f} {stage2:>10.2f} {count:>12}")
            if show:
                print(diagnose(build_context(result.profile)).render(), end="\n\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--cpu-only", action="store_true")
    parser.add_argument("--show", action="store_true")
    args = parser.parse_args()

    parse, per_kernel, count = cpu_seconds(args.repeats)
    print(f"CPU: parse the raw CSV ({count} kernels, 2,238 columns): {parse * 1e3:.2f} ms; "
          f"diagnose one kernel: {per_kernel * 1e3:.2f} ms; per candidate: {(parse / count + per_kernel) * 1e3:.2f} ms")
    if args.cpu_only:
        return 0
    missing = gpu_missing()
    if missing:
        print(f"GPU: skipped, {missing}. Stage-1/stage-2 profiling times need a GPU with Nsight Compute.")
        return 2
    try:
        gpu_seconds(args.show)
    except KernelproError as exc:
        print(f"GPU: failed: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
