"""Each micro-profiling tool on a kernel planted to trigger it and on a twin that must not.

The kernels are tests/fixtures/ncu-h100-tools/planted_tools.cu; capture.sh beside it records their
Nsight Compute counters on an H100 into planted_tools_raw.csv. Two groups of tests:

* **Before and after the capture** (needs only nvcc): every planted kernel really carries its problem in
  the code the GPU will run (SASS, ptxas resources, occupancy, waves) and its twin does not -- so a
  capture measures what the table in planted_tools.cu says it measures.
* **On the capture** (skipped, saying so, until planted_tools_raw.csv exists): every tool fires on its
  trigger kernels and on none of its controls, with the counters, SASS, resources and task together, as
  ``kernelpro analyze`` assembles them.

Tools whose trigger and control are in the first capture (tests/fixtures/ncu-h100, tested by
test_tools_fixture.py) are listed in :data:`COVERED_ELSEWHERE`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from stream_task import stream_meta

from kernelpro.compiler import Compiler, CompileRequest
from kernelpro.diagnosis import build_context
from kernelpro.ncu import load_raw_csv
from kernelpro.roofline import DevicePeaks, known_gpu
from kernelpro.sass import sass_for_cubin
from kernelpro.task_loader import parse_task
from kernelpro.toolchain import find_tool
from kernelpro.tools import all_tools, get_tool

FIXTURE = Path(__file__).parent / "fixtures" / "ncu-h100-tools"
SOURCE = (FIXTURE / "planted_tools.cu").read_text()
CAPTURE = FIXTURE / "planted_tools_raw.csv"
FLAGS = ("-O3", "-lineinfo")  # capture.sh builds with nvcc -O3 -arch=sm_90 -lineinfo
H100 = DevicePeaks.from_spec(known_gpu("NVIDIA H100 80GB HBM3"))
pytestmark = pytest.mark.skipif(find_tool("nvcc", required=False) is None, reason="nvcc not installed")

N, N_COMPUTE, N_REFETCH, GEMM = 1 << 24, 1 << 22, 1 << 25, 1024
CHASE_GRID = 132 * 8

# Kernel -> (grid, block, n): the launches in planted_tools.cu's main().
LAUNCH = {
    "k_copy_ok": (N // 256, 256, N),
    "k_copy_block48": (N // 48, 48, N // 48 * 48),
    "k_tiny": (1, 32, 32),
    "k_divergent": (N_COMPUTE // 256, 256, N_COMPUTE),
    "k_uniform": (N_COMPUTE // 256, 256, N_COMPUTE),
    "k_barrier_skewed": (N_COMPUTE // 1024, 1024, N_COMPUTE),
    "k_barrier_even": (N_COMPUTE // 1024, 1024, N_COMPUTE),
    "k_atomic_hot": (N_COMPUTE // 256, 256, N_COMPUTE),
    "k_atomic_spread": (N_COMPUTE // 256, 256, N_COMPUTE),
    "k_chase": (CHASE_GRID, 128, N),
    "k_unfused": (N_COMPUTE // 256, 256, N_COMPUTE),
    "k_fused": (N_COMPUTE // 256, 256, N_COMPUTE),
    "k_fp64_promoted": (N_COMPUTE // 256, 256, N_COMPUTE),
    "k_tail": (330, 1024, 330 * 1024),
    "k_tail_even": (528, 1024, 528 * 1024),
    "k_smem_hog": (N // 10240, 128, N // 10240 * 10240),
    "k_smem_small": (N // 2048, 128, N),
    "k_refetch": (N_REFETCH // 256, 256, N_REFETCH),
}
GEMMS = ("k_hgemm_naive", "k_hgemm_wmma")

# Tool -> (kernels it must fire on, kernels it must not fire on).
PAIRS = {
    "divergence": ({"k_divergent"}, {"k_uniform", "k_copy_ok"}),
    "barrier_stalls": ({"k_barrier_skewed"}, {"k_barrier_even", "k_copy_ok"}),
    "atomic_contention": ({"k_atomic_hot"}, {"k_atomic_spread", "k_copy_ok"}),
    "launch_overhead": ({"k_tiny"}, {"k_copy_ok"}),
    "long_scoreboard": ({"k_chase"}, {"k_barrier_skewed", "k_copy_ok"}),
    "dram_bandwidth": ({"k_chase"}, {"k_copy_ok"}),
    "unfused_fp32": ({"k_unfused"}, {"k_fused"}),
    "fp64_promotion": ({"k_fp64_promoted"}, {"k_fused"}),
    "tensor_cores": ({"k_hgemm_naive"}, {"k_hgemm_wmma"}),
    "tail_effect": ({"k_tail"}, {"k_tail_even"}),
    "occupancy_limiter": ({"k_smem_hog"}, {"k_smem_small", "k_copy_ok"}),
    "block_size_multiple": ({"k_copy_block48"}, {"k_copy_ok"}),
    "l2_hit_rate": ({"k_refetch"}, {"k_copy_ok"}),
}
# Trigger and control in tests/fixtures/ncu-h100 (test_tools_fixture.py).
COVERED_ELSEWHERE = {"small_grid", "local_memory", "uncoalesced", "bank_conflicts", "mio_lsu_throttle",
                     "occupancy_gap", "scalar_loads"}

def gemm_meta(kernel: str, block: tuple[int, int]) -> str:
    """The task of one planted GEMM: M = Nc = K = GEMM, one 16x16 tile of C per block."""
    return f'''/* kernelpro
[task]
kernel = "{kernel}"
[params]
M = {GEMM}
Nc = {GEMM}
K = {GEMM}
[[args]]
name = "A"
dtype = "float16"
shape = ["M", "K"]
intent = "in"
[[args]]
name = "B"
dtype = "float16"
shape = ["K", "Nc"]
intent = "in"
[[args]]
name = "C"
dtype = "float32"
shape = ["M", "Nc"]
intent = "out"
[[args]]
name = "M"
dtype = "int32"
value = "M"
[[args]]
name = "Nc"
dtype = "int32"
value = "Nc"
[[args]]
name = "K"
dtype = "int32"
value = "K"
[cost]
flops = "2 * M * Nc * K"
bytes = "2 * (M * K + K * Nc) + 4 * M * Nc"
[launch]
grid = ["{GEMM // 16}", "{GEMM // 16}"]
block = ["{block[0]}", "{block[1]}"]
*/
'''


def planted_task(kernel: str):
    """The task a user would write for one planted kernel, with the launch main() uses."""
    if kernel in GEMMS:
        meta = gemm_meta(kernel, (16, 16) if kernel == "k_hgemm_naive" else (32, 1))
    else:
        grid, block, n = LAUNCH[kernel]
        meta = stream_meta(kernel, grid=str(grid), block=str(block), n=n)
    return parse_task(meta + SOURCE, "planted_tools.cu")


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory):
    """planted_tools.cu compiled as capture.sh compiles it: (resources, SASS) by kernel name."""
    compiler = Compiler(cache_dir=tmp_path_factory.mktemp("cache"))
    result = compiler.compile_or_raise(CompileRequest(source=SOURCE, arch="sm_90", flags=FLAGS,
                                                      source_name="planted_tools.cu"))
    sass = sass_for_cubin(result.cubin)
    return {name: (result.resources[name], sass[name]) for name in sass}


def context(compiled, kernel: str, metrics=None):
    resources, sass = compiled[kernel]
    return build_context(metrics, task=planted_task(kernel), resources=resources, sass=sass, source=SOURCE,
                         peaks=None if metrics is not None else H100)


def fires(tool, ctx) -> bool:
    """What diagnose() runs: the tool applies to the kernel's roofline class and its trigger holds."""
    return ctx.bound in tool.applies_to and tool.trigger(ctx)


