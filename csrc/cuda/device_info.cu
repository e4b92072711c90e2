// Device queries for the CUDA build (the CPU-only build uses csrc/cpu/device_info.cpp instead).
#include <cuda_runtime.h>

#include <atomic>

#include "zsseg/common.h"

namespace zsseg {
namespace {
// Result of the last cudaGetDeviceCount call (cudaSuccess, or e.g. 35 insufficient driver, 100 no device), or of
// the kernel-image probe (209: this build has no code for the device's architecture).
std::atomic<int> last_count_status{cudaSuccess};

// An empty kernel compiled like every other kernel of the module: if the current device can load it, the
// module's kernels are runnable there (a build without this GPU's architecture fails here, not mid-inference).
__global__ void probe_kernel() {}
}  // namespace

int cuda_device_count() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  last_count_status.store(static_cast<int>(status));
  if (status != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error so later calls do not see it
    return 0;
  }
  if (count <= 0) return 0;
  cudaFuncAttributes attributes;
  const cudaError_t probe = cudaFuncGetAttributes(&attributes, probe_kernel);
  if (probe != cudaSuccess) {  // e.g. cudaErrorNoKernelImageForDevice: the GPU is there, our code for it is not
    last_count_status.store(static_cast<int>(probe));
    cudaGetLastError();
    return 0;
  }
  return count;
}

const char* cuda_error_string(CudaStatus code) {
  if (code == -1) {
    const int status = last_count_status.load();
    if (status == cudaSuccess) return "cudaGetDeviceCount found no CUDA device";
    return cudaGetErrorString(static_cast<cudaError_t>(status));
  }
  return cudaGetErrorString(static_cast<cudaError_t>(code));
}

bool cuda_compiled() {
  return true;
}

}  // namespace zsseg
