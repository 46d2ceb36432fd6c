// C[M,N] (float) = A[M,K] @ B[K,N], half row-major inputs, with WMMA 16x16x16 and FP32 accumulation.
// One warp per 16x16 output tile, 4 warps per block (a 32x32 block tile). Launch: block 128,
// grid (ceil_div(N, 32), ceil_div(M, 32)). Edges are zero-padded in shared memory.
#include <cuda_fp16.h>
#include <mma.h>
using namespace nvcuda;

#define WT 16

extern "C" __global__ void hgemm_wmma(const __half* __restrict__ A, const __half* __restrict__ B,
                                      float* __restrict__ C, int M, int N, int K) {
    __shared__ __align__(32) __half As[4][WT * WT];
    __shared__ __align__(32) __half Bs[4][WT * WT];
    __shared__ __align__(32) float Cs[4][WT * WT];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int row0 = blockIdx.y * 32 + (warp / 2) * WT, col0 = blockIdx.x * 32 + (warp % 2) * WT;
    wmma::fragment<wmma::accumulator, WT, WT, WT, float> acc;
    wmma::fill_fragment(acc, 0.0f);
    for (int k0 = 0; k0 < K; k0 += WT) {
        for (int e = lane; e < WT * WT; e += 32) {
            const int r = e / WT, c = e % WT;
            As[warp][e] = (row0 + r < M && k0 + c < K) ? A[(size_t)(row0 + r) * K + k0 + c] : __float2half(0.0f);
            Bs[warp][e] = (k0 + r < K && col0 + c < N) ? B[(size_t)(k0 + r) * N + col0 + c] : __float2half(0.0f);
        }
        __syncwarp();
        wmma::fragment<wmma::matrix_a, WT, WT, WT, __half, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, WT, WT, WT, __half, wmma::row_major> b;
        wmma::load_matrix_sync(a, As[warp], WT);
        wmma::load_matrix_sync(b, Bs[warp], WT);
        wmma::mma_sync(acc, a, b, acc);
        __syncwarp();
    }
    wmma::store_matrix_sync(Cs[warp], acc, WT, wmma::mem_row_major);
    __syncwarp();
    for (int e = lane; e < WT * WT; e += 32) {
        const int r = e / WT, c = e % WT;
        if (row0 + r < M && col0 + c < N) C[(size_t)(row0 + r) * N + col0 + c] = Cs[warp][e];
    }
}
