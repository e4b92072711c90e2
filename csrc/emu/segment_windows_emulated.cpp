// csrc/cuda/segment_windows.cu compiled for the host under the emulation layer: its launcher becomes
// zsseg::segment_windows_cuda_emulated (declared in kernels_emulated.h); the kernel source is the one nvcc compiles.
// Its kernels' files are compiled beside it (segment_windows_{tiled,softmax,direct}_emulated.cpp).
#include "cuda_emu.h"
#include "kernels_emulated.h"

#define segment_windows_cuda segment_windows_cuda_emulated
#include "../cuda/segment_windows.cu"
