/* kernelpro
[task]
name = "histogram"
kernel = "histogram256"
description = """256-bin histogram of 64M bytes (e.g. image intensities, token byte values). The first version: one
thread per byte, one global atomicAdd per element into 256 counters -- every warp's atomics collide on a
handful of addresses, so L2 atomic throughput, not DRAM bandwidth, sets the time."""

[params]
N = 67108864   # 64M bytes in
BINS = 256

[[args]]
name = "data"
dtype = "uint8"
shape = ["N"]
init = "randint(0, 256)"   # every bin reachable, uniformly: the contention the naive kernel meets in practice
intent = "in"

[[args]]
name = "bins"
dtype = "uint32"
shape = ["BINS"]
init = "zeros"     # the kernel accumulates: bins += histogram(data)
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
sizes = [{ N = 1000003 }, { N = 17 }]
# Counts are integers: exact (the default for uint32), and integer atomics give the same counts in any order.

[cost]
flops = "N"                    # one increment per element
bytes = "N + 2 * 4 * BINS"     # read the data once, the counters once each way

[comparator]
library = "cupy"
expr = "bins[...] += cupy.bincount(data, minlength=256).astype(cupy.uint32)"
*/
// BINS is fixed at 256 by the uint8 data: values index the counters directly.
#ifndef BLOCK
#define BLOCK 256
#endif

extern "C" __global__ void histogram256(const unsigned char* data, unsigned int* bins, int n) {
    int i = blockIdx.x * BLOCK + threadIdx.x;
    if (i < n) {
        atomicAdd(&bins[data[i]], 1u);
    }
}
