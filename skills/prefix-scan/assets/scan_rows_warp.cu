// Inclusive prefix sum of each row of an int matrix: one block per row, tiles of blockDim.x elements,
// warp-shuffle scans, one shared slot per warp, the carry between tiles in a register.
// Launch: grid = rows, block = THREADS (a multiple of 32, at most 1024).
#ifndef THREADS
#define THREADS 256
#endif

__device__ __forceinline__ int warp_inclusive_scan(int v, int lane) {
#pragma unroll
    for (int d = 1; d < 32; d <<= 1) {
        const int up = __shfl_up_sync(0xffffffffu, v, d);
        if (lane >= d) v += up;
    }
    return v;
}

extern "C" __global__ void __launch_bounds__(THREADS) scan_rows_warp(const int* __restrict__ x, int* __restrict__ y,
                                                                    int cols) {
    __shared__ int warp_sum[THREADS / 32];
    const int* xr = x + (size_t)blockIdx.x * cols;
    int* yr = y + (size_t)blockIdx.x * cols;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    int carry = 0;
    for (int base = 0; base < cols; base += THREADS) {
        const int j = base + threadIdx.x;
        int v = warp_inclusive_scan(j < cols ? xr[j] : 0, lane);
        if (lane == 31) warp_sum[warp] = v;
        __syncthreads();
        if (warp == 0) {
            const int total = lane < THREADS / 32 ? warp_sum[lane] : 0;
            const int scanned = warp_inclusive_scan(total, lane);
            if (lane < THREADS / 32) warp_sum[lane] = scanned;
        }
        __syncthreads();
        if (warp > 0) v += warp_sum[warp - 1];
        if (j < cols) yr[j] = carry + v;
        carry += warp_sum[THREADS / 32 - 1];
        __syncthreads();  // warp_sum is rewritten by the next tile
    }
}
