/* kernelpro
[task]
name = "silu_mul"
kernel = "silu_mul"
description = """SwiGLU's activation, y = silu(gate) * up = gate / (1 + exp(-gate)) * up, over [8192, 11008] float32
(8K tokens, Llama-7B MLP width). Written from the framework expression: the correctness reference is the
[comparator] (CuPy) itself, not a CUDA kernel. One thread per element, scalar loads: memory-bound."""

[params]
ROWS = 8192
COLS = 11008

[[args]]
name = "gate"
dtype = "float32"
shape = ["ROWS", "COLS"]
intent = "in"

[[args]]
name = "up"
dtype = "float32"
shape = ["ROWS", "COLS"]
intent = "in"

[[args]]
name = "y"
dtype = "float32"
shape = ["ROWS", "COLS"]
intent = "out"

[[args]]
name = "n"
dtype = "int32"
value = "ROWS * COLS"

[launch]
grid = ["ceil_div(ROWS * COLS, BLOCK)"]
block = ["BLOCK"]

[knobs]
BLOCK = { values = [64, 128, 256, 512, 1024], default = 256 }

[correctness]
reference = "comparator"
sizes = [{ ROWS = 3, COLS = 1000003 }, { ROWS = 1, COLS = 1 }]
atol = 1e-6
rtol = 1e-5   # expf is within 2 ulps of CuPy's exp

[cost]
flops = "5 * ROWS * COLS"         # negate, exp (counted as 1), add, divide, multiply
bytes = "3 * 4 * ROWS * COLS"     # read gate and up, write y

[comparator]
library = "cupy"
expr = "y[...] = gate / (1 + cupy.exp(-gate)) * up"
*/
#ifndef BLOCK
#define BLOCK 256
#endif

extern "C" __global__ void silu_mul(const float* gate, const float* up, float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}
