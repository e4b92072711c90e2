// Each binding file registers its functions on the module; module.cpp calls them all.
#pragma once
#include <pybind11/pybind11.h>

namespace zsseg_py {
void register_device(pybind11::module_& m);               // device.cpp: cuda_available, DeviceArray
void register_similarity(pybind11::module_& m);           // similarity.cpp
void register_relation_descriptor(pybind11::module_& m);  // relation_descriptor.cpp
void register_upsample(pybind11::module_& m);             // upsample.cpp
void register_segment(pybind11::module_& m);              // segment.cpp
void register_preprocess(pybind11::module_& m);           // preprocess.cpp
void register_segment_windows(pybind11::module_& m);      // segment_windows.cpp
void register_testing(pybind11::module_& m);              // testing.cpp: _C._testing (CUDA builds)
void register_emulation(pybind11::module_& m);            // emulation.cpp: _C._emulation (emulated build)
void register_pamr(pybind11::module_& m);                 // pamr.cpp
void register_warp(pybind11::module_& m);                 // warp.cpp
void register_temporal(pybind11::module_& m);             // temporal.cpp
}  // namespace zsseg_py
