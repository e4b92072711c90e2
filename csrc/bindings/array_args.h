// array_args.h: the ONE place where Python arguments of the native ops become validated raw views.
//
// What it accepts
//   * CPU: NumPy arrays (C-contiguous, exactly float32; nothing is cast) or any object whose __dlpack__
//     device is kDLCPU (e.g. a torch CPU tensor).
//   * CUDA: objects exporting __dlpack__ with device kDLCUDA / kDLCUDAManaged (torch, CuPy, DeviceArray;
//     classic "dltensor" and versioned "dltensor_versioned" capsules), or __cuda_array_interface__
//     (v0..v3; typestr '<f4' / '<f2'; strides None or contiguous). float32 or float16.
//   Every array must be C-contiguous (size-1 dims may carry any stride), have no zero-sized dimension and at
//   most kMaxElements elements. Violations raise py::type_error (dtype / not an array) or py::value_error
//   (shape, device, contiguity, size). Messages read "<op>: argument '<name>' must ..., got ...".
//
// Usage in a binding (see similarity.cpp):
//     ArgParser args("similarity", stream);
//     ArrayArg patches = args.array("patches", patches_obj);          // [B, N, D]
//     if (patches.ndim() != 3) args.fail_shape(patches, "[B, N, D]");
//     Placement where = args.placement({&patches, &text});           // mixed devices -> ValueError
//     args.require_same_type({&patches, &text});                     // fp16 + fp32 -> TypeError
//     Output out = args.output("output", {B, C, N}, patches.type, where);  // refuses 0 / > kMaxElements
//     run_on_placement(args, where, params, &kernel_cuda, &kernel_cpu);  // launch (checked) or CPU, no GIL
//     return out.array;
//
// Streams: a CUDA call enqueues its kernels on `stream` (an integer cudaStream_t; 0 = legacy default stream)
// and returns WITHOUT synchronising. Inputs are ordered before that stream: a DeviceArray (this module's outputs,
// recognised without any protocol call) by its events (after its producer; as `out=` also after its readers and
// the streams it was exported to), __dlpack__ is called with the stream (1 for the legacy default, as the DLPack
// spec asks), and a __cuda_array_interface__ "stream" entry is waited on with an event. An object with __dlpack__
// is never asked for __cuda_array_interface__ (torch's is a Python property: tens of microseconds per argument).
// Outputs are allocated stream-ordered (cudaMallocAsync on `stream`, see csrc/cuda/stream_order.h) unless the caller
// passes them (`out=`). After the launch (check_launch) an event is recorded on `stream`; from then on nothing uses the
// caller's stream handle again (the caller may destroy it): the returned DeviceArray orders its consumers after the
// event, host reads wait for it, its memory is freed with cudaFreeAsync after it, and the Python owners of the inputs
// and `out=` arrays are kept alive until it has completed (a process-wide list, polled without blocking at every op
// call and drained at exit). CPU calls release the GIL while they compute and return NumPy arrays; passing stream != 0
// with CPU arrays is a ValueError. CUDA graphs: while `stream` is being captured, nothing queries an event or waits on
// the host, outputs must be given with `out=` (ValueError otherwise), producer streams are not waited for (inputs must
// be ready before the capture starts), a CUDA class_bias is not checked on the device (check it before capturing), and
// the arrays a captured call reads or writes must outlive the graph (their owner's job; nothing is kept alive for it).
// Messages are built with std::to_string and string concatenation only: no iostreams, whose locale facets
// break when a static C++ runtime in _C meets the process's shared libstdc++ (see CMakeLists.txt).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>  // std::vector <-> tuple/list (DeviceArray.shape, __cuda_array_interface__)

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "zsseg/common.h"

