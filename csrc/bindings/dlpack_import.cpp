// The __dlpack__ import of array arguments (array_args.h has the contract; array_args.cpp the other producers and
// the checks every source shares): the capsule asked for with the launch stream, owned, and described as a RawArray.
#include <cstdint>
#include <string>

#include "array_import.h"

#ifdef ZSSEG_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace zsseg_py::detail {
namespace {

std::string dlpack_type_name(const dlpack::DLDataType& t) {
  const char* base = t.code == dlpack::kDLFloat     ? "float"
                     : t.code == dlpack::kDLInt     ? "int"
                     : t.code == dlpack::kDLUInt    ? "uint"
                     : t.code == dlpack::kDLBfloat  ? "bfloat"
                     : t.code == dlpack::kDLComplex ? "complex"
                     : t.code == dlpack::kDLBool    ? "bool"
                                                    : "dltype";
  std::string name = std::string(base) + std::to_string(t.bits);
  if (t.lanes != 1) name += "x" + std::to_string(t.lanes);
  return name;
}

void fill_from_dltensor(const dlpack::DLTensor& t, RawArray& raw, const ArgParser& p, const char* name) {
  if (t.ndim < 0 || t.ndim > 32 || (t.ndim > 0 && t.shape == nullptr)) {
    p.fail_value(std::string("argument '") + name + "' has an invalid DLPack rank " + std::to_string(t.ndim));
  }
  const auto& dt = t.dtype;
  raw.type_name = dlpack_type_name(dt);
  raw.type = elem_type_of_dlpack(dt);
  const std::int64_t item = dt.bits / 8;
  raw.shape.assign(t.shape, t.shape + t.ndim);
  if (t.strides != nullptr) {
    for (int i = 0; i < t.ndim; ++i) raw.byte_strides.push_back(t.strides[i] * item);
  }
  raw.data = static_cast<const char*>(t.data) + t.byte_offset;
  const int kind = t.device.device_type;
  if (kind == dlpack::kDLCPU) {
    raw.place = Placement{Device::CPU, 0};
  } else if (kind == dlpack::kDLCUDA || kind == dlpack::kDLCUDAManaged) {
    raw.place = Placement{Device::CUDA, t.device.device_id};
  } else if (kind == dlpack::kDLCUDAHost) {  // page-locked host memory: usable when mapped (checked later)
    raw.place = Placement{Device::CUDA, t.device.device_id};
    raw.device_from_pointer = true;
  } else {
    p.fail_value(std::string("argument '") + name + "' is on DLPack device type " + std::to_string(kind) +
                 "; expected CPU (1), CUDA (2), mapped pinned host memory (3) or managed memory (13)");
  }
}

template <class Managed>
py::capsule own_dlpack(PyObject* capsule, const char* name, const char* used_name) {
  auto* managed = static_cast<Managed*>(PyCapsule_GetPointer(capsule, name));
  if (managed == nullptr) throw py::error_already_set();
  PyCapsule_SetName(capsule, used_name);  // we are the consumer now: the deleter is ours to call
  return py::capsule(managed, [](void* ptr) {
    auto* m = static_cast<Managed*>(ptr);
    if (m->deleter != nullptr) m->deleter(m);
  });
}

// Whether `obj` is a torch tensor whose pending work is on the launch stream already: torch's current stream on
// `device` is it. torch's __dlpack__(stream=s) orders s after its current stream with an event made for the call (a
// Python Event, a record, a stream wait: tens of microseconds of host time per argument) unless s *is* that stream,
// and it compares stream objects: an ExternalStream of the very handle of its current stream is not equal, so an op
// on the Engine's own stream inside torch.cuda.stream(it) paid 4 records and 4 waits per call (the H100's probe P1).
// torch is looked up, never imported; anything unexpected answers false (and the argument is ordered as before).
bool on_torch_launch_stream(py::handle obj, int device, std::int64_t launch) {
  PyObject* torch = PyDict_GetItemString(PyImport_GetModuleDict(), "torch");  // borrowed; no error when absent
  if (torch == nullptr) return false;
  try {
    const py::handle module(torch);
    if (!py::isinstance(obj, module.attr("Tensor"))) return false;
    const py::object raw = module.attr("_C").attr("_cuda_getCurrentRawStream")(device);
    return PyLong_Check(raw.ptr()) && raw.cast<std::int64_t>() == launch;
  } catch (py::error_already_set&) {
    return false;  // (the error is dropped with the exception object)
  } catch (const py::cast_error&) {
    return false;
  }
}

py::object call_dlpack(py::handle obj, bool on_cuda, int device, const ArgParser& p) {
  const std::int64_t stream = p.stream_int();
  // DLPack: stream 1 names the legacy default stream on CUDA; CPU producers get no stream; -1 asks for no
  // synchronisation (a torch tensor whose current stream is the launch stream: stream order has its work already).
  py::dict plain;
  if (on_cuda) {
    const bool same = on_torch_launch_stream(obj, device, stream);
    plain["stream"] = py::int_(same ? -1 : (stream == 0 ? 1 : stream));
  }
  py::dict with_version = py::reinterpret_steal<py::dict>(PyDict_Copy(plain.ptr()));
  with_version["max_version"] = py::make_tuple(1, 0);
  const py::object method = obj.attr("__dlpack__");
  for (const py::dict* kwargs : {&with_version, &plain}) {
    try {
      return method(**(*kwargs));
    } catch (py::error_already_set& err) {
      if (!err.matches(PyExc_TypeError)) throw;
    }
  }
  if (on_cuda && p.capturing()) {
    throw py::value_error(
        "__dlpack__ takes no stream argument, so it cannot be ordered without a host wait, which "
        "is illegal while the stream is captured into a CUDA graph");
  }
  py::object capsule = method();
#ifdef ZSSEG_WITH_CUDA
  // The producer took no stream argument, so its pending work cannot be ordered before ours: wait for it.
  if (on_cuda) {
    cudaError_t status;
    {
      py::gil_scoped_release release;  // other Python threads run while this one waits for the GPU
      status = cudaDeviceSynchronize();
    }
    if (status != cudaSuccess) {
      throw py::value_error(std::string("__dlpack__: cudaDeviceSynchronize failed: ") + cudaGetErrorString(status));
    }
  }
#endif
  return capsule;
}

}  // namespace

