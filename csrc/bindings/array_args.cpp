// Parsing and validation of array arguments; see array_args.h for the contract (the __dlpack__ import:
// dlpack_import.cpp).
#include "array_args.h"

#include <climits>

#include <pybind11/gil_safe_call_once.h>

#ifdef ZSSEG_WITH_CUDA
#include <cuda_runtime.h>

#include "cuda/stream_order.h"
#endif

#include "array_import.h"

namespace zsseg_py {
namespace detail {

std::string python_type_name(py::handle obj) {
  return py::str(py::type::handle_of(obj).attr("__name__")).cast<std::string>();
}

std::string error_text(py::error_already_set& err) {
  return py::str(err.type().attr("__name__")).cast<std::string>() + ": " + py::str(err.value()).cast<std::string>();
}

}  // namespace detail

namespace {
using detail::error_text;
using detail::python_type_name;
using detail::RawArray;

// "[3, 64]". std::to_string, not an ostringstream: iostream facets crash when a static libstdc++ inside _C meets
// the process's shared one (as on the first GPU run).
std::string join_shape(const std::vector<std::int64_t>& shape) {
  std::string text = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) text += ", ";
    text += std::to_string(shape[i]);
  }
  return text + "]";
}

// Name like numpy's for (kind, bytes): ('f', 8) -> "float64".
std::string kind_size_name(char kind, long bytes) {
  const char* base = kind == 'f'   ? "float"
                     : kind == 'i' ? "int"
                     : kind == 'u' ? "uint"
                     : kind == 'b' ? "bool"
                     : kind == 'c' ? "complex"
                                   : nullptr;
  if (base == nullptr) return std::string("kind '") + kind + "'";
  if (kind == 'b') return "bool";
  return std::string(base) + std::to_string(bytes * 8);
}

constexpr ElemTypeInfo kElemTypes[] = {
    {ElemType::Float32, "float32", 'f', 4, {dlpack::kDLFloat, 32, 1}, "<f4"},
    {ElemType::Float16, "float16", 'f', 2, {dlpack::kDLFloat, 16, 1}, "<f2"},
    {ElemType::Int32, "int32", 'i', 4, {dlpack::kDLInt, 32, 1}, "<i4"},
    {ElemType::UInt8, "uint8", 'u', 1, {dlpack::kDLUInt, 8, 1}, "|u1"},
};

ElemType elem_type_of(char kind, long bytes) {
  for (const ElemTypeInfo& e : kElemTypes) {
    if (e.numpy_kind == kind && static_cast<long>(e.size) == bytes) return e.type;
  }
  return ElemType::Other;
}

// ---- NumPy ------------------------------------------------------------------------------------------
RawArray from_numpy(const py::array& arr) {
  RawArray raw;
  raw.via = "numpy";
  const py::dtype dtype = arr.dtype();
  raw.type_name = py::str(dtype).cast<std::string>();
  const bool native_order = dtype.byteorder() != '>';
  raw.type = native_order ? elem_type_of(dtype.kind(), static_cast<long>(dtype.itemsize())) : ElemType::Other;
  for (py::ssize_t i = 0; i < arr.ndim(); ++i) {
    raw.shape.push_back(static_cast<std::int64_t>(arr.shape(i)));
    raw.byte_strides.push_back(static_cast<std::int64_t>(arr.strides(i)));
  }
  raw.data = arr.data();
  raw.readonly = !arr.writeable();
  raw.keep_alive = py::reinterpret_borrow<py::object>(arr);
  return raw;
}

// ---- __cuda_array_interface__ -----------------------------------------------------------------------
std::int64_t cai_int(py::handle value, const ArgParser& p, const char* name, const char* what) {
  if (!PyLong_Check(value.ptr())) {
    p.fail_value(std::string("argument '") + name + "': __cuda_array_interface__ " + what + " must be an int, got " +
                 python_type_name(value));
  }
  int overflow = 0;
  const long long v = PyLong_AsLongLongAndOverflow(value.ptr(), &overflow);
  if (overflow != 0 || (v == -1 && PyErr_Occurred())) {
    PyErr_Clear();
    p.fail_value(std::string("argument '") + name + "': __cuda_array_interface__ " + what +
                 " does not fit in int64: " + py::str(value).cast<std::string>());
  }
  return static_cast<std::int64_t>(v);
}

