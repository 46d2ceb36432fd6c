// task: scale.cu
// expect: pass
// Correct: a grid-stride loop with two elements per thread and the product as x * a.
extern "C" __global__ void scale(const float* x, float* y, float a, int n) {
    for (int i = 2 * (blockIdx.x * blockDim.x + threadIdx.x); i < n; i += 2 * gridDim.x * blockDim.x) {
        y[i] = x[i] * a;
        if (i + 1 < n) y[i + 1] = x[i + 1] * a;
    }
}
