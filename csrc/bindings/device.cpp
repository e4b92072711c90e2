// cuda_available() & co. and the DeviceArray class: device memory owned by Python, exported to consumers
// through __cuda_array_interface__ (v3) and DLPack (classic "dltensor" or versioned "dltensor_versioned").
#include <cstring>

#include "array_args.h"
#include "registry.h"

#ifdef ZSSEG_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace zsseg_py {

// ---- DeviceBuffer -----------------------------------------------------------------------------------
DeviceBuffer::DeviceBuffer(std::size_t bytes, int device_id) : bytes_(bytes), device_id_(device_id) {
#ifdef ZSSEG_WITH_CUDA
  CudaDeviceGuard guard(Placement{Device::CUDA, device_id});
  const cudaError_t status = cudaMalloc(&data_, bytes);
  if (status != cudaSuccess) {
    cudaGetLastError();
    data_ = nullptr;
    throw std::runtime_error("cudaMalloc of " + std::to_string(bytes) + " bytes on cuda:" + std::to_string(device_id) +
                             " failed: " + cudaGetErrorString(status));
  }
#else
  throw std::runtime_error("DeviceBuffer: zsseg_rt was built without CUDA");
#endif
}

DeviceBuffer::~DeviceBuffer() {
#ifdef ZSSEG_WITH_CUDA
  if (data_ != nullptr) {
    CudaDeviceGuard guard(Placement{Device::CUDA, device_id_});
    cudaFree(data_);
    cudaGetLastError();
  }
#endif
}

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
  auto* consumer_stream = reinterpret_cast<cudaStream_t>(static_cast<std::uintptr_t>(consumer));
  auto* producer_stream = reinterpret_cast<cudaStream_t>(static_cast<std::uintptr_t>(arr.stream));
  const bool both_legacy = arr.stream == 0 && consumer == 1;
  if (both_legacy || consumer_stream == producer_stream) return;
  CudaDeviceGuard guard(Placement{Device::CUDA, arr.buffer->device_id()});
  cudaEvent_t ready = nullptr;
  cudaError_t status = cudaEventCreateWithFlags(&ready, cudaEventDisableTiming);
  if (status == cudaSuccess) status = cudaEventRecord(ready, producer_stream);
  if (status == cudaSuccess) status = cudaStreamWaitEvent(consumer_stream, ready, 0);
  if (ready != nullptr) cudaEventDestroy(ready);
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

py::dict cuda_array_interface(const DeviceArray& arr) {
  py::dict cai;
  cai["shape"] = py::tuple(py::cast(arr.shape));
  cai["typestr"] = cai_typestr(arr.type);
  cai["data"] = py::make_tuple(reinterpret_cast<std::uintptr_t>(arr.buffer->data()), false);
  cai["strides"] = py::none();
  cai["version"] = 3;
  cai["stream"] = py::int_(arr.stream == 0 ? 1 : arr.stream);  // CAI v3: 1 = legacy default stream
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
  auto* stream = reinterpret_cast<cudaStream_t>(static_cast<std::uintptr_t>(arr.stream));
  void* destination = host.mutable_data();
  const std::size_t bytes = static_cast<std::size_t>(shape_numel(arr.shape)) * elem_size(arr.type);
  cudaError_t status;
  {
    py::gil_scoped_release release;  // other Python threads run while this one waits for the GPU
    status = cudaStreamSynchronize(stream);
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
  m.def("cuda_compiled", &zsseg::cuda_compiled, "True when this build compiled the CUDA kernels.");
  m.def("cuda_device_count", &zsseg::cuda_device_count,
        "Number of usable CUDA devices; 0 when there is no driver, no GPU, or no CUDA build. Never raises.");
  m.def(
      "cuda_available", [] { return zsseg::cuda_compiled() && zsseg::cuda_device_count() > 0; },
      "True when the CUDA kernels are compiled in and at least one CUDA device is usable.");
  m.def(
      "cuda_status", [] { return std::string(zsseg::cuda_error_string(-1)); },
      "Why cuda_device_count() is what it is (text of the last cudaGetDeviceCount result).");

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
          "Integer cudaStream_t the producing kernels were enqueued on (0 = default stream).")
      .def_property_readonly("__cuda_array_interface__", &cuda_array_interface)
      .def("__dlpack__", &dlpack_export, py::kw_only(), py::arg("stream") = py::none(),
           py::arg("max_version") = py::none(), py::arg("dl_device") = py::none(), py::arg("copy") = py::none())
      .def("__dlpack_device__",
           [](const DeviceArray& a) { return py::make_tuple(int(dlpack::kDLCUDA), a.buffer->device_id()); })
      .def("numpy", &to_numpy, "Copy to a new NumPy array (synchronises the producing stream).")
      .def("__repr__", &device_array_repr);
}

}  // namespace zsseg_py