py::tuple cai_tuple(const py::dict& cai, const char* key, const ArgParser& p, const char* name) {
  if (!cai.contains(key) || !py::isinstance<py::tuple>(cai[key])) {
    p.fail_value(std::string("argument '") + name + "': __cuda_array_interface__ needs a tuple '" + key + "'");
  }
  return cai[key].cast<py::tuple>();
}

void parse_cai_typestr(const py::dict& cai, RawArray& raw, const ArgParser& p, const char* name) {
  if (!cai.contains("typestr") || !py::isinstance<py::str>(cai["typestr"])) {
    p.fail_value(std::string("argument '") + name + "': __cuda_array_interface__ needs a str 'typestr'");
  }
  const std::string typestr = cai["typestr"].cast<std::string>();
  long bytes = 0;
  if (typestr.size() >= 3) bytes = std::strtol(typestr.c_str() + 2, nullptr, 10);
  const bool little = typestr.size() >= 3 && (typestr[0] == '<' || typestr[0] == '|' || typestr[0] == '=');
  raw.type_name = typestr.size() >= 3 ? kind_size_name(typestr[1], bytes) : "'" + typestr + "'";
  if (!little && typestr.size() >= 3) raw.type_name = "'" + typestr + "' (big-endian)";
  raw.type = little ? elem_type_of(typestr[1], bytes) : ElemType::Other;
}

RawArray from_cai(py::handle obj, const ArgParser& p, const char* name) {
  RawArray raw;
  raw.via = "__cuda_array_interface__";
  py::object cai_obj;
  try {
    cai_obj = obj.attr("__cuda_array_interface__");
  } catch (py::error_already_set& err) {
    p.fail_value(std::string("argument '") + name + "': reading __cuda_array_interface__ failed: " + error_text(err));
  }
  if (!py::isinstance<py::dict>(cai_obj)) {
    p.fail_value(std::string("argument '") + name + "': __cuda_array_interface__ must be a dict, got " +
                 python_type_name(cai_obj));
  }
  const py::dict cai = cai_obj.cast<py::dict>();
  for (py::handle dim : cai_tuple(cai, "shape", p, name)) raw.shape.push_back(cai_int(dim, p, name, "shape entry"));
  parse_cai_typestr(cai, raw, p, name);
  const py::tuple data = cai_tuple(cai, "data", p, name);
  if (data.size() != 2)
    p.fail_value(std::string("argument '") + name + "': __cuda_array_interface__ 'data' must be (ptr, readonly)");
  raw.data = reinterpret_cast<const void*>(static_cast<std::uintptr_t>(cai_int(data[0], p, name, "data pointer")));
  raw.readonly = py::bool_(py::reinterpret_borrow<py::object>(data[1])).cast<bool>();
  if (cai.contains("strides") && !cai["strides"].is_none()) {
    for (py::handle s : cai_tuple(cai, "strides", p, name)) raw.byte_strides.push_back(cai_int(s, p, name, "stride"));
    if (raw.byte_strides.size() != raw.shape.size()) {
      p.fail_value(std::string("argument '") + name + "': __cuda_array_interface__ strides and shape differ in length");
    }
  }
  if (cai.contains("mask") && !cai["mask"].is_none()) {
    p.fail_value(std::string("argument '") + name + "': masked __cuda_array_interface__ arrays are not supported");
  }
  if (!cai.contains("stream")) {
    // No "stream" entry (versions 0-2, e.g. torch's): the producer's pending work is on a stream it did not name;
    // order after the legacy default stream, which covers it and every blocking stream (torch's default stream).
    // A v3 producer's explicit None means no synchronisation is needed.
    raw.cai_stream = 1;
  } else if (!cai["stream"].is_none()) {
    raw.cai_stream = cai_int(cai["stream"], p, name, "stream");
  }
  raw.place = Placement{Device::CUDA, 0};  // the device is read from the pointer once CUDA is known usable
  raw.device_from_pointer = true;
  raw.keep_alive = py::reinterpret_borrow<py::object>(obj);
  return raw;
}

