// task: scale.cu
// expect: output
// Does nothing: every output element keeps the poison.
extern "C" __global__ void scale(const float* x, float* y, float a, int n) {}
