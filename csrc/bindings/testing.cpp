// zsseg_rt._C._testing (CUDA builds only, real or emulated): what the Python CUDA tests need to make device arrays
// and streams without torch, so the same tests run on a GPU and, in CI, against the emulated CUDA runtime
// (csrc/emu): memory of every kind the ops may be given (device, pool, managed, mapped page-locked host memory,
// ordinary host memory), exported through __cuda_array_interface__ and/or __dlpack__ exactly as a test asks
// (a CAI "stream" entry present, None or absent; strides; read-only), and streams with capture control.
// Not part of the public API.
#include <cstring>
#include <string>

#include "array_args.h"
#include "registry.h"

#ifdef ZSSEG_WITH_CUDA
#include <cuda_runtime.h>

#include "cuda/segment_windows_testing.cuh"  // after the runtime: the emulated build's hooks are its own
#include "zsseg/segment_windows.h"

namespace zsseg_py {
namespace {

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    cudaGetLastError();
    throw std::runtime_error(std::string("_testing.") + what + ": " + cudaGetErrorString(status));
  }
}

std::intptr_t to_int(const void* ptr) {
  return reinterpret_cast<std::intptr_t>(ptr);
}
void* to_ptr(std::intptr_t value) {
  return reinterpret_cast<void*>(value);
}
cudaStream_t to_stream(std::int64_t value) {
  return reinterpret_cast<cudaStream_t>(static_cast<std::intptr_t>(value));
}

// One allocation of a given kind; freed with the matching call.
struct Allocation {
  std::string kind;
  void* ptr = nullptr;
  std::size_t bytes = 0;
  Allocation(const std::string& kind_, std::size_t bytes_) : kind(kind_), bytes(bytes_) {
    const std::size_t n = bytes == 0 ? 1 : bytes;
    if (kind == "device") {
      check(cudaMalloc(&ptr, n), "cudaMalloc");
    } else if (kind == "pool") {
      check(cudaMallocAsync(&ptr, n, cudaStreamLegacy), "cudaMallocAsync");
    } else if (kind == "managed") {
      check(cudaMallocManaged(&ptr, n, cudaMemAttachGlobal), "cudaMallocManaged");
    } else if (kind == "mapped") {
      check(cudaHostAlloc(&ptr, n, cudaHostAllocMapped | cudaHostAllocPortable), "cudaHostAlloc");
    } else if (kind == "host") {
      ptr = std::malloc(n);
      if (ptr == nullptr) throw std::bad_alloc();
    } else {
      throw py::value_error("kind must be device, pool, managed, mapped or host, got '" + kind + "'");
    }
  }
  ~Allocation() {
    if (kind == "pool") {
      cudaFreeAsync(ptr, cudaStreamLegacy);
    } else if (kind == "mapped") {
      cudaFreeHost(ptr);
    } else if (kind == "host") {
      std::free(ptr);
    } else {
      cudaFree(ptr);
    }
    cudaGetLastError();
  }
  Allocation(const Allocation&) = delete;
  Allocation& operator=(const Allocation&) = delete;
};

// A device array for the tests: a copy of a NumPy array in memory of `kind`, exported as asked.
struct TestArray {
  std::shared_ptr<Allocation> memory;
  std::vector<std::int64_t> shape;
  py::dtype dtype;
  std::string interface;  // "cai", "dlpack" or "both"
  py::object cai_stream;  // the CAI "stream" entry; py::none() = None; nullptr object = no entry
  bool has_cai_stream = true;
  bool readonly = false;
  std::vector<std::int64_t> strides;  // bytes; empty = C-contiguous (None)
  py::object last_dlpack_stream;      // what the last __dlpack__ call was asked for
  int dlpack_calls = 0;
};

int dl_device_type(const std::string& kind) {
  if (kind == "managed") return dlpack::kDLCUDAManaged;
  if (kind == "mapped") return dlpack::kDLCUDAHost;
  if (kind == "host") return dlpack::kDLCPU;
  return dlpack::kDLCUDA;
}

struct TestExport {
  std::shared_ptr<Allocation> memory;
  std::vector<std::int64_t> shape;
  std::vector<std::int64_t> strides;  // elements
};