namespace zsseg_py {
namespace py = pybind11;

// Largest element count of any input or output (kernels index with 32-bit-safe sizes).
constexpr std::int64_t kMaxElements = 2147483647LL;  // 2^31 - 1

enum class Device : int { CPU = 0, CUDA = 1 };

// Element types seen at the boundary. Other = anything else; ArrayArg::type_name says which.
enum class ElemType : int { Float32 = 0, Float16 = 1, Int32 = 2, Other = 3, UInt8 = 4 };
const char* elem_type_name(ElemType type);    // "float32", "float16", "int32", "uint8", "other"
std::size_t elem_size(ElemType type);         // bytes; 0 for Other
zsseg::DType to_kernel_dtype(ElemType type);  // Float32/Float16 only (throws py::type_error otherwise)

// Where an array lives.
struct Placement {
  Device device = Device::CPU;
  int device_id = 0;
  bool is_cuda() const { return device == Device::CUDA; }
  std::string str() const;  // "cpu" or "cuda:<id>"
};

// A validated, borrowed view of one argument. `keep_alive` owns the producer's reference.
struct ArrayArg {
  std::string name;                 // argument name, for messages
  const void* data = nullptr;       // first element (DLPack byte_offset applied)
  std::vector<std::int64_t> shape;  // all entries > 0
  ElemType type = ElemType::Other;
  std::string type_name;  // "float32", "float64", "int32", "object", ...
  Placement place;
  py::object keep_alive;  // numpy array or a capsule releasing the DLPack tensor
  bool readonly = false;  // NumPy not writeable, DLPack read-only flag, or CAI data (ptr, True)

  int ndim() const { return static_cast<int>(shape.size()); }
  std::int64_t dim(int axis) const { return shape.at(static_cast<std::size_t>(axis)); }
  std::int64_t numel() const;
  std::string shape_str() const;  // "[3, 64]"
  template <class T>
  const T* ptr() const {
    return static_cast<const T*>(data);
  }
};

// An output allocated by ArgParser::output: a NumPy array (CPU) or a DeviceArray (CUDA).
struct Output {
  py::object array;  // what the binding returns to Python
  void* data = nullptr;
  std::size_t bytes = 0;
  template <class T>
  T* ptr() const {
    return static_cast<T*>(data);
  }
};

class DeviceBuffer;

// Per-call helper: knows the op name (message prefix) and the launch stream.
class ArgParser {
 public:
  explicit ArgParser(std::string op, std::int64_t stream = 0);

  // Parse a required array argument (float32 on CPU; float32/float16 on CUDA). None -> TypeError.
  ArrayArg array(const char* name, py::handle obj) const;
  // An 8-bit image argument: exactly uint8 on the CPU or on CUDA, otherwise the same rules as array().
  ArrayArg uint8_array(const char* name, py::handle obj) const;
  // Same as array(), but None gives std::nullopt.
  std::optional<ArrayArg> optional_array(const char* name, py::handle obj) const;
  // An optional int32 array (an index table: segment_windows' class_of), otherwise the same rules as array().
  std::optional<ArrayArg> optional_int32_array(const char* name, py::handle obj) const;

  // Common placement of the given arguments (nullptr entries are skipped). Mixed devices -> ValueError
  // naming both arguments and devices; CPU arrays with stream != 0 -> ValueError.
  Placement placement(std::initializer_list<const ArrayArg*> args) const;
  // A CUDA-only entry point: ValueError naming the argument and its device if it is not on CUDA.
  void require_cuda(const ArrayArg& arg) const;
  // All given arguments must share one element type (e.g. no fp16 + fp32 mix) -> TypeError.
  void require_same_type(std::initializer_list<const ArrayArg*> args) const;

  // "<op>: argument '<name>' must have shape <expected>, got <actual>" as py::value_error.
  [[noreturn]] void fail_shape(const ArrayArg& arg, const std::string& expected) const;
  // "<op>: <message>" as py::value_error / py::type_error.
  [[noreturn]] void fail_value(const std::string& message) const;
  [[noreturn]] void fail_type(const std::string& message) const;

