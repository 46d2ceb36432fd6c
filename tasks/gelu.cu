/* kernelpro
[task]
name = "gelu"
kernel = "gelu_tanh"
description = """Elementwise tanh-approximation GELU, y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), over the
[8192, 11008] float32 activation of an LLM MLP (Llama-7B intermediate size, 8K tokens). One thread per element,
scalar loads: memory-bound, about 10 FLOPs per 8 bytes."""

[params]
ROWS = 8192     # tokens
COLS = 11008    # MLP intermediate size: 90M elements, 720 MiB moved

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
name = "n"
dtype = "int32"
value = "ROWS * COLS"

[launch]
grid = ["ceil_div(ROWS * COLS, BLOCK)"]
block = ["BLOCK"]

[knobs]
BLOCK = { values = [64, 128, 256, 512, 1024], default = 256 }

[correctness]
# Odd totals (not a multiple of any block) and a single element.
sizes = [{ ROWS = 3, COLS = 1000003 }, { ROWS = 1, COLS = 1 }]
# tanhf is accurate to ~2 ulps; the hardware tanh.approx.f32 (-use_fast_math) is ~2^-11 relative and must
# not pass silently: that is a precision decision, not an optimization.
atol = 1e-6
rtol = 1e-4

[cost]
flops = "10 * ROWS * COLS"         # cube (2), fma, scale, tanh (counted as 4), add, 2 multiplies ~ 10
bytes = "2 * 4 * ROWS * COLS"      # read x once, write y once

[comparator]
library = "torch"
expr = 'y[...] = torch.nn.functional.gelu(x, approximate="tanh")'
*/
// The first version: one thread per element, the formula as written in the paper.
#ifndef BLOCK
#define BLOCK 256
#endif

extern "C" __global__ void gelu_tanh(const float* x, float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float v = x[i];
        float inner = 0.7978845608028654f * (v + 0.044715f * v * v * v);
        y[i] = 0.5f * v * (1.0f + tanhf(inner));
    }
}