// ---- checks shared by every source ------------------------------------------------------------------
bool is_c_contiguous(const RawArray& raw, std::int64_t item) {
  if (raw.byte_strides.empty()) return true;
  std::int64_t expected = item;
  for (int i = static_cast<int>(raw.shape.size()) - 1; i >= 0; --i) {
    if (raw.shape[i] != 1 && raw.byte_strides[i] != expected) return false;
    expected *= raw.shape[i];
  }
  return true;
}

void check_size(const RawArray& raw, const ArgParser& p, const char* name) {
  std::int64_t count = 1;
  for (std::int64_t d : raw.shape) {
    if (d <= 0) {
      p.fail_value(std::string("argument '") + name + "' must not have zero-sized or negative dimensions, got shape " +
                   join_shape(raw.shape));
    }
    if (count > kMaxElements / d) {
      p.fail_value(std::string("argument '") + name + "' has more than 2^31 - 1 elements (shape " +
                   join_shape(raw.shape) + ")");
    }
    count *= d;
  }
}

#ifdef ZSSEG_WITH_CUDA
// Device of a CUDA pointer; ValueError when the device cannot address it. Device and managed memory qualify, and
// page-locked host memory mapped into the device's address space (a Jetson's zero-copy buffers; with unified
// addressing cudaHostAlloc memory is mapped): `data` becomes the device address (the same one with unified
// addressing). Ordinary pageable host memory (cudaMemoryTypeUnregistered) does not.
int device_of_pointer(const void*& data, const ArgParser& p, const char* name) {
  cudaPointerAttributes attr{};
  const cudaError_t err = cudaPointerGetAttributes(&attr, data);
  if (err != cudaSuccess) {
    cudaGetLastError();
    p.fail_value(std::string("argument '") + name + "': cudaPointerGetAttributes failed (" + cudaGetErrorString(err) +
                 "); the pointer is not CUDA memory");
  }
  if (attr.type == cudaMemoryTypeHost) {
    if (attr.devicePointer == nullptr) {
      p.fail_value(std::string("argument '") + name + "' is page-locked host memory that is not mapped into the " +
                   "device's address space; allocate it with cudaHostAllocMapped (or copy it to the device)");
    }
    data = attr.devicePointer;
    return attr.device;
  }
  if (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged) {
    p.fail_value(std::string("argument '") + name + "' claims to be a CUDA array but its data pointer is not " +
                 "device memory (cudaMemoryType " + std::to_string(static_cast<int>(attr.type)) + ")");
  }
  return attr.device;
}

// Make the launch stream wait for work pending on a __cuda_array_interface__ producer stream.
void wait_for_producer(std::int64_t producer, const ArgParser& p, const char* name, int device_id) {
  if (producer == 0) p.fail_value(std::string("argument '") + name + "': __cuda_array_interface__ stream 0 is invalid");
  cudaStream_t theirs = producer == 1   ? cudaStreamLegacy
                        : producer == 2 ? cudaStreamPerThread
                                        : reinterpret_cast<cudaStream_t>(producer);
  cudaStream_t ours = static_cast<cudaStream_t>(p.stream());
  if (theirs == ours || (producer == 1 && p.stream_int() == 0)) return;
  if (p.capturing()) return;  // captured into a graph: inputs must be ready before the capture began
  CudaDeviceGuard guard(Placement{Device::CUDA, device_id});
  const cudaError_t err = zsseg::stream_order::wait_for_stream(ours, theirs);  // a pooled event
  if (err != cudaSuccess) {
    cudaGetLastError();
    p.fail_value(std::string("argument '") + name +
                 "': could not order its stream before ours: " + cudaGetErrorString(err));
  }
}
#endif

