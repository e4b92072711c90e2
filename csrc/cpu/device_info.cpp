// Device queries for a build without CUDA. With CUDA, csrc/cuda/device_info.cu defines them instead.
#ifndef ZSSEG_WITH_CUDA
#include "zsseg/common.h"

namespace zsseg {

int cuda_device_count() {
  return 0;
}

const char* cuda_error_string(CudaStatus code) {
  return code == 0 ? "no error" : "zsseg_rt was built without CUDA";
}

bool cuda_compiled() {
  return false;
}

}  // namespace zsseg
#endif  // ZSSEG_WITH_CUDA