py::capsule export_dlpack(TestArray& a, py::object stream) {
  a.last_dlpack_stream = stream;
  ++a.dlpack_calls;
  auto* managed = new dlpack::DLManagedTensor{};
  auto* ctx = new TestExport{a.memory, a.shape, {}};
  const auto item = static_cast<std::int64_t>(a.dtype.itemsize());
  for (std::int64_t s : a.strides) ctx->strides.push_back(s / item);
  managed->manager_ctx = ctx;
  managed->deleter = [](dlpack::DLManagedTensor* self) {
    delete static_cast<TestExport*>(self->manager_ctx);
    delete self;
  };
  dlpack::DLTensor& t = managed->dl_tensor;
  t.data = a.memory->ptr;
  t.device = {dl_device_type(a.memory->kind), 0};
  t.ndim = static_cast<std::int32_t>(ctx->shape.size());
  const char kind = a.dtype.kind();
  t.dtype = {static_cast<std::uint8_t>(kind == 'f'   ? dlpack::kDLFloat
                                       : kind == 'u' ? dlpack::kDLUInt
                                                     : dlpack::kDLInt),
             static_cast<std::uint8_t>(item * 8), 1};
  t.shape = ctx->shape.data();
  t.strides = ctx->strides.empty() ? nullptr : ctx->strides.data();
  t.byte_offset = 0;
  PyObject* capsule = PyCapsule_New(managed, "dltensor", [](PyObject* self) {
    if (std::strcmp(PyCapsule_GetName(self), "dltensor") != 0) return;  // consumed: the consumer deletes it
    auto* m = static_cast<dlpack::DLManagedTensor*>(PyCapsule_GetPointer(self, "dltensor"));
    if (m != nullptr) m->deleter(m);
  });
  if (capsule == nullptr) {
    managed->deleter(managed);
    throw py::error_already_set();
  }
  return py::reinterpret_steal<py::capsule>(capsule);
}

// Built by hand (no STL caster): the helper works the same in a build whose other files lack <pybind11/stl.h>.
py::tuple int_tuple(const std::vector<std::int64_t>& values) {
  py::tuple t(values.size());
  for (std::size_t i = 0; i < values.size(); ++i) t[i] = py::int_(values[i]);
  return t;
}

py::dict cai_dict(const TestArray& a) {
  py::dict cai;
  cai["shape"] = int_tuple(a.shape);
  cai["typestr"] = a.dtype.attr("str");
  cai["data"] = py::make_tuple(to_int(a.memory->ptr), a.readonly);
  cai["strides"] = a.strides.empty() ? py::object(py::none()) : py::object(int_tuple(a.strides));
  cai["version"] = a.has_cai_stream ? 3 : 2;
  if (a.has_cai_stream) cai["stream"] = a.cai_stream;
  return cai;
}

TestArray make_test_array(const py::array& host, const std::string& kind, const std::string& interface,
                          py::object cai_stream, bool readonly, py::object strides) {
  if (interface != "cai" && interface != "dlpack" && interface != "both") {
    throw py::value_error("interface must be cai, dlpack or both, got '" + interface + "'");
  }
  TestArray a;
  const py::array contiguous = py::array::ensure(host, py::array::c_style);
  a.memory = std::make_shared<Allocation>(kind, static_cast<std::size_t>(contiguous.nbytes()));
  if (contiguous.nbytes() > 0) {
    check(cudaMemcpy(a.memory->ptr, contiguous.data(), contiguous.nbytes(), cudaMemcpyDefault), "cudaMemcpy");
  }
  for (py::ssize_t i = 0; i < contiguous.ndim(); ++i) a.shape.push_back(contiguous.shape(i));
  a.dtype = contiguous.dtype();
  a.interface = interface;
  a.has_cai_stream = !(py::isinstance<py::str>(cai_stream) && cai_stream.cast<std::string>() == "absent");
  a.cai_stream = a.has_cai_stream ? cai_stream : py::none();
  a.readonly = readonly;
  if (!strides.is_none()) {
    for (py::handle s : py::reinterpret_borrow<py::tuple>(py::tuple(strides)))
      a.strides.push_back(s.cast<std::int64_t>());
  }
  a.last_dlpack_stream = py::none();
  return a;
}

