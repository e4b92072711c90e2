// zsseg_rt._C._emulation: control of the emulated CUDA runtime (csrc/emu), in the emulated build only
// (tools/build_emulated.sh; ZSSEG_CUDA_EMULATION=1 loads it). Lets the Python CUDA tests observe what a GPU hides:
// work held pending on a stream, allocations still live, device-wide synchronisations and illegal calls during a
// stream capture. Not part of the public API.
#include "array_args.h"
#include "registry.h"

#ifdef ZSSEG_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace zsseg_py {

#if defined(ZSSEG_WITH_CUDA) && defined(ZS_CUDA_EMULATION)
namespace {

cudaStream_t to_stream(std::int64_t value) {
  return reinterpret_cast<cudaStream_t>(static_cast<std::intptr_t>(value));
}

// A zs_emu::StreamHold usable from Python (also as a context manager): work enqueued on the stream while it is
// held stays pending, as a kernel still running on a GPU.
class PyStreamHold {
 public:
  explicit PyStreamHold(std::int64_t stream) : hold_(std::make_unique<zs_emu::StreamHold>(to_stream(stream))) {}
  void release() { hold_.reset(); }

 private:
  std::unique_ptr<zs_emu::StreamHold> hold_;
};

py::dict stats() {
  const zs_emu::RuntimeStats& s = zs_emu::runtime_stats();
  py::dict d;
  d["sync_malloc"] = s.sync_malloc;
  d["sync_free"] = s.sync_free;
  d["pool_free"] = s.pool_free;
  d["async_malloc"] = s.async_malloc;
  d["async_free"] = s.async_free;
  d["blocking_waits"] = s.blocking_waits;
  d["streams_created"] = s.streams_created;
  d["streams_destroyed"] = s.streams_destroyed;
  d["capture_violations"] = s.capture_violations;
  return d;
}

}  // namespace

void register_emulation(py::module_& m) {
  py::module_ e = m.def_submodule("_emulation", "Control of the emulated CUDA runtime (tests only).");
  py::class_<PyStreamHold>(e, "StreamHold", "Hold a stream: its work stays pending until release().")
      .def(py::init<std::int64_t>(), py::arg("stream"))
      .def("release", &PyStreamHold::release)
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__", [](PyStreamHold& h, py::args) { h.release(); });
  e.def("stats", &stats, "Counters of the emulated runtime since reset_stats().");
  e.def("reset_stats", [] { zs_emu::runtime_stats() = zs_emu::RuntimeStats(); });
  e.def(
      "is_live", [](std::intptr_t ptr) { return zs_emu::is_live(reinterpret_cast<void*>(ptr)); },
      "True while the allocation at `ptr` has not been returned (a pending cudaFreeAsync still counts).");
  e.def("live_allocations", [] { return zs_emu::live_allocations(); });
  e.def("set_memory_pools", [](bool enabled) { zs_emu::device_config().memory_pools = enabled; });
  e.def("set_integrated", [](bool integrated) { zs_emu::device_config().integrated = integrated; });
}
#else
void register_emulation(py::module_&) {}
#endif

}  // namespace zsseg_py
