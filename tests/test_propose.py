"""Acceptance: on every suite task whose roofline class by ``[cost]`` is memory-bound, ``propose`` (the offline
proposer's first round from a static diagnosis) lists a structural rewrite that compiles and whose SASS shows
the change the rewrite intends. No GPU: compile and SASS only."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernelpro.compiler import Compiler
from kernelpro.propose import cost_bound, propose
from kernelpro.task_loader import load_task
from kernelpro.toolchain import find_tool

ROOT = Path(__file__).resolve().parents[1]
TASKS = sorted(p.stem for p in (ROOT / "tasks").glob("*.cu"))
MEMORY_BOUND = [name for name in TASKS if cost_bound(load_task(ROOT / "tasks" / f"{name}.cu"))[0] == "memory"]


def test_the_cost_classification_of_the_suite() -> None:
    assert set(TASKS) - set(MEMORY_BOUND) == {"sgemm", "hgemm"}  # the only tasks above the H100 FP32 ridge
    bound, intensity = cost_bound(load_task(ROOT / "tasks" / "softmax.cu"))
    assert bound == "memory" and intensity == pytest.approx(5 / 8)


@pytest.mark.skipif(find_tool("nvcc", required=False) is None, reason="nvcc not installed")
@pytest.mark.parametrize("name", MEMORY_BOUND)
def test_every_memory_bound_suite_task_gets_a_structural_rewrite(tmp_path_factory: pytest.TempPathFactory,
                                                                 name: str) -> None:
    compiler = Compiler(cache_dir=tmp_path_factory.mktemp("cache"))
    report = propose(load_task(ROOT / "tasks" / f"{name}.cu"), n=8, compiler=compiler)
    structural = [p for p in report.proposals if p.structural]
    assert structural, [p.variant.origin for p in report.proposals]
    for p in structural:  # every one compiled (the proposer drops what does not) and shows its intended change
        assert p.shows_intended, (p.variant.origin, p.evidence)
        assert p.diff.startswith("--- task.cu")
    assert report.selected, "no skill selected for a memory-bound kernel"
