// Device queries for the CUDA build (the CPU-only build uses csrc/cpu/device_info.cpp instead).
#include <cuda_runtime.h>

#include <mutex>
#include <string>

#include "device_probe.h"
#include "zsseg/common.h"

#define ZS_STRINGIFY2(...) #__VA_ARGS__
#define ZS_STRINGIFY(...) ZS_STRINGIFY2(__VA_ARGS__)

namespace zsseg {
namespace {
// Why the last cuda_device_count() returned what it did (guarded: Python threads may ask concurrently).
std::mutex reason_mutex;
std::string last_reason = "not probed yet";

// An empty kernel compiled like every other kernel of the module: if a device can load it, the module's kernels
// are runnable there (a build without that GPU's architecture fails here, not mid-inference).
__global__ void probe_kernel() {}

void set_reason(const DeviceProbe& probe);

std::string compiled_architectures() {
#ifdef __CUDA_ARCH_LIST__
  return "this build has code for __CUDA_ARCH__ " ZS_STRINGIFY(
      __CUDA_ARCH_LIST__) " (750 = sm_75); rebuild with -DCMAKE_CUDA_ARCHITECTURES=<this GPU's, e.g. 87>";
#else
  return "rebuild with -DCMAKE_CUDA_ARCHITECTURES=<this GPU's, e.g. 87>";
#endif
}
}  // namespace

int cuda_device_count() {
  // Probed once per process: every CUDA argument of every op asks, and the answer cannot change (devices and
  // the module's code are fixed once CUDA is initialised).
  static std::once_flag once;
  static int count = 0;
  std::call_once(once, [] {
    const DeviceProbe probe = probe_devices(probe_kernel);
    count = probe.count;
    set_reason(probe);
  });
  return count;
}

namespace {
void set_reason(const DeviceProbe& probe) {
  std::string reason;
  if (probe.failed_device >= 0) {
    reason = "cuda:" + std::to_string(probe.failed_device) +
             " cannot run this build's kernels: " + cudaGetErrorString(probe.status) + "; " + compiled_architectures();
  } else if (probe.status != cudaSuccess) {
    reason = cudaGetErrorString(probe.status);
  } else if (probe.count == 0) {
    reason = "cudaGetDeviceCount found no CUDA device";
  } else {
    reason = "no error";
  }
  std::lock_guard<std::mutex> lock(reason_mutex);
  last_reason = reason;
}
}  // namespace

const char* cuda_error_string(CudaStatus code) {
  if (code == -1) {
    static thread_local std::string copy;
    std::lock_guard<std::mutex> lock(reason_mutex);
    copy = last_reason;
    return copy.c_str();
  }
  return cudaGetErrorString(static_cast<cudaError_t>(code));
}

bool cuda_compiled() {
  return true;
}

}  // namespace zsseg
