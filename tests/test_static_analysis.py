"""Static analysis of real tasks and planted variants: nvcc + ptxas + SASS + occupancy, no GPU."""

from __future__ import annotations

from pathlib import Path

import pytest
from stream_task import stream_meta

from kernelpro.compiler import Compiler
from kernelpro.static_analysis import analyze_static
from kernelpro.task_loader import load_task, parse_task
from kernelpro.toolchain import find_tool

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(find_tool("nvcc", required=False) is None, reason="nvcc not installed")


@pytest.fixture(scope="module")
def compiler(tmp_path_factory: pytest.TempPathFactory) -> Compiler:
    return Compiler(cache_dir=tmp_path_factory.mktemp("cache"))


def codes(report) -> set[str]:
    return {f.code for f in report.findings}


@pytest.mark.parametrize("name", ["vector_add", "softmax", "sgemm"])
def test_suite_task_static_analysis(compiler: Compiler, name: str) -> None:
    task = load_task(ROOT / "tasks" / f"{name}.cu")
    report = analyze_static(task, compiler=compiler)
    assert report.compiled and report.entry is not None
    res = report.entry.resources
    assert res.registers > 0 and not res.spills
    assert report.occupancy is not None and 0 < report.occupancy.occupancy <= 1
    assert report.entry.sass is not None and report.entry.sass.histogram["global_load_32"] > 0
    # The naive baselines all load scalars; none is flagged for FP64 or spills.
    assert "sass.scalar-loads" in codes(report)
    assert not codes(report) & {"ptxas.spills", "sass.fp64-in-fp32"}
    json_report = report.to_json()
    assert json_report["kernels"][0]["name"] == task.kernel
    assert json_report["occupancy"]["limiter"] == report.occupancy.limiter


def test_softmax_shared_memory_and_barrier_reach_occupancy(compiler: Compiler) -> None:
    task = load_task(ROOT / "tasks" / "softmax.cu")
    report = analyze_static(task, compiler=compiler, knobs={"BLOCK": 1024})
    res = report.entry.resources
    assert res.shared_static_bytes == 1024 * 4 and res.barriers == 1
    assert report.occupancy.threads_per_block == 1024 and report.occupancy.static_shared_bytes == 4096


SCALAR_VS_VECTOR = stream_meta("scale", grid="ceil_div(N, 256)", block="256", n=1048576) + '''\
extern "C" __global__ void scale(const float* __restrict__ x, float* __restrict__ y, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) y[i] = SCALE * x[i];
}
'''

VECTOR_BODY = '''extern "C" __global__ void scale(const float* __restrict__ x, float* __restrict__ y, int n) {
    const float4* x4 = reinterpret_cast<const float4*>(x);
    float4* y4 = reinterpret_cast<float4*>(y);
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n / 4; i += blockDim.x * gridDim.x) {
        float4 v = x4[i];
        y4[i] = make_float4(2.0f * v.x, 2.0f * v.y, 2.0f * v.z, 2.0f * v.w);
    }
}
'''


def _variant(body: str, scale: str = "2.0f") -> str:
    head, _ = SCALAR_VS_VECTOR.split('extern "C"', 1)
    return head + body.replace("SCALE", scale) if body else SCALAR_VS_VECTOR.replace("SCALE", scale)


def test_scalar_loads_in_loop_flagged_and_float4_clean(compiler: Compiler) -> None:
    task = parse_task(_variant(""), "scale.cu")
    scalar = analyze_static(task, compiler=compiler)
    finding = next(f for f in scalar.findings if f.code == "sass.scalar-loads")
    assert finding.severity == "warning" and "inside loops" in finding.message
    assert finding.evidence and "LDG.E" in finding.evidence[0]
    vector = analyze_static(task, source=_variant(VECTOR_BODY), compiler=compiler)
    assert vector.entry.sass.histogram["global_load_128"] >= 1
    assert "sass.scalar-loads" not in codes(vector)


def test_double_literal_flagged_as_fp64(compiler: Compiler) -> None:
    task = parse_task(_variant(""), "scale.cu")
    report = analyze_static(task, source=_variant("", scale="0.1"), compiler=compiler)
    finding = next(f for f in report.findings if f.code == "sass.fp64-in-fp32")
    assert "F2F" in " ".join(finding.evidence) or "DMUL" in " ".join(finding.evidence)
    clean = analyze_static(task, source=_variant("", scale="0.1f"), compiler=compiler)
    assert "sass.fp64-in-fp32" not in codes(clean)


LOCAL_ARRAY_BODY = '''extern "C" __global__ void scale(const float* __restrict__ x, float* __restrict__ y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x; if (i >= n) return;
    float a[64]; for (int k = 0; k < 64; k++) a[k] = x[(i + k) % n];
    float s = 0.f; for (int k = 0; k < 64; k++) s += a[(k * 7 + i) % 64] * a[(k * 3 + i) % 64]; y[i] = s;
}
'''

