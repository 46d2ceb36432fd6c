// task: scale.cu
// expect: canary
// Correct, plus one element written past the end of y.
extern "C" __global__ void scale(const float* x, float* y, float a, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a * x[i];
    if (i == n - 1) y[n] = a * x[i];
}
