// y = gelu(x + bias[col]) + residual over [rows, cols] fp32: what used to be three kernels (bias add, GELU,
// residual add) is one pass with no intermediate tensor. Launch: a few waves of 256-thread blocks.
__device__ __forceinline__ float gelu_tanh(float v) {
    return 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
}

extern "C" __global__ void bias_gelu_residual(const float* __restrict__ x, const float* __restrict__ bias,
                                              const float* __restrict__ residual, float* __restrict__ y, int rows,
                                              int cols) {
    const long long n = (long long)rows * cols;
    const long long tid = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long stride = (long long)blockDim.x * gridDim.x;
    const bool aligned = cols % 4 == 0 && ((reinterpret_cast<unsigned long long>(x) | reinterpret_cast<unsigned long long>(bias) |
                                           reinterpret_cast<unsigned long long>(residual) |
                                           reinterpret_cast<unsigned long long>(y)) & 15) == 0;
    const long long vectors = aligned ? n / 4 : 0;
    for (long long v = tid; v < vectors; v += stride) {
        const float4 a = reinterpret_cast<const float4*>(x)[v];
        const float4 b = reinterpret_cast<const float4*>(bias)[(v * 4 % cols) / 4];
        const float4 r = reinterpret_cast<const float4*>(residual)[v];
        reinterpret_cast<float4*>(y)[v] = make_float4(gelu_tanh(a.x + b.x) + r.x, gelu_tanh(a.y + b.y) + r.y,
                                                      gelu_tanh(a.z + b.z) + r.z, gelu_tanh(a.w + b.w) + r.w);
    }
    for (long long i = vectors * 4 + tid; i < n; i += stride) y[i] = gelu_tanh(x[i] + bias[i % cols]) + residual[i];
}
