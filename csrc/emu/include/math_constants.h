// Emulation stand-in for the CUDA toolkit header <math_constants.h> (see ../cuda_emu.h).
#pragma once
#include "../cuda_emu.h"
