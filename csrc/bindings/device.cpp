// cuda_available() & co. and the DeviceArray class: device memory owned by Python, exported to consumers
// through __cuda_array_interface__ (v3) and DLPack (classic "dltensor" or versioned "dltensor_versioned").
#include <cstring>

#include "array_args.h"
#include "registry.h"

#ifdef ZSSEG_WITH_CUDA
#include <cuda_runtime.h>

#include "cuda/stream_order.h"
#endif

namespace zsseg_py {

#ifdef ZSSEG_WITH_CUDA
namespace so = zsseg::stream_order;

namespace {
// Owners of the arguments of launches that may still be running (see array_args.h). Never destroyed: Python
// objects must not be released after the interpreter is gone; drain_in_use() empties it at exit.
so::DeferredRelease<std::vector<py::object>>& in_use_list() {
  static auto* list = new so::DeferredRelease<std::vector<py::object>>();
  return *list;
}

so::StreamBuffer& stream_buffer(const DeviceBuffer& buffer) {
  return *static_cast<so::StreamBuffer*>(buffer.impl().get());
}

// Wait (without the GIL) for every launch still holding arguments, then release them. Registered with atexit.
void drain_in_use() {
  const auto events = in_use_list().pending_events();
  {
    py::gil_scoped_release release;
    for (const auto& event : events) {
      if (event && event->synchronize() != cudaSuccess) cudaGetLastError();
    }
  }
  in_use_list().sweep();
}
}  // namespace

void sweep_in_use() {
  in_use_list().sweep();
}

int finish_launch(std::int64_t stream, std::vector<py::object>&& in_use,
                  const std::vector<std::shared_ptr<DeviceBuffer>>& outputs) {
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) cudaGetLastError();
  auto ready = std::make_shared<so::ReadyEvent>();
  const cudaError_t status = ready->record(so::as_stream(stream), device);
  if (status != cudaSuccess) {
    cudaGetLastError();
    // No event: keep nothing pending on it (the outputs fall back to a synchronising cudaFree).
    in_use_list().keep_until(nullptr, std::move(in_use));
    return static_cast<int>(status);
  }
  for (const auto& buffer : outputs) stream_buffer(*buffer).set_ready(ready);
  in_use_list().keep_until(ready, std::move(in_use));
  return 0;
}
#else
void sweep_in_use() {}
int finish_launch(std::int64_t, std::vector<py::object>&&, const std::vector<std::shared_ptr<DeviceBuffer>>&) {
  return 0;
}
#endif

// ---- DeviceBuffer -----------------------------------------------------------------------------------
DeviceBuffer::DeviceBuffer(std::size_t bytes, int device_id, std::int64_t stream)
    : bytes_(bytes), device_id_(device_id) {
#ifdef ZSSEG_WITH_CUDA
  std::shared_ptr<so::StreamBuffer> buffer;
  const cudaError_t status = so::StreamBuffer::allocate(bytes, device_id, so::as_stream(stream), &buffer);
  if (status != cudaSuccess) {
    cudaGetLastError();
    throw std::runtime_error("allocating " + std::to_string(bytes) + " bytes on cuda:" + std::to_string(device_id) +
                             " failed: " + cudaGetErrorString(status));
  }
  data_ = buffer->data();
  impl_ = std::move(buffer);
#else
  (void)stream;
  throw std::runtime_error("DeviceBuffer: zsseg_rt was built without CUDA");
#endif
}

DeviceBuffer::~DeviceBuffer() = default;  // the StreamBuffer frees stream-ordered, without blocking

