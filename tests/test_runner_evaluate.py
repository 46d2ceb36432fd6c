"""The parent side without a GPU: planted candidates compile, signature and compile failures, the SASS
flag, the whole pipeline reaching a worker without CuPy, and the command output."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path

import pytest

from kernelpro.compiler import Compiler, CompileRequest
from kernelpro.errors import KernelproError
from kernelpro.runner import commands
from kernelpro.runner.evaluate import Evaluator, WallOptions, kernel_symbol, lower_precision_failure, signature_failure
from kernelpro.runner.records import ClockSummary, DeviceInfo, Timing, WallVerdict
from kernelpro.runner.supervisor import Supervisor
from kernelpro.sass import KernelSass, OpcodeHistogram, SassInstruction, sass_for_cubin
from kernelpro.task_loader import load_task
from kernelpro.toolchain import find_tool

WALL = Path(__file__).resolve().parent / "kernels" / "wall"
PLANTED = sorted((WALL / "planted").glob("*.cu"))
HAS_NVCC = find_tool("nvcc", required=False) is not None
HAS_CUPY = importlib.util.find_spec("cupy") is not None
needs_nvcc = pytest.mark.skipif(not HAS_NVCC, reason="needs nvcc")


def header(path: Path, key: str) -> list[str]:
    """The words after ``// key:`` in a planted candidate's header."""
    for line in path.read_text().splitlines():
        if line.startswith(f"// {key}:"):
            return line.split(":", 1)[1].split()
    return []


@pytest.fixture(scope="module")
def compiler(tmp_path_factory: pytest.TempPathFactory) -> Compiler:
    return Compiler(cache_dir=tmp_path_factory.mktemp("compile-cache"))


def test_wall_tasks_load() -> None:
    names = {load_task(path).name for path in WALL.glob("*.cu")}
    assert names == {"scale", "scale_inflated_cost", "rowsum", "softmax_tiny", "total"}


@pytest.mark.parametrize("path", PLANTED, ids=lambda p: p.stem)
def test_planted_candidate_declares_its_task_and_expected_checks(path: Path) -> None:
    (task_file,) = header(path, "task")
    expected = header(path, "expect")
    assert expected, f"{path.name} has no '// expect:' line"
    task = load_task(WALL / task_file)
    assert signature_failure(task, path.read_text()) is None


@needs_nvcc
@pytest.mark.parametrize("path", PLANTED, ids=lambda p: p.stem)
def test_planted_candidate_compiles(path: Path, compiler: Compiler) -> None:
    task = load_task(WALL / header(path, "task")[0])
    flags = ("-DMAGIC_TOTAL=1.5f",) if "MAGIC_TOTAL" in path.read_text() else ()
    result = compiler.compile(CompileRequest(path.read_text(), "sm_90", task.defines(), flags, path.name))
    assert result.ok, [str(d) for d in result.errors]
    assert kernel_symbol(result, task.kernel) is not None


def test_signature_failures() -> None:
    task = load_task(WALL / "scale.cu")
    missing = signature_failure(task, 'extern "C" __global__ void other(float* y) {}')
    assert missing.check == "signature" and "no __global__ kernel 'scale'" in missing.message
    changed = signature_failure(task, 'extern "C" __global__ void scale(const double* x, float* y, float a, int n) {}')
    assert changed.check == "signature" and "does not take the task's parameters" in changed.message


def _instruction(text: str, opcode: str, cls: str) -> SassInstruction:
    return SassInstruction(0, None, opcode, (), (), text, classes=(cls,))


def test_lower_precision_failure_from_sass() -> None:
    task = load_task(WALL / "scale.cu")
    half = _instruction("HMUL2 R0, R2.H0_H0, R3.H0_H0", "HMUL2", "fp16")
    plain = _instruction("FMUL R0, R2, c[0x0][0x390]", "FMUL", "fp32")
    kernel = KernelSass("scale", "scale", "sm_90", (plain, half), (), OpcodeHistogram.of([plain, half]),
                        OpcodeHistogram())
    flag = lower_precision_failure(task, kernel)
    assert flag.check == "lower-precision" and "HMUL2" in flag.message and flag.where["instructions"] == 1
    fp32_only = replace(kernel, instructions=(plain,))
    assert lower_precision_failure(task, fp32_only) is None
    allowed = replace(task, correctness=replace(task.correctness, allow_lower_precision=True))
    assert lower_precision_failure(allowed, kernel) is None


