// 5-point Jacobi step, y = 0.2 * (centre + 4 neighbours), boundary copied: each thread computes ROWS_PER_THREAD
// consecutive rows of one column and keeps the row above, its row and the row below in registers.
// Launch: block (32, 8), grid (ceil_div(cols, 32), ceil_div(rows, 8 * ROWS_PER_THREAD)).
#define ROWS_PER_THREAD 4

extern "C" __global__ void jacobi5_coarsened(const float* __restrict__ x, float* __restrict__ y, int rows, int cols) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    const int i0 = (blockIdx.y * blockDim.y + threadIdx.y) * ROWS_PER_THREAD;
    if (j >= cols || i0 >= rows) return;
    float up = i0 > 0 ? x[(size_t)(i0 - 1) * cols + j] : 0.0f;
    float mid = x[(size_t)i0 * cols + j];
#pragma unroll
    for (int r = 0; r < ROWS_PER_THREAD; ++r) {
        const int i = i0 + r;
        if (i >= rows) break;
        const float down = i + 1 < rows ? x[(size_t)(i + 1) * cols + j] : 0.0f;
        const size_t idx = (size_t)i * cols + j;
        if (i == 0 || j == 0 || i == rows - 1 || j == cols - 1) {
            y[idx] = mid;
        } else {
            y[idx] = 0.2f * (mid + up + down + x[idx - 1] + x[idx + 1]);
        }
        up = mid;
        mid = down;
    }
}
