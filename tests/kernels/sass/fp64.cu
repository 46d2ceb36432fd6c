// FP32 kernels, one with an accidental double literal and one with a promoted sqrt.
extern "C" __global__ void half_double_literal(const float* __restrict__ x, float* __restrict__ y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        y[i] = x[i] * 0.5 + 1.0;  // double literals: computed in FP64
    }
}

extern "C" __global__ void half_float_literal(const float* __restrict__ x, float* __restrict__ y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        y[i] = x[i] * 0.5f + 1.0f;
    }
}

extern "C" __global__ void promoted_sqrt(const float* __restrict__ x, float* __restrict__ y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        y[i] = sqrt((double)x[i]);  // float promoted to double
    }
}
