// A fused candidate for tasks/layernorm_two_pass.cu: one kernel, one block per row, statistics and the
// normalised row in one pass over x from DRAM (the second and third reads hit L1/L2). Appended by the tests.
extern "C" __global__ void layernorm_fused(const float* x, const float* gamma, const float* beta, float* y,
                                           float* mean, float* rstd, int cols, float eps) {
    __shared__ float red[BLOCK];
    const float* xr = x + (size_t)blockIdx.x * cols;
    float* yr = y + (size_t)blockIdx.x * cols;
    float sum = 0.0f;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) sum += xr[j];
    red[threadIdx.x] = sum;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
        __syncthreads();
    }
    float m = red[0] / cols;
    __syncthreads();
    float sq = 0.0f;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        float d = xr[j] - m;
        sq += d * d;
    }
    red[threadIdx.x] = sq;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
        __syncthreads();
    }
    float r = rsqrtf(red[0] / cols + eps);
    if (threadIdx.x == 0) {
        mean[blockIdx.x] = m;
        rstd[blockIdx.x] = r;
    }
    for (int j = threadIdx.x; j < cols; j += blockDim.x) yr[j] = (xr[j] - m) * r * gamma[j] + beta[j];
}

/* kernelpro launch
[[launch]]
kernel = "layernorm_fused"
grid = ["ROWS"]
block = ["BLOCK"]
args = ["x", "gamma", "beta", "y", "mean", "rstd", "cols", "0.00001"]
*/
