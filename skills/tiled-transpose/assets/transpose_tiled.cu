// y[cols, rows] = x[rows, cols]^T through a padded 32x33 shared tile. Launch: block (32, 8),
// grid (ceil_div(cols, 32), ceil_div(rows, 32)).
#define TILE 32
#define ROWS_PER_PASS 8

extern "C" __global__ void transpose_tiled(const float* __restrict__ x, float* __restrict__ y, int rows, int cols) {
    __shared__ float tile[TILE][TILE + 1];
    const int tx = threadIdx.x, ty = threadIdx.y;
    int col = blockIdx.x * TILE + tx;
    int row = blockIdx.y * TILE + ty;
#pragma unroll
    for (int k = 0; k < TILE; k += ROWS_PER_PASS)
        if (row + k < rows && col < cols) tile[ty + k][tx] = x[(size_t)(row + k) * cols + col];
    __syncthreads();
    col = blockIdx.y * TILE + tx;  // output column = input row
    row = blockIdx.x * TILE + ty;  // output row = input column
#pragma unroll
    for (int k = 0; k < TILE; k += ROWS_PER_PASS)
        if (row + k < cols && col < rows) y[(size_t)(row + k) * rows + col] = tile[tx][ty + k];
}
