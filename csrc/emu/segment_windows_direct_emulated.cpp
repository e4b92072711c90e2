// csrc/cuda/segment_windows_direct.cu compiled for the host under the emulation layer: one of the files of
// segment_windows_cuda_emulated (see segment_windows_emulated.cpp).
#include "cuda_emu.h"
#include "kernels_emulated.h"

#include "../cuda/segment_windows_direct.cu"
