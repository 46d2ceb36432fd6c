/* kernelpro
[task]
name = "scale_inflated_cost"
kernel = "scale"
description = "scale.cu with [cost] bytes claiming a million times the real traffic: timings must fail the roofline."

[params]
N = 4096

[[args]]
name = "x"
dtype = "float32"
shape = ["N"]
intent = "in"

[[args]]
name = "y"
dtype = "float32"
shape = ["N"]
intent = "out"

[[args]]
name = "a"
dtype = "float32"
value = "2.5"

[[args]]
name = "n"
dtype = "int32"
value = "N"

[launch]
grid = ["ceil_div(N, 256)"]
block = ["256"]

[cost]
flops = "N"
bytes = "8 * N * 1000000"
*/
extern "C" __global__ void scale(const float* x, float* y, float a, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        y[i] = a * x[i];
    }
}