void check_cuda_usable(RawArray& raw, const ArgParser& p, const char* name) {
#ifdef ZSSEG_WITH_CUDA
  if (zsseg::cuda_device_count() == 0) {
    p.fail_value(std::string("argument '") + name + "' is a CUDA array (" + raw.via +
                 ") but no CUDA device is usable here: " + zsseg::cuda_error_string(-1));
  }
  if (raw.data == nullptr) p.fail_value(std::string("argument '") + name + "' has a null data pointer");
  const int pointer_device = device_of_pointer(raw.data, p, name);
  if (raw.device_from_pointer) {
    raw.place.device_id = pointer_device;  // CAI / mapped host memory: the pointer says which device uses it
  } else if (pointer_device != raw.place.device_id) {
    p.fail_value(std::string("argument '") + name + "' says it is on cuda:" + std::to_string(raw.place.device_id) +
                 " but its data lives on cuda:" + std::to_string(pointer_device));
  }
  if (raw.cai_stream) wait_for_producer(*raw.cai_stream, p, name, raw.place.device_id);
#else
  (void)raw;
  p.fail_value(std::string("argument '") + name + "' is a CUDA array but zsseg_rt was built without CUDA");
#endif
}

void check_type(const RawArray& raw, const ArgParser& p, const char* name) {
  const bool ok = raw.type == ElemType::Float32 || (raw.type == ElemType::Float16 && raw.place.is_cuda());
  if (ok) return;
  std::string expected = raw.place.is_cuda() ? "float32 or float16" : "float32 (float16 is accepted on CUDA only)";
  p.fail_type(std::string("argument '") + name + "' must have dtype " + expected + ", got " + raw.type_name + " on " +
              raw.place.str() + "; nothing is cast implicitly, convert it first (e.g. .astype(np.float32))");
}

}  // namespace

// ---- small public helpers ---------------------------------------------------------------------------
const ElemTypeInfo* elem_type_info(ElemType type) {
  for (const ElemTypeInfo& e : kElemTypes) {
    if (e.type == type) return &e;
  }
  return nullptr;
}

ElemType elem_type_of_dlpack(const dlpack::DLDataType& dt) {
  for (const ElemTypeInfo& e : kElemTypes) {
    if (dt.lanes == 1 && e.dl.code == dt.code && e.dl.bits == dt.bits) return e.type;
  }
  return ElemType::Other;
}

const char* elem_type_name(ElemType type) {
  const ElemTypeInfo* e = elem_type_info(type);
  return e != nullptr ? e->name : "other";
}

std::size_t elem_size(ElemType type) {
  const ElemTypeInfo* e = elem_type_info(type);
  return e != nullptr ? e->size : 0;
}

zsseg::DType to_kernel_dtype(ElemType type) {
  if (type == ElemType::Float32) return zsseg::DType::Float32;
  if (type == ElemType::Float16) return zsseg::DType::Float16;
  throw py::type_error(std::string("kernel dtype must be float32 or float16, got ") + elem_type_name(type));
}

std::string Placement::str() const {
  return is_cuda() ? "cuda:" + std::to_string(device_id) : "cpu";
}

std::int64_t ArrayArg::numel() const {
  std::int64_t count = 1;
  for (std::int64_t d : shape) count *= d;  // bounded by kMaxElements at parse time
  return count;
}

std::string ArrayArg::shape_str() const {
  return join_shape(shape);
}

// ---- ArgParser --------------------------------------------------------------------------------------
ArgParser::ArgParser(std::string op, std::int64_t stream) : op_(std::move(op)), stream_(stream) {
  if (stream < 0)
    fail_value("stream must be a cudaStream_t as a non-negative int (0 = default), got " + std::to_string(stream));
  // The stream handle is only touched once a CUDA array shows it is meant for CUDA work (note_cuda_argument): a
  // stream given with CPU arrays is refused by placement(), never passed to the runtime. The legacy default
  // stream cannot be captured, so finished launches are swept right away.
  if (stream == 0) {
    capture_known_ = true;
    sweep_in_use();
  }
}