  // Element count of an output shape; ValueError when any dim <= 0, on int64 overflow or > kMaxElements.
  std::int64_t output_numel(const char* name, const std::vector<std::int64_t>& shape) const;
  // Allocate an output on `where` (checks output_numel first, so nothing is allocated for a bad size).
  Output output(const char* name, const std::vector<std::int64_t>& shape, ElemType type, const Placement& where) const;
  // An output the caller may preallocate (`out=`): None -> output(name, ...); otherwise `out_obj` is parsed like
  // an input (NumPy on the CPU; __dlpack__ / __cuda_array_interface__ on CUDA) and must be writable, of exactly
  // `type` and `shape`, on `where`, C-contiguous, and must not overlap any of `inputs` (ValueError / TypeError
  // "<op>: argument '<arg_name>' must ..., got ..."). The returned Output's array is `out_obj` itself.
  Output output_or(const char* name, const char* arg_name, py::handle out_obj, const std::vector<std::int64_t>& shape,
                   ElemType type, const Placement& where, std::initializer_list<const ArrayArg*> inputs = {}) const;
  // `out=` of an op returning two arrays: None -> (None, None); else a tuple/list of exactly two entries, each an
  // array or None (that one is allocated). Anything else -> TypeError naming `first` and `second`.
  std::pair<py::object, py::object> out_pair(py::handle out_obj, const char* first, const char* second) const;
  // ValueError when two outputs share memory (e.g. out=(labels, scores) given as views of one buffer).
  void require_disjoint(const Output& a, const char* a_name, const Output& b, const char* b_name) const;

  // After a CUDA launch on stream(): records the completion event, attaches it to the outputs allocated by this
  // parser and keeps every parsed argument's owner alive until it completes; then raises py RuntimeError
  // "<op>: CUDA error <code> (<text>)" when status != 0. Call it with the launch's device current.
  void check_launch(zsseg::CudaStatus status) const;

  zsseg::Stream stream() const;  // the launch stream as a cudaStream_t handle
  std::int64_t stream_int() const { return stream_; }
  // The launch stream's unique id (cudaStreamGetId; 0 when it cannot be had), asked at most once per call: work
  // recorded on the stream with this id needs no wait before the launch (stream order has it). CUDA work only, never
  // while the stream is captured.
  unsigned long long stream_id() const;
  // Whether the launch stream is being captured into a CUDA graph. Only for CUDA work: it asks the runtime about
  // the stream handle (once per call).
  bool capturing() const {
    note_cuda_argument();
    return capturing_;
  }
  const std::string& op() const { return op_; }

 private:
  enum class Accept { Float, UInt8, Exact };  // Exact: exactly `exact` (outputs)
  // `written`: the array is an output (`out=`): a DeviceArray is then ordered after its readers too.
  ArrayArg parse_array(const char* name, py::handle obj, Accept accept, ElemType exact = ElemType::Other,
                       bool written = false) const;
  std::string op_;
  std::int64_t stream_;
  // stream_ is being captured into a CUDA graph; known once the first CUDA argument was parsed (capture_known_)
  mutable bool capturing_ = false;
  mutable bool capture_known_ = false;
  mutable unsigned long long stream_id_ = 0;  // stream_id(), once known
  mutable bool stream_id_known_ = false;
  void note_cuda_argument() const;
  // CUDA only: owners of the parsed arguments (kept alive until the launch completes), the outputs allocated
  // here (they get the launch's completion event) and device-side checks to report after it (class_bias).
  mutable std::vector<py::object> in_use_;
  mutable std::vector<std::shared_ptr<void>> checks_;

 public:
  // A CUDA class_bias [C] float32: enqueue the device-side finiteness check on stream() (no host wait; reported
  // after the launch, see parse_class_bias). False when it could not be enqueued (the caller checks blocking).
  bool check_bias_on_device(const ArrayArg& bias) const;