@needs_nvcc
@pytest.mark.skipif(find_tool("cuobjdump", required=False) is None and find_tool("nvdisasm", required=False) is None,
                    reason="needs cuobjdump or nvdisasm")
def test_half_precision_candidate_is_flagged(compiler: Compiler) -> None:
    task = load_task(WALL / "scale.cu")
    source = (WALL / "planted" / "scale_fp16.cu").read_text()
    result = compiler.compile(CompileRequest(source, "sm_90", task.defines()))
    kernels = sass_for_cubin(result.cubin)
    flag = lower_precision_failure(task, next(k for k in kernels.values() if k.base_name == "scale"))
    assert flag is not None


@needs_nvcc
def test_compile_errors_are_a_compile_failure(compiler: Compiler) -> None:
    task = load_task(WALL / "scale.cu")
    broken = 'extern "C" __global__ void scale(const float* x, float* y, float a, int n) { y[0] = undefined_name; }'
    with Evaluator(supervisor=Supervisor(), compiler=compiler, arch="sm_90") as evaluator:
        verdict = evaluator.check(task, broken, options=WallOptions(seed=3))
    assert verdict.reason == "compile" and "undefined_name" in verdict.failures[0].message
    assert verdict.seed == 3


@needs_nvcc
@pytest.mark.skipif(HAS_CUPY, reason="checks the message a machine without CuPy gets")
def test_without_cupy_the_worker_reports_how_to_install_it(compiler: Compiler) -> None:
    task = load_task(WALL / "scale.cu")
    with Evaluator(supervisor=Supervisor(), compiler=compiler, arch="sm_90") as evaluator:
        verdict = evaluator.check(task, task.source, options=WallOptions(time=False))
        again = evaluator.check(task, task.source, options=WallOptions(time=False))
    assert verdict.reason == "worker-error"
    assert "CuPy is not installed" in verdict.failures[0].message and "kernelpro[cuda12]" in verdict.failures[0].message
    assert again.reason == "worker-error" and again.seed != verdict.seed  # fresh seed per evaluation


@pytest.mark.skipif(HAS_CUPY, reason="checks the error a machine without CuPy gets")
def test_cupy_backend_without_cupy() -> None:
    from kernelpro.runner.device import CupyBackend

    with pytest.raises(KernelproError, match="CuPy is not installed"):
        CupyBackend()


def test_knob_parsing() -> None:
    task = load_task(WALL / "scale.cu")
    assert task.parse_knobs({"BLOCK": "128"}) == {"BLOCK": 128}
    with pytest.raises(KernelproError, match="unknown knob 'BLOK'"):
        task.parse_knobs({"BLOK": "128"})


