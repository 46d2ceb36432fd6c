/* kernelpro
[task]
name = "scan"
kernel = "scan_rows"
description = """Inclusive prefix sum (cumsum) of 16M int32 values, as 1024 independent rows of 16384 -- the batched
scan behind per-sequence offsets, stream compaction per segment and top-p cumulative sums. One block per
row walks its row in chunks of BLOCK: a Hillis-Steele scan in shared memory (log2(BLOCK) steps, two
barriers each, O(n log n) adds) plus a running carry. Latency-leaning: barriers, not bytes, set the time.

Why rows: a single 16M-long scan needs either a second kernel (scan the block totals, then add them back)
or a single-pass decoupled look-back with a zeroed workspace that every launch must reset -- neither is a
first version, and a task has one entry kernel. Each row's scan is exactly what one block of a textbook
two-kernel scan does."""

[params]
ROWS = 1024
COLS = 16384   # 16M int32: 64 MiB in, 64 MiB out

[[args]]
name = "x"
dtype = "int32"
shape = ["ROWS", "COLS"]
# Bounded so that no prefix overflows int32 at any size below (|sum| <= 1e4 * 1e5 = 1e9 < 2^31).
init = "randint(-10000, 10000)"
intent = "in"

[[args]]
name = "y"
dtype = "int32"
shape = ["ROWS", "COLS"]
intent = "out"

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
# Rows shorter than a block, not a multiple of it, a single column, and a long row (many carries).
sizes = [{ ROWS = 3, COLS = 1000 }, { ROWS = 7, COLS = 1 }, { ROWS = 2, COLS = 100003 }]
# Integer sums are exact in any order: the output must match bit for bit (the default for int32).

[cost]
flops = "ROWS * COLS"            # one add per element (a work-efficient scan)
bytes = "2 * 4 * ROWS * COLS"    # read x once, write y once

[comparator]
library = "cupy"
expr = "cupy.cumsum(x, axis=1, out=y)"
*/
// BLOCK must be a power of two: the Hillis-Steele offsets double each step.
#ifndef BLOCK
#define BLOCK 256
#endif

extern "C" __global__ void scan_rows(const int* x, int* y, int cols) {
    __shared__ int s[BLOCK];
    const int* xr = x + (size_t)blockIdx.x * cols;
    int* yr = y + (size_t)blockIdx.x * cols;
    int tid = threadIdx.x;
    int carry = 0;
    for (int base = 0; base < cols; base += BLOCK) {
        int j = base + tid;
        s[tid] = j < cols ? xr[j] : 0;
        __syncthreads();
        for (int offset = 1; offset < BLOCK; offset <<= 1) {
            int add = tid >= offset ? s[tid - offset] : 0;
            __syncthreads();
            s[tid] += add;
            __syncthreads();
        }
        if (j < cols) yr[j] = carry + s[tid];
        carry += s[BLOCK - 1];
        __syncthreads();
    }
}
