/* kernelpro
[task]
name = "transpose"
kernel = "transpose_naive"
description = """Out-of-place transpose of an 8192 x 8192 float32 matrix. The first version: one thread per element,
reading a row (coalesced) and writing a column (each warp's 32 stores land in 32 different 32-byte sectors).
Pure data movement: the uncoalesced writes, not the bytes, set the time."""

[params]
ROWS = 8192
COLS = 8192   # 256 MiB in, 256 MiB out

[[args]]
name = "x"
dtype = "float32"
shape = ["ROWS", "COLS"]
intent = "in"

[[args]]
name = "y"
dtype = "float32"
shape = ["COLS", "ROWS"]
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
grid = ["ceil_div(COLS, BLOCK_X)", "ceil_div(ROWS, BLOCK_Y)"]
block = ["BLOCK_X", "BLOCK_Y"]

[knobs]
BLOCK_X = { values = [8, 16, 32, 64], default = 32 }
BLOCK_Y = { values = [1, 2, 4, 8, 16, 32], default = 8 }

[tuning]
constraints = ["BLOCK_X * BLOCK_Y <= 1024", "BLOCK_X * BLOCK_Y >= 64"]

[correctness]
# Non-square, odd shapes (partial tiles on both edges) and a single row.
sizes = [{ ROWS = 1000, COLS = 33 }, { ROWS = 1, COLS = 4097 }, { ROWS = 517, COLS = 1023 }]
# A transpose moves bits: the output must equal the input exactly.
atol = 0.0
rtol = 0.0

[cost]
flops = "0"
bytes = "2 * 4 * ROWS * COLS"   # read x once, write y once

[comparator]
library = "cupy"
expr = "y[...] = x.T"
*/
#ifndef BLOCK_X
#define BLOCK_X 32
#endif
#ifndef BLOCK_Y
#define BLOCK_Y 8
#endif

extern "C" __global__ void transpose_naive(const float* x, float* y, int rows, int cols) {
    int col = blockIdx.x * BLOCK_X + threadIdx.x;
    int row = blockIdx.y * BLOCK_Y + threadIdx.y;
    if (row < rows && col < cols) {
        y[(size_t)col * rows + row] = x[(size_t)row * cols + col];
    }
}
