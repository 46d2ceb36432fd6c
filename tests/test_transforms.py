"""Source transforms: each result is compiled with nvcc and its effect read from ptxas and the SASS.

Where a rewrite changes what the kernel computes per thread (grid-stride loops, vectorization) the
result is also run on the CPU: :func:`emulate` compiles the kernel as host C++ with one ``std::thread``
per CUDA thread and ``__syncthreads`` as a ``std::barrier``, so odd sizes, misaligned buffers and
undersized grids are checked without a GPU.
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from kernelpro import transforms as T
from kernelpro.compiler import Compiler, CompileRequest
from kernelpro.cuda_source import find_kernels
from kernelpro.ptxas import KernelResources
from kernelpro.sass import KernelSass, SassInstruction, sass_for_cubin
from kernelpro.task import Task
from kernelpro.task_loader import load_task
from kernelpro.toolchain import find_tool

ROOT = Path(__file__).resolve().parents[1]
needs_nvcc = pytest.mark.skipif(find_tool("nvcc", required=False) is None, reason="nvcc not installed")
needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed (CPU emulation)")

SMALL = """\
// Small kernels; a transform of one must leave the others byte-identical.
#ifndef TAPS
#define TAPS 128
#endif

extern "C" __global__ void saxpy(float a, const float* x, float* y, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    y[i] = a * x[i] + y[i];
}

extern "C" __global__ void ramp(const float* x, float* out, int n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float t = x[i];  // a temporary, and the index used as a value
        out[i] = t * t + i;
    }
}

extern "C" __global__ void mask(const int* a, int* out, int m, int n) {
    int stride = blockDim.x * gridDim.x;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) out[i] = a[i] & m;
}

extern "C" __global__ void twice(const double* x, double* out, int n) {
    int i = threadIdx.x + blockIdx.x * blockDim.x;
    if (i < n) out[i] = 2.0 * x[i];  // a comment must not swallow the lane's closing brace
}

extern "C" __global__ void band(const float* x, const float* lo, float* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = (x[i] > lo[i] && x[i] < 1.0f) ? x[i] : 0.0f;  // && is not an address-of
}

extern "C" __global__ void diff(const float* x, float* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n - 1) out[i] = x[i + 1] - x[i];
}

extern "C" __global__ void relu(const float* x, float* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) { if (x[i] > 0) out[i] = x[i]; else out[i] = 0.0f; }
}

extern "C" __global__ void staged(const float* x, float* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        __shared__ float buf[256];
        buf[threadIdx.x] = x[i];
        __syncthreads();
        out[i] = buf[255 - threadIdx.x];
    }
}

extern "C" __global__ void fir(const float* x, const float* w, float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float s = 0.0f;
    for (int k = 0; k < TAPS; ++k) s += w[k] * x[i + k];
    y[i] = s;
}

extern "C" __global__ void heavy(const float* x, float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    float acc[40];
    #pragma unroll
    for (int k = 0; k < 40; ++k) acc[k] = x[i + k * n];
    float s = 0.0f;
    #pragma unroll
    for (int k = 0; k < 40; ++k) s += acc[k] * acc[(k * 7) % 40];
    y[i] = s;
}

extern "C" __global__ void transpose(const float* in, float* out, int n) {
    __shared__ float tile[32][32];
    int x = blockIdx.x * 32 + threadIdx.x, y = blockIdx.y * 32 + threadIdx.y;
    if (x < n && y < n) tile[threadIdx.y][threadIdx.x] = in[y * n + x];
    __syncthreads();
    x = blockIdx.y * 32 + threadIdx.x;
    y = blockIdx.x * 32 + threadIdx.y;
    if (x < n && y < n) out[y * n + x] = tile[threadIdx.x][threadIdx.y];
}

