// csrc/cuda/preprocess.cu compiled for the host under the emulation layer: its launcher becomes
// zsseg::preprocess_cuda_emulated (declared in kernels_emulated.h); the kernel source is the one nvcc compiles.
#include "cuda_emu.h"
#include "kernels_emulated.h"

#define preprocess_cuda preprocess_cuda_emulated
#include "../cuda/preprocess.cu"