# --- before the capture: the kernels are what the table says -------------------------------------------------

def test_every_tool_has_a_planted_trigger_and_control() -> None:
    names = {tool.name for tool in all_tools()}
    assert set(PAIRS) | COVERED_ELSEWHERE == names and not set(PAIRS) & COVERED_ELSEWHERE
    for tool, (triggers, controls) in PAIRS.items():
        assert triggers and controls and not triggers & controls, tool
    assert set(LAUNCH) | set(GEMMS) == {k for pair in PAIRS.values() for k in pair[0] | pair[1]}


def test_the_launch_table_matches_main() -> None:
    main = SOURCE[SOURCE.index("int main()"):]
    for kernel in [*LAUNCH, *GEMMS]:
        assert f"  {kernel}<<<" in main, kernel
    for kernel in LAUNCH:
        assert planted_task(kernel).kernel == kernel


def test_every_kernel_compiles_and_has_a_task(compiled) -> None:
    assert set(compiled) == set(LAUNCH) | set(GEMMS)


def test_arithmetic_twins_differ_only_in_the_planted_instructions(compiled) -> None:
    def loop_ops(kernel: str) -> dict[str, int]:
        return compiled[kernel][1].histogram_in_loops

    def ops(kernel: str) -> dict[str, int]:
        return compiled[kernel][1].histogram

    assert loop_ops("k_unfused")["fmul"] >= 32 and loop_ops("k_unfused")["fadd"] >= 32
    assert ops("k_unfused")["ffma"] == 0
    assert ops("k_fused")["ffma"] >= 256 and ops("k_fused")["fmul"] == ops("k_fused")["fadd"] == 0
    assert loop_ops("k_fp64_promoted")["fp64"] > 0 and loop_ops("k_fp64_promoted")["fp64_conversion"] > 0
    assert ops("k_fused")["fp64"] == ops("k_fused")["fp64_conversion"] == 0
    assert ops("k_hgemm_wmma")["tensor"] > 0 and ops("k_hgemm_naive")["tensor"] == 0
    assert ops("k_atomic_hot")["atomic"] == ops("k_atomic_spread")["atomic"] == 1
    assert loop_ops("k_barrier_skewed")["barrier"] == loop_ops("k_barrier_even")["barrier"] == 2
    assert loop_ops("k_chase")["global_load_32"] > 0  # the dependent chain stays a loop of loads
    assert loop_ops("k_divergent")["ffma"] > 0  # a loop with a per-lane trip count, not unrolled away