py::array test_array_numpy(const TestArray& a) {
  std::vector<py::ssize_t> dims(a.shape.begin(), a.shape.end());
  py::array out(a.dtype, dims);
  void* destination = out.mutable_data();  // both read with the GIL held
  const auto bytes = static_cast<std::size_t>(out.nbytes());
  if (bytes > 0) {
    cudaError_t status;
    {
      py::gil_scoped_release release;
      status = cudaDeviceSynchronize();
      if (status == cudaSuccess) status = cudaMemcpy(destination, a.memory->ptr, bytes, cudaMemcpyDefault);
    }
    check(status, "numpy");
  }
  return out;
}

void register_test_array(py::module_& t) {
  py::class_<TestArray>(t, "DeviceMemory",
                        "A copy of a NumPy array in CUDA memory of `kind` (device, pool, managed, mapped, host), "
                        "exported through `interface` (cai, dlpack, both). cai_stream: the CAI 'stream' entry "
                        "(an int, None, or 'absent' for a version-2 dict without one).")
      .def(py::init(&make_test_array), py::arg("host"), py::arg("kind") = "device", py::arg("interface") = "cai",
           py::arg("cai_stream") = py::none(), py::arg("readonly") = false, py::arg("strides") = py::none())
      .def_property_readonly("ptr", [](const TestArray& a) { return to_int(a.memory->ptr); })
      .def_property_readonly("shape", [](const TestArray& a) { return int_tuple(a.shape); })
      .def_property_readonly("kind", [](const TestArray& a) { return a.memory->kind; })
      .def_readonly("dlpack_calls", &TestArray::dlpack_calls)
      .def_readonly("last_dlpack_stream", &TestArray::last_dlpack_stream)
      .def_property_readonly("__cuda_array_interface__",
                             [](const TestArray& a) {
                               if (a.interface == "dlpack") throw py::attribute_error("__cuda_array_interface__");
                               return cai_dict(a);
                             })
      .def_property_readonly("__dlpack__",
                             [](py::object self) -> py::object {
                               TestArray& a = self.cast<TestArray&>();
                               if (a.interface == "cai") throw py::attribute_error("__dlpack__");
                               return py::cpp_function(
                                   [self](py::object stream, py::object, py::object, py::object) {
                                     return export_dlpack(self.cast<TestArray&>(), stream);
                                   },
                                   py::kw_only(), py::arg("stream") = py::none(), py::arg("max_version") = py::none(),
                                   py::arg("dl_device") = py::none(), py::arg("copy") = py::none());
                             })
      .def_property_readonly("__dlpack_device__",
                             [](py::object self) -> py::object {
                               TestArray& a = self.cast<TestArray&>();
                               if (a.interface == "cai") throw py::attribute_error("__dlpack_device__");
                               const int type = dl_device_type(a.memory->kind);
                               return py::cpp_function([type] { return py::make_tuple(type, 0); });
                             })
      .def("numpy", &test_array_numpy, "Copy back to the host (after a device-wide synchronisation).");
}

}  // namespace

// The sigmoid path's kernel candidates of segment_windows (csrc/cuda/segment_windows_testing.cuh), by name, for
// the GPU lease that times them (checks/postprocess_variants.py) and the emulated tests that check each.
// (The names are the library's list, zsseg/segment_windows.h: a prepared plan names its kernel with them.)
constexpr const auto& kVariantNames = zsseg::kSegmentWindowsKernels;
static_assert(zsseg::kSegmentWindowsKernelCount == zsseg::segment_windows_testing::kVariants, "a name per variant");

