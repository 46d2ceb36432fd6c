// 64 KiB of static shared memory: more than the 48 KiB static limit, so ptxas rejects it.
extern "C" __global__ void too_big(float* y) {
    __shared__ float s[16384];
    s[threadIdx.x] = y[threadIdx.x];
    __syncthreads();
    y[threadIdx.x] = s[threadIdx.x ^ 1];
}
