/* kernelpro
[task]
name = "total"
kernel = "total"
description = "out[0] = sum of x: a one-element output, the easiest to fake with a constant."

[params]
N = 4096

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
name = "n"
dtype = "int32"
value = "N"

[launch]
grid = ["1"]
block = ["256"]

[correctness]
atol = 1e-3
rtol = 1e-4

[cost]
flops = "N"
bytes = "4 * (N + 1)"
*/
#define THREADS 256

extern "C" __global__ void total(const float* x, float* out, int n) {
    __shared__ float red[THREADS];
    float sum = 0.0f;
    for (int j = threadIdx.x; j < n; j += blockDim.x) sum += x[j];
    red[threadIdx.x] = sum;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[0] = red[0];
}