extern "C" __global__ void aliasing(float* a, float* b, float* out, int n) {
    float* shifted = b + 1;
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = a[i] + shifted[i];
}
"""


@pytest.fixture(scope="module")
def compiler(tmp_path_factory: pytest.TempPathFactory) -> Compiler:
    return Compiler(cache_dir=tmp_path_factory.mktemp("nvcc-cache"))


def task(name: str) -> Task:
    return load_task(ROOT / "tasks" / f"{name}.cu")


def build(compiler: Compiler, source: str, kernel: str, defines=(), flags=()) -> tuple[KernelResources, KernelSass]:
    """ptxas resources and SASS of ``kernel`` in ``source`` compiled for sm_90."""
    result = compiler.compile_or_raise(CompileRequest(source, "sm_90", defines, flags))
    resources = next(r for r in result.resources.values() if r.name == kernel)
    sass = next(k for k in sass_for_cubin(result.cubin).values() if k.base_name == kernel)
    return resources, sass


def loop_bodies(kernel: KernelSass) -> list[list[SassInstruction]]:
    return [[i for i in kernel.instructions if loop.start <= i.offset <= loop.end] for loop in kernel.loops]


def global_loads(instructions: list[SassInstruction]) -> list[str]:
    return [i.text for i in instructions if i.opcode == "LDG"]


def assert_only_kernel_changed(old: str, new: str, kernel: str) -> None:
    before, after = find_kernels(old)[kernel], find_kernels(new)[kernel]
    assert new[: after.start] == old[: before.start]
    assert new[after.end :] == old[before.end :]
    assert new != old


# --- CPU emulation -------------------------------------------------------------------------------

PRELUDE = r"""
#include <barrier>
#include <math.h>
#include <thread>
#include <vector>
struct kp_dim3 { unsigned x = 0, y = 0, z = 0; };
static thread_local kp_dim3 threadIdx;
static kp_dim3 blockIdx, blockDim, gridDim;
static std::barrier<>* kp_barrier;
#define __global__
#define __launch_bounds__(...)
#define __shared__ static
#define __syncthreads() kp_barrier->arrive_and_wait()
#define __expf expf
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) float2 { float x, y; };
struct alignas(16) int4 { int x, y, z, w; };
struct alignas(8) int2 { int x, y; };
struct alignas(16) double2 { double x, y; };
"""
LAUNCHER = r"""
extern "C" void kp_launch(unsigned kp_gx, unsigned kp_bx, PARAMS) {
    gridDim = {kp_gx, 1, 1};
    blockDim = {kp_bx, 1, 1};
    for (unsigned kp_b = 0; kp_b < kp_gx; ++kp_b) {  // one block at a time: __shared__ is static
        blockIdx = {kp_b, 0, 0};
        std::barrier<> kp_bar(kp_bx);
        kp_barrier = &kp_bar;
        std::vector<std::thread> kp_threads;
        for (unsigned kp_t = 0; kp_t < kp_bx; ++kp_t)
            kp_threads.emplace_back([=] { threadIdx = {kp_t, 0, 0}; KERNEL(ARGS); });
        for (auto& kp_thread : kp_threads) kp_thread.join();
    }
}
"""
SCALARS = {"int": ctypes.c_int, "float": ctypes.c_float, "double": ctypes.c_double}


def emulate(workdir: Path, source: str, kernel: str, grid: int, block: int, args: list, defines: dict | None = None):
    """Run ``kernel`` on the CPU over a 1-D ``grid`` x ``block`` launch; numpy arrays are the buffers."""
    params = find_kernels(source)[kernel].params
    launcher = (LAUNCHER.replace("PARAMS", ", ".join(p.text for p in params)).replace("KERNEL", kernel)
                .replace("ARGS", ", ".join(p.name for p in params)))
    macros = "".join(f"#define {k} {v}\n" for k, v in (defines or {}).items())
    text = PRELUDE + macros + source + launcher
    library = workdir / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}.so"
    if not library.exists():
        cpp = library.with_suffix(".cpp")
        cpp.write_text(text)
        subprocess.run(["g++", "-std=c++20", "-O1", "-shared", "-fPIC", "-pthread", "-Wno-unknown-pragmas",
                        str(cpp), "-o", str(library)], check=True, capture_output=True)
    values = [ctypes.c_void_p(a.ctypes.data) if p.is_pointer else SCALARS[p.base_type](a)
              for p, a in zip(params, args, strict=True)]
    ctypes.CDLL(str(library)).kp_launch(ctypes.c_uint(grid), ctypes.c_uint(block), *values)


def buffer(n: int, offset: int, dtype=np.float32, seed: int = 0) -> np.ndarray:
    """``n`` random elements starting ``offset`` elements into an aligned allocation (misaligned if odd)."""
    data = np.random.default_rng(seed).random(n + 8).astype(dtype)
    return data[offset : offset + n]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("emulation")


# --- add_restrict --------------------------------------------------------------------------------

@needs_nvcc
def test_restrict_moves_loads_to_the_read_only_path(compiler: Compiler) -> None:
    t = task("vector_add")
    rewrite = T.add_restrict(t.source, t.kernel)
    assert rewrite.change == "mark a, b, c __restrict__"
    assert_only_kernel_changed(t.source, rewrite.source, t.kernel)
    params = find_kernels(rewrite.source)[t.kernel].params
    assert [p.is_restrict for p in params] == [True, True, True, False]
    _, before = build(compiler, t.source, t.kernel, t.defines())
    _, after = build(compiler, rewrite.source, t.kernel, t.defines())
    assert global_loads(list(before.instructions)) and not any(".CONSTANT" in x for x in global_loads(
        list(before.instructions)))
    assert len(global_loads(list(after.instructions))) == 2
    assert all(".CONSTANT" in x for x in global_loads(list(after.instructions)))
    with pytest.raises(T.TransformError, match="already __restrict__"):
        T.add_restrict(rewrite.source, t.kernel)


@needs_nvcc
def test_restrict_adds_const_only_where_the_kernel_only_reads(compiler: Compiler) -> None:
    rewrite = T.add_restrict(SMALL, "aliasing")
    params = {p.name: p for p in find_kernels(rewrite.source)["aliasing"].params}
    assert params["a"].is_const and params["a"].is_restrict  # only ever read as a[i]
    assert not params["b"].is_const and params["b"].is_restrict  # copied into another pointer: left alone
    assert not params["out"].is_const  # written
    assert rewrite.change == "mark a, b, out __restrict__; make read-only a const"
    assert_only_kernel_changed(SMALL, rewrite.source, "aliasing")
    build(compiler, rewrite.source, "aliasing")  # still compiles


# --- set_launch_bounds ---------------------------------------------------------------------------

@needs_nvcc
def test_launch_bounds_insert_then_replace_with_knob_expressions(compiler: Compiler) -> None:
    t = task("sgemm")
    first = T.set_launch_bounds(t.source, t.kernel, "BLOCK_X * BLOCK_Y")
    assert first.change == "declare __launch_bounds__(BLOCK_X * BLOCK_Y)"
    assert find_kernels(first.source)[t.kernel].launch_bounds == "BLOCK_X * BLOCK_Y"
    assert_only_kernel_changed(t.source, first.source, t.kernel)
    res, _ = build(compiler, first.source, t.kernel, t.defines())
    assert (res.max_threads, res.min_blocks) == (256, None)
    res, _ = build(compiler, first.source, t.kernel, t.defines({"BLOCK_X": 32, "BLOCK_Y": 4}))
    assert res.max_threads == 128  # the bound follows the knobs

    second = T.set_launch_bounds(first.source, t.kernel, "BLOCK_X * BLOCK_Y", "2048 / (BLOCK_X * BLOCK_Y)")
    assert second.change == "launch bounds (BLOCK_X * BLOCK_Y) → (BLOCK_X * BLOCK_Y, 2048 / (BLOCK_X * BLOCK_Y))"
    assert second.source.count("__launch_bounds__") == 1
    res, _ = build(compiler, second.source, t.kernel, t.defines())
    assert (res.max_threads, res.min_blocks) == (256, 8)
    with pytest.raises(T.TransformError, match="already has"):
        T.set_launch_bounds(second.source, t.kernel, "BLOCK_X*BLOCK_Y", "2048/(BLOCK_X*BLOCK_Y)")
    with pytest.raises(T.TransformError, match="not a constant expression"):
        T.set_launch_bounds(t.source, t.kernel, "BLOCK; int x")


@needs_nvcc
def test_launch_bounds_cap_registers(compiler: Compiler) -> None:
    free, _ = build(compiler, SMALL, "heavy")
    capped, _ = build(compiler, T.set_launch_bounds(SMALL, "heavy", 256, 8).source, "heavy")
    assert free.registers > 32 >= capped.registers  # 8 blocks of 256 threads: 65536 / 2048 = 32 registers
    assert (capped.max_threads, capped.min_blocks) == (256, 8)


# --- unroll_loops --------------------------------------------------------------------------------

@needs_nvcc
def test_unroll_block_stride_loops_puts_four_loads_in_flight(compiler: Compiler) -> None:
    t = task("softmax")
    rewrite = T.unroll_loops(t.source, t.kernel, 4, strided_only=True)
    assert rewrite.change == "unroll 3 innermost loop(s) by 4"
    assert rewrite.source.count("#pragma unroll 4") == 3  # the two tree reductions (barriers, >>=) untouched
    assert_only_kernel_changed(t.source, rewrite.source, t.kernel)
    _, before = build(compiler, t.source, t.kernel, t.defines())
    _, after = build(compiler, rewrite.source, t.kernel, t.defines())
    loads = lambda k: sorted(len(global_loads(body)) for body in loop_bodies(k))  # noqa: E731
    assert max(loads(before)) == 1 and max(loads(after)) == 4
    with pytest.raises(T.TransformError, match="already has an unroll pragma"):
        T.unroll_loops(rewrite.source, t.kernel, 4)


@needs_nvcc
def test_unroll_counted_loop_deeper_than_nvcc_does(compiler: Compiler) -> None:
    t = task("sgemm")
    with pytest.raises(T.TransformError, match="steps by 1"):
        T.unroll_loops(t.source, t.kernel, 4, strided_only=True)
    with pytest.raises(T.TransformError, match="known only at run time"):
        T.unroll_loops(t.source, t.kernel)  # K is a kernel argument: no full unroll
    rewrite = T.unroll_loops(t.source, t.kernel, 32)
    _, before = build(compiler, t.source, t.kernel, t.defines())
    _, after = build(compiler, rewrite.source, t.kernel, t.defines())
    ffma = lambda k: max(sum(i.opcode == "FFMA" for i in body) for body in loop_bodies(k))  # noqa: E731
    assert ffma(before) == 16 and ffma(after) == 32  # nvcc's own unrolling is by 16


@needs_nvcc
def test_full_unroll_of_a_macro_bounded_loop_removes_the_loop(compiler: Compiler) -> None:
    _, before = build(compiler, SMALL, "fir")
    rewrite = T.unroll_loops(SMALL, "fir")
    assert rewrite.change == "unroll 1 innermost loop(s) fully"
    assert_only_kernel_changed(SMALL, rewrite.source, "fir")
    _, after = build(compiler, rewrite.source, "fir")
    assert len(before.loops) == 1 and not after.loops
    assert after.histogram["ffma"] == 128


# --- fast_math_intrinsics ------------------------------------------------------------------------

@needs_nvcc
def test_fast_math_intrinsics_drop_the_range_reduction(compiler: Compiler) -> None:
    t = task("softmax")
    rewrite = T.fast_math_intrinsics(t.source, t.kernel)
    assert rewrite.change == "use __expf for expf"
    assert rewrite.source.count("__expf(") == 2 and "/ sum" in rewrite.source  # division left alone
    assert_only_kernel_changed(t.source, rewrite.source, t.kernel)
    _, before = build(compiler, t.source, t.kernel, t.defines())
    _, after = build(compiler, rewrite.source, t.kernel, t.defines())

    def sum_loop(kernel: KernelSass) -> list[str]:  # the loop of `sum += expf(xr[j] - m)`: an EX2, no store
        body = next(b for b in loop_bodies(kernel) if any(i.text.startswith("MUFU.EX2") for i in b)
                    and not any(i.opcode == "STG" for i in b))
        return [i.opcode for i in body]

    assert sum_loop(before).count("FFMA") >= 4  # expf: range reduction and polynomial around the EX2
    assert sum_loop(after).count("FFMA") == 0 and "FMUL" in sum_loop(after)  # __expf: scale, then EX2
    assert after.histogram["fp32"] < before.histogram["fp32"]
    with pytest.raises(T.TransformError, match="calls none of"):
        T.fast_math_intrinsics(task("vector_add").source, "vector_add")


# --- pad_shared ----------------------------------------------------------------------------------

@needs_nvcc
def test_pad_shared_array_to_33_columns(compiler: Compiler) -> None:
    rewrite = T.pad_shared(SMALL, "transpose", "tile", 33)
    assert rewrite.change == "pad shared tile[32][32] to [33] columns"
    assert_only_kernel_changed(SMALL, rewrite.source, "transpose")
    before, _ = build(compiler, SMALL, "transpose")
    after, _ = build(compiler, rewrite.source, "transpose")
    assert (before.shared_static_bytes, after.shared_static_bytes) == (32 * 32 * 4, 32 * 33 * 4)
    with pytest.raises(T.TransformError, match="already has 33 columns"):
        T.pad_shared(rewrite.source, "transpose", "tile", 33)
    with pytest.raises(T.TransformError, match="no 2-D __shared__ array 'red'"):
        T.pad_shared(task("softmax").source, "softmax_rows", "red", 2)  # red is 1-D


# --- grid_stride_loop ----------------------------------------------------------------------------

@needs_nvcc
@needs_gxx
def test_grid_stride_loop_covers_the_problem_with_any_grid(compiler: Compiler, workdir: Path) -> None:
    t = task("vector_add")
    rewrite = T.grid_stride_loop(t.source, t.kernel)
    assert rewrite.change == "turn the `i < n` guard into a grid-stride loop"
    assert "i += blockDim.x * gridDim.x" in rewrite.source
    assert_only_kernel_changed(t.source, rewrite.source, t.kernel)
    _, sass = build(compiler, rewrite.source, t.kernel, t.defines())
    assert len(sass.loops) == 1
    n = 1000
    for source, expect_all in ((t.source, False), (rewrite.source, True)):
        a, b, c = buffer(n, 0), buffer(n, 0, seed=1), np.zeros(n, np.float32)
        emulate(workdir, source, t.kernel, 3, 64, [a, b, c, n], {"BLOCK": 64})  # 192 threads for 1000 elements
        assert np.array_equal(c, a + b) == expect_all


def test_grid_stride_loop_refuses_what_it_cannot_convert() -> None:
    with pytest.raises(T.TransformError, match="barrier"):
        T.grid_stride_loop(SMALL, "staged")  # a barrier inside a loop with thread-dependent trip counts
    with pytest.raises(T.TransformError, match="does not start with"):
        T.grid_stride_loop(task("softmax").source, "softmax_rows")
    with pytest.raises(T.TransformError, match="no __global__ kernel 'nope'"):
        T.grid_stride_loop(SMALL, "nope")
    early_return = T.grid_stride_loop(SMALL, "saxpy").source
    assert "for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {" in early_return


# --- vectorize_elementwise -----------------------------------------------------------------------

@needs_nvcc
@pytest.mark.parametrize("restrict", [False, True])
def test_vectorized_vector_add_main_loop_is_all_128_bit(compiler: Compiler, restrict: bool) -> None:
    t = task("vector_add")
    source = T.add_restrict(t.source, t.kernel).source if restrict else t.source
    rewrite = T.vectorize_elementwise(source, t.kernel)
    assert rewrite.change.startswith("vectorize 1 loop(s) to 128-bit (float4-style) loads/stores, scalar tail")
    assert_only_kernel_changed(source, rewrite.source, t.kernel)
    _, sass = build(compiler, rewrite.source, t.kernel, t.defines())
    main = [body for body in loop_bodies(sass) if any(i.op_class == "global_load_128" for i in body)]
    assert len(main) == 1
    classes = [i.op_class for i in main[0]]
    assert classes.count("global_load_128") == 2 and classes.count("global_store_128") == 1
    assert "global_load_32" not in classes and "global_store_32" not in classes
    assert all(x.startswith("LDG.E.128" + (".CONSTANT" if restrict else "")) for x in global_loads(main[0]))
    with pytest.raises(T.TransformError, match="nothing in vector_add to vectorize"):
        T.vectorize_elementwise(rewrite.source, t.kernel)  # its own output is not vectorized again


@needs_gxx
def test_vectorized_vector_add_is_exact_for_odd_sizes_misaligned_buffers_and_small_grids(workdir: Path) -> None:
    t = task("vector_add")
    for width in (128, 64):
        source = T.vectorize_elementwise(t.source, t.kernel, width).source
        for n, offset, grid in ((1003, 0, 16), (1003, 1, 16), (1003, 0, 3), (3, 0, 1), (64, 2, 1)):
            a, b, c = buffer(n, offset), buffer(n, offset, seed=1), buffer(n, offset, seed=2)
            emulate(workdir, source, t.kernel, grid, 64, [a, b, c, n], {"BLOCK": 64})
            assert np.array_equal(c, a + b), (width, n, offset, grid)


@needs_nvcc
@needs_gxx
def test_vectorized_softmax_rows(compiler: Compiler, workdir: Path) -> None:
    t = task("softmax")
    rewrite = T.vectorize_elementwise(t.source, t.kernel)
    assert rewrite.change == "vectorize 3 loop(s) to 128-bit (float4-style) loads/stores, scalar tail"
    assert_only_kernel_changed(t.source, rewrite.source, t.kernel)
    _, sass = build(compiler, rewrite.source, t.kernel, t.defines())
    vector_loops = [body for body in loop_bodies(sass) if any(i.op_class == "global_load_128" for i in body)]
    assert len(vector_loops) == 3
    assert all("global_load_32" not in [i.op_class for i in body] for body in vector_loops)
    # Stacked with the other transforms, on rows that are and aren't 16-byte aligned (cols % 4 != 0).
    stacked = rewrite.source
    for transform in (T.fast_math_intrinsics, T.add_restrict, lambda s, k: T.unroll_loops(s, k, 4)):
        stacked = transform(stacked, t.kernel).source
    build(compiler, stacked, t.kernel, t.defines())
    for source in (rewrite.source, stacked):
        for rows, cols in ((3, 1000), (5, 1003), (2, 1)):
            x = (np.random.default_rng(rows).standard_normal(rows * cols) * 3).astype(np.float32)
            y = np.zeros_like(x)
            emulate(workdir, source, t.kernel, rows, 64, [x, y, rows, cols], {"BLOCK": 64})
            ref = np.exp(x.reshape(rows, cols) - x.reshape(rows, cols).max(axis=1, keepdims=True))
            np.testing.assert_allclose(y.reshape(rows, cols), ref / ref.sum(axis=1, keepdims=True), rtol=1e-5)


@needs_nvcc
@needs_gxx
@pytest.mark.parametrize("kernel", ["saxpy", "ramp", "mask", "twice", "band"])
def test_vectorize_small_kernels(compiler: Compiler, workdir: Path, kernel: str) -> None:
    rewrite = T.vectorize_elementwise(SMALL, kernel)
    assert_only_kernel_changed(SMALL, rewrite.source, kernel)
    _, sass = build(compiler, rewrite.source, kernel)
    assert sass.histogram["global_load_128"] >= 1 and sass.histogram["global_store_128"] >= 1
    n = 1003
    for offset, grid in ((0, math.ceil(n / 64)), (1, math.ceil(n / 64)), (0, 2)):
        if kernel == "saxpy":  # y is read and written (early-return guard)
            x, y = buffer(n, offset), buffer(n, offset, seed=1)
            expected = np.float32(1.5) * x + y
            emulate(workdir, rewrite.source, kernel, grid, 64, [1.5, x, y, n])
            np.testing.assert_allclose(y, expected, rtol=1e-6)
        elif kernel == "ramp":  # a temporary and the index as a value
            x, out = buffer(n, offset), buffer(n, offset, seed=1)
            emulate(workdir, rewrite.source, kernel, grid, 64, [x, out, n])
            np.testing.assert_allclose(out, x * x + np.arange(n), rtol=1e-6)
        elif kernel == "mask":  # ints, already a grid-stride loop with the stride in a variable
            a, out = buffer(n, offset, np.int32), buffer(n, offset, np.int32, seed=1)
            a[:] = np.arange(n)
            emulate(workdir, rewrite.source, kernel, grid, 64, [a, out, 0x5A, n])
            assert np.array_equal(out, a & 0x5A)
        elif kernel == "twice":  # doubles: two per 128-bit vector
            x, out = buffer(n, offset, np.float64), buffer(n, offset, np.float64, seed=1)
            emulate(workdir, rewrite.source, kernel, grid, 64, [x, out, n])
            assert np.array_equal(out, 2.0 * x)
        else:  # a condition and a select over two inputs
            x, lo, out = buffer(n, offset), buffer(n, offset, seed=1) * 0.5, buffer(n, offset, seed=2)
            emulate(workdir, rewrite.source, kernel, grid, 64, [x, lo, out, n])
            assert np.array_equal(out, np.where((x > lo) & (x < 1.0), x, 0.0).astype(np.float32))


@needs_nvcc
def test_vectorize_64_bit(compiler: Compiler) -> None:
    t = task("vector_add")
    rewrite = T.vectorize_elementwise(t.source, t.kernel, 64)
    assert "float2" in rewrite.source and "float4" not in rewrite.source
    _, sass = build(compiler, rewrite.source, t.kernel, t.defines())
    assert sass.histogram["global_load_64"] == 2 and sass.histogram["global_load_128"] == 0
    with pytest.raises(T.TransformError, match="64-bit vectors hold one element"):
        T.vectorize_elementwise(SMALL, "twice", 64)


def test_vectorize_refuses_non_elementwise_kernels() -> None:
    t = task("sgemm")
    with pytest.raises(T.TransformError, match="nothing in sgemm_naive to vectorize"):
        T.vectorize_elementwise(t.source, t.kernel)
    with pytest.raises(T.TransformError, match=r"uses x other than as x\[i\]"):
        T.vectorize_elementwise(SMALL, "diff")  # x[i + 1]: a neighbour, not this element
    with pytest.raises(T.TransformError, match="not straight-line"):
        T.vectorize_elementwise(SMALL, "relu")  # a conditional store would store garbage lanes
    with pytest.raises(T.TransformError, match="must be 64 or 128"):
        T.vectorize_elementwise(SMALL, "saxpy", 256)


def test_transforms_keep_everything_outside_the_kernel() -> None:
    """Every applicable transform of every task leaves the metadata comment and the macros byte-identical."""
    transforms = [T.add_restrict, T.fast_math_intrinsics, T.grid_stride_loop, T.vectorize_elementwise,
                  lambda s, k: T.unroll_loops(s, k, 4), lambda s, k: T.set_launch_bounds(s, k, 128)]
    applied = 0
    for name in ("vector_add", "softmax", "sgemm"):
        t = task(name)
        for transform in transforms:
            try:
                rewrite = transform(t.source, t.kernel)
            except T.TransformError:
                continue
            applied += 1
            assert_only_kernel_changed(t.source, rewrite.source, t.kernel)
            assert "\n" not in rewrite.change and rewrite.change
            new = find_kernels(rewrite.source)[t.kernel]
            assert [(p.name, p.base_type, p.is_pointer) for p in new.params] == \
                [(p.name, p.base_type, p.is_pointer) for p in t.signature.params]
    assert applied >= 12


def test_transforms_refuse_or_keep_the_rest_of_every_kernel_file_in_the_repository() -> None:
    """Robustness: on kernels they don't recognise, transforms raise TransformError, never anything else."""
    transforms = [T.add_restrict, T.fast_math_intrinsics, T.grid_stride_loop, T.vectorize_elementwise,
                  lambda s, k: T.vectorize_elementwise(s, k, 64), lambda s, k: T.unroll_loops(s, k, 4),
                  lambda s, k: T.unroll_loops(s, k), lambda s, k: T.set_launch_bounds(s, k, 128, 2),
                  lambda s, k: T.pad_shared(s, k, "tile", 33)]
    files = sorted((ROOT / "tests" / "kernels").rglob("*.cu")) + sorted((ROOT / "tasks").glob("*.cu"))
    applied = refused = 0
    for path in files:
        source = path.read_text(errors="replace")
        for kernel in find_kernels(source):
            for transform in transforms:
                try:
                    rewrite = transform(source, kernel)
                except T.TransformError:
                    refused += 1
                    continue
                applied += 1
                assert_only_kernel_changed(source, rewrite.source, kernel)
    assert applied > 20 and refused > 20
