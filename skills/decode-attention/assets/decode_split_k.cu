// Decode attention out[bh, :] = softmax(q . K^T * scale) V with split-K. Pass 1: grid (BH, SPLITS), block 128;
// each block walks its slice of the sequence with an online softmax and writes (m, l, o[D]).
// Pass 2 (decode_combine): grid BH, block D (<= 1024), merges the splits. half K/V, fp32 math. D <= 256.
#include <cuda_fp16.h>

#define MAX_D 256
#define THREADS 128

extern "C" __global__ void decode_split(const __half* __restrict__ q, const __half* __restrict__ k,
                                        const __half* __restrict__ v, float* __restrict__ part_m,
                                        float* __restrict__ part_l, float* __restrict__ part_o, int seq_len,
                                        int head_dim, float scale) {
    __shared__ float qs[MAX_D];
    __shared__ float p_shared;
    const size_t bh = blockIdx.x;
    const int splits = gridDim.y, split = blockIdx.y;
    const int per = (seq_len + splits - 1) / splits, begin = split * per;
    const int end = min(seq_len, begin + per);
    for (int d = threadIdx.x; d < head_dim; d += THREADS) qs[d] = __half2float(q[bh * head_dim + d]);
    __syncthreads();
    float m = -INFINITY, l = 0.0f;
    float o[MAX_D / THREADS] = {};
    for (int j = begin; j < end; ++j) {
        const __half* kr = k + (bh * seq_len + j) * head_dim;
        float dot = 0.0f;
        for (int d = threadIdx.x; d < head_dim; d += THREADS) dot += qs[d] * __half2float(kr[d]);
        for (int off = 16; off > 0; off >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, off);
        __shared__ float warp_dot[THREADS / 32];
        if (threadIdx.x % 32 == 0) warp_dot[threadIdx.x / 32] = dot;
        __syncthreads();
        if (threadIdx.x == 0) {
            float s = 0.0f;
            for (int w = 0; w < THREADS / 32; ++w) s += warp_dot[w];
            p_shared = s * scale;
        }
        __syncthreads();
        const float s = p_shared, m_new = fmaxf(m, s);
        const float correction = __expf(m - m_new), p = __expf(s - m_new);
        l = l * correction + p;
        const __half* vr = v + (bh * seq_len + j) * head_dim;
        for (int d = threadIdx.x, t = 0; d < head_dim; d += THREADS, ++t) o[t] = o[t] * correction + p * __half2float(vr[d]);
        m = m_new;
        __syncthreads();
    }
    const size_t slot = bh * splits + split;
    if (threadIdx.x == 0) { part_m[slot] = m; part_l[slot] = l; }
    for (int d = threadIdx.x, t = 0; d < head_dim; d += THREADS, ++t) part_o[slot * head_dim + d] = o[t];
}

extern "C" __global__ void decode_combine(const float* __restrict__ part_m, const float* __restrict__ part_l,
                                          const float* __restrict__ part_o, __half* __restrict__ out, int splits,
                                          int head_dim) {
    const size_t bh = blockIdx.x;
    const int d = threadIdx.x;
    if (d >= head_dim) return;
    float big = -INFINITY;
    for (int s = 0; s < splits; ++s) big = fmaxf(big, part_m[bh * splits + s]);
    float total = 0.0f, acc = 0.0f;
    for (int s = 0; s < splits; ++s) {
        const float m = part_m[bh * splits + s];
        const float w = m == -INFINITY ? 0.0f : __expf(m - big);
        total += part_l[bh * splits + s] * w;
        acc += part_o[(bh * splits + s) * head_dim + d] * w;
    }
    out[bh * head_dim + d] = __float2half(acc / total);
}