def test_occupancy_and_waves_of_the_launch_twins(compiled) -> None:
    hog, small = context(compiled, "k_smem_hog"), context(compiled, "k_smem_small")
    assert hog.occupancy.limiter == "shared_mem" and hog.occupancy.active_warps_per_sm == 20
    assert small.occupancy.active_warps_per_sm == 64
    tail, even = context(compiled, "k_tail"), context(compiled, "k_tail_even")
    assert tail.occupancy.blocks_per_sm == even.occupancy.blocks_per_sm == 2  # __launch_bounds__(1024, 2)
    assert tail.waves == pytest.approx(1.25) and even.waves == pytest.approx(2.0)
    assert context(compiled, "k_chase").waves == pytest.approx(0.5)  # every SM busy, with 32 of its 64 warps


def test_static_halves_fire_on_the_triggers_only(compiled) -> None:
    """The tools that can judge from SASS, resources and the launch already split each pair."""
    for name in ("unfused_fp32", "fp64_promotion", "tensor_cores", "tail_effect", "block_size_multiple"):
        tool = get_tool(name)
        triggers, controls = PAIRS[name]
        assert all(tool.trigger(context(compiled, k)) for k in triggers), name
        assert not any(tool.trigger(context(compiled, k)) for k in controls), name


def test_atomic_contention_needs_one_hot_slice() -> None:
    """The trigger's arithmetic (numbers made up for the rule, not measured): a busy slice must stand out."""
    tool = get_tool("atomic_contention")
    base = {"lts__t_requests_srcunit_tex_op_red.sum": 1e6}

    def busy(hot: float, avg: float | None) -> bool:
        metrics = {**base, "lts__d_atomic_input_cycles_active.max.pct_of_peak_sustained_elapsed": hot}
        if avg is not None:
            metrics["lts__d_atomic_input_cycles_active.avg.pct_of_peak_sustained_elapsed"] = avg
        return tool.trigger(build_context(metrics))

    assert busy(95.0, 2.0) and busy(45.0, None)
    assert not busy(60.0, 50.0)  # every slice busy: spread atomics, nothing to aggregate
    assert not busy(30.0, 1.0)


# --- on the capture ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def captured(compiled):
    if not CAPTURE.is_file():
        pytest.skip(f"{CAPTURE.name} not recorded yet: run {FIXTURE.name}/capture.sh on an H100 (see its README)")
    kernels = {k.name: k for k in load_raw_csv(CAPTURE)}
    return {name: context(compiled, name, kernel) for name, kernel in kernels.items()}


def test_the_capture_holds_every_launch(captured) -> None:
    assert set(captured) == set(LAUNCH) | set(GEMMS)
    for kernel, (grid, block, _) in LAUNCH.items():
        ctx = captured[kernel]
        assert ctx.number("launch__grid_size") == grid and ctx.number("launch__block_size") == block, kernel


@pytest.mark.parametrize("tool_name", sorted(PAIRS))
def test_tool_fires_on_its_trigger_and_not_on_its_controls(captured, tool_name: str) -> None:
    tool = get_tool(tool_name)
    triggers, controls = PAIRS[tool_name]
    for kernel in triggers:
        ctx = captured[kernel]
        assert fires(tool, ctx), f"{tool_name} silent on {kernel} ({ctx.bound}-bound)"
        tool.recommend(tool.analyze(ctx), ctx)  # analysis and prescription work on real counters
    for kernel in controls:
        assert not fires(tool, captured[kernel]), f"{tool_name} fired on control {kernel}"


def test_the_clean_copy_fires_nothing(captured) -> None:
    ctx = captured["k_copy_ok"]
    assert [tool.name for tool in all_tools() if fires(tool, ctx)] == []