void ArgParser::note_cuda_argument() const {
  if (capture_known_) return;
  capture_known_ = true;
  capturing_ = stream_is_capturing(stream_);
  if (!capturing_) sweep_in_use();  // queries events: never while our stream is being captured
}

// torch tensors can carry a lazy negation / conjugation bit that DLPack and the array interfaces do not apply:
// their raw memory holds the un-negated values. Refuse them rather than compute on the wrong numbers.
void refuse_lazy_views(py::handle obj, const ArgParser& p, const char* name) {
  for (const char* bit : {"is_neg", "is_conj"}) {
    if (!py::hasattr(obj, bit)) continue;
    bool set = false;
    try {
      set = obj.attr(bit)().cast<bool>();
    } catch (py::error_already_set&) {
      continue;  // not torch's method: ignore
    } catch (py::cast_error&) {
      continue;
    }
    if (set) {
      p.fail_type(std::string("argument '") + name + "' is a torch tensor with the lazy " + (bit + 3) +
                  " bit set, whose memory does not hold its values; pass tensor.resolve_" + (bit + 3) + "()");
    }
  }
}

ArrayArg ArgParser::array(const char* name, py::handle obj) const {
  return parse_array(name, obj, Accept::Float);
}

ArrayArg ArgParser::uint8_array(const char* name, py::handle obj) const {
  return parse_array(name, obj, Accept::UInt8);
}

ArrayArg ArgParser::parse_array(const char* name, py::handle obj, Accept accept, ElemType exact, bool written) const {
  const bool uint8 = accept == Accept::UInt8;
  RawArray raw;
  std::shared_ptr<DeviceBuffer> device_buffer;  // a DeviceArray of this module: ordered by its events
  const bool numpy = py::isinstance<py::array>(obj);
  const bool device_array = !numpy && !obj.is_none() && py::isinstance<DeviceArray>(obj);
  if (!obj.is_none() && !numpy && !device_array) refuse_lazy_views(obj, *this, name);
  if (numpy) {
    raw = from_numpy(py::reinterpret_borrow<py::array>(obj));
  } else if (device_array) {
    const DeviceArray& arr = obj.cast<const DeviceArray&>();
    device_buffer = arr.buffer;
    raw.via = "DeviceArray";
    raw.data = arr.buffer->data();
    raw.shape = arr.shape;
    raw.type = arr.type;
    raw.type_name = elem_type_name(arr.type);
    raw.place = Placement{Device::CUDA, arr.buffer->device_id()};
    raw.keep_alive = py::reinterpret_borrow<py::object>(obj);
  } else if (!obj.is_none() && py::hasattr(obj, "__dlpack__") && py::hasattr(obj, "__dlpack_device__")) {
    raw = detail::from_dlpack(obj, *this, name);  // DLPack first: a CAI property is never evaluated for these
  } else if (!obj.is_none() && py::hasattr(obj, "__cuda_array_interface__")) {
    raw = from_cai(obj, *this, name);
  } else {
    fail_type(std::string("argument '") + name + "' must be an array (a float32 numpy array on the CPU, or a CUDA " +
              "array exposing __dlpack__ / __cuda_array_interface__), got " + python_type_name(obj));
  }
  if (uint8 && raw.type != ElemType::UInt8) {
    fail_type(std::string("argument '") + name + "' must have dtype uint8 (an 8-bit image), got " + raw.type_name +
              " on " + raw.place.str() + "; nothing is cast implicitly");
  }
  if (accept == Accept::Float) check_type(raw, *this, name);
  if (accept == Accept::Exact && raw.type != exact) {
    fail_type(std::string("argument '") + name + "' must have dtype " + elem_type_name(exact) + ", got " +
              raw.type_name + " on " + raw.place.str() + "; nothing is cast implicitly");
  }
  check_size(raw, *this, name);  // before strides: empty arrays carry arbitrary strides
  const std::int64_t item = static_cast<std::int64_t>(elem_size(raw.type));
  if (!is_c_contiguous(raw, item)) {
    fail_value(std::string("argument '") + name + "' must be C-contiguous, got shape " + join_shape(raw.shape) +
               " with byte strides " + join_shape(raw.byte_strides) + "; pass a contiguous copy");
  }
  if (device_buffer) {
    note_cuda_argument();  // the stream is for CUDA work: is it being captured?
    order_device_array(*device_buffer, written, *this, name);
    (written ? written_ : read_).push_back(device_buffer);
  } else if (raw.place.is_cuda()) {
    check_cuda_usable(raw, *this, name);
    note_cuda_argument();
  }
  ArrayArg out;
  out.name = name;
  out.data = raw.data;
  out.shape = std::move(raw.shape);
  out.type = raw.type;
  out.type_name = raw.type_name;
  out.place = raw.place;
  out.keep_alive = std::move(raw.keep_alive);
  out.readonly = raw.readonly;
  if (out.place.is_cuda()) in_use_.push_back(out.keep_alive);  // alive until the launch reading it completes
  return out;
}

