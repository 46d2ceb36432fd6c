/* kernelpro
[task]
name = "hgemm"
kernel = "hgemm_naive"
description = """C = A @ B in half precision with FP32 accumulation, row-major, M = N = K = 4096 (an LLM projection
at 4K tokens). The first version: one thread per output, the K loop loading __half scalars from global
memory and multiplying in FP32 -- no tensor cores, which run FP16 matmul at ~15x the FP32 rate on H100."""

[params]
M = 4096
N = 4096
K = 4096

[[args]]
name = "A"
dtype = "float16"
shape = ["M", "K"]
intent = "in"

[[args]]
name = "B"
dtype = "float16"
shape = ["K", "N"]
intent = "in"

[[args]]
name = "C"
dtype = "float16"
shape = ["M", "N"]
intent = "out"

[[args]]
name = "M"
dtype = "int32"
value = "M"

[[args]]
name = "N"
dtype = "int32"
value = "N"

[[args]]
name = "K"
dtype = "int32"
value = "K"

[launch]
grid = ["ceil_div(N, BLOCK_X)", "ceil_div(M, BLOCK_Y)"]
block = ["BLOCK_X", "BLOCK_Y"]

[knobs]
BLOCK_X = { values = [8, 16, 32, 64], default = 16 }
BLOCK_Y = { values = [1, 2, 4, 8, 16, 32], default = 16 }

[tuning]
constraints = ["BLOCK_X * BLOCK_Y <= 1024", "BLOCK_X * BLOCK_Y >= 64"]

[correctness]
# Shapes that are not multiples of any tile (16, 64, 128) on all three axes, and a single row.
sizes = [{ M = 127, N = 65, K = 33 }, { M = 1, N = 1000, K = 517 }, { M = 200, N = 136, K = 4104 }]
# Outputs are sums of K = 4096 unit-variance products (|C| ~ 64): FP32 accumulation in another order moves
# them by ~1e-5 relative, then the FP16 store rounds, so two correct kernels may differ by one half ulp
# (2^-10 relative). rtol = 1e-2 allows that with margin while an FP16 *accumulator* (error ~ sqrt(K) ulps
# of |C|, i.e. several percent) fails; atol covers outputs that cancel to near zero.
atol = 1e-2
rtol = 1e-2

[cost]
flops = "2 * M * N * K"
bytes = "2 * (M * K + K * N + M * N)"

[comparator]
library = "cupy"
expr = "cupy.matmul(A, B, out=C)"
*/
#include <cuda_fp16.h>

#ifndef BLOCK_X
#define BLOCK_X 16
#endif
#ifndef BLOCK_Y
#define BLOCK_Y 16
#endif

extern "C" __global__ void hgemm_naive(const __half* A, const __half* B, __half* C, int M, int N, int K) {
    int col = blockIdx.x * BLOCK_X + threadIdx.x;
    int row = blockIdx.y * BLOCK_Y + threadIdx.y;
    if (row < M && col < N) {
        float acc = 0.0f;
        for (int k = 0; k < K; ++k) {
            acc += __half2float(A[(size_t)row * K + k]) * __half2float(B[(size_t)k * N + col]);
        }
        C[(size_t)row * N + col] = __float2half(acc);
    }
}