 private:
  mutable std::vector<std::shared_ptr<DeviceBuffer>> allocated_;
  // DeviceArrays this call reads (inputs) and writes (`out=`): their buffers learn the launch's completion event
  // (a reader, or the new producer), so later readers, writers, exports and the release are ordered after it.
  mutable std::vector<std::shared_ptr<DeviceBuffer>> read_;
  mutable std::vector<std::shared_ptr<DeviceBuffer>> written_;
};

// An integer argument as int64: Python ints and anything with __index__ (NumPy integers), never bool (Python's
// or NumPy's) or a float. Returns false when `obj` is not such an integer; sets *overflow when it is one outside
// the int64 range. Take a sequence's items with sequence_items (a tuple that owns them): a py::handle to a NumPy
// row or scalar made by a live iteration dangles once the iterator moves on.
bool index_int64(py::handle obj, std::int64_t* value, bool* overflow);
// numpy.bool_ (looked up once per process).
py::handle numpy_bool_type();

// The items of a Python sequence, taken once by iterating it (PySequence_Tuple). Check counts on the result, never
// on len(obj) before iterating: a list subclass may answer __len__ one way and iterate another (a count checked
// against __len__ and then filled by iteration overran fixed arrays). A Python error while iterating propagates.
py::tuple sequence_items(py::handle obj);

// Makes `where.device_id` current for its lifetime (no-op for CPU or a CPU-only build).
class CudaDeviceGuard {
 public:
  explicit CudaDeviceGuard(const Placement& where);
  ~CudaDeviceGuard();
  CudaDeviceGuard(const CudaDeviceGuard&) = delete;
  CudaDeviceGuard& operator=(const CudaDeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

// Runs an op where its arrays are (`where`): the CUDA launcher on that device, its status checked by check_launch,
// or the CPU kernel without the GIL.
template <class Params>
void run_on_placement(const ArgParser& args, const Placement& where, const Params& params,
                      zsseg::CudaStatus (*cuda_launcher)(const Params&, zsseg::Stream),
                      void (*cpu_kernel)(const Params&)) {
  if (where.is_cuda()) {
    CudaDeviceGuard guard(where);
    args.check_launch(cuda_launcher(params, args.stream()));
  } else {
    py::gil_scoped_release release;
    cpu_kernel(params);
  }
}

// ---- device memory owned by Python (implemented in device.cpp) ---------------------------------------

// One stream-ordered device allocation (zsseg::stream_order::StreamBuffer in a CUDA build): allocated on the
// launch stream, released with cudaFreeAsync once the launch's completion event has passed (nothing blocks in
// the destructor, which may run without the GIL, e.g. from a DLPack deleter). Shared by a DeviceArray and every
// DLPack capsule exported from it, so the memory lives as long as any of them.
class DeviceBuffer {
 public:
  // `take_over`: the memory of a dropped output of the same size may be taken (csrc/bindings/output_cache.h), the
  // stream ordered after its uses (`stream_id`: the stream's id, ArgParser::stream_id; 0: unknown, always a wait).
  // Whatever made it, its memory is kept for a later output when it goes, where it may be. Throws when allocating
  // fails.
  DeviceBuffer(std::size_t bytes, int device_id, std::int64_t stream, bool take_over = false,
               unsigned long long stream_id = 0);
  ~DeviceBuffer();
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* data() const { return data_; }
  std::size_t bytes() const { return bytes_; }
  int device_id() const { return device_id_; }
  // The implementation (CUDA build): completion event, ordering of consumers.
  const std::shared_ptr<void>& impl() const { return impl_; }
  // Device-side checks of the launch that wrote this buffer (zsseg::stream_order::DeviceCheck), for numpy().
  std::vector<std::shared_ptr<void>> checks;

 private:
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
  int device_id_ = 0;
  std::shared_ptr<void> impl_;  // zsseg::stream_order::StreamBuffer
};

// The Python class zsseg_rt._C.DeviceArray: shape, dtype, __cuda_array_interface__ (v3), __dlpack__.
struct DeviceArray {
  std::shared_ptr<DeviceBuffer> buffer;
  std::vector<std::int64_t> shape;
  ElemType type = ElemType::Float32;
  std::int64_t stream = 0;  // the handle the op was given (informational only: never used after the call)
};

// Drop the owners of finished launches' arguments (never blocks; GIL held). Called by every ArgParser. Raises
// ValueError for a finished launch whose device-side check failed (a non-finite CUDA class_bias), once.
void sweep_in_use();
// A prepared launch's completion marker (a stream_order::ReadyEvent, pooled): re-recorded after each launch outside a
// capture (record_launch_marker: a CUDA status; on failure the stream was synchronised instead), and when the plan
// goes its arrays' owners are kept until the last record has passed (keep_until_marker; `stream`: the last one).
std::shared_ptr<void> launch_marker();
int record_launch_marker(const std::shared_ptr<void>& marker, std::int64_t stream, int device);
void keep_until_marker(std::vector<py::object>&& owners, const std::shared_ptr<void>& marker, std::int64_t stream);
// True while `stream` is being captured into a CUDA graph (always false without CUDA).
bool stream_is_capturing(std::int64_t stream);
// After a launch on `stream` (current device = the launch's): record the completion event, attach it to
// `outputs` and keep `in_use` alive until it completes. Returns the CUDA status of the event record. `capturing`:
// whether `stream` is being captured (ArgParser::capturing: asked once per call). `stream_id`: the stream's id
// (ArgParser::stream_id; 0: unknown), kept with the event so that a later call on the same stream does not wait for it.
int finish_launch(std::int64_t stream, bool capturing, std::vector<py::object>&& in_use,
                  const std::vector<std::shared_ptr<DeviceBuffer>>& outputs,
                  const std::vector<std::shared_ptr<void>>& checks,
                  const std::vector<std::shared_ptr<DeviceBuffer>>& read = {},
                  const std::vector<std::shared_ptr<DeviceBuffer>>& written = {}, unsigned long long stream_id = 0);
// A DeviceArray argument of an op launched on `stream`: make the launch wait for the work that produced it and, when
// the op writes it (`written`, an `out=`), for its readers and the streams it was exported to as well. While
// `stream` is captured into a CUDA graph no wait can be made (it would be on an event recorded outside the capture:
// illegal, it invalidates the capture), so the array must be ready: ValueError "<op>: argument '<name>' ..." if its
// producer (or, for `written`, a reader) has not finished. Never blocks.
void order_device_array(const DeviceBuffer& buffer, bool written, const ArgParser& args, const char* name);

// ---- DLPack ABI (dlpack.h v1.x; only what the boundary needs) -----------------------------------------
namespace dlpack {
enum DeviceType : std::int32_t { kDLCPU = 1, kDLCUDA = 2, kDLCUDAHost = 3, kDLCUDAManaged = 13 };
enum TypeCode : std::uint8_t { kDLInt = 0, kDLUInt = 1, kDLFloat = 2, kDLBfloat = 4, kDLComplex = 5, kDLBool = 6 };
struct DLDevice {
  std::int32_t device_type;
  std::int32_t device_id;
};
struct DLDataType {
  std::uint8_t code;
  std::uint8_t bits;
  std::uint16_t lanes;
};
struct DLTensor {
  void* data;
  DLDevice device;
  std::int32_t ndim;
  DLDataType dtype;
  std::int64_t* shape;
  std::int64_t* strides;  // in elements; nullptr = C-contiguous
  std::uint64_t byte_offset;
};
struct DLManagedTensor {  // capsule name "dltensor" (consumers rename it "used_dltensor")
  DLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(DLManagedTensor* self);
};
struct DLPackVersion {
  std::uint32_t major;
  std::uint32_t minor;
};
constexpr std::uint64_t kFlagReadOnly = 1ULL << 0;
struct DLManagedTensorVersioned {  // capsule name "dltensor_versioned" ("used_dltensor_versioned")
  DLPackVersion version;
  void* manager_ctx;
  void (*deleter)(DLManagedTensorVersioned* self);
  std::uint64_t flags;
  DLTensor dl_tensor;
};
}  // namespace dlpack

// What an element type is called at each boundary: one row per type (Other has none), behind elem_type_name,
// elem_size, the NumPy / __cuda_array_interface__ / DLPack dtype parsing and the dtype a DeviceArray exports.
struct ElemTypeInfo {
  ElemType type;
  const char* name;         // "float32"
  char numpy_kind;          // NumPy dtype.kind (also the CAI typestr's kind): 'f', 'i', 'u'
  std::size_t size;         // bytes
  dlpack::DLDataType dl;    // DLPack {code, bits, lanes}
  const char* cai_typestr;  // __cuda_array_interface__ typestr, little-endian where it has an order
};
const ElemTypeInfo* elem_type_info(ElemType type);           // nullptr for Other
ElemType elem_type_of_dlpack(const dlpack::DLDataType& dt);  // Other for a DLPack type no row has

}  // namespace zsseg_py
