// task: scale.cu
// expect: memcheck canary cuda-error output
// At the benchmark size only, writes one float 256 KiB past the end of y: beyond the wall's 64 KiB guard
// zone, into whatever the pool put there. memcheck at the full size (v2) sees it.
extern "C" __global__ void scale(const float* x, float* y, float a, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a * x[i];
    if (n == 4096 && i == 0) {
        float* far = y + n + 65536;
        *far = *far;  // rewrite the same value: no guard or neighbour ever changes
    }
}
