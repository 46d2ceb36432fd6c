/* kernelpro
[task]
name = "decode_attention"
kernel = "decode_attention"
description = """Single-query (decode-step) attention over a KV cache in half precision: batch 8, 32 heads,
head_dim 128, 4096 cached tokens (Llama-2-7B decoding at 4K context), out = softmax(q K^T / sqrt(d)) V with
FP32 math. The first version: one block per (batch, head), scores for the whole sequence in shared memory,
a two-pass softmax (max, then exp and sum) and a last pass where thread d sums p_j * V[j, d] over j.
Memory-bound: the 512 MiB of K and V are read once per step, ~1 FLOP per byte. In pass 1 each thread reads
its own K row (a 256-byte stride between neighbouring threads)."""

[params]
B = 8
H = 32
S = 4096   # cached tokens; scores live in shared memory: S <= 12000 (48 KB without opt-in)
D = 128    # head dim

[[args]]
name = "q"
dtype = "float16"
shape = ["B", "H", "D"]
intent = "in"

[[args]]
name = "k"
dtype = "float16"
shape = ["B", "H", "S", "D"]
intent = "in"

[[args]]
name = "v"
dtype = "float16"
shape = ["B", "H", "S", "D"]
intent = "in"

[[args]]
name = "out"
dtype = "float16"
shape = ["B", "H", "D"]
intent = "out"

[[args]]
name = "seq_len"
dtype = "int32"
value = "S"

[[args]]
name = "head_dim"
dtype = "int32"
value = "D"

[[args]]
name = "scale"
dtype = "float32"
value = "1 / sqrt(D)"

[launch]
grid = ["B * H"]
block = ["BLOCK"]
shared_mem = "4 * (S + D)"   # scores + q as floats

[knobs]
BLOCK = { values = [64, 128, 256, 512, 1024], default = 256 }

[correctness]
# A single cached token (softmax of one score), a length that is not a multiple of the block, head_dim 64.
sizes = [{ B = 1, H = 3, S = 1 }, { B = 2, H = 3, S = 1000 }, { B = 1, H = 4, S = 777, D = 64 }]
# The wall's per-seed drawn size varies B, H and S; head_dim is a model constant (64 or 128), never odd.
drawn_size = { D = [128, 128] }
# FP32 math in another order moves the result by ~1e-6 relative; the FP16 store then rounds, so two correct
# kernels can differ by one half ulp (2^-10 relative): rtol = 1e-2. Outputs of the tiny (1e-4) inputs fall
# into FP16 subnormals (steps of 6e-8), where only an absolute tolerance works: atol = 1e-6.
atol = 1e-6
rtol = 1e-2

[cost]
flops = "B * H * S * (4 * D + 5)"               # q.k and p.v (2D each), scale, max, exp, sum
bytes = "2 * (2 * B * H * D + 2 * B * H * S * D)"  # q, out once; K and V read once

[comparator]
library = "torch"
expr = "out[...] = torch.nn.functional.scaled_dot_product_attention(q.unsqueeze(2), k, v).squeeze(2)"
*/
#include <cuda_fp16.h>

// BLOCK must be a power of two: the reductions halve the active threads each step.
#ifndef BLOCK
#define BLOCK 256
#endif

extern "C" __global__ void decode_attention(const __half* q, const __half* k, const __half* v, __half* out,
                                            int seq_len, int head_dim, float scale) {
    extern __shared__ float smem[];
    float* scores = smem;            // [seq_len]
    float* qs = smem + seq_len;      // [head_dim]
    __shared__ float red[BLOCK];
    int tid = threadIdx.x;
    size_t bh = blockIdx.x;
    const __half* kb = k + bh * seq_len * head_dim;
    const __half* vb = v + bh * seq_len * head_dim;

    for (int d = tid; d < head_dim; d += BLOCK) qs[d] = __half2float(q[bh * head_dim + d]);
    __syncthreads();

    // Pass 1: scores and their maximum.
    float m = -INFINITY;
    for (int j = tid; j < seq_len; j += BLOCK) {
        float dot = 0.0f;
        for (int d = 0; d < head_dim; ++d) dot += qs[d] * __half2float(kb[(size_t)j * head_dim + d]);
        dot *= scale;
        scores[j] = dot;
        m = fmaxf(m, dot);
    }
    red[tid] = m;
    __syncthreads();
    for (int s = BLOCK / 2; s > 0; s >>= 1) {
        if (tid < s) red[tid] = fmaxf(red[tid], red[tid + s]);
        __syncthreads();
    }
    m = red[0];
    __syncthreads();

    // Pass 2: exponentials and their sum.
    float sum = 0.0f;
    for (int j = tid; j < seq_len; j += BLOCK) {
        float p = expf(scores[j] - m);
        scores[j] = p;
        sum += p;
    }
    red[tid] = sum;
    __syncthreads();
    for (int s = BLOCK / 2; s > 0; s >>= 1) {
        if (tid < s) red[tid] += red[tid + s];
        __syncthreads();
    }
    sum = red[0];

    // Pass 3: out[d] = sum_j p_j V[j, d] / sum.
    for (int d = tid; d < head_dim; d += BLOCK) {
        float acc = 0.0f;
        for (int j = 0; j < seq_len; ++j) acc += scores[j] * __half2float(vb[(size_t)j * head_dim + d]);
        out[bh * head_dim + d] = __float2half(acc / sum);
    }
}
