"""Profiling and diagnosing a launch sequence with a fake ``ncu`` that prints a real H100 capture.

Two rows of the capture are renamed after the two kernels of ``tasks/layernorm_two_pass.cu``: the
diagnoser profiles each kernel on its own (a filtered ncu run per kernel, both stages), the diagnosis
puts the kernel with the most time first with its share, and each kernel keeps its own prescriptions.
The capture's counters are measured (``tests/fixtures``); their pairing with these kernels is planted."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_timing_vs_ncu import CAPTURED_NS, _calls, capture, fake_ncu  # noqa: F401 - fake_ncu is a fixture

from kernelpro.compiler import Compiler
from kernelpro.optimize import PROFILE_WARMUP_LAUNCHES, ProfilingDiagnoser
from kernelpro.search import Variant
from kernelpro.sequence_diagnosis import SequenceDiagnosis
from kernelpro.task_loader import load_task
from kernelpro.toolchain import find_tool

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(find_tool("nvcc", required=False) is None, reason="nvcc not installed")


def test_each_kernel_of_a_sequence_is_profiled_and_diagnosed(fake_ncu: Path, tmp_path: Path,  # noqa: F811
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    csv = tmp_path / "sequence.csv"
    csv.write_text(capture("k_spill", "k_copy_ok").replace('"k_spill"', '"layernorm_stats"')
                   .replace('"k_copy_ok"', '"layernorm_apply"'))
    monkeypatch.setenv("FAKE_NCU_CSV", str(csv))
    task = load_task(ROOT / "tasks" / "layernorm_two_pass.cu")
    warnings: list[str] = []
    diagnoser = ProfilingDiagnoser(task, Compiler(cache_dir=tmp_path / "cache"), "sm_90", warn=warnings.append)
    variant = Variant(task.source, tuple((k, str(v)) for k, v in task.default_knobs().items()))
    result, static, ctx = diagnoser.analyze(variant)
    assert not warnings, warnings
    assert isinstance(result, SequenceDiagnosis)
    assert [k.kernel for k in result.kernels] == ["layernorm_stats", "layernorm_apply"]
    stats, apply = result.kernels
    assert stats.duration_s == pytest.approx(CAPTURED_NS["k_spill"] * 1e-9)
    assert result.share(stats) == pytest.approx(CAPTURED_NS["k_spill"] / (CAPTURED_NS["k_spill"]
                                                                          + CAPTURED_NS["k_copy_ok"]))
    assert ctx is stats.context and ctx.launch.grid == (8192, 1, 1) and apply.context.launch.grid == (16, 8192, 1)
    text = result.render()
    assert text.startswith("Launch sequence of 2 kernels") and "layernorm_stats dominates" in text
    assert "== layernorm_stats (launch 1) ==" in text and "== layernorm_apply (launch 2) ==" in text
    assert result.actions[:len(stats.diagnosis.actions)] == stats.diagnosis.actions
    details = result.to_dict()
    assert details["dominant"] == "layernorm_stats" and [k["launch"] for k in details["kernels"]] == [1, 2]
    calls = _calls(fake_ncu)
    asked = [call["argv"][call["argv"].index("--kernel-name") + 1] for call in calls]
    assert sorted(set(asked)) == ["layernorm_apply", "layernorm_stats"] and len(calls) >= 3
    for call in calls:
        argv, params = call["argv"], call["job"]["params"]
        assert argv[argv.index("--launch-skip") + 1] == str(PROFILE_WARMUP_LAUNCHES)
        assert set(params["candidate_symbols"]) == {"layernorm_stats", "layernorm_apply"}  # the whole sequence runs


def test_without_counters_the_kernels_keep_launch_order(tmp_path: Path) -> None:
    task = load_task(ROOT / "tasks" / "sumsq_partials.cu")
    diagnoser = ProfilingDiagnoser(task, Compiler(cache_dir=tmp_path), "sm_90", use_ncu=False)
    variant = Variant(task.source, tuple((k, str(v)) for k, v in task.default_knobs().items()))
    result, static, _ = diagnoser.analyze(variant)
    assert [k.kernel for k in result.kernels] == ["sumsq_partial", "sum_partials"]
    assert result.total_s is None and "time per kernel unknown" in result.render()
    # each kernel is diagnosed at its own launch: the one-thread combine gets the block-size prescription, the
    # 256-thread partials kernel does not
    assert [launch.grid for launch in static.launches] == [(264, 1, 1), (1, 1, 1)]
    assert "block_size_multiple" in result.kernels[1].diagnosis.fired
    assert "block_size_multiple" not in result.kernels[0].diagnosis.fired
    assert "Launch 32-thread blocks instead of 1" in result.render()


def test_report_lists_the_launches_and_the_per_kernel_diagnosis(tmp_path: Path) -> None:
    from kernelpro.report import _launch_section
    from kernelpro.search import Diagnosis, Evaluation, Node

    task = load_task(ROOT / "tasks" / "sumsq_partials.cu")
    diagnoser = ProfilingDiagnoser(task, Compiler(cache_dir=tmp_path), "sm_90", use_ncu=False)
    variant = Variant(task.source, tuple((k, str(v)) for k, v in task.default_knobs().items()))
    result, _, _ = diagnoser.analyze(variant)
    node = Node(0, None, 0, 0, variant, Evaluation.passed(100.0),
                Diagnosis(result.render(), result.actions, result.to_dict()))
    lines = "\n".join(_launch_section(task, node, node))
    assert "sumsq_partial<<<(2 * SM_COUNT), (BLOCK), 0>>>(x, partials, n)" in lines
    assert "sum_partials<<<(1), (1), 0>>>(partials, out, 2 * SM_COUNT)" in lines
    assert "| 2 | sum_partials | - | - | launch 32-thread blocks instead of 1" in lines
    assert "has its own launch" not in lines  # the baseline runs the task's own sequence
