"""The rewrites that remap threads to work (issue 14) emit a ``/* kernelpro launch */`` block; here it meets the
task-format v2 side (issue 13): the loader accepts the block at every problem size, the compiled candidate has each
launch's kernel, and static analysis uses the candidate's own geometry, not the task's."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernelpro.candidate_launch import candidate_plan, has_launch_block
from kernelpro.compiler import Compiler
from kernelpro.rewrites.registry import REWRITES
from kernelpro.static_analysis import analyze_static
from kernelpro.task_loader import load_task
from kernelpro.toolchain import find_tool
from kernelpro.transforms import TransformError

ROOT = Path(__file__).resolve().parents[1]
needs_nvcc = pytest.mark.skipif(find_tool("nvcc", required=False) is None, reason="nvcc not installed")


def _remaps() -> list[tuple[str, str, str]]:
    """(task file, rewrite name, rewritten source) for every rewrite that gives a suite task its own launch."""
    found = []
    for path in sorted((ROOT / "tasks").glob("*.cu")):
        task = load_task(path)
        if task.is_sequence:
            continue
        for rewrite in REWRITES:
            try:
                source = rewrite.apply(task.source, task).source
            except TransformError:
                continue
            if has_launch_block(source):
                found.append((path.name, rewrite.name, source))
    return found


REMAPS = _remaps()


def test_the_suite_has_remaps_of_each_kind() -> None:
    names = {name for _, name, _ in REMAPS}
    assert {"warp_per_row", "tiled_transpose", "privatize_histogram"} <= names, names


@needs_nvcc
@pytest.mark.parametrize(("task_file", "rewrite", "source"), REMAPS, ids=[f"{t}-{r}" for t, r, _ in REMAPS])
def test_remap_loads_compiles_and_is_analyzed_with_its_own_launch(task_file: str, rewrite: str, source: str,
                                                                   compiler: Compiler) -> None:
    task = load_task(ROOT / "tasks" / task_file)
    plan = candidate_plan(task, source)  # raises with file:line if the block is wrong at any problem size
    assert plan != task.plan
    env = task.env()
    report = analyze_static(task, source=source, compiler=compiler)
    assert report.compiled, report
    assert [launch.kernel for launch in report.launches] == [launch.kernel for launch in plan]
    for launch, analyzed in zip(plan, report.launches, strict=True):
        assert analyzed.grid == launch.grid_dims(env) and analyzed.block == launch.block_dims(env)
        assert analyzed.occupancy is not None, analyzed.occupancy_error


@pytest.fixture(scope="module")
def compiler(tmp_path_factory: pytest.TempPathFactory) -> Compiler:
    return Compiler(cache_dir=tmp_path_factory.mktemp("nvcc-cache"))