std::optional<ArrayArg> ArgParser::optional_array(const char* name, py::handle obj) const {
  if (obj.is_none()) return std::nullopt;
  return array(name, obj);
}

std::optional<ArrayArg> ArgParser::optional_int32_array(const char* name, py::handle obj) const {
  if (obj.is_none()) return std::nullopt;
  return parse_array(name, obj, Accept::Exact, ElemType::Int32);
}

Placement ArgParser::placement(std::initializer_list<const ArrayArg*> args) const {
  const ArrayArg* first = nullptr;
  for (const ArrayArg* arg : args) {
    if (arg == nullptr) continue;
    if (first == nullptr) {
      first = arg;
      continue;
    }
    const Placement& a = first->place;
    const Placement& b = arg->place;
    if (a.device != b.device || a.device_id != b.device_id) {
      fail_value("arguments '" + first->name + "' (" + a.str() + ") and '" + arg->name + "' (" + b.str() +
                 ") are on different devices; put all arrays on one device");
    }
  }
  if (first == nullptr) fail_value("no array arguments given");
  if (!first->place.is_cuda() && stream_ != 0) {
    fail_value("stream=" + std::to_string(stream_) + " was given but the arrays are on the CPU (argument '" +
               first->name + "' is on cpu); pass CUDA arrays or stream=0");
  }
  return first->place;
}

void ArgParser::require_cuda(const ArrayArg& arg) const {
  if (!arg.place.is_cuda()) {
    fail_value("argument '" + arg.name + "' must be on a CUDA device, got " + arg.place.str());
  }
}

void ArgParser::require_same_type(std::initializer_list<const ArrayArg*> args) const {
  const ArrayArg* first = nullptr;
  for (const ArrayArg* arg : args) {
    if (arg == nullptr) continue;
    if (first == nullptr) first = arg;
    if (arg->type != first->type) {
      fail_type("arguments '" + first->name + "' (" + first->type_name + ") and '" + arg->name + "' (" +
                arg->type_name + ") must have the same dtype");
    }
  }
}

void ArgParser::fail_shape(const ArrayArg& arg, const std::string& expected) const {
  fail_value("argument '" + arg.name + "' must have shape " + expected + ", got " + arg.shape_str());
}

void ArgParser::fail_value(const std::string& message) const {
  throw py::value_error(op_ + ": " + message);
}

void ArgParser::fail_type(const std::string& message) const {
  throw py::type_error(op_ + ": " + message);
}

std::int64_t ArgParser::output_numel(const char* name, const std::vector<std::int64_t>& shape) const {
  std::int64_t count = 1;
  for (std::int64_t d : shape) {
    if (d <= 0)
      fail_value(std::string("output '") + name + "' would have shape " + join_shape(shape) +
                 " with an empty dimension");
    if (count > kMaxElements / d) {
      fail_value(std::string("output '") + name + "' of shape " + join_shape(shape) +
                 " would have more than 2^31 - 1 elements; split the call into smaller batches");
    }
    count *= d;
  }
  return count;
}

