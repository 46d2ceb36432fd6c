// Row softmax, one warp per row, online max/sum in a single read pass, float4 loads when aligned.
// Launch: block = 32 * WARPS threads, grid = ceil_div(rows, WARPS).
#ifndef WARPS
#define WARPS 8
#endif

__device__ __forceinline__ void online_add(float& m, float& s, float x) {
    const float m_new = fmaxf(m, x);
    s = s * __expf(m - m_new) + __expf(x - m_new);
    m = m_new;
}

__device__ __forceinline__ void online_merge(float& m, float& s, float m2, float s2) {
    const float m_new = fmaxf(m, m2);
    if (m_new == -INFINITY) return;  // both partials empty
    s = s * __expf(m - m_new) + s2 * __expf(m2 - m_new);
    m = m_new;
}

extern "C" __global__ void __launch_bounds__(32 * WARPS)
softmax_warp_online(const float* __restrict__ x, float* __restrict__ y, int rows, int cols) {
    const int row = blockIdx.x * WARPS + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= rows) return;
    const float* xr = x + (size_t)row * cols;
    float* yr = y + (size_t)row * cols;
    const bool aligned = ((reinterpret_cast<unsigned long long>(xr) | reinterpret_cast<unsigned long long>(yr)) & 15) == 0;
    const int vec = aligned ? cols / 4 : 0;

    float m = -INFINITY, s = 0.0f;
    for (int v = lane; v < vec; v += 32) {
        const float4 q = reinterpret_cast<const float4*>(xr)[v];
        online_add(m, s, q.x); online_add(m, s, q.y); online_add(m, s, q.z); online_add(m, s, q.w);
    }
    for (int j = vec * 4 + lane; j < cols; j += 32) online_add(m, s, xr[j]);
    for (int offset = 16; offset > 0; offset >>= 1) {
        const float m2 = __shfl_xor_sync(0xffffffffu, m, offset);
        const float s2 = __shfl_xor_sync(0xffffffffu, s, offset);
        online_merge(m, s, m2, s2);
    }
    const float inv = 1.0f / s;
    for (int v = lane; v < vec; v += 32) {
        float4 q = reinterpret_cast<const float4*>(xr)[v];
        q.x = __expf(q.x - m) * inv; q.y = __expf(q.y - m) * inv; q.z = __expf(q.z - m) * inv; q.w = __expf(q.w - m) * inv;
        reinterpret_cast<float4*>(yr)[v] = q;
    }
    for (int j = vec * 4 + lane; j < cols; j += 32) yr[j] = __expf(xr[j] - m) * inv;
}
