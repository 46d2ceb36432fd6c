"""Structural rewrites (:mod:`kernelpro.rewrites`) on kernels written in other styles than the suite's:
``typedef``/``using`` element types, bf16 and half, row pointers ``x + row * cols``, helper ``__device__``
functions, ``s /= 2`` loops. Each result is compiled (the SASS shows the intended change) and run on the
CPU with warps (:mod:`cpu_emulation`) at odd sizes, misaligned buffers and other block sizes.
"""

from __future__ import annotations

import ctypes
import shutil
from ctypes import c_float as F
from pathlib import Path

import numpy as np
import pytest
import tomllib
from cpu_emulation import bf16, emulate, from_bf16, offset_buffer

from kernelpro.compiler import Compiler, CompileRequest
from kernelpro.cuda_source import find_kernels
from kernelpro.rewrites.coarsen import coarsen_rows
from kernelpro.rewrites.launch import launch_text
from kernelpro.rewrites.privatize import privatize_histogram
from kernelpro.rewrites.shuffle_reduce import shuffle_reduction
from kernelpro.rewrites.shuffle_scan import shuffle_scan
from kernelpro.rewrites.thread_to_warp import thread_to_warp
from kernelpro.rewrites.transpose import tiled_transpose
from kernelpro.rewrites.vectorize import vectorize, vectorize_any
from kernelpro.rewrites.warp_per_row import warp_per_row
from kernelpro.sass import KernelSass, sass_for_cubin
from kernelpro.task_loader import load_task
from kernelpro.toolchain import find_tool
from kernelpro.transforms import TransformError

ROOT = Path(__file__).resolve().parents[1]
needs_nvcc = pytest.mark.skipif(find_tool("nvcc", required=False) is None, reason="nvcc not installed")
needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed (CPU emulation)")


