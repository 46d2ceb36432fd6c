"""ncu collection without a GPU: a real executable fake `ncu` on PATH replays recorded output.

The fake is a small Python script run as its own process. It logs the command line it received and prints
either the REAL capture in tests/fixtures/ncu-h100/planted_raw.csv (recorded on an H100 with
`ncu --set full --csv --page raw`, a superset of any metric list we ask for) or an error message quoted
from NVIDIA's documentation / real ncu output.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_programs import install_program

from kernelpro.errors import ToolchainError
from kernelpro.profile import (
    NcuOptions,
    ProfileError,
    RunResult,
    collect,
    ncu_command,
    profile_two_stage,
    stage2_metrics,
)
from kernelpro.roofline import STAGE1_METRICS
from kernelpro.toolchain import find_tool
from kernelpro.tools import all_tools

FIXTURE = Path(__file__).parent / "fixtures" / "ncu-h100" / "planted_raw.csv"

# Quoted: NVIDIA's ERR_NVGPUCTRPERM page and ncu's output as users report it.
PERMISSION = (
    "==ERROR== ERR_NVGPUCTRPERM - The user does not have permission to access NVIDIA GPU Performance Counters on "
    "the target device 0. For instructions on enabling permissions and to get more information see "
    "https://developer.nvidia.com/ERR_NVGPUCTRPERM\n==WARNING== No kernels were profiled.\n"
)
NO_KERNEL = "==PROF== Disconnected from process 4242\n==WARNING== No kernels were profiled.\nAvailable Kernels:\n" \
            "1. k_copy_ok\n2. k_spill\n"
UNKNOWN_METRIC = "==ERROR== Failed to find metric regex:^flop_count_sp\\.(sum|min|max|avg|pct|ratio|max_rate)$\n"

FAKE = '''#!{python}
import json, os, sys
with open(os.environ["FAKE_NCU_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
mode = os.environ["FAKE_NCU_MODE"]
sys.stderr.write("==PROF== Connected to process 4242 (./planted)\\n")
if mode == "csv":
    sys.stdout.write(open(os.environ["FAKE_NCU_CSV"]).read())
    sys.exit(0)
sys.stderr.write(open(os.environ["FAKE_NCU_MESSAGE"]).read())
sys.exit(1 if mode == "error" else 0)
'''


@pytest.fixture
def fake_ncu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Install the fake `ncu` first on PATH; returns (set_mode(mode, message), calls())."""
    install_program(tmp_path, monkeypatch, "ncu", FAKE)
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("FAKE_NCU_LOG", str(log))
    monkeypatch.setenv("FAKE_NCU_CSV", str(FIXTURE))

    def set_mode(mode: str, message: str = "") -> None:
        (tmp_path / "message.txt").write_text(message)
        monkeypatch.setenv("FAKE_NCU_MODE", mode)
        monkeypatch.setenv("FAKE_NCU_MESSAGE", str(tmp_path / "message.txt"))

    def calls() -> list[list[str]]:
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    set_mode("csv")
    return set_mode, calls


def _value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_stage1_command_line_and_parsed_record(fake_ncu) -> None:
    _, calls = fake_ncu
    options = NcuOptions(kernel="k_spill", launch_skip=2)
    profile = collect(["./planted", "--size", "16M"], STAGE1_METRICS, options)
    argv = calls()[0]
    assert argv[-3:] == ["./planted", "--size", "16M"]
    assert _value(argv, "--metrics").split(",") == list(STAGE1_METRICS)
    assert (_value(argv, "--page"), _value(argv, "--print-units")) == ("raw", "base")
    assert "--csv" in argv
    assert _value(argv, "--kernel-name") == "k_spill" and _value(argv, "--kernel-name-base") == "function"
    assert (_value(argv, "--launch-skip"), _value(argv, "--launch-count")) == ("2", "1")
    assert (_value(argv, "--cache-control"), _value(argv, "--clock-control")) == ("all", "base")
    assert _value(argv, "--target-processes") == "all"
    # The fake prints all five kernels; the record is the one that was asked for, with real values.
    assert profile.kernel == "k_spill" and profile.block == (128, 1, 1) and profile.grid == (131072, 1, 1)
    assert profile.number("smsp__sass_inst_executed_op_local_ld.sum") == 33554432
    assert profile.duration_s == pytest.approx(1923232e-9)
    assert profile.units["dram__bytes_read.sum"] == "byte" and profile.seconds > 0
    sol = profile.speed_of_light()
    assert sol.memory_pct == pytest.approx(74.37) and sol.flops_per_s["fp32"] > 0


