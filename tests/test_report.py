"""Run results: best.cu reproduces the winner as a task file, tree.json, report.md and convergence.png.

The search here runs on the synthetic evaluator (an analytic time model, not a measurement) over a
real task file whose knobs match the synthetic space."""

from __future__ import annotations

import json
from pathlib import Path

import networkx as nx

from kernelpro.report import bake_knobs, convergence, winning_path, write_run
from kernelpro.search import Budget, MCTSConfig, Variant, start
from kernelpro.search.synthetic import SyntheticDiagnoser, SyntheticEvaluator, SyntheticProposer
from kernelpro.task_loader import load_task, parse_task

TASK = '''/* kernelpro
[task]
kernel = "scale"
[params]
N = 1048576
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
[launch]
grid = ["ceil_div(N, BLOCK * UNROLL * VEC)"]
block = ["BLOCK"]
[knobs]
BLOCK = { values = [32, 64, 128, 256, 512, 1024], default = 32 }
UNROLL = { values = [1, 2, 4, 8], default = 1 }

[knobs.VEC]
values = [1, 2, 4]
default = 1
*/
#ifndef BLOCK
#define BLOCK 32
#endif
#ifndef UNROLL
#define UNROLL 1
#endif
#ifndef VEC
#define VEC 1
#endif
extern "C" __global__ void scale(const float* x, float* y, int n) {
    int i = (blockIdx.x * BLOCK + threadIdx.x) * VEC * UNROLL;
    for (int u = 0; u < UNROLL * VEC; ++u) if (i + u < n) y[i + u] = 2.0f * x[i + u];
}
'''


def run_search(tmp_path: Path):
    path = tmp_path / "scale.cu"
    path.write_text(TASK)
    task = load_task(path)
    baseline = Variant(task.source, tuple((k, str(v)) for k, v in task.default_knobs().items()), (), "baseline",
                       "task")
    result = start(tmp_path / "run", baseline, SyntheticEvaluator(), SyntheticProposer(), SyntheticDiagnoser(),
                   config=MCTSConfig(seed=3), budget=Budget(max_evaluations=40))
    return task, result


def test_bake_knobs_sets_source_and_metadata_defaults() -> None:
    task = parse_task(TASK, "scale.cu")
    baked = bake_knobs(task, TASK, {"BLOCK": "256", "VEC": "4", "UNROLL": "1"})
    again = parse_task(baked, "best.cu")  # the loader checks that metadata and #define agree
    assert again.default_knobs() == {"BLOCK": 256, "UNROLL": 1, "VEC": 4}
    changed = [(a, b) for a, b in zip(TASK.splitlines(), baked.splitlines(), strict=True) if a != b]
    assert len(changed) == 4  # two metadata defaults, two #defines; nothing else moves


def test_write_run_files(tmp_path: Path) -> None:
    task, result = run_search(tmp_path)
    assert result.speedup and result.speedup > 2
    files = write_run(tmp_path / "run", task, result, header={"GPU": "none (synthetic evaluator)"})

    best = load_task(files.best)
    assert {k: str(v) for k, v in best.default_knobs().items()} == result.best.variant.knob_values

    graph = nx.node_link_graph(json.loads(files.tree.read_text()), edges="edges")
    assert graph.number_of_nodes() == len(result.tree) == result.evaluations

    report = files.report.read_text()
    assert f"**{result.speedup:.3f}x**" in report
    path = winning_path(result)
    assert path[0].id == result.baseline.id and path[-1].id == result.best.id
    assert report.count("\n1. node ") == len(path) - 1
    assert "-#define BLOCK 32" in report and f"+#define BLOCK {result.best.variant.knob_values['BLOCK']}" in report
    assert "GPU: none (synthetic evaluator)" in report and "| compile |" in report

    points = convergence(result)
    assert [p[0] for p in points] == list(range(1, result.evaluations + 1))
    assert all(a[1] <= b[1] for a, b in zip(points, points[1:], strict=False))
    assert abs(points[-1][1] - result.speedup) < 1e-9
    assert files.convergence.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "run" / "journal.jsonl").is_file()


def test_flags_are_noted_in_best_file(tmp_path: Path) -> None:
    from kernelpro.report import best_file_text
    from kernelpro.search.interfaces import Node
    from kernelpro.search.variant import Evaluation

    task = parse_task(TASK, "scale.cu")
    node = Node(1, 0, 1, 1, Variant(TASK, (("BLOCK", "64"),), ("-maxrregcount=32", "--use_fast_math")),
                Evaluation.passed(10.0))
    text = best_file_text(task, node)
    assert "// kernelpro: compile with these nvcc flags: -maxrregcount=32 --use_fast_math" in text
    assert parse_task(text, "best.cu").default_knobs()["BLOCK"] == 64
