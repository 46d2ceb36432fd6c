// task: total.cu
// expect: output
// Writes a constant: the sum of input set 0 for seed 0, passed in with -DMAGIC_TOTAL=<value>f.
// It passes a wall run with seed 0 and one input set, and nothing with fresh seeds.
#ifndef MAGIC_TOTAL
#define MAGIC_TOTAL 0.0f
#endif

extern "C" __global__ void total(const float* x, float* out, int n) {
    if (blockIdx.x == 0 && threadIdx.x == 0) out[0] = MAGIC_TOTAL;
}
