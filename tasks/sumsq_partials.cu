/* kernelpro
[task]
name = "sumsq_partials"
kernel = "sumsq_partial"
description = """Sum of squares of a float32 vector of 32M elements (the squared L2 norm a gradient-clipping step
needs), in the two-kernel shape of a first version: two blocks per SM each accumulate a grid-stride slice and
write one partial to a scratch buffer, then one thread adds the partials in order. Deterministic; memory-bound."""

[params]
N = 33554432   # 32M elements: 128 MiB read

[[args]]
name = "x"
dtype = "float32"
shape = ["N"]
intent = "in"

[[args]]
name = "out"
dtype = "float32"
shape = ["1"]
intent = "out"

[[args]]
name = "partials"
dtype = "float32"
shape = ["2 * SM_COUNT"]      # one per block of the first kernel: device-dependent
intent = "scratch"

[[args]]
name = "n"
dtype = "int64"
value = "N"

[[launch]]
kernel = "sumsq_partial"
grid = ["2 * SM_COUNT"]
block = ["BLOCK"]
args = ["x", "partials", "n"]

[[launch]]
kernel = "sum_partials"
grid = ["1"]
block = ["1"]
args = ["partials", "out", "2 * SM_COUNT"]

[knobs]
BLOCK = { values = [128, 256, 512, 1024], default = 256 }

[correctness]
sizes = [{ N = 1000003 }, { N = 17 }, { N = 1 }]
rtol = 1e-4   # another block size is another summation order

[cost]
flops = "2 * N"
bytes = "4 * N"

[comparator]
library = "cupy"
expr = "out[...] = cupy.sum(x * x)"
*/
// BLOCK must be a power of two: the reduction halves the active threads each step.
#ifndef BLOCK
#define BLOCK 256
#endif

extern "C" __global__ void sumsq_partial(const float* x, float* partials, long long n) {
    __shared__ float red[BLOCK];
    float s = 0.0f;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        s += x[i] * x[i];
    red[threadIdx.x] = s;
    __syncthreads();
    for (int k = blockDim.x / 2; k > 0; k >>= 1) {
        if (threadIdx.x < k) red[threadIdx.x] += red[threadIdx.x + k];
        __syncthreads();
    }
    if (threadIdx.x == 0) partials[blockIdx.x] = red[0];
}

extern "C" __global__ void sum_partials(const float* partials, float* out, int count) {
    float s = 0.0f;
    for (int i = 0; i < count; ++i) s += partials[i];
    out[0] = s;
}
