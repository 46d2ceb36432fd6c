"""The runner on a real GPU: planted candidates, the leak test, timing methods, sanitizers.

Every test here is marked ``gpu`` and skipped where no CUDA GPU is visible (tests/conftest.py).
Each planted candidate in ``tests/kernels/wall/planted`` names its task and the checks allowed to
reject it (``// expect:``); after each one, a correct candidate must pass on the same evaluator,
which shows the supervising process survived.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from test_runner_evaluate import header

from kernelpro.compiler import Compiler, CompileRequest, default_arch
from kernelpro.runner import commands
from kernelpro.runner.evaluate import Evaluator, WallOptions, kernel_symbol
from kernelpro.runner.inputs import make_inputs
from kernelpro.runner.sanitizer import run_sanitizer
from kernelpro.runner.stats import StopRule
from kernelpro.runner.supervisor import Supervisor
from kernelpro.runner.timing import TimingOptions
from kernelpro.task_loader import load_task
from kernelpro.toolchain import find_tool

pytestmark = pytest.mark.gpu

ROOT = Path(__file__).resolve().parents[1]
WALL = ROOT / "tests" / "kernels" / "wall"
PLANTED = sorted((WALL / "planted").glob("*.cu"))
QUICK = WallOptions(timing=TimingOptions(stop=StopRule(min_samples=10, max_time_s=0.5, hard_limit_s=20.0)),
                    idle_timeout_s=20.0, timeout_s=300.0)
needs_sanitizer = pytest.mark.skipif(find_tool("compute-sanitizer", required=False) is None,
                                     reason="needs compute-sanitizer")


@pytest.fixture(scope="module")
def compiler(tmp_path_factory: pytest.TempPathFactory) -> Compiler:
    return Compiler(cache_dir=tmp_path_factory.mktemp("compile-cache"))


@pytest.fixture(scope="module")
def evaluator(compiler: Compiler):
    with Evaluator(supervisor=Supervisor(timeout=600, idle_timeout=30), compiler=compiler) as evaluator:
        yield evaluator


@pytest.mark.parametrize("path", [p for p in PLANTED if "MAGIC_TOTAL" not in p.read_text()], ids=lambda p: p.stem)
def test_planted_candidate(evaluator: Evaluator, path: Path) -> None:
    task = load_task(WALL / header(path, "task")[0])
    expected = header(path, "expect")
    has_sanitizer = find_tool("compute-sanitizer", required=False) is not None
    options = replace(QUICK, sanitizer=bool({"racecheck", "memcheck"} & set(expected)) and has_sanitizer)
    verdict = evaluator.check(task, path.read_text(), options=options, source_name=path.name)
    if expected == ["pass"]:
        assert verdict.ok, [str(f) for f in verdict.failures]
        assert verdict.timing is not None and verdict.timing.n >= 10
    else:
        if verdict.ok and {"racecheck", "memcheck"} & set(expected) and not has_sanitizer:
            pytest.skip("the hole did not show in the outputs and compute-sanitizer is not installed")
        assert verdict.reason in expected, [str(f) for f in verdict.failures]
    for rule in header(path, "rule"):
        assert verdict.failures[0].where["rule"] == rule
    sass_checked = not any(note.startswith("SASS not checked") for note in verdict.notes)
    for flag in header(path, "flag") if sass_checked else ():
        assert flag in {f.check for f in verdict.flags}, verdict.flags
    after = evaluator.check(task, task.source, options=replace(QUICK, time=False))
    assert after.ok, [str(f) for f in after.failures]


def test_constant_for_one_seed_passes_only_that_seed(evaluator: Evaluator) -> None:
    task = load_task(WALL / "total.cu")
    x = make_inputs(task, task.env(), seed=0, size_index=0, set_index=0).arrays["x"]
    answer = float(np.float32(x.astype(np.float64).sum()))
    source = (WALL / "planted" / "total_constant_for_seed0.cu").read_text()
    flags = (f"-DMAGIC_TOTAL={answer!r}f",)  # repr keeps a decimal point: 64.0f, not 64f
    fixed = evaluator.check(task, source, flags=flags, options=WallOptions(seed=0, input_sets=1, time=False))
    assert fixed.ok, [str(f) for f in fixed.failures]
    fresh = evaluator.check(task, source, flags=flags, options=replace(QUICK, time=False))
    assert fresh.reason == "output"


def test_no_gpu_memory_leak_over_300_evaluations(compiler: Compiler) -> None:
    task = load_task(WALL / "scale.cu")
    options = WallOptions(time=False, input_sets=1, extra_size_sets=1)
    memory = []
    with Evaluator(supervisor=Supervisor(), compiler=compiler) as evaluator:
        for _ in range(300):
            verdict = evaluator.check(task, task.source, options=options)
            assert verdict.ok, [str(f) for f in verdict.failures]
            memory.append(verdict.memory)
        assert evaluator.supervisor.restarts == 0, "a restarted worker would hide a leak"
    assert all(m["pool_used_bytes"] == 0 for m in memory)
    settled = memory[9]["device_free_bytes"]
    assert min(m["device_free_bytes"] for m in memory[10:]) >= settled - (16 << 20), "free device memory shrank"


def test_bench_of_a_memory_bound_kernel(evaluator: Evaluator) -> None:
    task = load_task(ROOT / "tasks" / "vector_add.cu")
    verdict = evaluator.bench(task, options=QUICK)
    assert verdict.ok, [str(f) for f in verdict.failures]
    timing = verdict.timing
    assert timing.method == "events" and timing.l2 == "flushed" and timing.launches_per_sample == 1
    assert timing.n >= 10 and timing.median_s > 50e-6
    assert timing.p20_s <= timing.median_s <= timing.p80_s
    rates = commands.achieved_rates(task, verdict, {})
    assert rates["bytes_per_s"] < rates["peak_bytes_per_s"]


def test_microsecond_kernels_use_graphs_and_rotating_buffers(evaluator: Evaluator) -> None:
    task = load_task(WALL / "scale.cu")
    cold = evaluator.bench(task, options=QUICK).timing
    assert cold.method == "graph" and cold.launches_per_sample > 1
    assert cold.l2 == "rotated" and cold.buffer_copies > 1
    warm = evaluator.bench(task, options=replace(QUICK, timing=replace(QUICK.timing, warm=True))).timing
    assert warm.warm and warm.buffer_copies == warm.launches_per_sample  # k sets of 32 KB fit in half of L2
    assert warm.median_s <= cold.median_s * 1.5


def test_inflated_cost_fails_the_roofline(evaluator: Evaluator) -> None:
    task = load_task(WALL / "scale_inflated_cost.cu")
    verdict = evaluator.bench(task, options=QUICK)
    assert verdict.reason == "roofline"


def test_bench_command_prints_the_timing() -> None:
    result = commands.bench(WALL / "scale.cu")
    assert result.ok
    for expected in ("PASS", "median", "p20", "p80", "std", " n ", "method:", "achieved:"):
        assert expected in result.text


@needs_sanitizer
def test_memcheck_sees_an_out_of_bounds_write(compiler: Compiler) -> None:
    task = load_task(WALL / "scale.cu")
    for name, errors in (("scale_out_of_bounds.cu", True), ("scale_reordered_correct.cu", False)):
        result = compiler.compile(CompileRequest((WALL / "planted" / name).read_text(), default_arch(),
                                                 task.defines()))
        job = {"kind": "launch-once", "params": {
            "task_source": task.source, "task_path": str(task.path), "knobs": task.default_knobs(),
            "candidate_cubin": str(result.cubin), "candidate_symbol": kernel_symbol(result, "scale"), "seed": 1}}
        report = run_sanitizer("memcheck", job)
        assert report.conclusive, report
        assert (report.errors > 0) == errors, report


@needs_sanitizer
def test_racecheck_sees_the_missing_syncthreads(compiler: Compiler) -> None:
    task = load_task(WALL / "rowsum.cu")
    result = compiler.compile(CompileRequest((WALL / "planted" / "rowsum_racy.cu").read_text(), default_arch(),
                                             task.defines()))
    job = {"kind": "launch-once", "params": {
        "task_source": task.source, "task_path": str(task.path), "knobs": task.default_knobs(),
        "candidate_cubin": str(result.cubin), "candidate_symbol": kernel_symbol(result, "rowsum"), "seed": 1}}
    report = run_sanitizer("racecheck", job)
    assert report.errors and report.errors > 0, report


def test_backend_dynamic_shared_memory_above_48k_and_nvml(compiler: Compiler) -> None:
    from kernelpro.runner.backend import Geometry
    from kernelpro.runner.device import CupyBackend

    source = """extern "C" __global__ void fill(float* y, int n) {
        extern __shared__ float tile[];
        for (int i = threadIdx.x; i < n; i += blockDim.x) tile[i] = i;
        __syncthreads();
        for (int i = threadIdx.x; i < n; i += blockDim.x) y[i] = tile[n - 1 - i];
    }"""
    result = compiler.compile(CompileRequest(source, default_arch()))
    backend = CupyBackend()
    try:
        kernel = backend.load_kernel(str(result.cubin), "fill")
        n = 16384  # 64 KiB of dynamic shared memory
        y = backend.xp.zeros(n, dtype=np.float32)
        backend.launch(kernel, Geometry((1, 1, 1), (256, 1, 1), n * 4), (y, np.int32(n)))
        backend.synchronize()
        assert np.array_equal(backend.to_host(y), np.arange(n, dtype=np.float32)[::-1])
        state = backend.gpu_state()
        if state is not None:  # NVML present
            assert state.sm_clock_mhz and state.sm_clock_mhz > 100
        info = backend.device_info()
        assert info.sm_count > 0 and info.l2_bytes > 0
    finally:
        backend.close()
