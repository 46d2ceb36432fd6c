"""The command line, run as a real process: output, JSON, exit codes, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kernelpro.toolchain import find_tool

ROOT = Path(__file__).resolve().parents[1]
needs_nvcc = pytest.mark.skipif(find_tool("nvcc", required=False) is None, reason="nvcc not installed")


def run(*args: str, cache: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "160"}
    env.pop("KERNELPRO_DEBUG", None)
    if cache is not None:
        env["KERNELPRO_CACHE_DIR"] = str(cache)
    return subprocess.run([sys.executable, "-m", "kernelpro", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=300)


def assert_one_line_error(result: subprocess.CompletedProcess, code: int = 1) -> str:
    assert result.returncode == code, result.stderr + result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_tasks_lists_the_suite() -> None:
    result = run("tasks", "tasks")
    assert result.returncode == 0, result.stderr
    for name in ("vector_add", "softmax", "sgemm"):
        assert name in result.stdout


def test_tasks_json() -> None:
    result = run("tasks", "tasks", "--json")
    data = json.loads(result.stdout)
    by_name = {t["name"]: t for t in data["tasks"]}
    assert by_name["sgemm"]["knobs"]["BLOCK_X"]["default"] == 16
    assert by_name["sgemm"]["cost"]["flops"] == "2 * M * N * K"
    assert data["errors"] == []


def test_tasks_reports_invalid_files_and_fails(tmp_path: Path) -> None:
    (tmp_path / "good.cu").write_text((ROOT / "tasks" / "vector_add.cu").read_text())
    (tmp_path / "bad.cu").write_text("// no metadata\n__global__ void k() {}\n")
    result = run("tasks", str(tmp_path))
    assert result.returncode == 1
    assert "vector_add" in result.stdout and "no kernelpro metadata block" in result.stdout


@needs_nvcc
def test_analyze_static_prints_resources_occupancy_and_sass(tmp_path: Path) -> None:
    result = run("analyze", "tasks/sgemm.cu", "--static", cache=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Resources (ptxas -v)" in out and "sgemm_naive (entry)" in out
    assert "Occupancy on sm_90" in out and "limited by" in out
    assert "global loads 32-bit" in out and "sass.scalar-loads" in out


@needs_nvcc
def test_analyze_static_json_with_knobs_and_cache_hit(tmp_path: Path) -> None:
    args = ("analyze", "tasks/softmax.cu", "--static", "--json", "--knob", "BLOCK=512", "--arch", "sm_80")
    first = json.loads(run(*args, cache=tmp_path).stdout)
    second = json.loads(run(*args, cache=tmp_path).stdout)
    assert first["knobs"] == {"BLOCK": 512} and first["arch"] == "sm_80"
    assert first["kernels"][0]["resources"]["shared_static_bytes"] == 512 * 4
    assert first["occupancy"]["threads_per_block"] == 512
    assert not first["cache_hit"] and second["cache_hit"]


@needs_nvcc
def test_analyze_candidate_with_compile_error_exits_1(tmp_path: Path) -> None:
    candidate = tmp_path / "cand.cu"
    candidate.write_text((ROOT / "tasks" / "vector_add.cu").read_text().replace("a[i] + b[i]", "a[i] + q[i]"))
    result = run("analyze", "tasks/vector_add.cu", "--static", "--candidate", str(candidate), cache=tmp_path)
    assert result.returncode == 1
    assert "compile failed" in result.stdout and "cand.cu:" in result.stdout and '"q"' in result.stdout


def test_malformed_task_is_one_line_with_location(tmp_path: Path) -> None:
    bad = tmp_path / "bad.cu"
    bad.write_text((ROOT / "tasks" / "vector_add.cu").read_text().replace('dtype = "float32"', 'dtype = "f32"', 1))
    line = assert_one_line_error(run("analyze", str(bad), "--static"))
    assert line.startswith(f"error: {bad}:") and "unknown dtype 'f32'" in line and "fix:" in line


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("analyze", "tasks/nope.cu", "--static"), "cannot read task file"),
        (("analyze", "tasks/vector_add.cu", "--static", "--knob", "TILE=4"), "unknown knob 'TILE'"),
        (("tasks", "no/such/folder"), "is not a folder"),
    ],
)
def test_failures_are_one_line(args, words) -> None:
    assert words in assert_one_line_error(run(*args))


def test_usage_error_exits_2() -> None:
    result = run("analyze", "tasks/vector_add.cu", "--static", "--knob", "BLOCK")
    assert result.returncode == 2 and "NAME=VALUE" in result.stderr and "Traceback" not in result.stderr


def test_doctor_lists_tools() -> None:
    result = run("doctor")
    assert result.returncode == 0
    for tool in ("nvcc", "ptxas", "cuobjdump", "nvdisasm", "ncu"):
        assert tool in result.stdout


def test_tools_lists_every_tool_with_trigger_and_metrics() -> None:
    from kernelpro.tools import all_tools

    data = json.loads(run("tools", "--json").stdout)
    assert [t["name"] for t in data] == [t.name for t in all_tools()] and len(data) >= 16
    by_name = {t["name"]: t for t in data}
    assert "bank_conflicts" in by_name and by_name["bank_conflicts"]["metrics"]
    assert all(t["fires_when"] for t in data)
    table = run("tools")
    assert table.returncode == 0 and "bank_conflicts" in table.stdout and "fires when" in table.stdout


@pytest.mark.parametrize(
    "args", [("bench", "tasks/vector_add.cu"), ("check", "tasks/vector_add.cu", "tasks/vector_add.cu"),
             ("analyze", "tasks/vector_add.cu")]
)
def test_gpu_commands_without_a_gpu_fail_in_one_line(args) -> None:
    from conftest import gpu_available

    if gpu_available():
        pytest.skip("a GPU is present: the command runs for real")
    line = assert_one_line_error(run(*args))
    assert "CuPy is not installed" in line or "no CUDA GPU visible" in line


def test_optimize_errors_are_one_line(tmp_path: Path) -> None:
    line = assert_one_line_error(run("optimize", "--resume", str(tmp_path)))
    assert "not a kernelpro run directory" in line
    from conftest import gpu_available

    if not gpu_available():
        line = assert_one_line_error(run("optimize", "tasks/vector_add.cu", "--budget", "3"))
        assert "CuPy is not installed" in line or "no CUDA GPU visible" in line
        assert not (ROOT / "results" / "vector_add").exists()  # nothing written when nothing can run


def test_suite_errors_are_one_line() -> None:
    line = assert_one_line_error(run("suite", "--tasks", "no/such/*.cu"))
    assert "no task files match" in line
    from conftest import gpu_available

    if not gpu_available():
        line = assert_one_line_error(run("suite", "--tasks", "tasks/vector_add.cu"))
        assert "CuPy is not installed" in line or "no CUDA GPU visible" in line


def test_optimize_with_llm_and_no_key_is_one_line(tmp_path: Path) -> None:
    env_backup = os.environ.pop("ANTHROPIC_API_KEY", None)
    try:
        line = assert_one_line_error(run("optimize", "tasks/vector_add.cu", "--proposer", "llm",
                                         "--out", str(tmp_path / "run")))
    finally:
        if env_backup is not None:
            os.environ["ANTHROPIC_API_KEY"] = env_backup
    assert "no ANTHROPIC_API_KEY set" in line and "--proposer offline" in line
    assert not (tmp_path / "run").exists()


def test_check_explain_needs_no_gpu_and_lists_the_registry() -> None:
    result = run("check", "tasks/softmax.cu", "missing.cu", "--explain")
    assert result.returncode == 0, result.stderr
    for name in ("lower-precision", "output", "timed-output", "roofline", "memcheck"):
        assert f"  {name} (" in result.stdout
    quick = run("check", "tasks/softmax.cu", "missing.cu", "--explain", "--no-sanitize", "--no-time")
    assert "not run with these options:" in quick.stdout and "memcheck" in quick.stdout.splitlines()[-1]


def test_check_explain_reports_a_bad_task_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.cu"
    sizes = "sizes = [{ N = 1000 }, { N = 1 }]"
    text = (ROOT / "tests" / "kernels" / "wall" / "scale.cu").read_text()
    bad.write_text(text.replace(sizes, sizes + '\nexclude_distributions = { ofset = "x" }'))
    line = assert_one_line_error(run("check", str(bad), "missing.cu", "--explain"))
    assert "bad.cu" in line and "ofset" in line and "did you mean 'offset'" in line
