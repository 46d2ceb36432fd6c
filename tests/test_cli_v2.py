"""The CLI on v2 tasks: ``analyze --static`` reports every launch of a sequence and a candidate's own
launch; ``tasks DIR`` lists the good tasks and marks a bad one invalid (list-valued keys included); user
text with brackets (a compile error quoting ``out[idx] = a[idx]``) is printed as written, not as markup."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from kernelpro.cli import cli
from kernelpro.toolchain import find_tool

ROOT = Path(__file__).resolve().parents[1]
needs_nvcc = pytest.mark.skipif(find_tool("nvcc", required=False) is None, reason="nvcc not installed")


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@needs_nvcc
def test_analyze_static_covers_every_launch_of_a_sequence() -> None:
    done = run("analyze", str(ROOT / "tasks" / "layernorm_two_pass.cu"), "--static", "--json")
    assert done.exit_code == 0, done.output
    report = json.loads(done.output)
    launches = report["launches"]
    assert [launch["kernel"] for launch in launches] == ["layernorm_stats", "layernorm_apply"]
    assert launches[0]["grid"] == [8192, 1, 1] and launches[1]["grid"] == [16, 8192, 1]
    assert all(launch["occupancy"]["occupancy"] > 0 for launch in launches)
    assert {k["name"] for k in report["kernels"]} == {"layernorm_stats", "layernorm_apply"}


@needs_nvcc
def test_analyze_static_uses_the_candidates_own_launch(tmp_path: Path) -> None:
    candidate = tmp_path / "fused.cu"
    candidate.write_text((ROOT / "tasks" / "layernorm_two_pass.cu").read_text() + "\n"
                         + (ROOT / "tests" / "kernels" / "v2" / "layernorm_fused.cuh").read_text())
    done = run("analyze", str(ROOT / "tasks" / "layernorm_two_pass.cu"), "--static", "--json",
               "--candidate", str(candidate), "--knob", "BLOCK=512")
    assert done.exit_code == 0, done.output
    report = json.loads(done.output)
    assert report["kernel"] == "layernorm_fused"
    assert [(launch["kernel"], launch["grid"], launch["block"]) for launch in report["launches"]] == [
        ("layernorm_fused", [8192, 1, 1], [512, 1, 1])]
    assert report["occupancy"]["threads_per_block"] == 512


def test_tasks_listing_marks_a_bad_file_invalid_and_lists_the_rest(tmp_path: Path) -> None:
    good = (ROOT / "tasks" / "vector_add.cu").read_text()
    (tmp_path / "good.cu").write_text(good)
    (tmp_path / "bad.cu").write_text(good.replace('kernel = "vector_add"', 'kernel = ["vector_add", "other"]'))
    (tmp_path / "brackets.cu").write_text(good.replace("[launch]", "[lanch]"))
    done = CliRunner().invoke(cli, ["tasks", str(tmp_path)])
    assert done.exit_code == 1
    assert "vector_add" in done.output
    assert "invalid:" in done.output and "must be one string" in done.output
    assert "unknown table [lanch]" in done.output  # not eaten as markup
    as_json = CliRunner().invoke(cli, ["tasks", str(tmp_path), "--json"])
    listing = json.loads(as_json.output)
    assert [t["name"] for t in listing["tasks"]] == ["vector_add"] and len(listing["errors"]) == 2
    assert "internal error" not in as_json.output
    (summary,) = listing["tasks"]
    assert summary["buffer_bytes"] == 3 * 4 * 67108864
    assert summary["launches"] == [{"kernel": "vector_add", "grid": ["ceil_div(N, BLOCK)"], "block": ["BLOCK"],
                                    "shared_mem": "0", "args": None}]


@needs_nvcc
def test_compile_errors_print_brackets_as_written(tmp_path: Path) -> None:
    task = (ROOT / "tasks" / "vector_add.cu").read_text()
    body_start = task.index("{", task.index("__global__"))
    broken = task[:body_start + 1] + "\n    c[idx] = a[idx] + not_declared[idx];\n" + task[body_start + 1:]
    path = tmp_path / "broken.cu"
    path.write_text(broken)
    done = CliRunner().invoke(cli, ["analyze", str(path), "--static"])
    assert done.exit_code == 1
    assert "compile failed" in done.output
    assert "c[idx] = a[idx] + not_declared[idx]" in done.output
