// task: scale.cu
// expect: lower-precision
// Multiplies in half precision: HMUL2 in the SASS of an FP32 task, and ~1e-3 relative error.
#include <cuda_fp16.h>

extern "C" __global__ void scale(const float* x, float* y, float a, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = __half2float(__hmul(__float2half(x[i]), __float2half(a)));
}
