// task: rowsum.cu
// expect: pass
// Correct but summed in another order than the reference: strided partial sums, warp shuffles,
// then one value per warp through shared memory.
extern "C" __global__ void rowsum(const float* x, float* y, int rows, int cols) {
    extern __shared__ float red[];
    int row = blockIdx.x;
    if (row >= rows) return;
    const float* xr = x + (size_t)row * cols;
    float sum = 0.0f;
    for (int j = cols - 1 - (int)threadIdx.x; j >= 0; j -= blockDim.x) sum += xr[j];
    for (int offset = 16; offset > 0; offset >>= 1) sum += __shfl_down_sync(0xffffffffu, sum, offset);
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) red[warp] = sum;
    __syncthreads();
    if (warp == 0) {
        int warps = blockDim.x / 32;
        sum = lane < warps ? red[lane] : 0.0f;
        for (int offset = 16; offset > 0; offset >>= 1) sum += __shfl_down_sync(0xffffffffu, sum, offset);
        if (lane == 0) y[row] = sum;
    }
}