namespace {

const char* cai_typestr(ElemType type) {
  switch (type) {
    case ElemType::Float32:
      return "<f4";
    case ElemType::Float16:
      return "<f2";
    case ElemType::Int32:
      return "<i4";
    default:
      return "|V0";
  }
}

dlpack::DLDataType dl_dtype(ElemType type) {
  switch (type) {
    case ElemType::Float16:
      return {dlpack::kDLFloat, 16, 1};
    case ElemType::Int32:
      return {dlpack::kDLInt, 32, 1};
    default:
      return {dlpack::kDLFloat, 32, 1};
  }
}

std::int64_t shape_numel(const std::vector<std::int64_t>& shape) {
  std::int64_t count = 1;
  for (std::int64_t d : shape) count *= d;
  return count;
}

// Owns what a DLPack tensor points at: a share of the buffer and the shape array.
struct ExportContext {
  std::shared_ptr<DeviceBuffer> buffer;
  std::vector<std::int64_t> shape;
};

void fill_dltensor(dlpack::DLTensor& t, const DeviceArray& arr, ExportContext& ctx) {
  t.data = arr.buffer->data();
  t.device = {dlpack::kDLCUDA, arr.buffer->device_id()};
  t.ndim = static_cast<std::int32_t>(ctx.shape.size());
  t.dtype = dl_dtype(arr.type);
  t.shape = ctx.shape.data();
  t.strides = nullptr;  // C-contiguous
  t.byte_offset = 0;
}

template <class Managed>
void delete_managed(Managed* self) {
  delete static_cast<ExportContext*>(self->manager_ctx);
  delete self;
}

template <class Managed>
py::capsule make_capsule(const DeviceArray& arr, const char* name) {
  auto* managed = new Managed{};
  auto* ctx = new ExportContext{arr.buffer, arr.shape};
  managed->manager_ctx = ctx;
  managed->deleter = &delete_managed<Managed>;
  fill_dltensor(managed->dl_tensor, arr, *ctx);
  PyObject* capsule = PyCapsule_New(managed, name, [](PyObject* self) {
    // Only an unconsumed capsule still owns its tensor; consumers rename it "used_...".
    const char* capsule_name = PyCapsule_GetName(self);
    if (capsule_name == nullptr) {
      PyErr_Clear();
      return;
    }
    if (std::strcmp(capsule_name, "dltensor") != 0 && std::strcmp(capsule_name, "dltensor_versioned") != 0) return;
    auto* m = static_cast<Managed*>(PyCapsule_GetPointer(self, capsule_name));
    if (m != nullptr && m->deleter != nullptr) m->deleter(m);
  });
  if (capsule == nullptr) {
    delete_managed(managed);
    throw py::error_already_set();
  }
  return py::reinterpret_steal<py::capsule>(capsule);
}

// Make the consumer's stream (DLPack numbering: 1 legacy default, 2 per-thread, else a pointer) wait for
// the stream the array was produced on.
void order_for_consumer(const DeviceArray& arr, const py::object& stream) {
  // DLPack: None means the consumer works on the legacy default stream (1), which must be ordered too.
  const std::int64_t consumer = stream.is_none() ? 1 : stream.cast<std::int64_t>();
  if (consumer == -1) return;  // DLPack: -1 = the consumer asks for no synchronisation
  if (consumer == 0)
    throw py::value_error(
        "DeviceArray.__dlpack__: stream 0 is ambiguous on CUDA; pass 1 for the legacy default stream");
#ifdef ZSSEG_WITH_CUDA
  // The consumer waits for the completion event of the producing launch; the producer's stream handle is never
  // touched (it may be destroyed by now). DLPack numbering: 1 legacy default, 2 per-thread default, else a handle.
  const cudaStream_t consumer_stream = consumer == 1   ? cudaStreamLegacy
                                       : consumer == 2 ? cudaStreamPerThread
                                                       : so::as_stream(consumer);
  const auto& ready = stream_buffer(*arr.buffer).ready();
  const cudaError_t status = ready ? ready->order_before(consumer_stream) : cudaSuccess;
  if (status != cudaSuccess) {
    cudaGetLastError();
    throw std::runtime_error(std::string("DeviceArray.__dlpack__: stream ordering failed: ") +
                             cudaGetErrorString(status));
  }
#else
  (void)arr;
#endif
}

py::object dlpack_export(const DeviceArray& arr, const py::object& stream, const py::object& max_version,
                         const py::object& dl_device, const py::object& copy) {
  if (!copy.is_none() && copy.cast<bool>()) {
    PyErr_SetString(PyExc_BufferError, "DeviceArray.__dlpack__: copy=True is not supported; the export is zero-copy");
    throw py::error_already_set();
  }
  if (!dl_device.is_none()) {
    const auto wanted = dl_device.cast<std::pair<int, int>>();
    if (wanted.first != dlpack::kDLCUDA || wanted.second != arr.buffer->device_id()) {
      PyErr_SetString(PyExc_BufferError, "DeviceArray.__dlpack__: cannot export to another device");
      throw py::error_already_set();
    }
  }
  order_for_consumer(arr, stream);
  const bool versioned = !max_version.is_none() && max_version.cast<std::pair<int, int>>().first >= 1;
  if (!versioned) return make_capsule<dlpack::DLManagedTensor>(arr, "dltensor");
  py::capsule capsule = make_capsule<dlpack::DLManagedTensorVersioned>(arr, "dltensor_versioned");
  auto* managed = static_cast<dlpack::DLManagedTensorVersioned*>(capsule.get_pointer());
  managed->version = {1, 0};
  managed->flags = 0;
  return std::move(capsule);
}

// CAI v3 "stream": the consumer synchronises on it. The producer's own stream may be gone by then, so this is
// the library's release stream of the device (never destroyed), made to wait for the completion event.
py::object cai_stream(const DeviceArray& arr) {
#ifdef ZSSEG_WITH_CUDA
  const auto& ready = stream_buffer(*arr.buffer).ready();
  if (!ready || ready->done()) return py::none();  // nothing to wait for
  cudaStream_t stream = so::release_stream(arr.buffer->device_id());
  if (stream != nullptr && ready->order_before(stream) == cudaSuccess) {
    return py::int_(reinterpret_cast<std::uintptr_t>(stream));
  }
  cudaGetLastError();
  cudaError_t status;
  {
    py::gil_scoped_release release;  // last resort: wait here
    status = ready->synchronize();
  }
  if (status != cudaSuccess) {
    cudaGetLastError();
    throw std::runtime_error(std::string("DeviceArray.__cuda_array_interface__: ") + cudaGetErrorString(status));
  }
#else
  (void)arr;
#endif
  return py::none();
}

py::dict cuda_array_interface(const DeviceArray& arr) {
  py::dict cai;
  cai["shape"] = py::tuple(py::cast(arr.shape));
  cai["typestr"] = cai_typestr(arr.type);
  cai["data"] = py::make_tuple(reinterpret_cast<std::uintptr_t>(arr.buffer->data()), false);
  cai["strides"] = py::none();
  cai["version"] = 3;
  cai["stream"] = cai_stream(arr);
  return cai;
}

// Host copy (waits for the producing stream).
py::array to_numpy(const DeviceArray& arr) {
  std::vector<py::ssize_t> dims(arr.shape.begin(), arr.shape.end());
  py::dtype dtype = arr.type == ElemType::Float16 ? py::dtype("float16")
                    : arr.type == ElemType::Int32 ? py::dtype::of<std::int32_t>()
                                                  : py::dtype::of<float>();
  py::array host(dtype, dims);
#ifdef ZSSEG_WITH_CUDA
  CudaDeviceGuard guard(Placement{Device::CUDA, arr.buffer->device_id()});
  const auto ready = stream_buffer(*arr.buffer).ready();
  void* destination = host.mutable_data();
  const std::size_t bytes = static_cast<std::size_t>(shape_numel(arr.shape)) * elem_size(arr.type);
  cudaError_t status;
  {
    py::gil_scoped_release release;  // other Python threads run while this one waits for the GPU
    status = ready ? ready->synchronize() : cudaSuccess;
    if (status == cudaSuccess) status = cudaMemcpy(destination, arr.buffer->data(), bytes, cudaMemcpyDeviceToHost);
  }
  if (status != cudaSuccess) {
    cudaGetLastError();
    throw std::runtime_error(std::string("DeviceArray.numpy: ") + cudaGetErrorString(status));
  }
#endif
  return host;
}

std::string device_array_repr(const DeviceArray& arr) {
  std::string shape;
  for (std::size_t i = 0; i < arr.shape.size(); ++i) shape += (i ? ", " : "") + std::to_string(arr.shape[i]);
  return "DeviceArray(shape=[" + shape + "], dtype=" + elem_type_name(arr.type) +
         ", device=cuda:" + std::to_string(arr.buffer->device_id()) + ")";
}

}  // namespace

