/* kernelpro
[task]
name = "softmax"
kernel = "softmax_rows"
description = """Row softmax of a [ROWS, COLS] float matrix, as over an LLM vocabulary (32K logits per row).
One block per row, three passes over the row (max, sum of exp, write), shared-memory tree reductions."""

[params]
ROWS = 1024
COLS = 32768

[[args]]
name = "x"
dtype = "float32"
shape = ["ROWS", "COLS"]
intent = "in"

[[args]]
name = "y"
dtype = "float32"
shape = ["ROWS", "COLS"]
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

[knobs]
BLOCK = { values = [64, 128, 256, 512, 1024], default = 256 }

[correctness]
# Odd widths (not multiples of the block) and a single-column row.
sizes = [{ ROWS = 7, COLS = 1000 }, { ROWS = 33, COLS = 1 }, { ROWS = 3, COLS = 100003 }]
# Outputs are ~1/COLS in size: the relative term, not atol, is what must hold.
atol = 1e-9
rtol = 1e-4

[cost]
flops = "5 * ROWS * COLS"          # max, sub, exp, add, div per element
bytes = "2 * 4 * ROWS * COLS"      # read x once, write y once

[comparator]
library = "cupy"
expr = "cupyx.scipy.special.softmax(x, axis=1)"
*/
// BLOCK must be a power of two: the reductions halve the active threads each step.
#ifndef BLOCK
#define BLOCK 256
#endif

extern "C" __global__ void softmax_rows(const float* x, float* y, int rows, int cols) {
    __shared__ float red[BLOCK];
    int row = blockIdx.x;
    if (row >= rows) return;
    const float* xr = x + (size_t)row * cols;
    float* yr = y + (size_t)row * cols;

    float m = -INFINITY;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) m = fmaxf(m, xr[j]);
    red[threadIdx.x] = m;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) red[threadIdx.x] = fmaxf(red[threadIdx.x], red[threadIdx.x + s]);
        __syncthreads();
    }
    m = red[0];
    __syncthreads();

    float sum = 0.0f;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) sum += expf(xr[j] - m);
    red[threadIdx.x] = sum;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
        __syncthreads();
    }
    sum = red[0];

    for (int j = threadIdx.x; j < cols; j += blockDim.x) yr[j] = expf(xr[j] - m) / sum;
}
