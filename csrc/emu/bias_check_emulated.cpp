// csrc/cuda/bias_check.cu compiled for the host under the emulation layer (see segment_emulated.cpp).
#include "cuda_emu.h"
#include "kernels_emulated.h"

#define bias_check_cuda bias_check_cuda_emulated
#include "../cuda/bias_check.cu"
