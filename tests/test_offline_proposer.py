"""The offline proposer on the suite's tasks and small planted ones; every proposed variant is compiled."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import pytest

from kernelpro import actions
from kernelpro.compiler import Compiler, CompileRequest
from kernelpro.cuda_source import find_kernels
from kernelpro.runner.evaluate import signature_failure
from kernelpro.search import (
    MCTS,
    Budget,
    Diagnosis,
    Evaluation,
    MCTSConfig,
    Node,
    ProposalRequest,
    StopReason,
    Variant,
)
from kernelpro.search.offline import OfflineProposer
from kernelpro.task import Task
from kernelpro.task_loader import load_task, parse_task
from kernelpro.toolchain import find_tool

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(find_tool("nvcc", required=False) is None, reason="nvcc not installed")

ARGS_IN_OUT = """
[[args]]
name = "x"
dtype = "float32"
shape = ["SIZE"]
intent = "in"
[[args]]
name = "y"
dtype = "float32"
shape = ["N * N"]
intent = "out"
[[args]]
name = "n"
dtype = "int32"
value = "N"
"""
TRANSPOSE = f"""/* kernelpro
[task]
kernel = "transpose"
[params]
N = 4096
{ARGS_IN_OUT.replace('"SIZE"', '"N * N"')}
[launch]
grid = ["ceil_div(N, 32)", "ceil_div(N, 32)"]
block = ["32", "32"]
*/
extern "C" __global__ void transpose(const float* x, float* y, int n) {{
    __shared__ float tile[32][32];
    int c = blockIdx.x * 32 + threadIdx.x, r = blockIdx.y * 32 + threadIdx.y;
    if (c < n && r < n) tile[threadIdx.y][threadIdx.x] = x[r * n + c];
    __syncthreads();
    c = blockIdx.y * 32 + threadIdx.x;
    r = blockIdx.x * 32 + threadIdx.y;
    if (c < n && r < n) y[r * n + c] = tile[threadIdx.x][threadIdx.y];
}}
"""
HEAVY = f"""/* kernelpro
[task]
kernel = "heavy"
[params]
N = 1048576
{ARGS_IN_OUT.replace('"SIZE"', '"40 * N"').replace('"N * N"', '"N"')}
[launch]
grid = ["ceil_div(N, BLOCK)"]
block = ["BLOCK"]
[knobs]
BLOCK = {{ values = [128, 256, 512], default = 256 }}
*/
#ifndef BLOCK
#define BLOCK 256
#endif
extern "C" __global__ void heavy(const float* x, float* y, int n) {{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    float acc[40];
    #pragma unroll
    for (int k = 0; k < 40; ++k) acc[k] = x[i + k * n];
    float s = 0.0f;
    #pragma unroll
    for (int k = 0; k < 40; ++k) s += acc[k] * acc[(k * 7) % 40];
    if (i < n) y[i] = s;
}}
"""


@pytest.fixture(scope="module")
def compiler(tmp_path_factory: pytest.TempPathFactory) -> Compiler:
    return Compiler(cache_dir=tmp_path_factory.mktemp("nvcc-cache"))


def task(name: str) -> Task:
    return load_task(ROOT / "tasks" / f"{name}.cu")


def root(t: Task, knobs: dict | None = None, flags: tuple[str, ...] = (), acts: Iterable = ()) -> Node:
    config = {**t.default_knobs(), **(knobs or {})}
    variant = Variant(t.source, tuple((k, str(v)) for k, v in config.items()), flags, "baseline", "task")
    diagnosis = Diagnosis("planted", tuple(acts)) if acts else None
    return Node(0, None, 0, 0, variant, Evaluation.passed(100.0), diagnosis)


def ask(proposer: OfflineProposer, node: Node, n: int = 4, seen: Iterable[str] = (),
        feedback: tuple[str, ...] = ()) -> tuple[Variant, ...]:
    request = ProposalRequest(node, n, feedback, "", frozenset(seen) | {node.key}, 100.0)
    return proposer.propose(request).variants


def drain(proposer: OfflineProposer, node: Node, n: int = 3, calls: int = 30) -> list[Variant]:
    """Ask again and again, adding what came back to seen_keys, until a proposal is empty."""
    seen: list[Variant] = []
    for _ in range(calls):
        variants = ask(proposer, node, n, [v.key for v in seen])
        if not variants:
            return seen
        assert len(variants) <= n
        seen += variants
    raise AssertionError(f"still proposing after {calls} calls")


def config_of(t: Task, variant: Variant) -> dict:
    return {**t.default_knobs(), **{k: t.parse_knob(k, v) for k, v in variant.knobs}}


def compiles(compiler: Compiler, t: Task, variant: Variant) -> bool:
    request = CompileRequest(variant.source, "sm_90", t.defines(config_of(t, variant)), variant.flags,
                             source_name="candidate.cu")  # the proposer's own check is then a cache hit
    return compiler.compile(request).ok


# --- the suite's tasks ---------------------------------------------------------------------------

FIRST_MOVES = {
    "vector_add": ["offline:vectorize_loads", "offline:add_restrict", "offline:set_knob"],
    "softmax": ["offline:vectorize_loads", "offline:warp_shuffle_reduction", "offline:warp_per_row"],
    "sgemm": ["offline:block_size", "offline:add_restrict", "offline:set_knob"],
}


@pytest.mark.parametrize("name", ["vector_add", "softmax", "sgemm"])
def test_every_child_is_new_valid_and_compiles(compiler: Compiler, name: str) -> None:
    t = task(name)
    node = root(t)
    proposer = OfflineProposer(t, compiler=compiler, arch="sm_90")
    children = drain(proposer, node)
    assert [v.origin for v in children[:3]] == FIRST_MOVES[name]
    assert len(children) >= 6
    keys = [v.key for v in children]
    assert len(set(keys)) == len(keys) and node.key not in keys
    for variant in children:
        assert variant.origin.startswith("offline:") and variant.change
        config = config_of(t, variant)
        assert all(config[k] in t.knobs[k].values for k in t.knobs) and t.satisfies_constraints(config)
        assert signature_failure(t, variant.source) is None
        assert find_kernels(variant.source)[t.kernel].param_names == t.signature.param_names
        assert variant.source[: t.signature.start] == t.source[: t.signature.start]  # metadata untouched
        assert compiles(compiler, t, variant), variant.change


def test_the_sgemm_block_is_widened_for_coalescing_at_the_same_size() -> None:
    t = task("sgemm")
    first = next(OfflineProposer(t, verify=False).candidates(root(t)))
    assert first.change == "BLOCK_X 16→32, BLOCK_Y 16→8" and first.source == t.source


def test_children_of_children_build_on_the_parent(compiler: Compiler) -> None:
    t = task("vector_add")
    proposer = OfflineProposer(t, compiler=compiler, arch="sm_90")
    vectorized = ask(proposer, root(t), 1)[0]
    child = Node(1, 0, 1, 1, vectorized, Evaluation.passed(80.0))
    grandchildren = drain(proposer, child)
    origins = [v.origin for v in grandchildren]
    assert "offline:vectorize_loads" not in origins  # already vectorized: the transform refuses
    assert origins[0] == "offline:add_restrict"
    assert all("kp_vectors" in v.source for v in grandchildren)
    assert all(compiles(compiler, t, v) for v in grandchildren)


# --- diagnosis actions ---------------------------------------------------------------------------

def test_diagnosis_actions_come_first_in_their_order() -> None:
    t = task("vector_add")
    acts = (actions.launch_bounds(256, 4), actions.vectorize_loads(128), actions.use_tensor_cores("float32"))
    variants = ask(OfflineProposer(t, verify=False), root(t, acts=acts), n=3)
    assert [v.origin for v in variants] == ["offline:launch_bounds", "offline:vectorize_loads",
                                            "offline:add_restrict"]  # then the ladder, without a second float4
    assert find_kernels(variants[0].source)[t.kernel].launch_bounds == "BLOCK, 4"  # follows the BLOCK knob

    transpose = parse_task(TRANSPOSE, "transpose.cu")
    acts = (actions.pad_shared("tile", 33, 32), actions.launch_bounds(1024))
    variants = ask(OfflineProposer(transpose, verify=False), root(transpose, acts=acts), n=2)
    assert [v.origin for v in variants] == ["offline:pad_shared", "offline:launch_bounds"]
    assert "tile[32][33]" in variants[0].source
    assert find_kernels(variants[1].source)["transpose"].launch_bounds == "1024"


def test_actions_that_cannot_apply_are_skipped() -> None:
    t = task("sgemm")
    acts = (actions.vectorize_loads(128), actions.pad_shared("tile", 33), actions.launch_bounds(128),
            actions.increase_grid(10_000), actions.set_knob("BLOCK_X", 48), actions.set_knob("BLOCK_Y", 32))
    variants = ask(OfflineProposer(t, verify=False), root(t, acts=acts), n=1)
    # No float4 pattern, no shared array, a bound below the 256-thread block, a grid with no knob, a value
    # the knob doesn't have, and 16 x 32 = 512 threads is fine: only the last applies.
    assert [(v.origin, v.change) for v in variants] == [("offline:set_knob", "BLOCK_Y 16→32")]


def test_block_size_action_finds_the_knobs_that_give_it() -> None:
    t = task("sgemm")
    acts = (actions.block_size(256, 128), actions.block_size(256, 2048), actions.block_size(256, 512, "BLOCK_X"))
    variants = ask(OfflineProposer(t, verify=False), root(t, acts=acts), n=3)
    # 2048 threads is more than any knob value gives: the closest larger block (1024) is taken, and said.
    assert [v.change for v in variants] == ["BLOCK_Y 16→8", "BLOCK_X 16→64 (closest to the 2048 threads asked for)",
                                            "BLOCK_X 16→32"]


def test_grid_action_takes_the_closest_knob_value_when_none_reaches_it() -> None:
    t = task("vector_add")  # grid = ceil_div(N, BLOCK): the most blocks come from the smallest BLOCK
    acts = (actions.increase_grid(10**9, "BLOCK"), actions.increase_grid(10**9))
    variants = ask(OfflineProposer(t, verify=False), root(t, acts=acts), n=1)
    assert [(v.origin, v.change) for v in variants] == [
        ("offline:increase_grid", f"BLOCK 256→64 (closest to 1000000000 blocks: {t.params['N'] // 64})")]


def test_flags_replace_another_value_of_the_same_option() -> None:
    t = task("vector_add")
    acts = (actions.nvcc_flag("-Xptxas -dlcm=cg"), actions.maxrregcount(64), actions.nvcc_flag("-Xptxas -dlcm=ca"))
    variants = ask(OfflineProposer(t, verify=False), root(t, flags=("-Xptxas -dlcm=ca",), acts=acts), n=2)
    assert variants[0].flags == ("-Xptxas", "-dlcm=cg")
    assert variants[0].change == "compile with -Xptxas -dlcm=cg instead of -dlcm=ca"
    assert variants[1].flags == ("-Xptxas", "-dlcm=ca", "-maxrregcount=64")  # dlcm=ca again: already set


# --- seen keys, feedback, exhaustion -------------------------------------------------------------

def test_seen_keys_are_skipped_and_the_order_is_kept(compiler: Compiler) -> None:
    t = task("softmax")
    proposer = OfflineProposer(t, compiler=compiler, arch="sm_90")
    node = root(t)
    first = ask(proposer, node, 4)
    assert ask(proposer, node, 4) == first  # deterministic
    again = ask(proposer, node, 2, seen=[first[0].key, first[2].key])
    assert [v.key for v in again] == [first[1].key, first[3].key]


def test_a_change_that_failed_on_this_parent_is_not_proposed_again(compiler: Compiler) -> None:
    t = task("vector_add")
    proposer = OfflineProposer(t, compiler=compiler, arch="sm_90")
    node = root(t)
    first = ask(proposer, node, 2)
    feedback = (f"'{first[0].change}' → wall: output mismatch at index 17",)
    again = ask(proposer, node, 2, feedback=feedback)
    assert first[0].key not in {v.key for v in again} and again[0].key == first[1].key


def test_repeated_calls_exhaust_the_moves(compiler: Compiler) -> None:
    t = task("sgemm")
    proposer = OfflineProposer(t, compiler=compiler, arch="sm_90", max_per_expansion=2)
    node = root(t, {"BLOCK_X": 64, "BLOCK_Y": 16})  # 1024 threads: nothing may grow
    children = drain(proposer, node, n=5)
    assert 0 < len(children) == len({v.key for v in children})
    for variant in children:
        config = config_of(t, variant)
        assert config["BLOCK_X"] * config["BLOCK_Y"] <= 1024 and t.satisfies_constraints(config)
    assert ask(proposer, node, 5, seen=[v.key for v in children]) == ()


# --- the compile check ---------------------------------------------------------------------------

def test_compile_check_drops_no_ops_and_spills(compiler: Compiler) -> None:
    t = task("vector_add")
    unchecked = list(OfflineProposer(t, verify=False).candidates(root(t)))
    assert "offline:launch_bounds" in {v.origin for v in unchecked}
    checked = drain(OfflineProposer(t, compiler=compiler, arch="sm_90"), root(t))
    # 12 registers and no loop: a launch bound changes nothing in the SASS, so it isn't worth a GPU run.
    assert "offline:launch_bounds" not in {v.origin for v in checked}
    assert {v.key for v in checked} < {v.key for v in unchecked}

    heavy = parse_task(HEAVY, "heavy.cu")
    capped = root(heavy, acts=(actions.launch_bounds(256, 8),))  # 32 registers for a 56-register kernel
    assert next(OfflineProposer(heavy, verify=False).candidates(capped)).origin == "offline:launch_bounds"
    first = ask(OfflineProposer(heavy, compiler=compiler, arch="sm_90"), capped, 1)[0]
    assert first.origin != "offline:launch_bounds"  # it spills: dropped


def test_register_step_caps_at_the_next_occupancy_step(compiler: Compiler) -> None:
    heavy = parse_task(HEAVY, "heavy.cu")
    proposer = OfflineProposer(heavy, compiler=compiler, arch="sm_90")
    children = drain(proposer, root(heavy))
    steps = [v for v in children if v.origin == "offline:maxrregcount"]
    assert [v.flags for v in steps] == [("-maxrregcount=48",)]  # 56 → 48 registers: 4 → 5 blocks of 256
    request = CompileRequest(steps[0].source, "sm_90", heavy.defines(), steps[0].flags)
    resources = next(iter(compiler.compile(request).resources.values()))
    assert resources.registers <= 48 and not resources.spills
    assert not any(v.flags for v in drain(OfflineProposer(heavy, verify=False), root(heavy))
                   if v.origin == "offline:maxrregcount")  # without a compiler there is no register count


# --- the search, end to end ----------------------------------------------------------------------

class CompileOnlyEvaluator:
    """Compiles each variant with nvcc and reports a deterministic fake time.

    A CPU stand-in for the GPU evaluator, NOT a measurement: the "time" is a hash of the variant's key,
    so the search has something to rank. It only proves the proposer, compiler and search fit together.
    """

    def __init__(self, t: Task, compiler: Compiler) -> None:
        self.task, self.compiler, self.calls = t, compiler, 0

    def evaluate(self, variant: Variant) -> Evaluation:
        self.calls += 1
        if not compiles(self.compiler, self.task, variant):
            return Evaluation.failed("compile", "nvcc rejected the variant")
        fraction = int(hashlib.sha256(variant.key.encode()).hexdigest()[:8], 16) / 2**32
        fake_us = 100.0 if variant.change == "baseline" else 60.0 + 60.0 * fraction
        return Evaluation.passed(fake_us, summary={"stand_in": "hash of the key, not a measurement"})


@pytest.mark.parametrize("name", ["vector_add", "softmax"])
def test_mcts_runs_end_to_end_with_the_offline_proposer(compiler: Compiler, name: str) -> None:
    t = task(name)
    evaluator = CompileOnlyEvaluator(t, compiler)
    search = MCTS(root(t).variant, evaluator, OfflineProposer(t, compiler=compiler, arch="sm_90"),
                  config=MCTSConfig(seed=1), budget=Budget(max_evaluations=14))
    result = search.run()
    assert result.stop_reason in (StopReason.EVALUATIONS, StopReason.EXHAUSTED)
    nodes = list(result.tree)
    assert len(nodes) == evaluator.calls > 4
    assert all(node.ok for node in nodes)  # every proposed variant compiled
    assert len({node.key for node in nodes}) == len(nodes)
    assert all(node.variant.origin.startswith("offline:") for node in nodes[1:])
    assert max(node.depth for node in nodes) >= 2  # children of proposed children were proposed too
    assert result.best.time_us < result.baseline.time_us
