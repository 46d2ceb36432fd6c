/* kernelpro
[task]
name = "reduce_sum"
kernel = "reduce_sum"
description = """Sum of 64M floats into one float. The classic first version: each thread loads one element into
shared memory, a tree reduction per block, then one atomicAdd per block into the result. Memory-bound
(256 MiB read), with 262144 blocks each paying a full barrier ladder and a global atomic."""

[params]
N = 67108864  # 64M floats, 256 MiB: far more than L2

[[args]]
name = "x"
dtype = "float32"
shape = ["N"]
# U(-1, 1): the sum is ~N(0, sqrt(N/3)), about 4700 at the benchmark size, so an all-zero or constant
# output fails, and the "tiny" (1e-30) distribution of `random` -- which no absolute tolerance can judge
# once the atomics reorder the sum -- is kept out.
init = "uniform(-1, 1)"
intent = "in"

[[args]]
name = "total"
dtype = "float32"
shape = ["1"]
# atomicAdd accumulates into the result, so it must start at zero: total += sum(x).
init = "zeros"
intent = "inout"

[[args]]
name = "n"
dtype = "int32"
value = "N"

[launch]
grid = ["ceil_div(N, BLOCK)"]
block = ["BLOCK"]

[knobs]
BLOCK = { values = [64, 128, 256, 512, 1024], default = 256 }

[correctness]
sizes = [{ N = 1000003 }, { N = 65537 }]
# The blocks' atomicAdds land in whatever order the hardware schedules them: the reference itself is not
# bit-reproducible, and any other block size or grid changes the summation tree.
deterministic = false
# Reordering a float sum of N terms of magnitude <= 1 moves it by ~ eps * sqrt(N) * |partial sums|; we allow
# atol = sqrt(N) * 2^-12 at the benchmark size (8192 / 4096 = 2.0), i.e. ~4e-4 of the sum's typical size.
# At the extra sizes (|sum| ~ 580 and ~150) a zero output still fails.
atol = 2.0
rtol = 1e-4

[cost]
flops = "N"          # one add per element
bytes = "4 * N + 4"  # read x once, write the total

[comparator]
library = "cupy"
expr = "total[...] += cupy.sum(x)"
*/
// BLOCK must be a power of two: the tree halves the active threads each step.
#ifndef BLOCK
#define BLOCK 256
#endif

extern "C" __global__ void reduce_sum(const float* x, float* total, int n) {
    __shared__ float partial[BLOCK];
    int tid = threadIdx.x;
    int i = blockIdx.x * blockDim.x + tid;
    partial[tid] = i < n ? x[i] : 0.0f;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (tid < s) partial[tid] += partial[tid + s];
        __syncthreads();
    }
    if (tid == 0) atomicAdd(total, partial[0]);
}
