"""Run a CUDA kernel on the CPU, with warps: one ``std::thread`` per CUDA thread, ``__syncthreads`` as a
block ``std::barrier``, and the ``__shfl_*_sync`` family through per-warp barriers and a slot per thread
(a full-mask shuffle is a warp-wide meeting, as on the GPU). ``__half``/``__nv_bfloat16`` are emulated
with round-to-nearest-even conversions, so 16-bit kernels are checked too. Launches are 1-D or 2-D.
"""

from __future__ import annotations

import ctypes
import hashlib
import subprocess
from pathlib import Path

import numpy as np

from kernelpro.cuda_source import find_kernels

PRELUDE = r"""
#include <barrier>
#include <cstdint>
#include <cstddef>
#include <cstring>
#include <math.h>
#include <thread>
#include <vector>
struct kp_dim3 { unsigned x = 0, y = 0, z = 0; };
static thread_local kp_dim3 threadIdx;
static kp_dim3 blockIdx, blockDim, gridDim;
static std::barrier<>* kp_barrier;
static std::vector<std::barrier<>*> kp_warps;
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) alignas(n)
#define __restrict__
#define __syncthreads() kp_barrier->arrive_and_wait()
#define __syncwarp(...) kp_warps[(threadIdx.x + threadIdx.y * blockDim.x) >> 5]->arrive_and_wait()
#define __expf expf
#define __logf logf
#define rsqrtf(v) (1.0f / sqrtf(v))
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) float2 { float x, y; };
struct alignas(16) int4 { int x, y, z, w; };
struct alignas(8) int2 { int x, y; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
struct alignas(8) uint2 { unsigned x, y; };
struct alignas(16) double2 { double x, y; };
struct __nv_bfloat16 { uint16_t bits; };
struct __half { uint16_t bits; };
typedef __nv_bfloat16 nv_bfloat16;
typedef __half half;
inline float __bfloat162float(__nv_bfloat16 h) {
    uint32_t u = uint32_t(h.bits) << 16; float f; std::memcpy(&f, &u, 4); return f; }
inline __nv_bfloat16 __float2bfloat16(float f) {
    uint32_t u; std::memcpy(&u, &f, 4); u += 0x7fff + ((u >> 16) & 1); return {uint16_t(u >> 16)}; }
inline float __half2float(__half h) { _Float16 v; std::memcpy(&v, &h.bits, 2); return float(v); }
inline __half __float2half(float f) { _Float16 v = (_Float16)f; __half h; std::memcpy(&h.bits, &v, 2); return h; }
template <class T> T atomicAdd(T* p, T v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
template <class T> struct kp_slots { static inline T value[1024]; };
template <class T> T kp_exchange(T v, unsigned src_lane) {
    unsigned t = threadIdx.x + threadIdx.y * blockDim.x, lane = t & 31, base = t - lane;
    kp_slots<T>::value[t] = v;
    kp_warps[t >> 5]->arrive_and_wait();
    unsigned src = base + src_lane;
    T r = (src_lane < 32 && src < blockDim.x * blockDim.y) ? kp_slots<T>::value[src] : v;
    kp_warps[t >> 5]->arrive_and_wait();
    return r;
}
template <class T> T __shfl_down_sync(unsigned, T v, int d, int = 32) { return kp_exchange(v, (threadIdx.x & 31) + d); }
template <class T> T __shfl_up_sync(unsigned, T v, int d, int = 32) {
    int lane = int(threadIdx.x & 31) - d; return kp_exchange(v, lane < 0 ? (threadIdx.x & 31) : unsigned(lane)); }
template <class T> T __shfl_xor_sync(unsigned, T v, int m, int = 32) { return kp_exchange(v, (threadIdx.x & 31) ^ m); }
template <class T> T __shfl_sync(unsigned, T v, int l, int = 32) { return kp_exchange(v, unsigned(l) & 31); }
"""
LAUNCHER = r"""
extern "C" void kp_launch(unsigned kp_gx, unsigned kp_gy, unsigned kp_bx, unsigned kp_by, PARAMS) {
    gridDim = {kp_gx, kp_gy, 1};
    blockDim = {kp_bx, kp_by, 1};
    const unsigned kp_n = kp_bx * kp_by;
    for (unsigned kp_b = 0; kp_b < kp_gx * kp_gy; ++kp_b) {  // one block at a time: __shared__ is static
        blockIdx = {kp_b % kp_gx, kp_b / kp_gx, 0};
        std::barrier<> kp_bar(kp_n);
        kp_barrier = &kp_bar;
        kp_warps.clear();
        for (unsigned kp_w = 0; kp_w * 32 < kp_n; ++kp_w)
            kp_warps.push_back(new std::barrier<>(kp_n - kp_w * 32 < 32 ? kp_n - kp_w * 32 : 32));
        std::vector<std::thread> kp_threads;
        for (unsigned kp_t = 0; kp_t < kp_n; ++kp_t)
            kp_threads.emplace_back([=] { threadIdx = {kp_t % kp_bx, kp_t / kp_bx, 0}; KERNEL(ARGS); });
        for (auto& kp_thread : kp_threads) kp_thread.join();
        for (auto* kp_w : kp_warps) delete kp_w;
    }
}
"""
SCALARS = {"int": ctypes.c_int, "float": ctypes.c_float, "double": ctypes.c_double, "unsigned int": ctypes.c_uint,
           "size_t": ctypes.c_size_t, "long long": ctypes.c_longlong}


