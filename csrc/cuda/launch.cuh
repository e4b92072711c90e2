// Kernel launch and grid-size cap, spelled once so that the same kernel sources compile with nvcc (a real
// launch) and with the host compiler under the emulation layer csrc/emu/cuda_emu.h (blocks run on host threads).
#pragma once
#if defined(ZS_CUDA_EMULATION)
// Grid dimensions the launchers cap at (grid-stride loops cover the rest); tests lower it to make them wrap.
#define ZS_CUDA_GRID_CAP (::zs_emu::grid_cap())
#define ZS_LAUNCH(kernel, grid, block, stream, ...) \
  ::zs_emu::launch_named(#kernel, kernel, grid, block, stream, __VA_ARGS__)
#else
#define ZS_CUDA_GRID_CAP (static_cast<std::int64_t>(65535))
#define ZS_LAUNCH(kernel, grid, block, stream, ...) kernel<<<grid, block, 0, stream>>>(__VA_ARGS__)
#endif

// The entry point of an op whose kernels come in both precisions: `CudaStatus NAME(const PARAMS&, Stream)` running
// the translation unit's `launch<T>(params, cudaStream_t)` for the params' dtype (__half for Float16, else float).
#define ZS_DTYPE_ENTRY_POINT(NAME, PARAMS)                                                        \
  CudaStatus NAME(const PARAMS& params, Stream stream) {                                          \
    const cudaStream_t s = static_cast<cudaStream_t>(stream);                                     \
    return params.dtype == DType::Float16 ? launch<__half>(params, s) : launch<float>(params, s); \
  }
