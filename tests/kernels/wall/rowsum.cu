/* kernelpro
[task]
name = "rowsum"
kernel = "rowsum"
description = "y[r] = sum of row r: one block per row, a shared-memory tree reduction, checked against a serial reference."

[params]
ROWS = 64
COLS = 4096

[[args]]
name = "x"
dtype = "float32"
shape = ["ROWS", "COLS"]
intent = "in"

[[args]]
name = "y"
dtype = "float32"
shape = ["ROWS"]
intent = "out"

[[args]]
name = "rows"
dtype = "int32"
value = "ROWS"

[[args]]
name = "cols"
dtype = "int32"
value = "COLS"

[launch]
grid = ["ROWS"]
block = ["BLOCK"]
shared_mem = "BLOCK * 4"

[knobs]
BLOCK = { values = [128, 256], default = 256 }

[correctness]
reference = "rowsum_ref"
sizes = [{ ROWS = 3, COLS = 1000 }, { ROWS = 5, COLS = 1 }]
# 4096 terms summed in another order: the difference grows like sqrt(COLS) ulps of the partial sums.
atol = 1e-3
rtol = 1e-4

[cost]
flops = "ROWS * COLS"
bytes = "4 * ROWS * (COLS + 1)"
*/
// BLOCK must be a power of two: the reduction halves the active threads each step.
#ifndef BLOCK
#define BLOCK 256
#endif

extern "C" __global__ void rowsum(const float* x, float* y, int rows, int cols) {
    extern __shared__ float red[];
    int row = blockIdx.x;
    if (row >= rows) return;
    const float* xr = x + (size_t)row * cols;
    float sum = 0.0f;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) sum += xr[j];
    red[threadIdx.x] = sum;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) y[row] = red[0];
}

// The obviously correct version: thread 0 of each block sums its row left to right.
extern "C" __global__ void rowsum_ref(const float* x, float* y, int rows, int cols) {
    int row = blockIdx.x;
    if (row >= rows || threadIdx.x != 0) return;
    const float* xr = x + (size_t)row * cols;
    float sum = 0.0f;
    for (int j = 0; j < cols; ++j) sum += xr[j];
    y[row] = sum;
}
