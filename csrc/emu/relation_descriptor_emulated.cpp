// csrc/cuda/relation_descriptor.cu compiled for the host under the emulation layer: its launcher becomes
// zsseg::relation_descriptor_cuda_emulated (declared in kernels_emulated.h); the kernel source is the one nvcc
// compiles.
#include "cuda_emu.h"
#include "kernels_emulated.h"

#define relation_descriptor_cuda relation_descriptor_cuda_emulated
#include "../cuda/relation_descriptor.cu"