void register_segment_windows_variants(py::module_& t) {
  namespace swt = zsseg::segment_windows_testing;
  t.def("segment_windows_variants", [] {
    py::list names;
    for (const char* name : kVariantNames) names.append(name);
    return names;
  });
  t.def(
      "segment_windows_variant",
      [](const py::object& name) {
        const std::string before = kVariantNames[static_cast<int>(swt::variant())];
        if (name.is_none()) return before;
        const std::string wanted = py::cast<std::string>(name);
        for (int k = 0; k < swt::kVariants; ++k) {
          if (wanted == kVariantNames[k]) {
            swt::set_variant(static_cast<swt::Variant>(k));
            return before;
          }
        }
        std::string names;
        for (int k = 0; k < swt::kVariants; ++k) names += (k ? ", " : "") + std::string(kVariantNames[k]);
        throw py::value_error("segment_windows_variant: one of " + names + ", got '" + wanted + "'");
      },
      py::arg("name") = py::none(),
      "The sigmoid path's kernel of the next segment_windows calls (process-wide): sets it when a name is given; "
      "returns the one before.");
  t.def(
      "segment_windows_counters",
      [](bool reset) {
        const swt::PruneStats stats = swt::prune_stats();
        if (reset) swt::reset_prune_stats();
        py::dict counters;
        counters["tiles"] = stats.tiles;
        counters["classes"] = stats.classes;
        counters["kept"] = stats.kept;
        counters["fast_tiles"] = stats.fast_tiles;
        counters["chained_rows"] = stats.chained_rows;
        counters["warp_tiles"] = stats.warp_tiles;
        counters["bound_loads"] = stats.bound_loads;
        counters["prebound_loads"] = stats.prebound_loads;
        return counters;
      },
      py::arg("reset") = false,
      "What the sigmoid path's launches did since the last reset (emulated build only; zeros on a GPU): tiles, "
      "classes, kept, fast_tiles, chained_rows (the columns_chain kernel's chained rows: which kernel ran), "
      "warp_tiles (the tiles the warps kernel ran), bound_loads (the global loads of the tiles' bound passes), "
      "prebound_loads (the logits ordered_prebound's first launch read); "
      "reset=True starts them again after reading.");
}

