// out = silu(gate) * up over n bf16 elements: 16-byte loads (8 x bf16), float math, scalar tail.
#include <cuda_bf16.h>

__device__ __forceinline__ float silu(float v) { return v / (1.0f + __expf(-v)); }

extern "C" __global__ void bf16_silu_mul(const __nv_bfloat16* __restrict__ gate, const __nv_bfloat16* __restrict__ up,
                                         __nv_bfloat16* __restrict__ out, long long n) {
    constexpr int LANES = 16 / sizeof(__nv_bfloat16);
    const long long tid = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long stride = (long long)blockDim.x * gridDim.x;
    const bool aligned = ((reinterpret_cast<unsigned long long>(gate) | reinterpret_cast<unsigned long long>(up) |
                           reinterpret_cast<unsigned long long>(out)) & 15) == 0;
    const long long vectors = aligned ? n / LANES : 0;
    for (long long v = tid; v < vectors; v += stride) {
        __align__(16) __nv_bfloat16 g[LANES], u[LANES], o[LANES];
        *reinterpret_cast<uint4*>(g) = reinterpret_cast<const uint4*>(gate)[v];
        *reinterpret_cast<uint4*>(u) = reinterpret_cast<const uint4*>(up)[v];
#pragma unroll
        for (int l = 0; l < LANES; ++l) o[l] = __float2bfloat16(silu(__bfloat162float(g[l])) * __bfloat162float(u[l]));
        reinterpret_cast<uint4*>(out)[v] = *reinterpret_cast<const uint4*>(o);
    }
    for (long long i = vectors * LANES + tid; i < n; i += stride)
        out[i] = __float2bfloat16(silu(__bfloat162float(gate[i])) * __bfloat162float(up[i]));
}
