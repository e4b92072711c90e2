// csrc/cuda/warp.cu compiled for the host under the emulation layer: its launcher becomes
// zsseg::warp_cuda_emulated (declared in kernels_emulated.h); the kernel source is the one nvcc compiles.
#include "cuda_emu.h"
#include "kernels_emulated.h"

#define warp_cuda warp_cuda_emulated
#include "../cuda/warp.cu"
