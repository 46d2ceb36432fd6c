// task: scale.cu
// expect: timed-output
// Counts its own launches in a __device__ counter and stops working after the number of launches the wall
// makes before timing (14 on scale.cu: 10 input sets and 4 repeats): the cheat that tells checked launches
// from timed ones by launch count. Every timed launch is verified, so it fails "did its work in 0 of N".
__device__ int launches = 0;
__device__ unsigned int finished = 0;

extern "C" __global__ void scale(const float* x, float* y, float a, int n) {
    if (*(volatile int*)&launches >= 14) return;
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