void register_testing(py::module_& m) {
  py::module_ t = m.def_submodule("_testing", "CUDA test helpers (not public API); see csrc/bindings/testing.cpp.");
  register_test_array(t);
  t.def(
      "stream_create",
      [](bool non_blocking) {
        cudaStream_t stream = nullptr;
        check(cudaStreamCreateWithFlags(&stream, non_blocking ? cudaStreamNonBlocking : cudaStreamDefault),
              "cudaStreamCreateWithFlags");
        return to_int(stream);
      },
      py::arg("non_blocking") = true);
  t.def("stream_destroy", [](std::int64_t s) { check(cudaStreamDestroy(to_stream(s)), "cudaStreamDestroy"); });
  t.def("stream_synchronize", [](std::int64_t s) {
    py::gil_scoped_release release;
    check(cudaStreamSynchronize(to_stream(s)), "cudaStreamSynchronize");
  });
  t.def("device_synchronize", [] {
    py::gil_scoped_release release;
    check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  });
  t.def(
      "begin_capture",
      [](std::int64_t s, const std::string& mode) {
        const cudaStreamCaptureMode m = mode == "global"         ? cudaStreamCaptureModeGlobal
                                        : mode == "thread_local" ? cudaStreamCaptureModeThreadLocal
                                        : mode == "relaxed"      ? cudaStreamCaptureModeRelaxed
                                                                 : throw py::value_error(
                                                                       "mode: global, "
                                                                       "thread_local or relaxed");
        check(cudaStreamBeginCapture(to_stream(s), m), "cudaStreamBeginCapture");
      },
      py::arg("stream"), py::arg("mode") = "global", "Start capturing stream `s` into a CUDA graph.");
  t.def(
      "end_capture",
      [](std::int64_t s, bool keep) -> py::object {
        cudaGraph_t graph = nullptr;
        const cudaError_t status = cudaStreamEndCapture(to_stream(s), &graph);
        if (graph != nullptr && !keep) cudaGraphDestroy(graph);
        check(status, "cudaStreamEndCapture");
        if (!keep) return py::none();
        return py::int_(to_int(graph));
      },
      py::arg("stream"), py::arg("keep") = false,
      "End the capture; RuntimeError when it was invalidated (an illegal call during the capture). keep=True "
      "returns the graph (an int handle) instead of destroying it.");
  t.def("is_capturing", [](std::int64_t s) {
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    check(cudaStreamIsCapturing(to_stream(s), &status), "cudaStreamIsCapturing");
    return status == cudaStreamCaptureStatusNone     ? std::string("none")
           : status == cudaStreamCaptureStatusActive ? std::string("active")
                                                     : std::string("invalidated");
  });
  t.def("graph_node_count", [](std::intptr_t graph) {
    std::size_t count = 0;
    check(cudaGraphGetNodes(reinterpret_cast<cudaGraph_t>(graph), nullptr, &count), "cudaGraphGetNodes");
    return count;
  });
  t.def("graph_instantiate", [](std::intptr_t graph) {
    cudaGraphExec_t exec = nullptr;
    check(cudaGraphInstantiate(&exec, reinterpret_cast<cudaGraph_t>(graph), 0), "cudaGraphInstantiate");
    return to_int(exec);
  });
  t.def("graph_launch", [](std::intptr_t exec, std::int64_t s) {
    check(cudaGraphLaunch(reinterpret_cast<cudaGraphExec_t>(exec), to_stream(s)), "cudaGraphLaunch");
  });
  t.def("graph_exec_destroy", [](std::intptr_t exec) {
    check(cudaGraphExecDestroy(reinterpret_cast<cudaGraphExec_t>(exec)), "cudaGraphExecDestroy");
  });
  t.def("graph_destroy",
        [](std::intptr_t graph) { check(cudaGraphDestroy(reinterpret_cast<cudaGraph_t>(graph)), "cudaGraphDestroy"); });
  t.def(
      "event_create",
      [](bool timing) {
        cudaEvent_t event = nullptr;
        check(cudaEventCreateWithFlags(&event, timing ? cudaEventDefault : cudaEventDisableTiming),
              "cudaEventCreateWithFlags");
        return to_int(event);
      },
      py::arg("timing") = false, "A new event (timing=True: cudaEventElapsedTime can measure between two).");
  t.def("event_destroy",
        [](std::intptr_t e) { check(cudaEventDestroy(reinterpret_cast<cudaEvent_t>(e)), "cudaEventDestroy"); });
  t.def(
      "event_record",
      [](std::intptr_t e, std::int64_t s, bool external) {
        check(cudaEventRecordWithFlags(reinterpret_cast<cudaEvent_t>(e), to_stream(s),
                                       external ? cudaEventRecordExternal : cudaEventRecordDefault),
              "cudaEventRecordWithFlags");
      },
      py::arg("event"), py::arg("stream"), py::arg("external") = false,
      "Record the event on the stream; external=True during a capture: an event record node that each launch of "
      "the graph records (cudaEventRecordExternal).");
  t.def("event_synchronize", [](std::intptr_t e) {
    py::gil_scoped_release release;
    check(cudaEventSynchronize(reinterpret_cast<cudaEvent_t>(e)), "cudaEventSynchronize");
  });
  t.def(
      "event_elapsed_ms",
      [](std::intptr_t start, std::intptr_t end) {
        float ms = 0.0f;
        check(cudaEventElapsedTime(&ms, reinterpret_cast<cudaEvent_t>(start), reinterpret_cast<cudaEvent_t>(end)),
              "cudaEventElapsedTime");
        return ms;
      },
      py::arg("start"), py::arg("end"), "Milliseconds between two completed records of timing events.");
  t.def(
      "event_query",
      [](std::intptr_t e) {
        const cudaError_t status = cudaEventQuery(reinterpret_cast<cudaEvent_t>(e));
        if (status == cudaErrorNotReady) return false;
        check(status, "cudaEventQuery");
        return true;
      },
      "True when the event's work is done (False: not ready; RuntimeError for an error).");
  t.def(
      "stream_wait_event",
      [](std::int64_t s, std::intptr_t e, bool external) {
        check(cudaStreamWaitEvent(to_stream(s), reinterpret_cast<cudaEvent_t>(e),
                                  external ? cudaEventWaitExternal : cudaEventWaitDefault),
              "cudaStreamWaitEvent");
      },
      py::arg("stream"), py::arg("event"), py::arg("external") = false);
  t.def("exchange_capture_mode", [](const std::string& mode) {
    cudaStreamCaptureMode m = mode == "global"         ? cudaStreamCaptureModeGlobal
                              : mode == "thread_local" ? cudaStreamCaptureModeThreadLocal
                                                       : cudaStreamCaptureModeRelaxed;
    check(cudaThreadExchangeStreamCaptureMode(&m), "cudaThreadExchangeStreamCaptureMode");
    return m == cudaStreamCaptureModeGlobal        ? std::string("global")
           : m == cudaStreamCaptureModeThreadLocal ? std::string("thread_local")
                                                   : std::string("relaxed");
  });
  t.def(
      "memset_async",
      [](std::intptr_t ptr, int value, std::size_t bytes, std::int64_t s) {
        check(cudaMemsetAsync(to_ptr(ptr), value, bytes, to_stream(s)), "cudaMemsetAsync");
      },
      "Fill `bytes` bytes at `ptr` with `value`, enqueued on stream `s`.");
  t.def("pointer_kind", [](std::intptr_t ptr) {
    cudaPointerAttributes attr{};
    check(cudaPointerGetAttributes(&attr, to_ptr(ptr)), "cudaPointerGetAttributes");
    switch (attr.type) {
      case cudaMemoryTypeHost:
        return std::string("host");
      case cudaMemoryTypeDevice:
        return std::string("device");
      case cudaMemoryTypeManaged:
        return std::string("managed");
      default:
        return std::string("unregistered");
    }
  });
  // Raw memory for a torch-free CUDA driver stand-in (python_tests: the device pipeline on CudaMemory).
  t.def(
      "malloc",
      [](std::size_t bytes, const std::string& kind) {
        void* ptr = nullptr;
        if (kind == "device") {
          check(cudaMalloc(&ptr, bytes == 0 ? 1 : bytes), "cudaMalloc");
        } else if (kind == "mapped") {
          check(cudaHostAlloc(&ptr, bytes == 0 ? 1 : bytes, cudaHostAllocMapped | cudaHostAllocPortable),
                "cudaHostAlloc");
        } else {
          throw py::value_error("kind must be device or mapped, got '" + kind + "'");
        }
        return to_int(ptr);
      },
      py::arg("bytes"), py::arg("kind") = "device");
  t.def(
      "free",
      [](std::intptr_t ptr, const std::string& kind) {
        check(kind == "mapped" ? cudaFreeHost(to_ptr(ptr)) : cudaFree(to_ptr(ptr)), "free");
      },
      py::arg("ptr"), py::arg("kind") = "device");
  t.def("memcpy_async", [](std::intptr_t dst, std::intptr_t src, std::size_t bytes, std::int64_t stream) {
    check(cudaMemcpyAsync(to_ptr(dst), to_ptr(src), bytes, cudaMemcpyDefault, to_stream(stream)), "cudaMemcpyAsync");
  });
  t.def("device_attribute", [](const std::string& name, int device) {
    const cudaDeviceAttr attr = name == "integrated"            ? cudaDevAttrIntegrated
                                : name == "can_map_host_memory" ? cudaDevAttrCanMapHostMemory
                                                                : cudaDevAttrMemoryPoolsSupported;
    int value = 0;
    check(cudaDeviceGetAttribute(&value, attr, device), "cudaDeviceGetAttribute");
    return value;
  });
  t.def(
      "default_pool_attribute",
      [](const std::string& name, int device) {
        const cudaMemPoolAttr attr = name == "release_threshold"  ? cudaMemPoolAttrReleaseThreshold
                                     : name == "reserved_current" ? cudaMemPoolAttrReservedMemCurrent
                                     : name == "used_current"     ? cudaMemPoolAttrUsedMemCurrent
                                                                  : throw py::value_error(
                                                                        "name: release_threshold, reserved_current or "
                                                                        "used_current, got '" +
                                                                        name + "'");
        cudaMemPool_t pool = nullptr;
        check(cudaDeviceGetDefaultMemPool(&pool, device), "cudaDeviceGetDefaultMemPool");
        std::uint64_t value = 0;
        check(cudaMemPoolGetAttribute(pool, attr, &value), "cudaMemPoolGetAttribute");
        return value;
      },
      py::arg("name"), py::arg("device") = 0,
      "An attribute of the device's DEFAULT memory pool (the one torch's cudaMallocAsync backend shares).");
  register_segment_windows_variants(t);
}

}  // namespace zsseg_py
#else
namespace zsseg_py {
void register_testing(py::module_&) {}
}  // namespace zsseg_py
#endif
