/* kernelpro
[task]
name = "layernorm_two_pass"
kernel = "layernorm_stats"
description = """LayerNorm as two kernels, the way a first CUDA port of a framework op often looks: a statistics
kernel (one block per row: mean, then the variance around it, into mean and rstd) and a normalise kernel (one
thread per element, reading its row's mean and rstd). [ROWS, COLS] float32 activations, 8K tokens x 4096 hidden,
with gamma and beta; mean and rstd are outputs too (what a backward pass needs). Memory-bound: x is read three
times (twice by the statistics, once by the normalise) where a fused kernel reads it once from DRAM."""

[params]
ROWS = 8192
COLS = 4096

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
name = "mean"
dtype = "float32"
shape = ["ROWS"]
intent = "out"

[[args]]
name = "rstd"
dtype = "float32"
shape = ["ROWS"]
intent = "out"

[[args]]
name = "cols"
dtype = "int32"
value = "COLS"

[[launch]]
kernel = "layernorm_stats"
grid = ["ROWS"]
block = ["BLOCK"]
args = ["x", "mean", "rstd", "cols", "0.00001"]

[[launch]]
kernel = "layernorm_apply"
grid = ["ceil_div(COLS, BLOCK)", "ROWS"]
block = ["BLOCK"]
args = ["x", "gamma", "beta", "mean", "rstd", "y", "cols"]

[knobs]
BLOCK = { values = [64, 128, 256, 512, 1024], default = 256 }

[correctness]
sizes = [{ ROWS = 7, COLS = 1000 }, { ROWS = 5, COLS = 1 }, { ROWS = 3, COLS = 12289 }]
atol = 1e-4   # see layernorm.cu: beta can cancel (x - mean) * rstd * gamma, leaving a few ulps of ~100
rtol = 1e-4

[cost]
flops = "8 * ROWS * COLS"
bytes = "4 * (2 * ROWS * COLS + 2 * COLS + 2 * ROWS)"   # x once, y once, gamma and beta, mean and rstd

[comparator]
library = "torch"
expr = "y[...] = torch.nn.functional.layer_norm(x, (x.shape[1],), gamma, beta, 1e-5)"
*/
// BLOCK must be a power of two: the reductions halve the active threads each step.
#ifndef BLOCK
#define BLOCK 256
#endif

extern "C" __global__ void layernorm_stats(const float* x, float* mean, float* rstd, int cols, float eps) {
    __shared__ float red[BLOCK];
    const float* xr = x + (size_t)blockIdx.x * cols;

    float sum = 0.0f;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) sum += xr[j];
    red[threadIdx.x] = sum;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
        __syncthreads();
    }
    float m = red[0] / cols;
    __syncthreads();

    float sq = 0.0f;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        float d = xr[j] - m;
        sq += d * d;
    }
    red[threadIdx.x] = sq;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        mean[blockIdx.x] = m;
        rstd[blockIdx.x] = rsqrtf(red[0] / cols + eps);
    }
}

extern "C" __global__ void layernorm_apply(const float* x, const float* gamma, const float* beta, const float* mean,
                                           const float* rstd, float* y, int cols) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    size_t row = blockIdx.y;
    if (j < cols) y[row * cols + j] = (x[row * cols + j] - mean[row]) * rstd[row] * gamma[j] + beta[j];
}
