"""Candidates that own their launch, compiled for real: a warp-per-row softmax (another grid and block) and a
fused LayerNorm for the two-kernel task. On CPU: the launch block parses against the task, nvcc builds the
source kernelpro compiles (template instantiations appended), and every launch finds its symbol. With a GPU
(``gpu`` mark): both pass the correctness wall at every size with their own launch and are timed."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernelpro.candidate_launch import candidate_plan
from kernelpro.compiler import Compiler, CompileRequest
from kernelpro.instantiate import plan_symbols, with_instantiations
from kernelpro.task_loader import load_task, parse_task
from kernelpro.toolchain import find_tool

ROOT = Path(__file__).resolve().parent.parent
V2 = ROOT / "tests" / "kernels" / "v2"
CANDIDATES = {
    "softmax": ("softmax_rows_warp.cuh", ["softmax_rows_warp"]),
    "layernorm_two_pass": ("layernorm_fused.cuh", ["layernorm_fused"]),
}
needs_nvcc = pytest.mark.skipif(find_tool("nvcc", required=False) is None, reason="nvcc not installed")


def candidate(task_name: str) -> tuple:
    task = load_task(ROOT / "tasks" / f"{task_name}.cu")
    return task, task.source + "\n" + (V2 / CANDIDATES[task_name][0]).read_text()


@needs_nvcc
@pytest.mark.parametrize("task_name", sorted(CANDIDATES))
def test_candidate_with_own_launch_compiles_and_resolves(task_name: str, tmp_path: Path) -> None:
    task, source = candidate(task_name)
    plan = candidate_plan(task, source)
    assert [launch.kernel for launch in plan] == CANDIDATES[task_name][1]
    assert plan != task.plan
    result = Compiler(cache_dir=tmp_path).compile(CompileRequest(with_instantiations(source, plan), "sm_90",
                                                                 task.defines(), source_name="cand.cu"))
    assert result.ok, [str(d) for d in result.errors]
    symbols, missing = plan_symbols(result, plan, dict(task.defines()))
    assert missing is None and set(symbols) == set(CANDIDATES[task_name][1])


@needs_nvcc
def test_template_launch_is_instantiated_with_knob_arguments(tmp_path: Path) -> None:
    source = '''/* kernelpro
[task]
kernel = "scale"
[params]
N = 1000
[[args]]
name = "x"
dtype = "float32"
shape = ["N"]
intent = "in"
[[args]]
name = "y"
dtype = "float32"
shape = ["N"]
intent = "out"
[[args]]
name = "n"
dtype = "int32"
value = "N"
[[launch]]
kernel = "scale<float, BLOCK>"
grid = ["ceil_div(N, BLOCK)"]
block = ["BLOCK"]
[knobs]
BLOCK = { values = [128, 256], default = 256 }
*/
#ifndef BLOCK
#define BLOCK 256
#endif
template <typename T, int B>
__global__ void scale(const T* x, T* y, int n) { int i = blockIdx.x * B + threadIdx.x; if (i < n) y[i] = 2 * x[i]; }
'''
    task = parse_task(source, "t.cu")
    compiler = Compiler(cache_dir=tmp_path)
    for block in (128, 256):
        defines = task.defines({"BLOCK": block})
        result = compiler.compile(CompileRequest(with_instantiations(task.source, task.plan), "sm_90", defines))
        assert result.ok, [str(d) for d in result.errors]
        symbols, missing = plan_symbols(result, task.plan, dict(defines))
        assert missing is None and f"Li{block}E" in symbols["scale<float, BLOCK>"]  # the mangled <float, block>


@pytest.mark.gpu
@pytest.mark.parametrize("task_name", sorted(CANDIDATES))
def test_candidate_with_own_launch_passes_the_wall_and_is_timed(task_name: str) -> None:
    from kernelpro.runner.evaluate import Evaluator, WallOptions

    task, source = candidate(task_name)
    with Evaluator() as evaluator:
        verdict = evaluator.check(task, source, options=WallOptions(seed=13))
        baseline = evaluator.bench(task, options=WallOptions(seed=13))
    assert verdict.ok, [f.message for f in verdict.failures]
    assert verdict.checked["launch_sequence"] == CANDIDATES[task_name][1]
    assert len(verdict.checked["sizes"]) == len(task.problem_sizes())
    assert verdict.timing is not None and verdict.timing.median_s > 0
    assert baseline.ok and baseline.timing is not None
    print(f"{task_name}: candidate {verdict.timing.median_s * 1e6:.1f} us, baseline "
          f"{baseline.timing.median_s * 1e6:.1f} us on {verdict.device.name if verdict.device else '?'}")


@pytest.mark.gpu
@pytest.mark.parametrize("task_name", ["layernorm_two_pass", "sumsq_partials", "silu_mul"])
def test_v2_suite_baselines_pass_their_wall(task_name: str) -> None:
    """The two-kernel task, the scratch task and the comparator-referenced task, each against its reference."""
    from kernelpro.runner.evaluate import Evaluator, WallOptions

    task = load_task(ROOT / "tasks" / f"{task_name}.cu")
    with Evaluator() as evaluator:
        verdict = evaluator.bench(task, options=WallOptions(seed=5))
    assert verdict.ok, [f.message for f in verdict.failures]
    assert verdict.timing is not None and verdict.timing.median_s > 0
    if task.reference_is_comparator:
        assert verdict.checked["reference"] == "comparator"