def test_two_stage_asks_only_for_the_metrics_of_the_matching_tools(fake_ncu) -> None:
    _, calls = fake_ncu
    result = profile_two_stage(["./planted"], NcuOptions(kernel="k_bank_conflict"))
    first, second = calls()
    assert _value(first, "--metrics").split(",") == list(STAGE1_METRICS)
    asked = _value(second, "--metrics").split(",")
    assert result.bound == "memory" and asked == list(stage2_metrics("memory"))
    memory_tools = [t for t in all_tools() if "memory" in t.applies_to]
    assert set(asked) == {m for t in memory_tools for m in t.metrics} - set(STAGE1_METRICS)
    # Latency-only tools' metrics stay out of a memory-bound kernel's second stage.
    assert "smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio" not in asked
    assert result.profile.number("l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum") == 520531256
    assert len(result.profile.commands) == 2


def test_permission_error_names_nvidias_fix(fake_ncu) -> None:
    set_mode, _ = fake_ncu
    set_mode("error", PERMISSION)
    with pytest.raises(ProfileError) as raised:
        collect(["./planted"], STAGE1_METRICS)
    text = str(raised.value)
    assert "ERR_NVGPUCTRPERM" in text and "NVreg_RestrictProfilingToAdminUsers=0" in text and "sudo" in text


def test_no_kernel_profiled_lists_what_ran(fake_ncu) -> None:
    set_mode, _ = fake_ncu
    set_mode("ok", NO_KERNEL)
    with pytest.raises(ProfileError, match="profiled no kernel: kernel 'k_missing'.*k_copy_ok, k_spill"):
        collect(["./planted"], STAGE1_METRICS, NcuOptions(kernel="k_missing"))


def test_a_report_without_the_named_kernel_says_which_ran(fake_ncu) -> None:
    with pytest.raises(ProfileError, match="profiled k_copy_ok, k_uncoalesced, .* but not 'k_other'"):
        collect(["./planted"], STAGE1_METRICS, NcuOptions(kernel="k_other"))


def test_unknown_metric_is_named(fake_ncu) -> None:
    set_mode, _ = fake_ncu
    set_mode("error", UNKNOWN_METRIC)
    with pytest.raises(ProfileError, match="'flop_count_sp'"):
        collect(["./planted"], ["flop_count_sp.sum"])


def test_garbage_output_is_an_error_with_its_tail(fake_ncu) -> None:
    set_mode, _ = fake_ncu
    set_mode("error", "==ERROR== The application returned an error code (1).\n")
    with pytest.raises(ProfileError, match="status 1.*application returned an error code"):
        collect(["./planted"], STAGE1_METRICS)


def test_missing_ncu_gives_the_install_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    if find_tool("ncu", required=False) is not None:
        pytest.skip("an ncu outside PATH is installed here")
    with pytest.raises(ToolchainError, match="Nsight Compute"):
        collect(["./planted"], STAGE1_METRICS)


def test_injected_runner_gets_the_command(tmp_path: Path) -> None:
    ncu = tmp_path / "ncu"
    ncu.write_text("")
    seen = []

    def runner(argv, timeout):
        seen.append((list(argv), timeout))
        return RunResult(0, FIXTURE.read_text())

    profile = collect(["./planted"], ["gpu__time_duration.sum"], NcuOptions(kernel="k_tiny_grid", timeout_s=30),
                      runner=runner, ncu=ncu)
    assert seen[0][0][0] == str(ncu) and seen[0][1] == 30
    assert profile.kernel == "k_tiny_grid" and profile.number("gpu__time_duration.sum") == 6450976


def test_command_needs_metrics_and_a_program() -> None:
    with pytest.raises(ValueError):
        ncu_command("ncu", ["./a"], [], NcuOptions())
    with pytest.raises(ValueError):
        ncu_command("ncu", [], ["gpu__time_duration.sum"], NcuOptions())
    argv = ncu_command("ncu", ["./a"], ["x.sum", "x.sum"], NcuOptions())
    assert _value(argv, "--metrics") == "x.sum" and "--kernel-name" not in argv