def emulate(workdir: Path, source: str, kernel: str, grid: int | tuple[int, int], block: int | tuple[int, int],
            args: list, defines: dict | None = None) -> None:
    """Run ``kernel`` over a 1-D ``grid`` x ``block`` launch on the CPU; numpy arrays are the buffers, ctypes
    values the scalars of types the table does not know."""
    params = find_kernels(source)[kernel].params
    launcher = (LAUNCHER.replace("PARAMS", ", ".join(p.text for p in params)).replace("KERNEL", kernel)
                .replace("ARGS", ", ".join(p.name for p in params)))
    macros = "".join(f"#define {k} {v}\n" for k, v in (defines or {}).items())
    body = "\n".join(line for line in source.splitlines() if not line.startswith("#include"))
    text = PRELUDE + macros + body + launcher
    library = workdir / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}.so"
    if not library.exists():
        cpp = library.with_suffix(".cpp")
        cpp.write_text(text)
        done = subprocess.run(["g++", "-std=c++20", "-O1", "-shared", "-fPIC", "-pthread", "-Wno-unknown-pragmas",
                               str(cpp), "-o", str(library)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
    values = [a if isinstance(a, ctypes._SimpleCData) else  # a scalar of a typedef'd type, passed typed
              ctypes.c_void_p(a.ctypes.data) if p.is_pointer else SCALARS[p.base_type](a)
              for p, a in zip(params, args, strict=True)]
    (gx, gy), (bx, by) = (g if isinstance(g, tuple) else (g, 1) for g in (grid, block))
    ctypes.CDLL(str(library)).kp_launch(*(ctypes.c_uint(v) for v in (gx, gy, bx, by)), *values)


def bf16(values: np.ndarray) -> np.ndarray:
    """float32 → bfloat16 bits (uint16), round to nearest even, as ``__float2bfloat16``."""
    u = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def from_bf16(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bits (uint16) → float32."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def offset_buffer(n: int, offset: int, dtype=np.float32, seed: int = 0, scale: float = 1.0) -> np.ndarray:
    """``n`` random elements ``offset`` elements into a 64-byte-aligned allocation (misaligned when offset > 0)."""
    raw = np.zeros(n + offset + 64, dtype=dtype)
    start = (-raw.ctypes.data % 64) // raw.itemsize
    out = raw[start + offset : start + offset + n]
    out[...] = (np.random.default_rng(seed).standard_normal(n) * scale).astype(dtype)
    return out
