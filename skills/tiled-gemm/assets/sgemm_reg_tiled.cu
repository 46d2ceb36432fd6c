// C[M,N] = A[M,K] @ B[K,N], row-major fp32: 64x64 block tile, BK = 16, each of 256 threads computes a 4x4
// register micro-tile. Launch: block 256, grid (ceil_div(N, 64), ceil_div(M, 64)).
#define BM 64
#define BN 64
#define BK 16
#define TM 4
#define TN 4

extern "C" __global__ void __launch_bounds__(256) sgemm_reg_tiled(const float* __restrict__ A, const float* __restrict__ B,
                                                                 float* __restrict__ C, int M, int N, int K) {
    __shared__ float As[BK][BM + 4];  // A tile stored transposed: As[k][m]
    __shared__ float Bs[BK][BN];
    const int tid = threadIdx.x;
    const int tm = (tid / (BN / TN)) * TM, tn = (tid % (BN / TN)) * TN;
    const int row0 = blockIdx.y * BM, col0 = blockIdx.x * BN;
    float acc[TM][TN] = {};
    for (int k0 = 0; k0 < K; k0 += BK) {
        for (int e = tid; e < BM * BK; e += 256) {  // A: BM rows x BK cols
            const int m = e / BK, k = e % BK;
            As[k][m] = (row0 + m < M && k0 + k < K) ? A[(size_t)(row0 + m) * K + k0 + k] : 0.0f;
        }
        for (int e = tid; e < BK * BN; e += 256) {  // B: BK rows x BN cols
            const int k = e / BN, n = e % BN;
            Bs[k][n] = (k0 + k < K && col0 + n < N) ? B[(size_t)(k0 + k) * N + col0 + n] : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int k = 0; k < BK; ++k) {
            float a[TM], b[TN];
#pragma unroll
            for (int i = 0; i < TM; ++i) a[i] = As[k][tm + i];
#pragma unroll
            for (int j = 0; j < TN; ++j) b[j] = Bs[k][tn + j];
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j)
            if (row0 + tm + i < M && col0 + tn + j < N) C[(size_t)(row0 + tm + i) * N + col0 + tn + j] = acc[i][j];
}