Output ArgParser::output(const char* name, const std::vector<std::int64_t>& shape, ElemType type,
                         const Placement& where) const {
  const std::int64_t count = output_numel(name, shape);
  Output out;
  if (!where.is_cuda()) {
    if (type != ElemType::Float32 && type != ElemType::Int32) {
      fail_type(std::string("output '") + name + "' cannot be " + elem_type_name(type) + " on the CPU");
    }
    std::vector<py::ssize_t> dims(shape.begin(), shape.end());
    py::array arr = type == ElemType::Float32 ? py::array(py::dtype::of<float>(), dims)
                                              : py::array(py::dtype::of<std::int32_t>(), dims);
    out.data = arr.mutable_data();
    out.bytes = static_cast<std::size_t>(count) * elem_size(type);
    out.array = std::move(arr);
    return out;
  }
  if (capturing()) {
    fail_value(std::string("output '") + name + "' cannot be allocated while the stream is captured into a CUDA " +
               "graph; pass preallocated arrays with out=");
  }
  DeviceArray device_array;
  try {
    device_array.buffer = std::make_shared<DeviceBuffer>(static_cast<std::size_t>(count) * elem_size(type),
                                                         where.device_id, stream_, true, stream_id());
  } catch (const std::runtime_error& err) {
    throw std::runtime_error(op_ + ": output '" + name + "': " + err.what());
  }
  allocated_.push_back(device_array.buffer);
  device_array.shape = shape;
  device_array.type = type;
  device_array.stream = stream_;
  out.data = device_array.buffer->data();
  out.bytes = device_array.buffer->bytes();
  out.array = py::cast(std::move(device_array));
  return out;
}

Output ArgParser::output_or(const char* name, const char* arg_name, py::handle out_obj,
                            const std::vector<std::int64_t>& shape, ElemType type, const Placement& where,
                            std::initializer_list<const ArrayArg*> inputs) const {
  if (out_obj.is_none()) return output(name, shape, type, where);
  output_numel(name, shape);
  const ArrayArg out = parse_array(arg_name, out_obj, Accept::Exact, type, /*written=*/true);
  if (out.shape != shape) fail_shape(out, join_shape(shape));
  if (out.place.device != where.device || out.place.device_id != where.device_id) {
    fail_value(std::string("argument '") + arg_name + "' must be on " + where.str() + " like the inputs, got " +
               out.place.str());
  }
  if (out.readonly) fail_value(std::string("argument '") + arg_name + "' is read-only; pass a writable array");
  const auto* begin = static_cast<const char*>(out.data);
  const auto* end = begin + out.numel() * static_cast<std::int64_t>(elem_size(out.type));
  for (const ArrayArg* input : inputs) {
    if (input == nullptr) continue;
    const auto* in_begin = static_cast<const char*>(input->data);
    const auto* in_end = in_begin + input->numel() * static_cast<std::int64_t>(elem_size(input->type));
    if (input->place.device == out.place.device && begin < in_end && in_begin < end) {
      fail_value(std::string("argument '") + arg_name + "' overlaps the memory of input '" + input->name +
                 "'; pass a separate output array");
    }
  }
  Output result;
  result.array = py::reinterpret_borrow<py::object>(out_obj);
  result.data = const_cast<void*>(out.data);
  result.bytes = static_cast<std::size_t>(end - begin);
  return result;
}

std::pair<py::object, py::object> ArgParser::out_pair(py::handle out_obj, const char* first, const char* second) const {
  if (out_obj.is_none()) return {py::none(), py::none()};
  if (!py::isinstance<py::tuple>(out_obj) && !py::isinstance<py::list>(out_obj)) {
    fail_type(std::string("argument 'out' must be None or a tuple (") + first + ", " + second +
              ") of two arrays (either may be None), got " + python_type_name(out_obj));
  }
  const py::tuple items = sequence_items(out_obj);
  if (items.size() != 2) {
    fail_type(std::string("argument 'out' must be None or a tuple (") + first + ", " + second +
              ") of two arrays (either may be None), got " + std::to_string(items.size()) + " items");
  }
  return {py::object(items[0]), py::object(items[1])};
}