# 48 values live across a fully unrolled loop: with -maxrregcount=24 ptxas must spill.
PRESSURE_BODY = '''extern "C" __global__ void scale(const float* __restrict__ x, float* __restrict__ y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x; if (i >= n) return;
    float a[48];
#pragma unroll
    for (int k = 0; k < 48; k++) a[k] = x[(i + k * 4099) % n];
    float s = 0.f;
#pragma unroll
    for (int r = 0; r < 4; r++)
#pragma unroll
        for (int k = 0; k < 48; k++) s = s * a[(k + r) % 48] + a[47 - k];
    y[i] = s;
}
'''


def test_local_array_and_spills_flagged(compiler: Compiler) -> None:
    task = parse_task(_variant(""), "scale.cu")
    local = analyze_static(task, source=_variant(LOCAL_ARRAY_BODY), compiler=compiler)
    assert "sass.local-memory" in codes(local) and "ptxas.spills" not in codes(local)
    roomy = analyze_static(task, source=_variant(PRESSURE_BODY), compiler=compiler)
    assert "ptxas.spills" not in codes(roomy)
    tight = analyze_static(task, source=_variant(PRESSURE_BODY), flags=("-maxrregcount=24",), compiler=compiler)
    assert tight.entry.resources.registers <= 24 and tight.entry.resources.spills
    assert "ptxas.spills" in codes(tight)


SHARED_HEAVY_BODY = '''extern "C" __global__ void scale(const float* __restrict__ x, float* __restrict__ y, int n) {
    __shared__ float buf[10240];  // 40 KB per block
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    buf[threadIdx.x] = i < n ? x[i] : 0.f;
    __syncthreads();
    if (i < n) y[i] = 2.0f * buf[blockDim.x - 1 - threadIdx.x];
}
'''


def test_low_occupancy_flagged_with_its_limiter(compiler: Compiler) -> None:
    task = parse_task(_variant("").replace('block = ["256"]', 'block = ["64"]'), "scale.cu")
    fine = analyze_static(task, compiler=compiler)
    assert fine.occupancy.occupancy == 1.0 and "occupancy.low" not in codes(fine)
    heavy = analyze_static(task, source=_variant(SHARED_HEAVY_BODY).replace('block = ["256"]', 'block = ["64"]'),
                           compiler=compiler)
    occ = heavy.occupancy
    # 41 KB per block (40 KB + the 1 KB driver reserve) -> 5 blocks in 228 KB -> 10 of 64 warps.
    assert occ.limiter == "shared_mem" and occ.blocks_per_sm == 5 and occ.active_warps_per_sm == 10
    finding = next(f for f in heavy.findings if f.code == "occupancy.low")
    assert "limited by shared_mem" in finding.message
    assert any(row.change == "shared_mem" and row.occupancy.occupancy > occ.occupancy for row in heavy.what_if)


def test_block_not_multiple_of_32(compiler: Compiler) -> None:
    task = parse_task(_variant("").replace('block = ["256"]', 'block = ["100"]'), "scale.cu")
    report = analyze_static(task, compiler=compiler)
    assert "launch.block-not-multiple-of-32" in codes(report)


def test_compile_error_is_a_report_not_an_exception(compiler: Compiler) -> None:
    task = parse_task(_variant(""), "scale.cu")
    broken = _variant("").replace("2.0f * x[i];", "2.0f * x[i] +;")
    assert broken != _variant("")
    report = analyze_static(task, source=broken, compiler=compiler, source_name="cand.cu")
    assert not report.compiled and report.kernels == () and report.findings == ()
    error = report.diagnostics[0]
    assert error.file == "cand.cu" and error.severity == "error"
    assert error.line == broken.splitlines().index(next(line for line in broken.splitlines() if "+;" in line)) + 1


BF16_META = stream_meta("scale_bf16", grid="ceil_div(N, 256)", block="256").replace('"float32"', '"bfloat16"', 2)
BF16_SCALAR = BF16_META + """#include <cuda_bf16.h>
extern "C" __global__ void scale_bf16(const __nv_bfloat16* x, __nv_bfloat16* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = __float2bfloat16(2.0f * __bfloat162float(x[i]));
}
"""


def test_16_bit_scalar_accesses_are_a_finding_and_vectorized_ones_are_not(compiler: Compiler) -> None:
    from kernelpro.rewrites.vectorize import vectorize

    task = parse_task(BF16_SCALAR, "scale_bf16.cu")
    report = analyze_static(task, compiler=compiler)
    finding = next(f for f in report.findings if f.code == "sass.narrow-accesses")
    assert finding.severity == "info" and "8- or 16-bit" in finding.message and "LDG.E.U16" in finding.evidence[0]
    looped = analyze_static(task, source=vectorize(BF16_SCALAR, "scale_bf16").source, compiler=compiler)
    assert looped.entry.sass.histogram["global_load_128"] == 1
    assert "sass.narrow-accesses" not in codes(looped)
