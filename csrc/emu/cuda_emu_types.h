// The types the execution model (cuda_emu.h) and the runtime API (cuda_emu_runtime.h) of the host emulation of
// CUDA share: error codes, the sticky per-thread last error, and the memory accesses of an operation.
#pragma once
#include <cstddef>
#include <cstdint>

// ---- AddressSanitizer: pool memory is poisoned while free; fibers' stacks are announced (cuda_emu_block.h) ----
#if defined(__SANITIZE_ADDRESS__)
#define ZS_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ZS_EMU_ASAN 1
#endif
#endif
#if defined(ZS_EMU_ASAN)
#include <sanitizer/asan_interface.h>
#define ZS_EMU_POISON(addr, size) ASAN_POISON_MEMORY_REGION(addr, size)
#define ZS_EMU_UNPOISON(addr, size) ASAN_UNPOISON_MEMORY_REGION(addr, size)
#else
#define ZS_EMU_POISON(addr, size) ((void)(addr), (void)(size))
#define ZS_EMU_UNPOISON(addr, size) ((void)(addr), (void)(size))
#endif

// ---- runtime API subset ------------------------------------------------------------------------------------
enum cudaError_t : int {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidDevice = 101,
  cudaErrorNoKernelImageForDevice = 209,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorIllegalState = 401,
  cudaErrorNotReady = 600,
  cudaErrorLaunchFailure = 719,
  cudaErrorNotSupported = 801,
  cudaErrorStreamCaptureUnsupported = 900,
  cudaErrorStreamCaptureInvalidated = 901,
  cudaErrorStreamCaptureMerge = 902,
  cudaErrorStreamCaptureUnmatched = 903,
  cudaErrorStreamCaptureUnjoined = 904,
  cudaErrorStreamCaptureIsolation = 905,
  cudaErrorStreamCaptureImplicit = 906,
  cudaErrorCapturedEvent = 907,
  cudaErrorStreamCaptureWrongThread = 908,
};

namespace zs_emu {

inline cudaError_t& last_error() {
  static thread_local cudaError_t error = cudaSuccess;
  return error;
}

// One memory access of an operation, for the race detector (cuda_emu_runtime.h): kernel pointer arguments
// (const pointee = read, otherwise write), copies, memsets, allocations and frees.
struct Access {
  enum Role : unsigned char { kUse, kAllocate, kRelease };
  const void* ptr = nullptr;
  std::size_t bytes = 0;  // 0: from ptr to the end of its allocation
  bool write = false;
  Role role = kUse;              // a stream-ordered allocation or free of pool memory (a write that changes its state)
  std::uint64_t generation = 0;  // kAllocate / kRelease: which allocation of the pool block
};

}  // namespace zs_emu
