// A dynamically indexed per-thread array lives in local memory (LDL/STL).
extern "C" __global__ void local_array(const float* __restrict__ x, float* __restrict__ y, int n, int steps) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float a[64];
    for (int k = 0; k < 64; ++k) {
        a[k] = x[(i + k) % n];
    }
    float acc = 0.0f;
    for (int k = 0; k < steps; ++k) {
        acc += a[(k * 7 + i) % 64];
    }
    y[i] = acc;
}
