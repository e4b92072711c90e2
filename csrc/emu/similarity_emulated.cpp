// csrc/cuda/similarity.cu compiled for the host under the emulation layer: its launcher becomes
// zsseg::similarity_cuda_emulated (declared in kernels_emulated.h); the kernel source is the one nvcc compiles.
#include "cuda_emu.h"
#include "kernels_emulated.h"

#define similarity_cuda similarity_cuda_emulated
#include "../cuda/similarity.cu"
