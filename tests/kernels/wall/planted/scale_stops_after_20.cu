// task: scale.cu
// expect: timed-output
// Correct for its first 20 launches (more than the 14 the wall's checks before timing use), then returns at
// once: v1 only caught it after timing; v2 verifies every timed launch ("did its work in 6 of N").
__device__ int launches = 0;
__device__ unsigned int finished = 0;

extern "C" __global__ void scale(const float* x, float* y, float a, int n) {
    if (*(volatile int*)&launches >= 20) return;
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a * x[i];
    __syncthreads();
    if (threadIdx.x == 0) {
        __threadfence();
        if (atomicAdd(&finished, 1u) == gridDim.x - 1) {
            launches += 1;
            finished = 0;
        }
    }
}
