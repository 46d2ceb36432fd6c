// task: scale.cu
// expect: output stateful timed-output
// Keeps the last result in a __device__ stash keyed by the input pointer: when the same x comes back it
// copies the stash instead of reading x. Timed launches reuse addresses, but v2 reloads their inputs from
// randomly chosen input sets before each sample, so the stash is stale half the time.
#define STASH 4096
__device__ const float* last_x = nullptr;
__device__ float stash[STASH];

extern "C" __global__ void scale(const float* x, float* y, float a, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    bool hit = *(const float* volatile*)&last_x == x && n <= STASH;
    if (i < n) {
        float v = hit ? stash[i] : a * x[i];
        y[i] = v;
        if (n <= STASH) stash[i] = v;
    }
    if (i == 0) last_x = x;
}
