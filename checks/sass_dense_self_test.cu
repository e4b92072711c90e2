// Deliberately bad kernels for the SASS check's rules 7 and 8 (checks/_sass_dense.py; python -m checks sass
// --self-test): a similarity_mma_kernel that multiplies on the CUDA cores (no HMMA) and a packed upsample_kernel that
// stores its 4 columns one float at a time. Each must be flagged; named as the real kernels so that the rules apply.
#include <cstdint>

namespace zsseg_self_test {

template <class T, bool kVector>
__global__ void similarity_mma_kernel(const T* a, const T* b, T* out, int dim) {
  float acc = 0.f;
  for (int k = 0; k < dim; ++k) acc = fmaf(a[threadIdx.x * dim + k], b[threadIdx.y * dim + k], acc);
  out[threadIdx.y * blockDim.x + threadIdx.x] = acc;
}
template __global__ void similarity_mma_kernel<float, true>(const float*, const float*, float*, int);

template <class T, int V>
__global__ void upsample_kernel(const T* in, T* out, int rows, int width) {
  const int x0 = (blockIdx.x * blockDim.x + threadIdx.x) * V;
#pragma unroll 1
  for (int y = 0; y < rows; ++y) {
#pragma unroll
    for (int j = 0; j < V; ++j) out[y * width + x0 + j] = in[(y / 4) * width + x0 + j] * 0.5f;
  }
}
template __global__ void upsample_kernel<float, 4>(const float*, float*, int, int);

}  // namespace zsseg_self_test
