/* kernelpro
[task]
name = "stencil2d"
kernel = "jacobi5"
description = """One Jacobi step of a 5-point stencil on an 8192 x 8192 float32 grid: each interior point becomes the
mean of itself and its four neighbours, boundary points are copied. One thread per point, five scalar
loads each (neighbours come from L1/L2): memory-bound, 5 FLOPs per 8 bytes of DRAM traffic."""

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
grid = ["ceil_div(COLS, BLOCK_X)", "ceil_div(ROWS, BLOCK_Y)"]
block = ["BLOCK_X", "BLOCK_Y"]

[knobs]
BLOCK_X = { values = [16, 32, 64, 128], default = 32 }
BLOCK_Y = { values = [1, 2, 4, 8, 16], default = 8 }

[tuning]
constraints = ["BLOCK_X * BLOCK_Y <= 1024", "BLOCK_X * BLOCK_Y >= 64"]

[correctness]
# Odd shapes, a grid with no interior (2 rows), a single column.
sizes = [{ ROWS = 1000, COLS = 1001 }, { ROWS = 2, COLS = 517 }, { ROWS = 333, COLS = 1 }]
# Five terms summed in another order (or fused into FMAs) differ by a few ulps of the largest term (up to
# 100 for the heavy-tailed inputs) where the mean cancels to near zero: atol covers that, rtol the rest.
atol = 2e-5
rtol = 1e-4

[cost]
flops = "5 * ROWS * COLS"        # four adds and a multiply per point
bytes = "2 * 4 * ROWS * COLS"    # read x once, write y once

[comparator]
library = "cupy"
expr = "y[...] = x; y[1:-1, 1:-1] = 0.2 * (x[1:-1, 1:-1] + x[:-2, 1:-1] + x[2:, 1:-1] + x[1:-1, :-2] + x[1:-1, 2:])"
*/
#ifndef BLOCK_X
#define BLOCK_X 32
#endif
#ifndef BLOCK_Y
#define BLOCK_Y 8
#endif

extern "C" __global__ void jacobi5(const float* x, float* y, int rows, int cols) {
    int j = blockIdx.x * BLOCK_X + threadIdx.x;
    int i = blockIdx.y * BLOCK_Y + threadIdx.y;
    if (i >= rows || j >= cols) return;
    size_t idx = (size_t)i * cols + j;
    if (i == 0 || j == 0 || i == rows - 1 || j == cols - 1) {
        y[idx] = x[idx];
    } else {
        y[idx] = 0.2f * (x[idx] + x[idx - cols] + x[idx + cols] + x[idx - 1] + x[idx + 1]);
    }
}
