// Shared definitions for the zsseg kernels: no Python, no torch.
// Per-element arithmetic used by both the CPU and the CUDA kernels lives in inline ZS_HD functions so that
// the CPU tests exercise the same math the GPU runs.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define ZS_HD __host__ __device__ __forceinline__
#else
#define ZS_HD inline
#endif

namespace zsseg {

// Opaque stream handle (a cudaStream_t) so that headers do not need cuda_runtime.h.
using Stream = void*;

// Element types the kernels accept. fp16 is CUDA-only.
enum class DType : int { Float32 = 0, Float16 = 1 };

// CUDA launchers return 0 on success, otherwise the cudaError_t value; see cuda_error_string().
using CudaStatus = int;

// Number of visible CUDA devices; 0 (never an error) when no driver / no GPU / built without CUDA.
int cuda_device_count();
// Human-readable text of a CudaStatus (or of the last device-count failure when code == -1).
const char* cuda_error_string(CudaStatus code);
// True when this build compiled the CUDA kernels.
bool cuda_compiled();

}  // namespace zsseg
