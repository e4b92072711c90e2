// Hooks of the emulated CUDA runtime (csrc/emu) in the library's host code: compiled in by the emulated build
// (ZS_CUDA_EMULATION, defined by csrc/emu's stand-in <cuda_runtime.h>), compiled out of every real build.
//
// ZS_LIBRARY_MUTATED(kName): true while the emulator's mutation kName is on (ZS_EMU_MUTATION=lib_..., see
// csrc/emu/cuda_emu_runtime.h): the library then leaves out one ordering step (a wait, a record, a release's wait),
// so that python_tests/test_emulator_mutations.py proves the tests report its absence. Always false on a GPU.
#pragma once
#include <cuda_runtime.h>

#if defined(ZS_CUDA_EMULATION)
#define ZS_LIBRARY_MUTATED(name) (::zs_emu::mutated(::zs_emu::name))
#else
#define ZS_LIBRARY_MUTATED(name) false
#endif
