/* kernelpro
[task]
name = "rmsnorm"
kernel = "rmsnorm_rows"
description = """RMSNorm (Llama) over the hidden dimension of [ROWS, COLS] float32 activations (8K tokens x 4096),
y = x / sqrt(mean(x^2) + eps) * weight. One block per row: a pass for the sum of squares (shared-memory tree
reduction), a pass to write. Memory-bound."""

[params]
ROWS = 8192   # tokens
COLS = 4096   # hidden size

[[args]]
name = "x"
dtype = "float32"
shape = ["ROWS", "COLS"]
intent = "in"

[[args]]
name = "weight"
dtype = "float32"
shape = ["COLS"]
init = "uniform(0.5, 1.5)"
intent = "in"

[[args]]
name = "y"
dtype = "float32"
shape = ["ROWS", "COLS"]
intent = "out"

[[args]]
name = "cols"
dtype = "int32"
value = "COLS"

[[args]]
name = "eps"
dtype = "float32"
value = "0.000001"

[launch]
grid = ["ROWS"]
block = ["BLOCK"]

[knobs]
BLOCK = { values = [64, 128, 256, 512, 1024], default = 256 }

[correctness]
sizes = [{ ROWS = 7, COLS = 1000 }, { ROWS = 5, COLS = 1 }, { ROWS = 3, COLS = 12289 }]
# y is proportional to x (no additive term): the relative tolerance alone judges every element, including the
# tiny (1e-30) input sets where y ~ 1e-27 (x^2 underflows, eps dominates) and any atol would pass zeros.
atol = 0.0
rtol = 1e-4

[cost]
flops = "4 * ROWS * COLS"                  # square+add, then two multiplies
bytes = "4 * (2 * ROWS * COLS + COLS)"     # x read once, y written once, weight once

[comparator]
library = "cupy"
expr = "y[...] = x * cupy.reciprocal(cupy.sqrt((x * x).mean(axis=1, keepdims=True) + 1e-6)) * weight"
*/
// BLOCK must be a power of two: the reduction halves the active threads each step.
#ifndef BLOCK
#define BLOCK 256
#endif

extern "C" __global__ void rmsnorm_rows(const float* x, const float* weight, float* y, int cols, float eps) {
    __shared__ float red[BLOCK];
    const float* xr = x + (size_t)blockIdx.x * cols;
    float* yr = y + (size_t)blockIdx.x * cols;

    float sq = 0.0f;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) sq += xr[j] * xr[j];
    red[threadIdx.x] = sq;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
        __syncthreads();
    }
    float scale = rsqrtf(red[0] / cols + eps);

    for (int j = threadIdx.x; j < cols; j += blockDim.x) yr[j] = xr[j] * scale * weight[j];
}