RawArray from_dlpack(py::handle obj, const ArgParser& p, const char* name) {
  RawArray raw;
  raw.via = "__dlpack__";
  bool on_cuda = false;
  int device_id = 0;
  try {
    const py::tuple device = obj.attr("__dlpack_device__")();
    const int kind = device[0].cast<int>();
    on_cuda = kind == dlpack::kDLCUDA || kind == dlpack::kDLCUDAManaged;
    if (on_cuda) device_id = device[1].cast<int>();
  } catch (py::error_already_set& err) {
    p.fail_value(std::string("argument '") + name + "': __dlpack_device__() failed: " + error_text(err));
  } catch (const std::exception&) {
    p.fail_value(std::string("argument '") + name + "': __dlpack_device__() did not return (int, int)");
  }
  py::object capsule;
  try {
    capsule = call_dlpack(obj, on_cuda, device_id, p);
  } catch (py::error_already_set& err) {
    p.fail_value(std::string("argument '") + name + "' could not be exported with __dlpack__: " + error_text(err));
  }
  PyObject* cap = capsule.ptr();
  if (PyCapsule_IsValid(cap, "dltensor_versioned")) {
    raw.keep_alive = own_dlpack<dlpack::DLManagedTensorVersioned>(cap, "dltensor_versioned", "used_dltensor_versioned");
    const auto* m =
        static_cast<const dlpack::DLManagedTensorVersioned*>(raw.keep_alive.cast<py::capsule>().get_pointer());
    if (m->version.major != 1) {
      p.fail_value(std::string("argument '") + name + "': unsupported DLPack major version " +
                   std::to_string(m->version.major) + " (expected 1)");
    }
    fill_from_dltensor(m->dl_tensor, raw, p, name);
    raw.readonly = (m->flags & dlpack::kFlagReadOnly) != 0;
  } else if (PyCapsule_IsValid(cap, "dltensor")) {
    raw.keep_alive = own_dlpack<dlpack::DLManagedTensor>(cap, "dltensor", "used_dltensor");
    const auto* m = static_cast<const dlpack::DLManagedTensor*>(raw.keep_alive.cast<py::capsule>().get_pointer());
    fill_from_dltensor(m->dl_tensor, raw, p, name);
  } else {
    p.fail_type(std::string("argument '") + name + "': __dlpack__() returned " + python_type_name(capsule) +
                ", not an unused DLPack capsule");
  }
  return raw;
}

}  // namespace zsseg_py::detail
