/* kernelpro
[task]
name = "softmax_tiny"
kernel = "softmax_rows"
description = """Row softmax over 262144 columns: outputs near 4e-6, below the default float32 atol (1e-5), so
only the relative part of the tolerance can tell a right output from zeros."""

[params]
ROWS = 4
COLS = 262144

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
block = ["256"]

[correctness]
sizes = [{ ROWS = 3, COLS = 1000 }]

[cost]
flops = "5 * ROWS * COLS"
bytes = "8 * ROWS * COLS"
*/
#define THREADS 256

extern "C" __global__ void softmax_rows(const float* x, float* y, int rows, int cols) {
    __shared__ float red[THREADS];
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
