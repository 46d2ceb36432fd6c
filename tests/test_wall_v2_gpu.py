"""Wall v2 on a real GPU, and every planted candidate compiled here (CPU, needs nvcc only).

The planted cheats themselves run through ``tests/test_runner_gpu.py::test_planted_candidate`` (each
names its task and the checks allowed to reject it); the tests here check what that test cannot see:
that every timed launch was verified, that poisoning outside the timed region leaves the time where
it was, and that a warm timing of a skipping kernel meets the L2 ceiling.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from test_runner_evaluate import header
from test_runner_gpu import PLANTED, QUICK, WALL, compiler, evaluator  # noqa: F401 - fixtures

from kernelpro.compiler import Compiler, CompileRequest
from kernelpro.runner.evaluate import Evaluator, kernel_symbol
from kernelpro.task_loader import load_task
from kernelpro.toolchain import find_tool

needs_nvcc = pytest.mark.skipif(find_tool("nvcc", required=False) is None, reason="needs nvcc")


@needs_nvcc
@pytest.mark.parametrize("path", [p for p in PLANTED if "MAGIC_TOTAL" not in p.read_text()], ids=lambda p: p.stem)
def test_every_planted_candidate_compiles(path: Path, tmp_path: Path) -> None:
    task = load_task(WALL / header(path, "task")[0])
    result = Compiler(cache_dir=tmp_path).compile(CompileRequest(path.read_text(), "sm_90", task.defines(),
                                                                 source_name=path.name))
    assert result.ok, result.diagnostics
    assert kernel_symbol(result, task.kernel) is not None
    assert header(path, "expect"), f"{path.name} has no // expect: line"


@pytest.mark.gpu
def test_skip_if_written_is_timed_doing_its_work(evaluator: Evaluator) -> None:  # noqa: F811
    task = load_task(WALL / "scale.cu")
    source = (WALL / "planted" / "scale_skip_if_written.cu").read_text()
    verdict = evaluator.check(task, source, options=QUICK)
    assert verdict.ok, [str(f) for f in verdict.failures]
    timed = verdict.checked["timed_launches"]
    assert timed["worked"] == timed["launches"] >= verdict.timing.n * verdict.timing.launches_per_sample
    honest = evaluator.bench(task, options=QUICK)
    assert verdict.timing.median_s >= 0.7 * honest.timing.median_s  # it does the same work, so it takes as long


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["scale_skip_after_checks.cu", "scale_stops_after_20.cu"])
def test_launch_counting_cheats_say_how_many_timed_launches_worked(evaluator: Evaluator, name: str) -> None:  # noqa: F811
    task = load_task(WALL / "scale.cu")
    verdict = evaluator.check(task, (WALL / "planted" / name).read_text(), options=QUICK)
    assert verdict.reason == "timed-output", [str(f) for f in verdict.failures]
    failure = verdict.failures[0]
    assert f"did its work in {failure.where['worked']} of {failure.where['launches']} timed launches" in failure.message


@pytest.mark.gpu
def test_warm_timing_of_an_honest_kernel_stays_under_the_l2_ceiling(evaluator: Evaluator) -> None:  # noqa: F811
    task = load_task(WALL / "scale.cu")
    warm = evaluator.bench(task, options=replace(QUICK, timing=replace(QUICK.timing, warm=True)))
    assert warm.ok, [str(f) for f in warm.failures]
    assert warm.timing.warm
