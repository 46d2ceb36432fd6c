// task: rowsum.cu
// expect: output determinism stateful racecheck
// The tree reduction without __syncthreads: warps read partial sums other warps have not written yet.
extern "C" __global__ void rowsum(const float* x, float* y, int rows, int cols) {
    extern __shared__ float red[];
    int row = blockIdx.x;
    if (row >= rows) return;
    const float* xr = x + (size_t)row * cols;
    float sum = 0.0f;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) sum += xr[j];
    red[threadIdx.x] = sum;
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
    }
    if (threadIdx.x == 0) y[row] = red[0];
}
