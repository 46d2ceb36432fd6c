// Front-end errors: an undefined identifier (line 5, column 23) and a missing semicolon.
extern "C" __global__ void broken(float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    int unused = 3;
    if (i < n) y[i] = xx * 2.0f;
    float z = 1.0f
    y[0] = z;
}
