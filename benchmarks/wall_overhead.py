"""What the correctness wall v2 costs per evaluation, against the same wall with its new checks off.

"v1" here is the v2 code with the new checks toggled off (no drawn size, 4 KiB guards, timed
launches neither poisoned nor verified): the cost the v1 wall had for the same timing method.
"v2" is the default. Both time with the same stop rule.

* Stand-in (default): the numpy backend of ``tests/test_runner_wall.py``, whose "kernels" are Python
  functions with a declared duration on a virtual clock. Seconds per evaluation are real (they are the
  wall's own Python and numpy work); kernel times are not measurements.
* ``--gpu``: the real CuPy backend in this process, on the task's own kernel (reference = candidate),
  with the default timing options. It also prints the median kernel time of both modes, which shows
  whether poisoning and checking outside the timed region leave the measurement where it was.

    python benchmarks/wall_overhead.py [--evaluations 5] [--gpu] [--tasks tests/kernels/wall/scale.cu ...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the numpy stand-in backend lives with the tests

from kernelpro.runner.stats import StopRule  # noqa: E402
from kernelpro.runner.timing import TimingOptions  # noqa: E402
from kernelpro.runner.wall import Wall, WallConfig  # noqa: E402
from kernelpro.task_loader import load_task  # noqa: E402

MODES = {
    "v1": {"draw_size": False, "guard_bytes": 4096, "verify_timed": False},
    "v2": {},
}
STAND_IN_TASKS = {"scale.cu": ("scale", 5e-6), "softmax_tiny.cu": ("softmax", 100e-6)}


def stand_in(evaluations: int) -> None:
    import test_runner_wall as fakes

    stop = StopRule(min_samples=10, max_samples=200, min_time_s=0.001, max_time_s=0.5, hard_limit_s=5.0)
    for name, (kernel, seconds) in STAND_IN_TASKS.items():
        task = load_task(ROOT / "tests" / "kernels" / "wall" / name)
        fn = getattr(fakes, kernel)
        for mode, overrides in MODES.items():
            spent, launches = [], 0
            for seed in range(evaluations):
                backend = fakes.FakeBackend({"r": fn, "c": fn}, seconds_per_launch=seconds)
                config = WallConfig(seed=seed, timing=TimingOptions(stop=stop, warmup_s=0.0), **overrides)
                start = time.perf_counter()
                reference, candidate = backend.load_kernel("r", task.kernel), backend.load_kernel("c", task.kernel)
                result = Wall(task, backend, reference, candidate, {}, config).run()
                spent.append(time.perf_counter() - start)
                assert not result.failures, result.failures
                launches = result.checked.get("timed_launches", {}).get("launches", 0)
            print(f"stand-in {name:16s} {mode}: {statistics.median(spent):.3f} s per evaluation "
                  f"(median of {evaluations}; timed launches verified: {launches})")


def gpu(evaluations: int, tasks: list[str]) -> None:
    from kernelpro.compiler import Compiler, CompileRequest, default_arch
    from kernelpro.runner.device import CupyBackend
    from kernelpro.runner.evaluate import kernel_symbol

    compiler = Compiler()
    for path in tasks:
        task = load_task(path)
        result = compiler.compile(CompileRequest(task.source, default_arch(), task.defines(), source_name=path))
        symbol = kernel_symbol(result, task.kernel)
        for mode, overrides in MODES.items():
            spent, medians = [], []
            for seed in range(evaluations):
                backend = CupyBackend()
                try:
                    kernel = backend.load_kernel(str(result.cubin), symbol)
                    start = time.perf_counter()
                    verdict = Wall(task, backend, kernel, kernel, {}, WallConfig(seed=seed, **overrides)).run()
                    spent.append(time.perf_counter() - start)
                finally:
                    backend.close()
                assert not verdict.failures, verdict.failures
                medians.append(verdict.timing.median_s)
            print(f"gpu {task.name:16s} {mode}: {statistics.median(spent):.2f} s per evaluation, kernel median "
                  f"{statistics.median(medians) * 1e6:.3f} us (median of {evaluations})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluations", type=int, default=5)
    parser.add_argument("--gpu", action="store_true", help="the CuPy backend instead of the numpy stand-in")
    parser.add_argument("--tasks", nargs="*", default=[str(ROOT / "tests/kernels/wall/scale.cu"),
                                                       str(ROOT / "tasks/vector_add.cu"),
                                                       str(ROOT / "tasks/softmax.cu")])
    args = parser.parse_args()
    if args.gpu:
        gpu(args.evaluations, args.tasks)
    else:
        stand_in(args.evaluations)


if __name__ == "__main__":
    main()
