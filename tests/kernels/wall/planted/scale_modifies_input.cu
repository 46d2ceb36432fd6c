// task: scale.cu
// expect: input-modified
// Correct output, but it zeroes its (const) input afterwards.
extern "C" __global__ void scale(const float* x, float* y, float a, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        y[i] = a * x[i];
        ((float*)x)[i] = 0.0f;
    }
}
