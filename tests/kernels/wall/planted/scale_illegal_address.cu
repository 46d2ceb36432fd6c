// task: scale.cu
// expect: cuda-error
// Writes through a pointer into unmapped memory: an illegal address that kills the CUDA context.
extern "C" __global__ void scale(const float* x, float* y, float a, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    float* bad = (float*)(0xDEAD00000000ull + (unsigned long long)n * 16);
    if (i < n) bad[i] = a * x[i];
}
