/* kernelpro
[task]
name = "sgemm"
kernel = "sgemm_naive"
description = """C = A @ B in FP32, row-major, M = N = K = 4096. The textbook first version: one thread per
output element, the K loop reading A and B straight from global memory. Compute-bound once tiled."""

[params]
M = 4096
N = 4096
K = 4096

[[args]]
name = "A"
dtype = "float32"
shape = ["M", "K"]
intent = "in"

[[args]]
name = "B"
dtype = "float32"
shape = ["K", "N"]
intent = "in"

[[args]]
name = "C"
dtype = "float32"
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
sizes = [{ M = 127, N = 65, K = 33 }, { M = 1, N = 1000, K = 517 }]
# K = 4096 products summed in a different order: errors grow like sqrt(K) ulps.
atol = 1e-3
rtol = 1e-4

[cost]
flops = "2 * M * N * K"
bytes = "4 * (M * K + K * N + M * N)"

[comparator]
library = "cupy"
expr = "cupy.matmul(A, B, out=C)"
*/
#ifndef BLOCK_X
#define BLOCK_X 16
#endif
#ifndef BLOCK_Y
#define BLOCK_Y 16
#endif

extern "C" __global__ void sgemm_naive(const float* A, const float* B, float* C, int M, int N, int K) {
    int col = blockIdx.x * blockDim.x + threadIdx.x;
    int row = blockIdx.y * blockDim.y + threadIdx.y;
    if (row < M && col < N) {
        float acc = 0.0f;
        for (int k = 0; k < K; ++k) {
            acc += A[row * K + k] * B[k * N + col];
        }
        C[row * N + col] = acc;
    }
}
