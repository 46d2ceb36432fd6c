"""Every micro-profiling tool on REAL counters: the H100 capture in tests/fixtures/ncu-h100/planted_raw.csv.

Counters come only from that capture (Nsight Compute, `--set full`, H100 80GB HBM3). The SASS and ptxas
resources come from compiling the same planted.cu here with the capture's flags (nvcc -O3 -arch=sm_90
-lineinfo); the registers ptxas reports match the capture's launch metrics. A tool "fires" on a kernel
when the kernel's roofline class is in its ``applies_to`` and its trigger is true -- what
``diagnose`` runs. Tools no planted kernel exercises are checked for not firing on any of the five.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from stream_task import stream_meta

from kernelpro.compiler import Compiler, CompileRequest
from kernelpro.diagnosis import build_context
from kernelpro.ncu import load_raw_csv
from kernelpro.sass import sass_for_cubin
from kernelpro.task_loader import parse_task
from kernelpro.toolchain import find_tool
from kernelpro.tools import all_tools, get_tool

FIXTURE = Path(__file__).parent / "fixtures" / "ncu-h100"
SOURCE = (FIXTURE / "planted.cu").read_text()
pytestmark = pytest.mark.skipif(find_tool("nvcc", required=False) is None, reason="nvcc not installed")

# The launches in planted.cu's main().
LAUNCH = {"k_copy_ok": ("N / 256", "256"), "k_uncoalesced": ("N / 256", "256"),
          "k_bank_conflict": ("N / 1024", "1024"), "k_spill": ("N / 128", "128"), "k_tiny_grid": ("4", "256")}

# Tool -> the planted kernels it fires on. The clean control k_copy_ok fires none.
EXPECTED = {
    "small_grid": {"k_tiny_grid"},
    "local_memory": {"k_spill"},
    "uncoalesced": {"k_uncoalesced"},
    "bank_conflicts": {"k_bank_conflict"},
    "mio_lsu_throttle": {"k_bank_conflict", "k_spill"},
    "occupancy_gap": {"k_tiny_grid"},
    "dram_bandwidth": {"k_tiny_grid"},
    "long_scoreboard": {"k_tiny_grid"},
    "scalar_loads": {"k_tiny_grid"},
    "l2_hit_rate": set(),  # judges reuse against the task's input size: see test_l2_reuse_needs_the_task
    # Exercised by none of the five kernels; their triggers and controls are in test_tools_capture.py:
    "tensor_cores": set(), "occupancy_limiter": set(), "block_size_multiple": set(), "tail_effect": set(),
    "fp64_promotion": set(), "unfused_fp32": set(), "divergence": set(), "atomic_contention": set(),
    "barrier_stalls": set(), "launch_overhead": set(),
}


def planted_task(kernel: str):
    grid, block = LAUNCH[kernel]
    meta = stream_meta(kernel, grid=grid, block=block)
    return parse_task(meta + SOURCE, "planted.cu")


@pytest.fixture(scope="module")
def contexts(tmp_path_factory: pytest.TempPathFactory):
    """Kernel name -> DiagnosisContext from the capture plus the real compile of planted.cu (no task)."""
    compiler = Compiler(cache_dir=tmp_path_factory.mktemp("cache"))
    result = compiler.compile_or_raise(CompileRequest(source=SOURCE, arch="sm_90", flags=("-O3", "-lineinfo"),
                                                      source_name="planted.cu"))
    sass = sass_for_cubin(result.cubin)
    kernels = {k.name: k for k in load_raw_csv(FIXTURE / "planted_raw.csv")}
    return {name: build_context(kernel, resources=result.resources[name], sass=sass[name], source=SOURCE)
            for name, kernel in kernels.items()}


def fires(tool, ctx) -> bool:
    return ctx.bound in tool.applies_to and tool.trigger(ctx)


def test_compiled_resources_match_the_capture(contexts) -> None:
    for name in ("k_bank_conflict", "k_spill"):  # ncu reports at least 16 registers; these use more
        ctx = contexts[name]
        assert ctx.resources.registers == ctx.number("launch__registers_per_thread")
    assert contexts["k_spill"].resources.stack_frame_bytes == 256


def test_every_tool_fires_exactly_on_its_planted_kernels(contexts) -> None:
    assert set(EXPECTED) == {t.name for t in all_tools()}
    for tool in all_tools():
        fired = {name for name, ctx in contexts.items() if fires(tool, ctx)}
        assert fired == EXPECTED[tool.name], tool.name


def test_control_raw_triggers_that_its_class_excludes(contexts) -> None:
    # The copy's counters do show a 27-point occupancy gap and 80% long-scoreboard waits, normal for a streaming
    # kernel; both tools run only for latency-bound kernels, and the copy is memory-bound (61% of DRAM peak).
    copy = contexts["k_copy_ok"]
    assert copy.bound == "memory"
    assert get_tool("occupancy_gap").trigger(copy) and get_tool("long_scoreboard").trigger(copy)


def test_small_grid(contexts) -> None:
    ctx, tool = contexts["k_tiny_grid"], get_tool("small_grid")
    finding = tool.analyze(ctx)
    assert "4 blocks of 256 threads on 132 SMs: 128 SMs get no block" in finding.summary
    p = tool.recommend(finding, ctx)
    assert [a.kind for a in p.actions] == ["increase_grid"] and p.actions[0].params["min_blocks"] == 132 * 8
    assert p.gain[0] == pytest.approx(132 / 4) and p.gain[1] == pytest.approx(ctx.verdict.headroom)


def test_local_memory(contexts) -> None:
    ctx, tool = contexts["k_spill"], get_tool("local_memory")
    finding = tool.analyze(ctx)
    # 64 LDL + 16 STL per warp in the SASS; 88% of L1 sectors are local; DRAM gets 65x the global stores.
    assert "256-byte per-thread array" in finding.summary and "80 local loads/stores per warp" in finding.summary
    assert "88% of the L1 traffic is local memory" in finding.summary and "65x" in finding.summary
    assert finding.evidence[0].startswith("ptxas: 256 bytes stack frame")
    assert [line.split()[1].split(".")[0] for line in finding.evidence[1:]] == ["LDL", "STL"]
    p = tool.recommend(finding, ctx)
    assert p.actions[0].kind == "unroll" and p.gain[1] == pytest.approx(8.3, abs=0.1)


def test_uncoalesced(contexts) -> None:
    ctx, tool = contexts["k_uncoalesced"], get_tool("uncoalesced")
    finding = tool.analyze(ctx)
    assert finding.summary.startswith("global loads use 4 of every 32 bytes they fetch (32.0 sectors per warp")
    assert "8x the traffic" in finding.summary and any("LDG" in line for line in finding.evidence)
    high = tool.recommend(finding, ctx).gain[1]
    assert 4 < high < 8  # the 8x waste applies to the loads' 89% of the sectors


def test_bank_conflicts(contexts) -> None:
    ctx, tool = contexts["k_bank_conflict"], get_tool("bank_conflicts")
    finding = tool.analyze(ctx)
    assert "16.5-way" in finding.summary and "94% of shared-memory wavefronts are replays" in finding.summary
    p = tool.recommend(finding, ctx)
    assert p.actions[0].kind == "pad_shared" and dict(p.actions[0].params) == {"array": "t", "cols": 33, "rows": 32}
    assert p.change.startswith("pad shared array t to [32][33]")
    assert 10 < p.gain[1] < 16.5


def test_mio_lsu_throttle_names_the_queue(contexts) -> None:
    tool = get_tool("mio_lsu_throttle")
    assert "91%" in tool.analyze(contexts["k_bank_conflict"]).summary
    assert "shared-memory (MIO)" in tool.analyze(contexts["k_bank_conflict"]).summary
    spill = tool.analyze(contexts["k_spill"]).summary
    assert "49%" in spill and "local/global memory (LSU)" in spill
    assert tool.defers_to == ("bank_conflicts", "local_memory")


def test_latency_tools_on_the_tiny_grid(contexts) -> None:
    ctx = contexts["k_tiny_grid"]
    assert "93% of their time" in get_tool("long_scoreboard").analyze(ctx).summary
    assert "12% of their warp slots on average against a theoretical 100%" in get_tool("occupancy_gap").analyze(
        ctx).summary
    dram = get_tool("dram_bandwidth").analyze(ctx).summary
    assert "DRAM runs at 0.5% of peak" in dram and "165x more bytes in flight" in dram
    scalar = get_tool("scalar_loads")
    finding = scalar.analyze(ctx)
    assert "32 of every 32 fetched bytes used" in finding.summary and "LDG.E" in finding.evidence[0]
    assert scalar.recommend(finding, ctx).actions[0].params["width"] == 128


def test_l2_reuse_needs_the_task(contexts) -> None:
    tool = get_tool("l2_hit_rate")
    fired = set()
    for name, ctx in contexts.items():
        with_task = build_context(ctx.metrics, task=planted_task(name), resources=ctx.resources, sass=ctx.sass)
        if fires(tool, with_task):
            fired.add(name)
            if name == "k_uncoalesced":
                summary = tool.analyze(with_task).summary
                assert summary.startswith("DRAM delivered 16.0x the 67 MB of input") and "hit rate 0%" in summary
    # The gather re-reads x 16 times; the spill kernel's DRAM reads include its local array. Both kernels'
    # more specific tools (uncoalesced, local_memory) take precedence in diagnose().
    assert fired == {"k_uncoalesced", "k_spill"}
    assert tool.defers_to == ("uncoalesced", "local_memory")
