// Sum of n floats into *total (which must start at 0): grid-stride float4 accumulation, warp shuffles,
// one partial per warp in shared memory, one atomicAdd per block. Launch ~4 blocks per SM of 256 threads.
#ifndef THREADS
#define THREADS 256
#endif

__device__ __forceinline__ float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
    return v;
}

extern "C" __global__ void __launch_bounds__(THREADS) block_reduce_sum(const float* __restrict__ x,
                                                                      float* __restrict__ total, int n) {
    __shared__ float partial[THREADS / 32];
    const int tid = blockIdx.x * blockDim.x + threadIdx.x;
    const int stride = blockDim.x * gridDim.x;
    float acc = 0.0f;
    const int vectors = (reinterpret_cast<unsigned long long>(x) & 15) == 0 ? n / 4 : 0;
    for (int v = tid; v < vectors; v += stride) {
        const float4 q = reinterpret_cast<const float4*>(x)[v];
        acc += (q.x + q.y) + (q.z + q.w);
    }
    for (int i = vectors * 4 + tid; i < n; i += stride) acc += x[i];

    acc = warp_sum(acc);
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    if (lane == 0) partial[warp] = acc;
    __syncthreads();
    if (warp == 0) {
        acc = lane < THREADS / 32 ? partial[lane] : 0.0f;
        acc = warp_sum(acc);
        if (lane == 0) atomicAdd(total, acc);
    }
}