@pytest.fixture(scope="module")
def compiler(tmp_path_factory: pytest.TempPathFactory) -> Compiler:
    return Compiler(cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("emulation")


def sass_of(compiler: Compiler, source: str, kernel: str, defines: dict | None = None) -> KernelSass:
    pairs = tuple((k, str(v)) for k, v in dict(defines or {}).items())
    result = compiler.compile(CompileRequest(source, "sm_90", pairs, ()))
    assert result.ok, result.diagnostics
    return next(k for k in sass_for_cubin(result.cubin).values() if k.base_name == kernel)


# --- vectorisation of any element type --------------------------------------------------------------

BF16_ROWS = """\
#include <cuda_bf16.h>
using elem_t = __nv_bfloat16;

__device__ __forceinline__ float silu(float v) { return v / (1.0f + __expf(-v)); }

// One block per row; the row is reached through a row pointer.
extern "C" __global__ void silu_mul_rows(const elem_t* __restrict__ gate, const elem_t* __restrict__ up,
                                         elem_t* __restrict__ out, int rows, int cols) {
    const int row = blockIdx.x;
    if (row >= rows) return;
    const elem_t* g = gate + row * cols;
    const elem_t* u = up + row * cols;
    elem_t* o = out + row * cols;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        const float a = __bfloat162float(g[j]);
        o[j] = __float2bfloat16(silu(a) * __bfloat162float(u[j]));
    }
}
"""

TYPEDEF_SCALE = """\
typedef float real;

extern "C" __global__ void scale_shift(const real *src, real *dst, real alpha, real beta, unsigned int n)
{
    unsigned int idx = blockDim.x * blockIdx.x + threadIdx.x;
    if (idx < n)
        dst[idx] = alpha * src[idx] + beta;
}
"""

HALF_TO_FLOAT = """\
#include <cuda_fp16.h>

extern "C" __global__ void widen(const __half* in, float* out, int n) {
    int stride = blockDim.x * gridDim.x;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) out[i] = __half2float(in[i]) * 2.0f;
}
"""


@needs_nvcc
@pytest.mark.parametrize("source,kernel,loads", [(BF16_ROWS, "silu_mul_rows", 2), (TYPEDEF_SCALE, "scale_shift", 1),
                                                 (HALF_TO_FLOAT, "widen", 1)])
def test_any_element_type_gets_128_bit_accesses(compiler: Compiler, source: str, kernel: str, loads: int) -> None:
    before = sass_of(compiler, source, kernel).histogram
    assert before["global_load_128"] + before["global_load_64"] == 0
    rewrite = vectorize(source, kernel)
    after = sass_of(compiler, rewrite.source, kernel).histogram
    # Lanes follow the widest element: half in, float out is 4 lanes, 8 bytes of half per load.
    assert after["global_load_128"] + after["global_load_64"] == loads, after.nonzero()
    assert after["global_store_128"] + after["global_store_64"] >= 1
    assert "alignment check and scalar tail" in rewrite.change or "float4" in rewrite.change


@needs_gxx
def test_bf16_rows_are_exact_for_odd_widths_and_misaligned_rows(workdir: Path) -> None:
    source = vectorize_any(BF16_ROWS, "silu_mul_rows").source
    for rows, cols, offset, block in ((3, 1000, 0, 64), (2, 1003, 0, 32), (3, 64, 1, 64), (1, 5, 0, 64)):
        g = bf16(offset_buffer(rows * cols, 0, seed=1))
        u = bf16(offset_buffer(rows * cols, 0, seed=2))
        out, ref = (offset_buffer(rows * cols, offset, np.uint16) for _ in range(2))
        emulate(workdir, source, "silu_mul_rows", rows, block, [g, u, out, rows, cols])
        emulate(workdir, BF16_ROWS, "silu_mul_rows", rows, block, [g, u, ref, rows, cols])
        assert np.array_equal(out, ref), (rows, cols, offset)
        a = from_bf16(g)
        expect = bf16(a / (1 + np.exp(-a)) * from_bf16(u))
        error = np.abs(from_bf16(out).astype(np.float64) - from_bf16(expect)).max()
        assert error <= 0.02 * np.abs(from_bf16(expect)).max()


@needs_gxx
def test_typedef_and_half_kernels_are_exact_with_odd_sizes_misalignment_and_small_grids(workdir: Path) -> None:
    scaled = vectorize(TYPEDEF_SCALE, "scale_shift").source
    widened = vectorize(HALF_TO_FLOAT, "widen").source
    for n, offset, grid in ((1003, 0, 16), (1003, 1, 3), (3, 0, 1), (64, 2, 1)):
        x = offset_buffer(n, offset)
        y, ref = offset_buffer(n, offset, seed=3), offset_buffer(n, offset, seed=4)
        emulate(workdir, scaled, "scale_shift", grid, 64, [x, y, F(1.5), F(-0.25), n])
        emulate(workdir, TYPEDEF_SCALE, "scale_shift", 32, 64, [x, ref, F(1.5), F(-0.25), n])
        assert np.array_equal(y, ref), (n, offset, grid)
        h = offset_buffer(n, offset, np.float16)
        out, ref = offset_buffer(n, 0, seed=5), offset_buffer(n, 0, seed=6)
        emulate(workdir, widened, "widen", grid, 64, [h.view(np.uint16), out, n])
        emulate(workdir, HALF_TO_FLOAT, "widen", grid, 64, [h.view(np.uint16), ref, n])
        assert np.array_equal(out, ref) and np.array_equal(out, h.astype(np.float32) * 2), (n, offset, grid)


def test_vectorize_says_why_it_does_not_apply() -> None:
    gather = 'extern "C" __global__ void gather(const float* x, const int* idx, float* y, int n) {\n' \
             "    for (int i = threadIdx.x; i < n; i += blockDim.x) y[i] = x[idx[i]];\n}\n"
    with pytest.raises(TransformError, match="indexes|other than"):
        vectorize(gather, "gather")


# --- shared-memory tree reduction → warp shuffle ------------------------------------------------------

DOUBLE_ROW_MAX = """\
typedef double acc_t;
#define THREADS 128

__device__ acc_t magnitude(float v) { return v < 0 ? -(acc_t)v : (acc_t)v; }

// Largest |x| of each row, accumulated in double; the tree halves with `s /= 2` and reads `s + t`.
extern "C" __global__ void row_absmax(const float* x, double* out, int cols) {
    __shared__ acc_t best[THREADS];
    const unsigned t = threadIdx.x;
    const float* xr = x + (size_t)blockIdx.x * cols;
    acc_t m = 0;
    for (int j = t; j < cols; j += blockDim.x) m = fmax(m, magnitude(xr[j]));
    best[t] = m;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s /= 2) {
        if (t < s) {
            best[t] = fmax(best[t], best[s + t]);
        }
        __syncthreads();
    }
    if (t == 0) out[blockIdx.x] = best[0];
}
"""


@needs_nvcc
@pytest.mark.parametrize("name", ["softmax", "rmsnorm", "layernorm", "reduce_sum", "topk", "decode_attention"])
def test_suite_tree_reductions_become_shuffles(compiler: Compiler, name: str) -> None:
    t = load_task(ROOT / "tasks" / f"{name}.cu")
    before = sass_of(compiler, t.source, t.kernel, t.defines()).histogram
    rewrite = shuffle_reduction(t.source, t.kernel)
    after = sass_of(compiler, rewrite.source, t.kernel, t.defines()).histogram
    assert before["shuffle"] == 0 and after["shuffle"] >= 5, after.nonzero()
    assert "warp-shuffle" in rewrite.change


@needs_gxx
@pytest.mark.parametrize("block", [32, 64, 128, 48])  # 48: not a power-of-two multiple of 32, the original loop runs
def test_shuffle_reductions_match_the_tree(workdir: Path, block: int) -> None:
    softmax = load_task(ROOT / "tasks" / "softmax.cu")
    source = shuffle_reduction(softmax.source, softmax.kernel).source
    for rows, cols in ((3, 1000), (2, 1)):
        x = offset_buffer(rows * cols, 0, scale=3)
        y = np.zeros_like(x)
        emulate(workdir, source, softmax.kernel, rows, block, [x, y, rows, cols], {"BLOCK": block})
        if block == 48:  # the tree itself needs a power of two: the rewrite must run it unchanged
            original = np.zeros_like(x)
            emulate(workdir, softmax.source, softmax.kernel, rows, block, [x, original, rows, cols], {"BLOCK": block})
            assert np.array_equal(y, original)
            continue
        ref = np.exp(x.reshape(rows, cols) - x.reshape(rows, cols).max(axis=1, keepdims=True))
        np.testing.assert_allclose(y.reshape(rows, cols), ref / ref.sum(axis=1, keepdims=True), rtol=1e-5)
    topk = load_task(ROOT / "tasks" / "topk.cu")
    source = shuffle_reduction(topk.source, topk.kernel).source
    logits = offset_buffer(3 * 500, 0)
    logits[7] = logits[9]  # a tie: the smaller index ranks first
    values, indices = np.zeros(3 * 5, np.float32), np.zeros(3 * 5, np.int32)
    emulate(workdir, source, topk.kernel, 3, block, [logits, values, indices, 500, 5], {"BLOCK": block})
    if block == 48:
        original = np.zeros_like(indices)
        emulate(workdir, topk.source, topk.kernel, 3, block, [logits, values, original, 500, 5], {"BLOCK": block})
        assert np.array_equal(indices, original)
    else:
        order = np.lexsort((np.tile(np.arange(500), (3, 1)), -logits.reshape(3, 500)), axis=1)[:, :5]
        assert np.array_equal(indices.reshape(3, 5), order)
    if block != 48:  # THREADS is fixed at 128 in this kernel: the shuffle path needs blockDim.x == 128
        return
    rows, cols = 4, 777
    x = offset_buffer(rows * cols, 0, scale=5)
    for threads in (128, 64):
        out = np.zeros(rows, np.float64)
        emulate(workdir, shuffle_reduction(DOUBLE_ROW_MAX, "row_absmax").source, "row_absmax", rows, threads,
                [x, out, cols])
        assert np.array_equal(out, np.abs(x.reshape(rows, cols)).max(axis=1).astype(np.float64)), threads


@needs_nvcc
def test_own_style_tree_reduction_becomes_shuffles(compiler: Compiler) -> None:
    rewrite = shuffle_reduction(DOUBLE_ROW_MAX, "row_absmax")
    assert sass_of(compiler, rewrite.source, "row_absmax").histogram["shuffle"] >= 5
    assert "kp_o_best" in rewrite.source and "best[t] = fmax(best[t], best[s + t]);" in rewrite.source  # the fallback


def test_shuffle_reduction_refuses_what_it_cannot_prove() -> None:
    slots = DOUBLE_ROW_MAX.replace("out[blockIdx.x] = best[0];", "out[blockIdx.x] = best[0] + best[1];")
    with pytest.raises(TransformError, match=r"uses best\[1\]"):
        shuffle_reduction(slots, "row_absmax")
    strided = DOUBLE_ROW_MAX.replace("best[s + t]", "best[2 * s + t]")
    with pytest.raises(TransformError, match="not .tid. or .tid . s."):
        shuffle_reduction(strided, "row_absmax")
    scan = load_task(ROOT / "tasks" / "scan.cu")
    with pytest.raises(TransformError, match="no shared-memory tree reduction"):
        shuffle_reduction(scan.source, scan.kernel)


# --- block per row → warp per row, with the candidate's own launch -----------------------------------

def remap(name: str):
    t = load_task(ROOT / "tasks" / f"{name}.cu")
    launch = t.launch
    return t, warp_per_row(t.source, t.kernel, tuple(e.text for e in launch.grid),
                           tuple(e.text for e in launch.block), launch.shared_mem.text)


@needs_nvcc
@pytest.mark.parametrize("name,rows_per_block", [("softmax", 8), ("rmsnorm", 1), ("layernorm", 1)])
def test_warp_per_row_drops_every_barrier_and_carries_its_launch(compiler: Compiler, name: str,
                                                                  rows_per_block: int) -> None:
    t, rewrite = remap(name)
    before = sass_of(compiler, t.source, t.kernel, t.defines()).histogram
    after = sass_of(compiler, rewrite.source, t.kernel, t.defines()).histogram
    assert before["barrier"] > 0 and after["barrier"] == 0 and after["shuffle"] >= 5, after.nonzero()
    launch = tomllib.loads(launch_text(rewrite.source))["launch"]
    grid = t.launch.grid[0].text
    assert launch == [{"grid": [grid if rows_per_block == 1 else f"ceil_div({grid}, {rows_per_block})"],
                       "block": [str(32 * rows_per_block)], "shared_mem": "0"}]
    assert find_kernels(rewrite.source)[t.kernel].params == find_kernels(t.source)[t.kernel].params
    start = find_kernels(t.source)[t.kernel].start
    assert rewrite.source[:start] == t.source[:start]  # the task's metadata and all before the kernel unchanged
    stacked = vectorize(rewrite.source, t.kernel)  # the remapped row loops still vectorize
    assert sass_of(compiler, stacked.source, t.kernel, t.defines()).histogram["global_load_128"] > 0


@needs_gxx
def test_warp_per_row_softmax_and_rmsnorm_are_right_at_odd_sizes(workdir: Path) -> None:
    softmax, rewrite = remap("softmax")
    stacked = vectorize(rewrite.source, softmax.kernel).source
    for rows, cols in ((11, 1000), (3, 1), (9, 37)):
        x = offset_buffer(rows * cols, 0, scale=3)
        ref = np.exp(x.reshape(rows, cols) - x.reshape(rows, cols).max(axis=1, keepdims=True))
        for source in (rewrite.source, stacked):
            y = np.zeros_like(x)
            emulate(workdir, source, softmax.kernel, -(-rows // 8), 256, [x, y, rows, cols])
            np.testing.assert_allclose(y.reshape(rows, cols), ref / ref.sum(axis=1, keepdims=True), rtol=1e-5)
    rmsnorm, rewrite = remap("rmsnorm")
    rows, cols = 5, 1003
    x, w = offset_buffer(rows * cols, 0), offset_buffer(cols, 0, seed=9)
    y = np.zeros_like(x)
    xr = x.reshape(rows, cols).astype(np.float64)
    expect = xr / np.sqrt((xr * xr).mean(axis=1, keepdims=True) + 1e-6) * w
    for block in (32, 64):  # 64: the task's own launch, where the candidate's block is not read
        emulate(workdir, rewrite.source, rmsnorm.kernel, rows, block, [x, w, y, cols, F(1e-6)])
        np.testing.assert_allclose(y.reshape(rows, cols), expect, rtol=1e-4)


def test_warp_per_row_refuses_kernels_it_cannot_remap() -> None:
    topk = load_task(ROOT / "tasks" / "topk.cu")
    with pytest.raises(TransformError, match="BLOCK"):
        warp_per_row(topk.source, topk.kernel, ("BATCH",), ("BLOCK",))
    transpose = load_task(ROOT / "tasks" / "transpose.cu")
    with pytest.raises(TransformError, match="not 1-D"):
        warp_per_row(transpose.source, transpose.kernel, ("a", "b"), ("c", "d"))
    with pytest.raises(TransformError, match=r"uses best\[1\]"):
        warp_per_row(DOUBLE_ROW_MAX.replace("best[0];", "best[1];"), "row_absmax", ("ROWS",), ("THREADS_X",))


# --- histogram privatisation and warp-shuffle scan --------------------------------------------------

BYTE_COUNTS = """\
#include <cstdint>
// Counts of each byte value, written as someone else would: uint8_t, blockDim.x * blockIdx.x, a helper.
__device__ __forceinline__ unsigned int weight_of(uint8_t) { return 1u; }

extern "C" __global__ void byte_counts(const uint8_t* __restrict__ bytes, unsigned int* counts, long long size) {
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx < size) {
        atomicAdd(&counts[bytes[idx]], weight_of(bytes[idx]));
    }
}
"""


@needs_gxx
def test_privatised_histograms_count_exactly_with_any_grid(workdir: Path) -> None:
    histogram = load_task(ROOT / "tasks" / "histogram.cu")
    suite = privatize_histogram(histogram.source, histogram.kernel, ("ceil_div(N, BLOCK)",), ("BLOCK",))
    launch = tomllib.loads(launch_text(suite.source))["launch"][0]
    assert launch["grid"] == ["min(ceil_div(N, BLOCK), 4 * SM_COUNT)"] and launch["block"] == ["BLOCK"]
    own = privatize_histogram(BYTE_COUNTS, "byte_counts", ("ceil_div(SIZE, 128)",), ("128",))
    rng = np.random.default_rng(3)
    for n, grid in ((1000, 2), (5, 1), (4099, 7)):
        data = rng.integers(0, 256, n, dtype=np.uint8)
        data[: n // 3] = 7  # a hot bin
        for source, kernel, size in ((suite.source, histogram.kernel, n), (own.source, "byte_counts",
                                                                          ctypes.c_longlong(n))):
            bins = np.full(256, 5, np.uint32)  # accumulates: += counts
            emulate(workdir, source, kernel, grid, 64, [data, bins, size], {"BLOCK": 64})
            assert np.array_equal(bins, np.bincount(data, minlength=256).astype(np.uint32) + 5), (kernel, n, grid)


@needs_nvcc
def test_privatised_histogram_sass_uses_shared_atomics(compiler: Compiler) -> None:
    t = load_task(ROOT / "tasks" / "histogram.cu")
    rewrite = privatize_histogram(t.source, t.kernel, ("ceil_div(N, BLOCK)",), ("BLOCK",))
    sass = sass_of(compiler, rewrite.source, t.kernel, t.defines())
    original = sass_of(compiler, t.source, t.kernel, t.defines())
    assert not any(i.opcode == "ATOMS" for i in original.instructions)
    assert any(i.opcode == "REDG" for i in original.instructions)  # one global atomic per element
    assert any(i.opcode == "ATOMS" and i.in_loop for i in sass.instructions)  # per element: a shared atomic
    with pytest.raises(TransformError, match="not a byte"):
        privatize_histogram(BYTE_COUNTS.replace("bytes[idx]]", "bytes[idx] % 16]"), "byte_counts", ("g",), ("128",))


@needs_nvcc
@needs_gxx
def test_warp_shuffle_scan_is_exact(compiler: Compiler, workdir: Path) -> None:
    t = load_task(ROOT / "tasks" / "scan.cu")
    rewrite = shuffle_scan(t.source, t.kernel)
    before = sass_of(compiler, t.source, t.kernel, t.defines()).histogram
    after = sass_of(compiler, rewrite.source, t.kernel, t.defines()).histogram
    assert before["shuffle"] == 0 and after["shuffle"] >= 10
    rng = np.random.default_rng(5)
    for block in (64, 128, 48):  # 48: not a power of two, the original loop runs
        for rows, cols in ((3, 1000), (2, 1), (1, 129)):
            x = rng.integers(-1000, 1000, rows * cols, dtype=np.int32)
            y, ref = np.zeros_like(x), np.zeros_like(x)
            emulate(workdir, rewrite.source, t.kernel, rows, block, [x, y, cols], {"BLOCK": block})
            emulate(workdir, t.source, t.kernel, rows, block, [x, ref, cols], {"BLOCK": block})
            assert np.array_equal(y, ref), (block, rows, cols)
            if block != 48:
                assert np.array_equal(y.reshape(rows, cols), np.cumsum(x.reshape(rows, cols), axis=1))


# --- tiled transpose ----------------------------------------------------------------------------------

HALF_TRANSPOSE = """\
#include <cuda_fp16.h>
typedef __half T;

extern "C" __global__ void flip(const T* in, T* out, int height, int width) {
    const int c = threadIdx.x + blockIdx.x * 16;
    const int r = threadIdx.y + blockIdx.y * 16;
    if (c < width && r < height) { out[(long long)c * height + r] = in[(long long)r * width + c]; }
}
"""


@needs_nvcc
@needs_gxx
def test_tiled_transpose_is_exact_and_goes_through_shared_memory(compiler: Compiler, workdir: Path) -> None:
    t = load_task(ROOT / "tasks" / "transpose.cu")
    rewrite = tiled_transpose(t.source, t.kernel, ("ceil_div(COLS, BLOCK_X)", "ceil_div(ROWS, BLOCK_Y)"))
    launch = tomllib.loads(launch_text(rewrite.source))["launch"][0]
    assert launch == {"grid": ["ceil_div(COLS, 32)", "ceil_div(ROWS, 32)"], "block": ["32", "8"], "shared_mem": "0"}
    sass = sass_of(compiler, rewrite.source, t.kernel, t.defines())
    assert sass.histogram["shared_store"] >= 1 and sass.histogram["shared_load"] >= 1 and sass.histogram["barrier"] == 1
    for rows, cols, block in ((37, 70, (32, 8)), (5, 3, (32, 8)), (40, 33, (16, 16))):  # (16, 16): a knob's block
        x = offset_buffer(rows * cols, 0)
        y = np.zeros_like(x)
        emulate(workdir, rewrite.source, t.kernel, (-(-cols // 32), -(-rows // 32)), block, [x, y, rows, cols])
        assert np.array_equal(y.reshape(cols, rows), x.reshape(rows, cols).T), (rows, cols, block)
    own = tiled_transpose(HALF_TRANSPOSE, "flip", ("ceil_div(W, 16)", "ceil_div(H, 16)"))
    assert "__shared__ T kp_tile[32][33];" in own.source
    assert sass_of(compiler, own.source, "flip").histogram["shared_store"] >= 1
    h = offset_buffer(9 * 45, 0, np.float16)
    out = np.zeros_like(h)
    emulate(workdir, own.source, "flip", (2, 1), (32, 8), [h.view(np.uint16), out.view(np.uint16), 9, 45])
    assert np.array_equal(out.reshape(45, 9), h.reshape(9, 45).T)
    with pytest.raises(TransformError, match="not the transpose"):
        tiled_transpose(HALF_TRANSPOSE.replace("in[(long long)r * width + c]", "in[(long long)c * width + r]"),
                        "flip", ("ceil_div(W, 16)", "ceil_div(H, 16)"))


# --- thread coarsening of 2-D kernels ---------------------------------------------------------------

@needs_nvcc
@needs_gxx
def test_coarsened_stencil_is_exact_and_issues_four_rows_of_loads(compiler: Compiler, workdir: Path) -> None:
    t = load_task(ROOT / "tasks" / "stencil2d.cu")
    grid, block = ("ceil_div(COLS, BLOCK_X)", "ceil_div(ROWS, BLOCK_Y)"), ("BLOCK_X", "BLOCK_Y")
    rewrite = coarsen_rows(t.source, t.kernel, grid, block)
    launch = tomllib.loads(launch_text(rewrite.source))["launch"][0]
    assert launch["grid"] == ["ceil_div(COLS, BLOCK_X)", "ceil_div(ROWS, (BLOCK_Y) * 4)"]
    assert launch["block"] == list(block)
    before = sass_of(compiler, t.source, t.kernel, t.defines()).histogram
    after = sass_of(compiler, rewrite.source, t.kernel, t.defines()).histogram
    assert after["global_load_32"] >= 4 * before["global_load_32"] - 4
    defines = {"BLOCK_X": 8, "BLOCK_Y": 4}
    for rows, cols in ((19, 13), (1, 5), (33, 8)):
        x = offset_buffer(rows * cols, 0)
        y = np.zeros_like(x)
        emulate(workdir, rewrite.source, t.kernel, (-(-cols // 8), -(-rows // 16)), (8, 4), [x, y, rows, cols], defines)
        ref = np.zeros_like(x)
        emulate(workdir, t.source, t.kernel, (-(-cols // 8), -(-rows // 4)), (8, 4), [x, ref, rows, cols], defines)
        assert np.array_equal(y, ref), (rows, cols)
    early = t.source.replace("y[idx] = x[idx];", "{ y[idx] = x[idx]; return; }")
    with pytest.raises(TransformError, match="returns"):
        coarsen_rows(early, t.kernel, grid, block)


# --- thread per row → warp per row ---------------------------------------------------------------------

THREAD_ROWS = """\
typedef float real;

__device__ __forceinline__ real square(real v) { return v * v; }

// One thread per row: RMS-normalise and record the row's max.
extern "C" __global__ void rms_rows(const real* x, const real* w, real* y, real* row_max, int rows, int cols,
                                    float eps) {
    int row = blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= rows) return;
    const real* xr = x + (size_t)row * cols;
    real* yr = y + (size_t)row * cols;
    real ss = 0.5f;  // not the identity: the lanes must not add it 32 times
    for (int j = 0; j < cols; ++j) ss += square(xr[j]);
    real m = -INFINITY;
    for (int j = 0; j < cols; j++) m = fmaxf(m, xr[j]);
    const real scale = rsqrtf(ss / cols + eps);
    for (int j = 0; j < cols; ++j) {
        yr[j] = xr[j] * scale * w[j];
    }
    row_max[row] = m;
}
"""


@needs_nvcc
@needs_gxx
def test_thread_per_row_becomes_warp_per_row(compiler: Compiler, workdir: Path) -> None:
    rewrite = thread_to_warp(THREAD_ROWS, "rms_rows", ("ceil_div(ROWS, BLOCK)",))
    launch = tomllib.loads(launch_text(rewrite.source))["launch"][0]
    assert launch == {"grid": ["ceil_div((ROWS) * 32, BLOCK)"], "block": ["BLOCK"], "shared_mem": "0"}
    assert sass_of(compiler, THREAD_ROWS, "rms_rows").histogram["shuffle"] == 0
    assert sass_of(compiler, rewrite.source, "rms_rows").histogram["shuffle"] >= 10
    for rows, cols, block in ((5, 100, 64), (3, 1, 32), (9, 37, 128)):
        x, w = offset_buffer(rows * cols, 0), offset_buffer(cols, 0, seed=2)
        y, mx = np.zeros_like(x), np.zeros(rows, np.float32)
        emulate(workdir, rewrite.source, "rms_rows", -(-rows * 32 // block), block, [x, w, y, mx, rows, cols, F(1e-5)])
        xr = x.reshape(rows, cols).astype(np.float64)
        expect = xr / np.sqrt(((xr * xr).sum(axis=1, keepdims=True) + 0.5) / cols + 1e-5) * w
        np.testing.assert_allclose(y.reshape(rows, cols), expect, rtol=1e-4)
        assert np.array_equal(mx, x.reshape(rows, cols).max(axis=1))
    block_form = THREAD_ROWS.replace("if (row >= rows) return;", "if (row < rows) {").replace(
        "    row_max[row] = m;\n}", "    row_max[row] = m;\n    }\n}")
    x, w = offset_buffer(4 * 50, 0), offset_buffer(50, 0, seed=2)
    ys = [np.zeros_like(x), np.zeros_like(x)]
    for source, y in zip((rewrite.source, thread_to_warp(block_form, "rms_rows", ("ceil_div(ROWS, BLOCK)",)).source),
                         ys, strict=True):
        emulate(workdir, source, "rms_rows", 2, 64, [x, w, y, np.zeros(4, np.float32), 4, 50, F(1e-5)])
    assert np.array_equal(ys[0], ys[1])
    dependent = THREAD_ROWS.replace("yr[j] = xr[j] * scale * w[j];", "yr[j] = xr[j] * scale * w[j] + yr[j - 1];")
    with pytest.raises(TransformError, match="accessed elsewhere"):
        thread_to_warp(dependent, "rms_rows", ("ceil_div(ROWS, BLOCK)",))
    running = THREAD_ROWS.replace("ss += square(xr[j]);", "ss = ss * 0.5f + square(xr[j]);")
    with pytest.raises(TransformError, match="neither a local"):
        thread_to_warp(running, "rms_rows", ("ceil_div(ROWS, BLOCK)",))


@needs_nvcc
@needs_gxx
def test_proven_launches_drop_the_fallback_loop(compiler: Compiler, workdir: Path) -> None:
    """When every launch the task allows is a power-of-two multiple of 32 threads, the tree loop is gone: no
    barrier is left inside a loop, and the result is still the tree's."""
    from kernelpro.rewrites.registry import proven_widths

    softmax = load_task(ROOT / "tasks" / "softmax.cu")
    assert proven_widths(softmax, softmax.source) == {"blockDim.x", "BLOCK"}
    rewrite = shuffle_reduction(softmax.source, softmax.kernel, proven_widths(softmax, softmax.source))
    assert "for (int s = blockDim.x / 2" not in rewrite.source
    sass = sass_of(compiler, rewrite.source, softmax.kernel, softmax.defines())
    assert sass.histogram_in_loops["barrier"] == 0 and sass.histogram["shuffle"] >= 10
    x = offset_buffer(3 * 777, 0, scale=3)
    y = np.zeros_like(x)
    emulate(workdir, rewrite.source, softmax.kernel, 3, 128, [x, y, 3, 777], {"BLOCK": 128})
    ref = np.exp(x.reshape(3, 777) - x.reshape(3, 777).max(axis=1, keepdims=True))
    np.testing.assert_allclose(y.reshape(3, 777), ref / ref.sum(axis=1, keepdims=True), rtol=1e-5)
    scan = load_task(ROOT / "tasks" / "scan.cu")
    scanned = shuffle_scan(scan.source, scan.kernel, proven_widths(scan, scan.source))
    assert "offset <<= 1" not in scanned.source
    data = np.random.default_rng(1).integers(-9, 9, 2 * 300, dtype=np.int32)
    out = np.zeros_like(data)
    emulate(workdir, scanned.source, scan.kernel, 2, 64, [data, out, 300], {"BLOCK": 64})
    assert np.array_equal(out.reshape(2, 300), np.cumsum(data.reshape(2, 300), axis=1))
    remapped = warp_per_row(softmax.source, softmax.kernel, ("ROWS",), ("BLOCK",))
    assert proven_widths(softmax, remapped.source) == frozenset()  # a candidate with its own launch: not proven


@needs_nvcc
@needs_gxx
def test_thread_per_row_becomes_block_per_row(compiler: Compiler, workdir: Path) -> None:
    rewrite = thread_to_warp(THREAD_ROWS, "rms_rows", ("ceil_div(ROWS, BLOCK)",), per_block=True)
    launch = tomllib.loads(launch_text(rewrite.source))["launch"][0]
    assert launch == {"grid": ["ROWS"], "block": ["BLOCK"], "shared_mem": "0"}
    sass = sass_of(compiler, rewrite.source, "rms_rows").histogram
    assert sass["shuffle"] >= 10 and sass["barrier"] == 2  # one barrier per accumulator
    for rows, cols, block in ((5, 1000, 128), (3, 1, 32), (2, 77, 64)):
        x, w = offset_buffer(rows * cols, 0), offset_buffer(cols, 0, seed=2)
        y, mx = np.zeros_like(x), np.zeros(rows, np.float32)
        emulate(workdir, rewrite.source, "rms_rows", rows, block, [x, w, y, mx, rows, cols, F(1e-5)])
        xr = x.reshape(rows, cols).astype(np.float64)
        expect = xr / np.sqrt(((xr * xr).sum(axis=1, keepdims=True) + 0.5) / cols + 1e-5) * w
        np.testing.assert_allclose(y.reshape(rows, cols), expect, rtol=1e-4)
        assert np.array_equal(mx, x.reshape(rows, cols).max(axis=1))
    nested = THREAD_ROWS.replace("for (int j = 0; j < cols; ++j) ss += square(xr[j]);",
                                 "if (cols > 1) { for (int j = 0; j < cols; ++j) ss += square(xr[j]); }")
    with pytest.raises(TransformError, match="nested"):
        thread_to_warp(nested, "rms_rows", ("ceil_div(ROWS, BLOCK)",), per_block=True)
