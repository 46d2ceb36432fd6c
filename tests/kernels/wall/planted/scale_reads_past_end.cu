// task: scale.cu
// expect: memcheck
// Reads x[n] (one element past the end) and uses it only when it equals a value the input never holds: the
// outputs are right and nothing is written out of bounds, so only compute-sanitizer memcheck can see it.
extern "C" __global__ void scale(const float* x, float* y, float a, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float past = x[n];
        y[i] = past == 1.2345e38f ? 0.0f : a * x[i];
    }
}
