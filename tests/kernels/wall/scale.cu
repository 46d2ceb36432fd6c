/* kernelpro
[task]
name = "scale"
kernel = "scale"
description = "y = a * x. The smallest task with extra sizes: the target of most planted candidates."

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
grid = ["ceil_div(N, BLOCK)"]
block = ["BLOCK"]

[knobs]
BLOCK = { values = [128, 256], default = 256 }

[correctness]
sizes = [{ N = 1000 }, { N = 1 }]

[cost]
flops = "N"
bytes = "8 * N"
*/
#ifndef BLOCK
#define BLOCK 256
#endif

extern "C" __global__ void scale(const float* x, float* y, float a, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        y[i] = a * x[i];
    }
}
