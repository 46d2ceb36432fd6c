// C++ linkage: the disassembler prints mangled names.
namespace demo {
template <typename T>
__global__ void twice(T* x) { x[threadIdx.x] *= T(2); }
template __global__ void twice<float>(float*);
}  // namespace demo
