// Kernels with known resource footprints, for the ptxas parser and compiler tests.
#ifndef BLOCK
#define BLOCK 256
#endif

// 32 x 33 floats of static shared memory = 4224 bytes, and one barrier (__syncthreads).
extern "C" __global__ void transpose32(const float* __restrict__ in, float* __restrict__ out, int n) {
    __shared__ float tile[32][33];
    int x = blockIdx.x * 32 + threadIdx.x;
    int y = blockIdx.y * 32 + threadIdx.y;
    if (x < n && y < n) tile[threadIdx.y][threadIdx.x] = in[y * n + x];
    __syncthreads();
    x = blockIdx.y * 32 + threadIdx.x;
    y = blockIdx.x * 32 + threadIdx.y;
    if (x < n && y < n) out[y * n + x] = tile[threadIdx.x][threadIdx.y];
}

// A dynamically indexed local array: 64 floats = 256 bytes of stack frame.
extern "C" __global__ void local_array(const float* __restrict__ x, float* __restrict__ y, int n, int steps) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float a[64];
    for (int k = 0; k < 64; ++k) a[k] = x[(i + k) % n];
    float acc = 0.0f;
    for (int k = 0; k < steps; ++k) acc += a[(k * 7 + i) % 64];
    y[i] = acc;
}

// The knob BLOCK sizes the shared buffer: BLOCK * 4 bytes.
extern "C" __global__ void block_reduce(const float* __restrict__ x, float* __restrict__ y) {
    __shared__ float s[BLOCK];
    s[threadIdx.x] = x[blockIdx.x * BLOCK + threadIdx.x];
    __syncthreads();
    for (int stride = BLOCK / 2; stride > 0; stride /= 2) {
        if (threadIdx.x < stride) s[threadIdx.x] += s[threadIdx.x + stride];
        __syncthreads();
    }
    if (threadIdx.x == 0) y[blockIdx.x] = s[0];
}

// C++ linkage (mangled symbol), a template and launch bounds.
template <typename T>
__global__ void __launch_bounds__(128, 4) scale(const T* __restrict__ x, T* __restrict__ y, T alpha, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = alpha * x[i];
}
template __global__ void scale<float>(const float*, float*, float, int);