def test_rendered_bench_shows_statistics_method_clocks_and_rates() -> None:
    task = load_task(WALL / "scale.cu")
    device = DeviceInfo("NVIDIA H100 80GB HBM3", "9.0", 132, 1_980_000, 2_619_000, 5120, 52_428_800, 85_000_000_000)
    # Numbers made up for the layout test, not a measurement.
    timing = Timing(median_s=4.0e-6, p20_s=3.9e-6, p80_s=4.1e-6, std_s=2e-8, mean_s=4.0e-6, n=240, method="graph",
                    launches_per_sample=250, l2="rotated", buffer_copies=250, converged=True,
                    stop_reason="converged", dropped_throttled=2, throttled=True, elapsed_s=0.3,
                    clocks=ClockSummary(242, 1755, 1980.0, 1980, 2619, 48, ("sw_power_cap",)))
    verdict = WallVerdict(task="scale", kernel="scale", seed=99, checked={
        "sizes": ["N=4096", "N=1000", "N=1"], "input_sets": 8, "distributions": ["normal", "uniform"],
        "reference": "scale (default knobs)", "timed_launches": {"launches": 60000, "worked": 60000,
                                                                 "buffer_sets": 250}}, timing=timing, device=device)
    result = commands._result(task, verdict, {}, "bench scale")
    text = str(result)
    assert result.ok and text.splitlines()[2] == "PASS"
    for expected in ("median 4.000 us", "p20 3.900", "p80 4.100", "std 0.020 (0.50%)", "n 240",
                     "a CUDA graph of 250 launches", "rotating over 250 buffer copies (cold)",
                     "SM 1980 MHz (1755-1980)", "sw_power_cap (2 throttled samples dropped)",
                     "8.2 GB/s", "GFLOP/s", "seed 99", "N=4096; N=1000; N=1",
                     "timed launches verified: 60000 of 60000 did their work (250 buffer sets"):
        assert expected in text, expected
    assert result.data["achieved"]["bytes_per_s"] == pytest.approx(8 * 4096 / 4e-6)


def test_rendered_failure_lists_the_failed_check() -> None:
    task = load_task(WALL / "scale.cu")
    from kernelpro.runner.records import CheckFailure

    verdict = WallVerdict(task="scale", kernel="scale", seed=5,
                          failures=(CheckFailure("canary", "wrote 4 guard bytes after buffer y"),),
                          notes=("SASS not checked",))
    result = commands._result(task, verdict, {}, "check")
    assert not result.ok
    assert "FAIL (canary)" in result.text and "x canary: wrote 4 guard bytes" in result.text
    assert "note: SASS not checked" in result.text and result.data["achieved"] == {}


@needs_nvcc
@pytest.mark.skipif(find_tool("cuobjdump", required=False) is None and find_tool("nvdisasm", required=False) is None,
                    reason="needs cuobjdump or nvdisasm")
def test_half_precision_candidate_fails_before_any_gpu_work(compiler: Compiler) -> None:
    """Lower precision is a failure now (v1: a flag), decided from SASS before the worker is asked for anything."""
    task = load_task(WALL / "scale.cu")
    source = (WALL / "planted" / "scale_fp16.cu").read_text()
    with Evaluator(supervisor=Supervisor(), compiler=compiler, arch="sm_90") as evaluator:
        verdict = evaluator.check(task, source, options=WallOptions(seed=4))
    assert verdict.reason == "lower-precision" and "allow_lower_precision" in verdict.failures[0].message
    assert verdict.timing is None and not verdict.checked  # the wall never ran


def test_sanitizer_plan_memchecks_the_full_size_too() -> None:
    from kernelpro.runner.evaluate import sanitizer_plan

    task = load_task(WALL / "scale.cu")  # sizes N = 4096, 1000, 1: the smallest is index 2
    assert sanitizer_plan(task, {}, shared_memory=False, everything=False) == [("memcheck", 2), ("memcheck", 0)]
    assert sanitizer_plan(task, {}, shared_memory=True, everything=False)[-1] == ("racecheck", 2)
    assert [tool for tool, _ in sanitizer_plan(task, {}, False, everything=True)] == [
        "memcheck", "memcheck", "racecheck", "synccheck"]


@needs_nvcc
@pytest.mark.skipif(find_tool("compute-sanitizer", required=False) is not None, reason="checks a missing sanitizer")
def test_missing_sanitizer_says_not_sanitized(compiler: Compiler) -> None:
    task = load_task(WALL / "scale.cu")
    result = compiler.compile(CompileRequest(task.source, "sm_90", task.defines()))
    with Evaluator(supervisor=Supervisor(), compiler=compiler, arch="sm_90") as evaluator:
        failures, flags, _ = evaluator._sanitize(task, result, "scale", {}, 1, WallOptions(sanitizer=True),
                                                task.source, {"scale": "scale"})
    assert failures == [] and [f.check for f in flags] == ["not-sanitized"]
    assert flags[0].message.startswith("not sanitized:")