void ArgParser::require_disjoint(const Output& a, const char* a_name, const Output& b, const char* b_name) const {
  const auto* a_begin = static_cast<const char*>(a.data);
  const auto* b_begin = static_cast<const char*>(b.data);
  if (a_begin < b_begin + b.bytes && b_begin < a_begin + a.bytes) {
    fail_value(std::string("arguments '") + a_name + "' and '" + b_name + "' share memory; pass two separate arrays");
  }
}

void ArgParser::check_launch(zsseg::CudaStatus status) const {
  // Recorded even when the launch failed: the outputs' release must still be ordered after the allocations.
  const bool captured = capturing();
  const int recorded = finish_launch(stream_, captured, std::vector<py::object>(in_use_), allocated_, checks_, read_,
                                     written_, captured ? 0 : stream_id());
  if (status == 0 && recorded != 0) status = recorded;
  if (status != 0) {
    throw std::runtime_error(op_ + ": CUDA error " + std::to_string(status) + " (" + zsseg::cuda_error_string(status) +
                             ")");
  }
}

zsseg::Stream ArgParser::stream() const {
  return reinterpret_cast<zsseg::Stream>(static_cast<std::uintptr_t>(stream_));
}

py::tuple sequence_items(py::handle obj) {
  PyObject* items = PySequence_Tuple(obj.ptr());
  if (items == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::tuple>(items);
}

py::handle numpy_bool_type() {
  // Looked up once: importing numpy and reading the attribute on every integer cost ~0.9 us each, 14 of them per
  // segment_windows call (the GPU review of b991c98, Appendix A). Kept for the process's life (never released).
  PYBIND11_CONSTINIT static py::gil_safe_call_once_and_store<py::object> storage;
  return storage.call_once_and_store_result([] { return py::module_::import("numpy").attr("bool_"); }).get_stored();
}

bool index_int64(py::handle obj, std::int64_t* value, bool* overflow) {
  *overflow = false;
  if (PyBool_Check(obj.ptr())) return false;
  if (PyLong_CheckExact(obj.ptr())) {  // the common case (a Python int): no numpy type check needed
    int over = 0;
    const long long v = PyLong_AsLongLongAndOverflow(obj.ptr(), &over);
    if (over != 0 || (v == -1 && PyErr_Occurred())) {
      PyErr_Clear();
      *overflow = true;
      return true;
    }
    *value = static_cast<std::int64_t>(v);
    return true;
  }
  if (py::isinstance(obj, numpy_bool_type())) return false;
  PyObject* index = PyNumber_Index(obj.ptr());  // int, NumPy integers; TypeError for floats and the rest
  if (index == nullptr) {
    PyErr_Clear();
    return false;
  }
  int over = 0;
  const long long v = PyLong_AsLongLongAndOverflow(index, &over);
  Py_DECREF(index);
  if (over != 0 || (v == -1 && PyErr_Occurred())) {
    PyErr_Clear();
    *overflow = true;
    return true;
  }
  *value = static_cast<std::int64_t>(v);
  return true;
}

// ---- CudaDeviceGuard --------------------------------------------------------------------------------
CudaDeviceGuard::CudaDeviceGuard(const Placement& where) {
#ifdef ZSSEG_WITH_CUDA
  if (!where.is_cuda()) return;
  int current = 0;
  if (cudaGetDevice(&current) != cudaSuccess) {
    cudaGetLastError();
    return;
  }
  if (current != where.device_id && cudaSetDevice(where.device_id) == cudaSuccess) previous_ = current;
  cudaGetLastError();
#else
  (void)where;
#endif
}

CudaDeviceGuard::~CudaDeviceGuard() {
#ifdef ZSSEG_WITH_CUDA
  if (previous_ >= 0) cudaSetDevice(previous_);
#endif
}

}  // namespace zsseg_py
