// Argmax of each row (value and index; ties to the smaller index): one warp per row, one read pass,
// value+index butterfly. Launch: block = 32 * WARPS, grid = ceil_div(rows, WARPS).
#ifndef WARPS
#define WARPS 4
#endif

__device__ __forceinline__ bool ranks_before(float v, int i, float bv, int bi) {
    return v > bv || (v == bv && i < bi);
}

extern "C" __global__ void warp_argmax(const float* __restrict__ logits, float* __restrict__ best_value,
                                       int* __restrict__ best_index, int rows, int vocab) {
    const int row = blockIdx.x * WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows) return;
    const float* r = logits + (size_t)row * vocab;
    float bv = -INFINITY;
    int bi = 0x7fffffff;
    for (int j = lane; j < vocab; j += 32)
        if (ranks_before(r[j], j, bv, bi)) { bv = r[j]; bi = j; }
    for (int offset = 16; offset > 0; offset >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, bv, offset);
        const int oi = __shfl_xor_sync(0xffffffffu, bi, offset);
        if (ranks_before(ov, oi, bv, bi)) { bv = ov; bi = oi; }
    }
    if (lane == 0) { best_value[row] = bv; best_index[row] = bi; }
}
