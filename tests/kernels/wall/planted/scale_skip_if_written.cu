// task: scale.cu
// expect: pass
// The v1 hole: skips its work where the output no longer holds the poison (a previous launch on the same
// buffers wrote it), so v1 timed it doing nothing. v2 poisons every timed buffer set before every sample and
// gives each launch of a sample its own set, so this kernel never gets to skip: it passes, timed doing its
// work (tests/test_wall_v2_gpu.py checks that every timed launch was verified).
extern "C" __global__ void scale(const float* x, float* y, float a, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n && __float_as_uint(y[i]) == 0x7FE5A5A5u) y[i] = a * x[i];
}
