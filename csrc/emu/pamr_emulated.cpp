// csrc/cuda/pamr.cu compiled for the host under the emulation layer: its launcher becomes
// zsseg::pamr_cuda_emulated (declared in kernels_emulated.h); the kernel source is the one nvcc compiles.
#include "cuda_emu.h"
#include "kernels_emulated.h"

#define pamr_cuda pamr_cuda_emulated
#include "../cuda/pamr.cu"
