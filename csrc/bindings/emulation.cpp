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
  void release() {
    py::gil_scoped_release unlocked;  // release() waits for the streams to settle
    hold_.reset();
  }

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
  d["pool_os_allocations"] = s.pool_os_allocations;
  d["pool_os_releases"] = s.pool_os_releases;
  d["pool_reuses"] = s.pool_reuses;
  d["pool_reuse_dependencies"] = s.pool_reuse_dependencies;
  d["graph_launches"] = s.graph_launches;
  d["ops_run"] = s.ops_run;
  return d;
}

py::list take_reports() {
  {
    py::gil_scoped_release release;  // the streams finish what they can first (no Python in their work)
    zs_emu::settle();
  }
  py::list out;
  for (const zs_emu::Report& r : zs_emu::take_reports()) out.append(py::make_tuple(r.kind, r.message));
  return out;
}

// A kernel that throws: the emulation's stand-in for a device fault (a trap, an illegal address).
void faulting_kernel(int /*unused*/) {
  throw std::runtime_error("emulated device fault (testing hook)");
}

unsigned mutation_mask(const std::vector<std::string>& names) {
  unsigned mask = 0;
  for (const std::string& name : names) {
    bool known = false;
    for (const auto& entry : zs_emu::mutation_names()) {
      if (name == entry.first) {
        mask |= entry.second;
        known = true;
      }
    }
    if (!known) throw py::value_error("unknown mutation '" + name + "'");
  }
  return mask;
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
      "api_calls", [] { return zs_emu::api_calls(); },
      "The runtime API calls made since reset_api_calls(), by name ({'cudaEventRecord': 3, ...}; kernel launches "
      "as 'cudaLaunchKernel' and 'kernel NAME'; see csrc/emu/cuda_emu_api_calls.h). Waits for nothing: calls are "
      "counted when made, not when their work runs.");
  e.def("reset_api_calls", &zs_emu::reset_api_calls, "Set every API call count to 0.");
  e.def(
      "is_live", [](std::intptr_t ptr) { return zs_emu::is_live(reinterpret_cast<void*>(ptr)); },
      "True while the allocation at `ptr` has not been returned (a pending cudaFreeAsync still counts).");
  e.def("live_allocations", [] { return zs_emu::live_allocations(); });
  e.def("set_memory_pools", [](bool enabled) { zs_emu::device_config().memory_pools = enabled; });
  e.def(
      "set_event_pool", [](bool enabled) { zs_emu::device_config().library_event_pool = enabled; },
      "Whether the library reuses its completion events (on by default, as on a GPU); off: a new event per launch, "
      "as before the pool (the control of the per-frame API-call test).");
  e.def("take_reports", &take_reports,
        "Wait for the streams to settle, then return and clear what the emulated runtime reported: (kind, message) "
        "pairs; kind is 'race' (unordered accesses to one allocation, by operations, graph nodes or the host), "
        "'use-after-free' (freed pool memory), 'misuse' (a destroyed handle, a bad free, a kernel's struct "
        "parameter carrying a pointer the detector cannot see) or 'kernel-error' (a kernel threw: a device fault).");
  e.def(
      "host_access",
      [](std::intptr_t ptr, std::size_t bytes, bool write, const std::string& what) {
        zs_emu::host_access(reinterpret_cast<void*>(ptr), bytes, write, what);
      },
      py::arg("ptr"), py::arg("nbytes"), py::arg("write"), py::arg("what"),
      "The host reads (write=False) or writes `nbytes` at `ptr` now: checked against the device operations on that "
      "memory that the host has not synchronised with (a 'race' report); untracked memory is ignored.");
  e.def(
      "launch_faulting_kernel",
      [](std::int64_t stream, bool ran_first) {
        zs_emu::launch_named("faulting_kernel", &faulting_kernel, dim3(1), dim3(1), to_stream(stream), 0);
        if (ran_first) {  // the order a loaded machine may give: the stream's worker faults before the check below
          py::gil_scoped_release release;
          zs_emu::settle();
        }
        // The launch's own error only: the fault is the kernel's, and its stream's worker may already have run it
        // (the sticky error set before this line), as a GPU may fault before cudaGetLastError is called.
        const cudaError_t status = zs_emu::last_error();
        zs_emu::last_error() = cudaSuccess;
        if (status != cudaSuccess)
          throw std::runtime_error(std::string("launch_faulting_kernel: ") + cudaGetErrorString(status));
      },
      py::arg("stream"), py::arg("ran_first") = false,
      "Enqueue a kernel that throws when it runs (a device fault): a 'kernel-error' report, and "
      "cudaErrorLaunchFailure from every later synchronisation and launch until reset_device_error(). Raises only "
      "for an error of the launch itself, never for the fault, whenever the stream runs it (ran_first=True: the "
      "kernel has run before the launch's error is read).");
  e.def(
      "device_error",
      [] {
        const cudaError_t error = zs_emu::sticky_error();
        return error == cudaSuccess ? std::string() : std::string(cudaGetErrorString(error));
      },
      "The sticky device error after a fault ('' when none).");
  e.def("reset_device_error", &zs_emu::reset_device_error,
        "End a device fault (what cudaDeviceReset does on a GPU; the memory is kept here).");
  e.def(
      "settle",
      [] {
        py::gil_scoped_release release;
        zs_emu::settle();
      },
      "Wait until every stream has run what it can (work behind a StreamHold stays pending).");
  e.def(
      "seed", [] { return zs_emu::options().seed; },
      "The seed of the streams' random delays and of graph node order (ZS_EMU_SEED; random when unset).");
  e.def("max_delay_us", [] { return zs_emu::options().max_delay_us; }, "Largest random delay of an operation.");
  e.def(
      "mutations",
      [] {
        std::vector<std::string> names;
        const unsigned mask = zs_emu::mutation_mask().load();
        for (const auto& entry : zs_emu::mutation_names())
          if (mask & entry.second) names.emplace_back(entry.first);
        return names;
      },
      "The ordering mutations in force (ZS_EMU_MUTATION).");
  e.def(
      "set_mutations", [](const std::vector<std::string>& names) { zs_emu::set_mutations(mutation_mask(names)); },
      py::arg("names"),
      "Make the emulator (drop_event_wait, free_before_consumer, skip_host_wait, wrong_launch_stream) or the "
      "library (lib_skip_input_wait, lib_skip_reader_record, lib_skip_release_wait, lib_skip_consumer_wait) "
      "commit a class of ordering bug (see csrc/emu/cuda_emu_runtime.h). [] turns them off.");
  e.def("mutation_names", [] {
    std::vector<std::string> names;
    for (const auto& entry : zs_emu::mutation_names()) names.emplace_back(entry.first);
    return names;
  });
  e.def(
      "pool_reserved_bytes",
      [](int device) {
        cudaMemPool_t pool = nullptr;
        std::uint64_t value = 0;
        if (cudaDeviceGetDefaultMemPool(&pool, device) == cudaSuccess)
          cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReservedMemCurrent, &value);
        cudaGetLastError();
        return value;
      },
      py::arg("device") = 0, "Bytes the device's default pool holds (allocated or free).");
  e.def("set_integrated", [](bool integrated) { zs_emu::device_config().integrated = integrated; });
}
#else
void register_emulation(py::module_&) {}
#endif

}  // namespace zsseg_py
