/* kernelpro
[task]
name = "topk"
kernel = "topk_rows"
description = """Top-k selection per row of [BATCH, VOCAB] logits, k = 50 over Llama-3's 128256-token vocabulary at
batch 64: the selection stage of top-k sampling (FlashInfer's top_k_sampling_from_probs). Softmax is
monotone, so the top-k of the logits are the top-k of the probabilities. The first version: one block per
row, K passes, each a block-wide argmax over the elements ranked below the previous winner -- O(K * VOCAB)
reads from L2 with only BATCH blocks on the GPU: latency-leaning.

The output has exactly one right answer: the K largest values in descending order, and their indices,
under the strict total order "larger value first, then smaller index" (ties go to the lower index)."""

[params]
BATCH = 64
VOCAB = 128256   # Llama 3
K = 50

[[args]]
name = "logits"
dtype = "float32"
shape = ["BATCH", "VOCAB"]
intent = "in"

[[args]]
name = "values"
dtype = "float32"
shape = ["BATCH", "K"]
intent = "out"
atol = 0.0   # a selection copies values: exact
rtol = 0.0

[[args]]
name = "indices"
dtype = "int32"
shape = ["BATCH", "K"]
intent = "out"

[[args]]
name = "vocab"
dtype = "int32"
value = "VOCAB"

[[args]]
name = "k"
dtype = "int32"
value = "K"

[launch]
grid = ["BATCH"]
block = ["BLOCK"]

[knobs]
BLOCK = { values = [64, 128, 256, 512, 1024], default = 256 }

[correctness]
# A vocabulary that is not a multiple of the block, one exactly K wide (every element selected), k = 1.
sizes = [{ BATCH = 3, VOCAB = 1000 }, { BATCH = 5, VOCAB = 50 }, { BATCH = 2, VOCAB = 32000, K = 1 }]

[cost]
flops = "BATCH * VOCAB"                  # one comparison per element (a single-pass selection)
bytes = "4 * BATCH * VOCAB + 8 * BATCH * K"  # logits read once; values and indices written once

[comparator]
library = "torch"
expr = "values[...], indices[...] = torch.topk(logits, values.shape[1], dim=1)"
*/
// BLOCK must be a power of two: the argmax halves the active threads each step. Requires vocab >= k.
#ifndef BLOCK
#define BLOCK 256
#endif

// (v, i) ranks before (bv, bi): larger value first, then smaller index.
__device__ __forceinline__ bool ranks_before(float v, int i, float bv, int bi) {
    return v > bv || (v == bv && i < bi);
}

extern "C" __global__ void topk_rows(const float* logits, float* values, int* indices, int vocab, int k) {
    __shared__ float sv[BLOCK];
    __shared__ int si[BLOCK];
    const float* row = logits + (size_t)blockIdx.x * vocab;
    int tid = threadIdx.x;
    float prev_v = INFINITY;  // the last winner: candidates must rank strictly after it
    int prev_i = -1;
    for (int r = 0; r < k; ++r) {
        float best_v = -INFINITY;
        int best_i = 0x7fffffff;
        for (int j = tid; j < vocab; j += BLOCK) {
            float v = row[j];
            bool after_prev = v < prev_v || (v == prev_v && j > prev_i);
            if (after_prev && ranks_before(v, j, best_v, best_i)) {
                best_v = v;
                best_i = j;
            }
        }
        sv[tid] = best_v;
        si[tid] = best_i;
        __syncthreads();
        for (int s = BLOCK / 2; s > 0; s >>= 1) {
            if (tid < s && ranks_before(sv[tid + s], si[tid + s], sv[tid], si[tid])) {
                sv[tid] = sv[tid + s];
                si[tid] = si[tid + s];
            }
            __syncthreads();
        }
        prev_v = sv[0];
        prev_i = si[0];
        if (tid == 0) {
            values[(size_t)blockIdx.x * k + r] = prev_v;
            indices[(size_t)blockIdx.x * k + r] = prev_i;
        }
        __syncthreads();
    }
}
