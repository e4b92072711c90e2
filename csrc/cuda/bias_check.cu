// The class-bias finiteness check on the device (see zsseg/bias_check.h): one block, no atomics (the result may
// live in mapped host memory, where device atomics are not guaranteed), a shared-memory min-reduction of the
// first non-finite index, written by thread 0 with a plain store.
#include <cuda_runtime.h>

#include <cstdint>

#include "launch.cuh"
#include "zsseg/bias_check.h"

namespace zsseg {
namespace {

constexpr int kBiasCheckThreads = 256;

__global__ void __launch_bounds__(kBiasCheckThreads)
    bias_check_kernel(const float* __restrict__ bias, std::int64_t classes, std::int32_t* result) {
  __shared__ std::int64_t first[kBiasCheckThreads];
  std::int64_t mine = classes;  // none
  for (std::int64_t i = threadIdx.x; i < classes; i += blockDim.x) {
    const float v = bias[i];
    if (v != v || v - v != 0.0f) {  // NaN, or +/-inf (inf - inf is NaN)
      mine = i;
      break;  // indices grow: the first bad one of this thread
    }
  }
  first[threadIdx.x] = mine;
  __syncthreads();
  for (int half = kBiasCheckThreads / 2; half > 0; half /= 2) {
    if (static_cast<int>(threadIdx.x) < half && first[threadIdx.x + half] < first[threadIdx.x]) {
      first[threadIdx.x] = first[threadIdx.x + half];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    const std::int64_t bad = first[0];
    *result = bad == classes ? kBiasAllFinite : encode_bad_class(bad, bias[bad]);
  }
}

}  // namespace

CudaStatus bias_check_cuda(const BiasCheckParams& params, Stream stream) {
  if (params.bias == nullptr || params.result == nullptr || params.classes < 1 ||
      params.classes > (static_cast<std::int64_t>(1) << 29)) {
    return static_cast<CudaStatus>(cudaErrorInvalidValue);
  }
  ZS_LAUNCH(bias_check_kernel, dim3(1), dim3(kBiasCheckThreads), static_cast<cudaStream_t>(stream), params.bias,
            params.classes, params.result);
  return static_cast<CudaStatus>(cudaGetLastError());
}

}  // namespace zsseg
