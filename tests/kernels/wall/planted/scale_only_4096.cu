// task: scale.cu
// expect: output
// Correct only at the benchmark size: the extra correctness sizes catch it.
extern "C" __global__ void scale(const float* x, float* y, float a, int n) {
    if (n != 4096) return;
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a * x[i];
}
