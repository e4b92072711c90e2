#include "registry.h"

// The emulated build (tools/build_emulated.sh) is the module zsseg_rt._C_emulated, loaded instead of _C when
// ZSSEG_CUDA_EMULATION=1 (zsseg_rt/ops/_loader.py).
#ifndef ZS_PYTHON_MODULE_NAME
#define ZS_PYTHON_MODULE_NAME _C
#endif

PYBIND11_MODULE(ZS_PYTHON_MODULE_NAME, m) {
  m.doc() = "zsseg_rt native ops (CPU/OpenMP and CUDA kernels). Use zsseg_rt.ops, not this module.";
  zsseg_py::register_device(m);
  zsseg_py::register_similarity(m);
  zsseg_py::register_relation_descriptor(m);
  zsseg_py::register_upsample(m);
  zsseg_py::register_segment(m);
  zsseg_py::register_preprocess(m);
  zsseg_py::register_segment_windows(m);
  zsseg_py::register_testing(m);
  zsseg_py::register_emulation(m);
  zsseg_py::register_pamr(m);
  zsseg_py::register_warp(m);
  zsseg_py::register_temporal(m);
}
