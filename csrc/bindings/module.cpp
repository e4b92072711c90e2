#include "registry.h"

PYBIND11_MODULE(_C, m) {
  m.doc() = "zsseg_rt native ops (CPU/OpenMP and CUDA kernels). Use zsseg_rt.ops, not this module.";
  zsseg_py::register_device(m);
  zsseg_py::register_similarity(m);
  zsseg_py::register_relation_descriptor(m);
  zsseg_py::register_upsample(m);
  zsseg_py::register_segment(m);
  zsseg_py::register_preprocess(m);
  zsseg_py::register_segment_windows(m);
  zsseg_py::register_pamr(m);
}
