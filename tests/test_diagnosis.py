"""diagnose() and the prompt-ready report, on the REAL H100 capture (tests/fixtures/ncu-h100).

Counters come only from that capture; SASS and ptxas resources from compiling its planted.cu here with
the capture's flags.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
from stream_task import stream_meta

from kernelpro.compiler import Compiler, CompileRequest
from kernelpro.diagnosis import build_context, diagnose
from kernelpro.ncu import load_raw_csv
from kernelpro.sass import sass_for_cubin
from kernelpro.static_analysis import analyze_static
from kernelpro.task_loader import parse_task
from kernelpro.toolchain import find_tool
from kernelpro.tools import all_tools

FIXTURE = Path(__file__).parent / "fixtures" / "ncu-h100"
SOURCE = (FIXTURE / "planted.cu").read_text()
pytestmark = pytest.mark.skipif(find_tool("nvcc", required=False) is None, reason="nvcc not installed")
# An ncu metric name: "<unit>__<counter>", e.g. dram__bytes_read.sum.
METRIC_NAME = re.compile(r"[a-z0-9]__[a-z]")


@pytest.fixture(scope="module")
def compiler(tmp_path_factory: pytest.TempPathFactory) -> Compiler:
    return Compiler(cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def kernels():
    return {k.name: k for k in load_raw_csv(FIXTURE / "planted_raw.csv")}


@pytest.fixture(scope="module")
def diagnoses(compiler: Compiler, kernels):
    result = compiler.compile_or_raise(CompileRequest(source=SOURCE, arch="sm_90", flags=("-O3", "-lineinfo"),
                                                      source_name="planted.cu"))
    sass = sass_for_cubin(result.cubin)
    return {name: diagnose(build_context(k, resources=result.resources[name], sass=sass[name], source=SOURCE))
            for name, k in kernels.items()}


def test_reports_are_short_and_free_of_counter_names(diagnoses, kernels) -> None:
    names = set(kernels["k_copy_ok"].metrics)
    for name, diagnosis in diagnoses.items():
        text = diagnosis.render()
        assert len(text) < 2000, name
        assert "__" not in text and not METRIC_NAME.search(text), name
        assert not any(metric in text for metric in names if "__" in metric), name
        assert text.startswith("Roofline: "), name


def test_each_planted_kernel_gets_its_prescription_first(diagnoses) -> None:
    first = {name: d.prescriptions[0].tool for name, d in diagnoses.items() if d.prescriptions}
    assert first == {"k_uncoalesced": "uncoalesced", "k_bank_conflict": "bank_conflicts", "k_spill": "local_memory",
                     "k_tiny_grid": "small_grid"}
    assert diagnoses["k_copy_ok"].prescriptions == () and diagnoses["k_copy_ok"].fired == ()
    assert "No tool found a limit" in diagnoses["k_copy_ok"].render()
    bank = diagnoses["k_bank_conflict"].render()
    assert "1. Pad shared array t to [32][33]" in bank and "16.5-way" in bank


def test_symptoms_defer_to_their_cause(diagnoses) -> None:
    assert [p.tool for p in diagnoses["k_bank_conflict"].deferred] == ["mio_lsu_throttle"]
    assert [p.tool for p in diagnoses["k_spill"].deferred] == ["mio_lsu_throttle"]
    tiny = diagnoses["k_tiny_grid"]
    assert {p.tool for p in tiny.deferred} == {"occupancy_gap", "dram_bandwidth", "long_scoreboard"}
    assert [p.tool for p in tiny.prescriptions] == ["small_grid", "scalar_loads"]


def test_prescriptions_are_ranked_by_expected_gain(diagnoses) -> None:
    for diagnosis in diagnoses.values():
        scores = [p.score for p in diagnosis.prescriptions]
        assert scores == sorted(scores, reverse=True)
        for p in diagnosis.prescriptions:
            assert 1 <= p.gain[0] <= p.gain[1]


def test_raw_counters_only_on_request(diagnoses) -> None:
    raw = diagnoses["k_bank_conflict"].render(raw_counters=True)
    assert "Counters:" in raw and "l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum = 520531256" in raw
    assert len(raw) <= 2000


def test_length_cap_leaves_prescriptions_out_and_says_so(diagnoses) -> None:
    tiny = diagnoses["k_tiny_grid"]
    text = tiny.render(max_chars=600)
    assert len(text) <= 600 and "1. Launch at least 1056 blocks" in text and "(+1 more left out)" in text
    assert "2." not in text


def test_to_dict_is_json(diagnoses) -> None:
    data = json.loads(json.dumps(diagnoses["k_spill"].to_dict()))
    assert data["bound"] == "memory" and data["prescriptions"][0]["actions"][0]["kind"] == "unroll"
    assert data["prescriptions"][0]["metrics"]["smsp__sass_inst_executed_op_local_ld.sum"] == 33554432


def test_static_report_and_task_feed_the_context(compiler: Compiler, kernels) -> None:
    meta = stream_meta("k_bank_conflict", grid="N / BLOCK", block="BLOCK", extra=(
        '[knobs]\nBLOCK = { values = [1024], default = 1024 }\n[cost]\nflops = "96 * N"\nbytes = "8 * N"'))
    task = parse_task(meta + "#ifndef BLOCK\n#define BLOCK 1024\n#endif\n" + SOURCE, "planted.cu")
    report = analyze_static(task, compiler=compiler, flags=("-O3", "-lineinfo"))
    ctx = build_context(kernels["k_bank_conflict"], task=task, static=report)
    assert ctx.launch.block_knob == "BLOCK" and ctx.source == task.source and ctx.resources.registers == 31
    diagnosis = diagnose(ctx)
    assert diagnosis.prescriptions[0].actions[0].params["array"] == "t"
    assert "of the task's ideal time" in diagnosis.render()


def test_static_only_diagnosis_runs_every_tool(compiler: Compiler) -> None:
    local = (Path(__file__).parent / "kernels" / "sass" / "local_memory.cu").read_text()
    result = compiler.compile_or_raise(CompileRequest(source=local, arch="sm_90"))
    ctx = build_context(None, resources=result.resources["local_array"],
                        sass=sass_for_cubin(result.cubin)["local_array"])
    diagnosis = diagnose(ctx)
    assert diagnosis.verdict is None and "Roofline: not profiled." in diagnosis.render()
    assert [p.tool for p in diagnosis.prescriptions] == ["local_memory"]


def test_a_tool_error_is_recorded_not_raised() -> None:
    tool = all_tools()[0]

    def broken(ctx):
        raise ZeroDivisionError("boom")

    ctx = build_context(load_raw_csv(FIXTURE / "planted_raw.csv")[4])
    diagnosis = diagnose(ctx, [replace(tool, trigger=broken)])
    assert diagnosis.errors == {tool.name: "boom"} and diagnosis.prescriptions == ()
