/* kernelpro
[task]
name = "layernorm"
kernel = "layernorm_rows"
description = """LayerNorm over the hidden dimension of [ROWS, COLS] float32 activations (8K tokens x 4096 hidden),
with gamma and beta. One block per row, two passes for the statistics (mean, then the variance around it)
and a third to write: shared-memory tree reductions, scalar loads. Memory-bound."""

[params]
ROWS = 8192   # tokens
COLS = 4096   # hidden size: 128 MiB in, 128 MiB out

[[args]]
name = "x"
dtype = "float32"
shape = ["ROWS", "COLS"]
intent = "in"

[[args]]
name = "gamma"
dtype = "float32"
shape = ["COLS"]
init = "uniform(0.5, 1.5)"
intent = "in"

[[args]]
name = "beta"
dtype = "float32"
shape = ["COLS"]
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
value = "0.00001"

[launch]
grid = ["ROWS"]
block = ["BLOCK"]

[knobs]
BLOCK = { values = [64, 128, 256, 512, 1024], default = 256 }

[correctness]
# Widths that are not multiples of the block, a one-column row (variance 0) and a wide row.
sizes = [{ ROWS = 7, COLS = 1000 }, { ROWS = 5, COLS = 1 }, { ROWS = 3, COLS = 12289 }]
# y = (x - mean) * rstd * gamma + beta: beta can cancel the first term, leaving an absolute error of a few
# ulps of |x - mean| * rstd (up to ~100 for the heavy-tailed inputs), so atol carries those elements.
atol = 1e-4
rtol = 1e-4

[cost]
flops = "8 * ROWS * COLS"                # sum, sub, square+add, sub, mul, fma
bytes = "4 * (2 * ROWS * COLS + 2 * COLS)"  # x read once, y written once, gamma and beta once

[comparator]
library = "torch"
expr = "y[...] = torch.nn.functional.layer_norm(x, (x.shape[1],), gamma, beta, 1e-5)"
*/
// BLOCK must be a power of two: the reductions halve the active threads each step.
#ifndef BLOCK
#define BLOCK 256
#endif

extern "C" __global__ void layernorm_rows(const float* x, const float* gamma, const float* beta, float* y, int cols,
                                          float eps) {
    __shared__ float red[BLOCK];
    const float* xr = x + (size_t)blockIdx.x * cols;
    float* yr = y + (size_t)blockIdx.x * cols;

    float sum = 0.0f;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) sum += xr[j];
    red[threadIdx.x] = sum;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
        __syncthreads();
    }
    float mean = red[0] / cols;
    __syncthreads();

    float sq = 0.0f;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        float d = xr[j] - mean;
        sq += d * d;
    }
    red[threadIdx.x] = sq;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
        __syncthreads();
    }
    float rstd = rsqrtf(red[0] / cols + eps);

    for (int j = threadIdx.x; j < cols; j += blockDim.x) yr[j] = (xr[j] - mean) * rstd * gamma[j] + beta[j];
}
