"""Tools whose trigger reads SASS, ptxas resources or the launch, on kernels compiled here by nvcc.

No counters are involved: these are the compile-time halves of the tools (the profiled halves are in
test_tools_fixture.py, on the real H100 capture). Each trigger is checked on a kernel that has the problem
and on a twin that does not. Device peaks come from the data-sheet table (H100 SXM5) where a tool needs
the SM count.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from stream_task import stream_meta

from kernelpro.compiler import Compiler
from kernelpro.diagnosis import build_context
from kernelpro.roofline import DevicePeaks, known_gpu
from kernelpro.static_analysis import analyze_static
from kernelpro.task_loader import parse_task
from kernelpro.toolchain import find_tool
from kernelpro.tools import get_tool

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(find_tool("nvcc", required=False) is None, reason="nvcc not installed")
H100 = DevicePeaks.from_spec(known_gpu("NVIDIA H100 80GB HBM3"))

STEPS = '''[[args]]
name = "steps"
dtype = "int32"
value = "64"'''

ACCUMULATORS = '''
// 64 accumulators live across the loop: ptxas needs 80 registers.
extern "C" __global__ void accumulate(const float* __restrict__ x, float* __restrict__ y, int n, int steps) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    float acc[64];
#pragma unroll
    for (int k = 0; k < 64; ++k) acc[k] = x[(i + k) % n];
    for (int s = 0; s < steps; ++s) {
        float v = x[(i + s) % n];
#pragma unroll
        for (int k = 0; k < 64; ++k) acc[k] = acc[k] * v + acc[(k + 1) % 64];
    }
    float total = 0.f;
#pragma unroll
    for (int k = 0; k < 64; ++k) total += acc[k];
    y[i] = total;
}
'''

SHARED_HEAVY = '''
extern "C" __global__ void stage(const float* __restrict__ x, float* __restrict__ y, int n) {
    __shared__ float buf[10240];  // 40 KB per block
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    buf[threadIdx.x] = i < n ? x[i] : 0.f;
    __syncthreads();
    if (i < n) y[i] = 2.0f * buf[blockDim.x - 1 - threadIdx.x];
}
'''

AXPY_LOOP = '''
extern "C" __global__ void axpy(const float* __restrict__ x, float* __restrict__ y, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
        float v = x[i];
        y[i] = ((v * 1.5f + 2.0f) * v + 0.5f) * v + 0.25f;  // three multiply-adds
    }
}
'''

HGEMM = '''/* kernelpro
[task]
kernel = "KERNEL"
[params]
M = 1024
N = 1024
K = 1024
[[args]]
name = "A"
dtype = "float16"
shape = ["M", "K"]
intent = "in"
[[args]]
name = "B"
dtype = "float16"
shape = ["K", "N"]
intent = "in"
[[args]]
name = "C"
dtype = "float16"
shape = ["M", "N"]
intent = "out"
[[args]]
name = "M"
dtype = "int32"
value = "M"
[[args]]
name = "N"
dtype = "int32"
value = "N"
[[args]]
name = "K"
dtype = "int32"
value = "K"
[launch]
grid = ["N / 16", "M / 16"]
block = ["BLOCK"]
[cost]
flops = "2 * M * N * K"
bytes = "2 * (M * K + K * N + M * N)"
*/
#include <cuda_fp16.h>
#include <mma.h>
// Naive half-precision matmul: one thread per output, scalar half FMAs.
extern "C" __global__ void hgemm_naive(const __half* A, const __half* B, __half* C, int M, int N, int K) {
    int row = blockIdx.y * blockDim.y + threadIdx.y, col = blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= M || col >= N) return;
    __half acc = __float2half(0.f);
    for (int k = 0; k < K; ++k) acc = __hfma(A[row * K + k], B[k * N + col], acc);
    C[row * N + col] = acc;
}
// The same product on tensor cores: one warp per 16x16 tile.
extern "C" __global__ void hgemm_wmma(const __half* A, const __half* B, __half* C, int M, int N, int K) {
    using namespace nvcuda;
    int tile_m = blockIdx.y * 16, tile_n = blockIdx.x * 16;
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> b;
    wmma::fragment<wmma::accumulator, 16, 16, 16, __half> c;
    wmma::fill_fragment(c, __float2half(0.f));
    for (int k = 0; k < K; k += 16) {
        wmma::load_matrix_sync(a, A + tile_m * K + k, K);
        wmma::load_matrix_sync(b, B + k * N + tile_n, N);
        wmma::mma_sync(c, a, b, c);
    }
    wmma::store_matrix_sync(C + tile_m * N + tile_n, c, N, wmma::mem_row_major);
}
'''


@pytest.fixture(scope="module")
def compiler(tmp_path_factory: pytest.TempPathFactory) -> Compiler:
    return Compiler(cache_dir=tmp_path_factory.mktemp("cache"))


def context(compiler: Compiler, source: str, kernel: str, grid: str = "N / 256", block: str = "256",
            extra: str = "", flags: tuple[str, ...] = (), with_task: bool = True):
    """Compile ``source`` as a task, then build a context without counters (optionally without the task)."""
    task = parse_task(stream_meta(kernel, grid=grid, block=block, extra=extra) + source, "k.cu")
    report = analyze_static(task, compiler=compiler, flags=flags)
    assert report.compiled, report.diagnostics
    return build_context(None, task=task if with_task else None, static=report, peaks=H100)


def test_occupancy_limited_by_registers_quotes_the_what_if_table(compiler: Compiler) -> None:
    ctx = context(compiler, ACCUMULATORS, "accumulate", extra=STEPS)
    tool = get_tool("occupancy_limiter")
    # 80 registers x 256 threads: 3 blocks, 24 of 64 warps.
    assert ctx.resources.registers == 80 and ctx.occupancy.active_warps_per_sm == 24 and tool.trigger(ctx)
    finding = tool.analyze(ctx)
    assert "theoretical occupancy 38% (24 of 64 warps per SM), limited by registers" in finding.summary
    assert finding.evidence[0].startswith("registers 80 -> 64: 24 -> 32 warps/SM")
    p = tool.recommend(finding, ctx)
    assert [a.kind for a in p.actions] == ["launch_bounds", "maxrregcount"]
    assert dict(p.actions[0].params) == {"max_threads": 256, "min_blocks": 4} and p.actions[1].params["registers"] == 64
    assert p.gain[1] == pytest.approx(32 / 24)


def test_occupancy_limited_by_shared_memory(compiler: Compiler) -> None:
    ctx = context(compiler, SHARED_HEAVY, "stage", block="64")
    tool = get_tool("occupancy_limiter")
    assert ctx.occupancy.limiter == "shared_mem" and tool.trigger(ctx)
    p = tool.recommend(tool.analyze(ctx), ctx)
    assert p.change.startswith("cut shared memory to at most") and p.actions == ()


def test_occupancy_fine_does_not_fire(compiler: Compiler) -> None:
    ctx = context(compiler, AXPY_LOOP, "axpy")
    assert ctx.occupancy.occupancy == 1.0 and not get_tool("occupancy_limiter").trigger(ctx)


def test_fp64_promotion_from_a_double_literal(compiler: Compiler) -> None:
    source = (ROOT / "tests" / "kernels" / "sass" / "fp64.cu").read_text()
    tool = get_tool("fp64_promotion")
    for with_task in (True, False):  # the task's dtypes decide; without one, FP64 next to FP32 does
        bad = context(compiler, source, "half_double_literal", with_task=with_task)
        good = context(compiler, source, "half_float_literal", with_task=with_task)
        assert tool.trigger(bad) and not tool.trigger(good)
    finding = tool.analyze(bad)
    assert "conversions) in single-precision code" in finding.summary and finding.evidence
    assert "1/2 of the FP32 rate" in tool.recommend(finding, bad).why  # H100: FP64 at half the FP32 rate


def test_tensor_cores_for_a_naive_half_matmul(compiler: Compiler) -> None:
    tool = get_tool("tensor_cores")
    contexts = {}
    for kernel, block in (("hgemm_naive", "16, 16"), ("hgemm_wmma", "32")):
        task = parse_task(HGEMM.replace("KERNEL", kernel).replace("BLOCK", block.replace(", ", '", "')), "hgemm.cu")
        contexts[kernel] = build_context(None, task=task, static=analyze_static(task, compiler=compiler), peaks=H100)
    assert contexts["hgemm_wmma"].sass.histogram["tensor"] > 0
    assert tool.trigger(contexts["hgemm_naive"]) and not tool.trigger(contexts["hgemm_wmma"])
    p = tool.recommend(tool.analyze(contexts["hgemm_naive"]), contexts["hgemm_naive"])
    assert p.actions[0].kind == "use_tensor_cores" and not p.actions[0].applicable_offline
    assert "341 FLOP/byte" in p.why and p.gain[1] == pytest.approx(989.4 / (2 * 66.9), rel=0.01)


def test_unfused_fp32_in_the_sass(compiler: Compiler) -> None:
    tool = get_tool("unfused_fp32")
    unfused = context(compiler, AXPY_LOOP, "axpy", flags=("-fmad=false",))
    fused = context(compiler, AXPY_LOOP, "axpy")
    assert tool.trigger(unfused) and not tool.trigger(fused)
    p = tool.recommend(tool.analyze(unfused), unfused)
    assert p.actions[0].params["flag"] == "--fmad=true" and "FMUL" in " ".join(p.finding.evidence)


def test_local_memory_from_the_sass_alone(compiler: Compiler) -> None:
    source = (ROOT / "tests" / "kernels" / "sass" / "local_memory.cu").read_text()
    tool = get_tool("local_memory")
    assert tool.trigger(context(compiler, source, "local_array", extra=STEPS))
    assert not tool.trigger(context(compiler, AXPY_LOOP, "axpy"))


def test_scalar_loads_in_a_loop(compiler: Compiler) -> None:
    tool = get_tool("scalar_loads")
    assert tool.trigger(context(compiler, AXPY_LOOP, "axpy"))
    planted = (ROOT / "tests" / "fixtures" / "ncu-h100" / "planted.cu").read_text()
    assert not tool.trigger(context(compiler, planted, "k_copy_ok"))  # one element per thread: no loop


def test_block_size_not_a_multiple_of_32(compiler: Compiler) -> None:
    tool = get_tool("block_size_multiple")
    odd = context(compiler, AXPY_LOOP, "axpy", block="100", grid="1024")
    assert tool.trigger(odd) and not tool.trigger(context(compiler, AXPY_LOOP, "axpy", block="128"))
    p = tool.recommend(tool.analyze(odd), odd)
    assert dict(p.actions[0].params) == {"old": 100, "new": 128, "knob": None}
    assert p.gain[1] == pytest.approx(1.28)


def test_tail_effect_from_the_launch(compiler: Compiler) -> None:
    tool = get_tool("tail_effect")
    planted = (ROOT / "tests" / "fixtures" / "ncu-h100" / "planted.cu").read_text()
    # 10 registers, 256 threads: 8 blocks per SM, 1,056 per wave on 132 SMs.
    tail = context(compiler, planted, "k_copy_ok", grid="1320")
    assert tail.waves == pytest.approx(1.25) and tool.trigger(tail)
    assert "the last wave runs 25% full, leaving 38% of the SM time idle" in tool.analyze(tail).summary
    assert not tool.trigger(context(compiler, planted, "k_copy_ok"))  # 62.06 waves: 1.5% idle
    assert get_tool("small_grid").trigger(context(compiler, planted, "k_copy_ok", grid="4"))


def test_counter_only_tools_stay_quiet_without_counters(compiler: Compiler) -> None:
    ctx = context(compiler, AXPY_LOOP, "axpy")
    for name in ("uncoalesced", "bank_conflicts", "divergence", "atomic_contention", "mio_lsu_throttle",
                 "long_scoreboard", "barrier_stalls", "occupancy_gap", "dram_bandwidth", "l2_hit_rate",
                 "launch_overhead"):
        assert not get_tool(name).trigger(ctx), name
