// Which CUDA devices can run this build's kernels (cuda_available()): every visible device must load the module's
// code. Host code shared by csrc/cuda/device_info.cu and the emulation tests (cpp_tests/emulation), which set
// what the emulated devices report (zs_emu::device_config()).
#pragma once
#include <cuda_runtime.h>

#include "stream_order.h"

namespace zsseg {

struct DeviceProbe {
  int count = 0;                     // usable devices: all visible ones, or 0
  cudaError_t status = cudaSuccess;  // why count is 0 (cudaSuccess with count 0: no device)
  int failed_device = -1;            // the device whose probe failed, or -1
};

// `probe` is any __global__ function compiled like the module's kernels: cudaFuncGetAttributes fails with
// cudaErrorNoKernelImageForDevice on a device whose architecture the build has no code (SASS or PTX) for. Every
// device is probed, not only the current one: with a GPU of an uncompiled architecture next to a supported one,
// a kernel launched there would fail mid-inference. Never throws; clears the errors it sees.
template <class Kernel>
DeviceProbe probe_devices(Kernel* probe) {
  DeviceProbe result;
  int count = 0;
  result.status = cudaGetDeviceCount(&count);
  if (result.status != cudaSuccess) {
    cudaGetLastError();
    return result;
  }
  for (int device = 0; device < count; ++device) {
    stream_order::DeviceScope scope(device);
    cudaFuncAttributes attributes;
    const cudaError_t status = cudaFuncGetAttributes(&attributes, probe);
    if (status != cudaSuccess) {
      cudaGetLastError();
      result.status = status;
      result.failed_device = device;
      return result;
    }
  }
  result.count = count;
  return result;
}

}  // namespace zsseg
