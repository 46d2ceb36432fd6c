/* kernelpro
[task]
name = "vector_add"
kernel = "vector_add"
description = "c = a + b over 64M floats. Purely memory-bound: 12 bytes of DRAM traffic per FLOP."

[params]
N = 67108864  # 64M elements, 768 MiB moved: large enough that L2 (50 MB on H100) cannot hold it

[[args]]
name = "a"
dtype = "float32"
shape = ["N"]
intent = "in"

[[args]]
name = "b"
dtype = "float32"
shape = ["N"]
intent = "in"

[[args]]
name = "c"
dtype = "float32"
shape = ["N"]
intent = "out"

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
sizes = [{ N = 1000003 }, { N = 17 }]

[cost]
flops = "N"
bytes = "12 * N"

[comparator]
library = "cupy"
expr = "cupy.add(a, b, out=c)"
*/
// The first version anyone writes: one thread per element, scalar loads.
#ifndef BLOCK
#define BLOCK 256
#endif

extern "C" __global__ void vector_add(const float* a, const float* b, float* c, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        c[i] = a[i] + b[i];
    }
}
