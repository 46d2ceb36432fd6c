// 256-bin histogram of bytes: shared-memory bins per block, 16-byte loads, one global atomic per non-empty
// bin per block. bins must start at zero. Launch: a few waves of 256-thread blocks.
#define BINS 256

extern "C" __global__ void histogram_private(const unsigned char* __restrict__ data, unsigned int* __restrict__ bins,
                                             int n) {
    __shared__ unsigned int local[BINS];
    for (int b = threadIdx.x; b < BINS; b += blockDim.x) local[b] = 0;
    __syncthreads();
    const int tid = blockIdx.x * blockDim.x + threadIdx.x, stride = blockDim.x * gridDim.x;
    const int vectors = (reinterpret_cast<unsigned long long>(data) & 15) == 0 ? n / 16 : 0;
    for (int v = tid; v < vectors; v += stride) {
        __align__(16) unsigned char bytes[16];
        *reinterpret_cast<uint4*>(bytes) = reinterpret_cast<const uint4*>(data)[v];
#pragma unroll
        for (int k = 0; k < 16; ++k) atomicAdd(&local[bytes[k]], 1u);
    }
    for (int i = vectors * 16 + tid; i < n; i += stride) atomicAdd(&local[data[i]], 1u);
    __syncthreads();
    for (int b = threadIdx.x; b < BINS; b += blockDim.x)
        if (local[b] != 0) atomicAdd(&bins[b], local[b]);
}