void register_device(py::module_& m) {
#ifdef ZSSEG_WITH_CUDA
  // Launches still running at exit keep their arguments until they finish, then release them while Python is
  // still there.
  py::module_::import("atexit").attr("register")(py::cpp_function(&drain_in_use));
#endif
  m.def("cuda_compiled", &zsseg::cuda_compiled, "True when this build compiled the CUDA kernels.");
  m.def("cuda_device_count", &zsseg::cuda_device_count,
        "Number of usable CUDA devices; 0 when there is no driver, no GPU, no CUDA build, or a visible GPU this "
        "build has no code for (every device is probed once per process). Never raises.");
  m.def(
      "cuda_available", [] { return zsseg::cuda_compiled() && zsseg::cuda_device_count() > 0; },
      "True when the CUDA kernels are compiled in and at least one CUDA device is usable.");
  m.def(
      "cuda_status",
      [] {
        zsseg::cuda_device_count();  // probes once per process
        return std::string(zsseg::cuda_error_string(-1));
      },
      "Why cuda_device_count() is what it is: 'no error', the cudaGetDeviceCount error, or which device cannot run "
      "this build's kernels (no code for its architecture) and how to rebuild.");

  py::class_<DeviceArray>(m, "DeviceArray",
                          "C-contiguous CUDA memory returned by the CUDA ops. Consume it with torch.from_dlpack(x), "
                          "torch.as_tensor(x, device='cuda') or CuPy; the memory lives as long as any consumer.")
      .def_property_readonly("shape", [](const DeviceArray& a) { return py::tuple(py::cast(a.shape)); })
      .def_property_readonly("dtype", [](const DeviceArray& a) { return std::string(elem_type_name(a.type)); })
      .def_property_readonly("device",
                             [](const DeviceArray& a) { return "cuda:" + std::to_string(a.buffer->device_id()); })
      .def_property_readonly("nbytes", [](const DeviceArray& a) { return a.buffer->bytes(); })
      .def_property_readonly(
          "stream", [](const DeviceArray& a) { return a.stream; },
          "The integer cudaStream_t the op was given (0 = default stream); informational only: consumers are "
          "ordered after the launch's completion event, so that stream may be destroyed after the call.")
      .def(
          "ready",
          [](const DeviceArray& a) {
#ifdef ZSSEG_WITH_CUDA
            const auto& ready = stream_buffer(*a.buffer).ready();
            return !ready || ready->done();
#else
            (void)a;
            return true;
#endif
          },
          "True when the producing launch has finished (never blocks).")
      .def_property_readonly("__cuda_array_interface__", &cuda_array_interface)
      .def("__dlpack__", &dlpack_export, py::kw_only(), py::arg("stream") = py::none(),
           py::arg("max_version") = py::none(), py::arg("dl_device") = py::none(), py::arg("copy") = py::none())
      .def("__dlpack_device__",
           [](const DeviceArray& a) { return py::make_tuple(int(dlpack::kDLCUDA), a.buffer->device_id()); })
      .def("numpy", &to_numpy, "Copy to a new NumPy array (waits, without the GIL, for the producing launch).")
      .def("__repr__", &device_array_repr);
}

}  // namespace zsseg_py
