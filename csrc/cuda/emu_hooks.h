// Hooks of the emulated CUDA runtime (csrc/emu) in the library's host code: compiled in by the emulated build
// (ZS_CUDA_EMULATION, defined by csrc/emu's stand-in <cuda_runtime.h>), compiled out of every real build.
//
// ZS_LIBRARY_MUTATED(kName): true while the emulator's mutation kName is on (ZS_EMU_MUTATION=lib_..., see
// csrc/emu/cuda_emu_runtime.h): the library then leaves out one ordering step (a wait, a record, a release's wait),
// so that python_tests/test_emulator_mutations.py proves the tests report its absence. Always false on a GPU.
#pragma once
#include <cuda_runtime.h>

//
// ZS_LIBRARY_EVENT_POOL(): whether completion events are reused (stream_order::EventPool). Always true on a GPU; the
// emulated build can turn it off (_C._emulation.set_event_pool(False)) to show what a frame cost before the pool:
// the control of python_tests/runtime/test_frame_api_calls.py.
#if defined(ZS_CUDA_EMULATION)
#define ZS_LIBRARY_MUTATED(name) (::zs_emu::mutated(::zs_emu::name))
#define ZS_LIBRARY_EVENT_POOL() (::zs_emu::device_config().library_event_pool)
#else
#define ZS_LIBRARY_MUTATED(name) false
#define ZS_LIBRARY_EVENT_POOL() true
#endif
