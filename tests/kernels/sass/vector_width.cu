// Scalar vs float4 copy-and-scale: the SASS acceptance pair for load/store widths.
extern "C" __global__ void scale_scalar(const float* __restrict__ x, float* __restrict__ y, float a, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        y[i] = a * x[i];
    }
}

extern "C" __global__ void scale_float4(const float4* __restrict__ x, float4* __restrict__ y, float a, int n4) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n4) {
        float4 v = x[i];
        y[i] = make_float4(a * v.x, a * v.y, a * v.z, a * v.w);
    }
}

// Grid-stride loop: the scalar load and store sit inside a loop body.
extern "C" __global__ void scale_scalar_loop(const float* __restrict__ x, float* __restrict__ y, float a, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
        y[i] = a * x[i];
    }
}
