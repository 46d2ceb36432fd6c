// Sixteen float4 values live at once: more than 24 registers hold, so -maxrregcount=24 spills.
// pick() is a non-inlined device function with a local array (a stack frame under -G).
__constant__ float coeffs[64];

__device__ __noinline__ float pick(const float* x, int i) {
    float a[32];
    for (int k = 0; k < 32; ++k) a[k] = x[i + k] * coeffs[k];
    return a[(i * 7) % 32] + a[(i * 3) % 32];
}

extern "C" __global__ void heavy(const float4* __restrict__ x, float* __restrict__ y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    float4 v[16];
#pragma unroll
    for (int k = 0; k < 16; ++k) v[k] = x[i + k * n];
    float acc = 0.f;
#pragma unroll
    for (int k = 0; k < 16; ++k)
#pragma unroll
        for (int j = 0; j < 16; ++j) acc += v[k].x * v[j].y + v[k].z * v[j].w;
    y[i] = acc + pick((const float*)x, i);
}
