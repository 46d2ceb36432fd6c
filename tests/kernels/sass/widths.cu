// 8-, 16- and 64-bit element copies: narrow and 64-bit global loads and stores.
extern "C" __global__ void copy_widths(const unsigned char* __restrict__ a, const short* __restrict__ b,
                                       const double* __restrict__ c, unsigned char* __restrict__ oa,
                                       short* __restrict__ ob, double* __restrict__ oc, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        oa[i] = a[i];
        ob[i] = b[i];
        oc[i] = c[i];
    }
}
