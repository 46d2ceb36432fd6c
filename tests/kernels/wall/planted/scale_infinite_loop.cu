// task: scale.cu
// expect: timeout
// Never finishes (volatile stores, so the compiler cannot remove the loop).
extern "C" __global__ void scale(const float* x, float* y, float a, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    volatile float* out = y;
    while (true) {
        if (i < n) out[i] = a * x[i];
    }
}
