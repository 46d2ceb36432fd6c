// task: scale.cu
// expect: stateful
// Computes on its first launch only: the last block to finish sets a __device__ flag that makes
// every later launch return at once (so the first launch is entirely correct).
__device__ int done = 0;
__device__ unsigned int finished = 0;

extern "C" __global__ void scale(const float* x, float* y, float a, int n) {
    if (*(volatile int*)&done) return;
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a * x[i];
    __syncthreads();
    if (threadIdx.x == 0) {
        __threadfence();
        if (atomicAdd(&finished, 1u) == gridDim.x - 1) {
            done = 1;
            finished = 0;
        }
    }
}
