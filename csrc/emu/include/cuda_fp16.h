// Emulation stand-in for the CUDA toolkit header <cuda_fp16.h> (see ../cuda_emu.h).
#pragma once
#include "../cuda_emu.h"
