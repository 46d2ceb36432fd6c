// A candidate for tasks/softmax.cu that owns its launch: one warp per row, eight rows per 256-thread block,
// shuffle reductions (no shared memory, no __syncthreads). Appended to the task's source by the tests.
extern "C" __global__ void softmax_rows_warp(const float* x, float* y, int rows, int cols) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= rows) return;
    const float* xr = x + (size_t)row * cols;
    float* yr = y + (size_t)row * cols;
    float m = -INFINITY;
    for (int j = lane; j < cols; j += 32) m = fmaxf(m, xr[j]);
    for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    float sum = 0.0f;
    for (int j = lane; j < cols; j += 32) sum += expf(xr[j] - m);
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    for (int j = lane; j < cols; j += 32) yr[j] = expf(xr[j] - m) / sum;
}

/* kernelpro launch
[[launch]]
kernel = "softmax_rows_warp"
grid = ["ceil_div(ROWS, 8)"]
block = ["256"]
args = ["x", "y", "rows", "cols"]
*/
