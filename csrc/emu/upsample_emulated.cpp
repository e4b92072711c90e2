// csrc/cuda/upsample.cu compiled for the host under the emulation layer: its launcher becomes
// zsseg::upsample_cuda_emulated (declared in kernels_emulated.h); the kernel source is the one nvcc compiles.
#include "cuda_emu.h"
#include "kernels_emulated.h"

#define upsample_cuda upsample_cuda_emulated
#include "../cuda/upsample.cu"
