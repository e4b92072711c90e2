// cuda_available() & co. and the DeviceArray class: device memory owned by Python, exported to consumers
// through __cuda_array_interface__ (v3) and DLPack (classic "dltensor" or versioned "dltensor_versioned").
#include <cstring>

#include "array_args.h"
#include "registry.h"

#ifdef ZSSEG_WITH_CUDA
#include <cuda_runtime.h>

#include "cuda/stream_order.h"
#include "output_cache.h"
#include "zsseg/bias_check.h"
#endif

namespace zsseg_py {

#ifdef ZSSEG_WITH_CUDA
namespace so = zsseg::stream_order;

namespace {
// What a launch that may still be running holds: its arguments' owners and its device-side checks.
struct InUse {
  std::vector<py::object> objects;
  std::vector<std::shared_ptr<so::DeviceCheck>> checks;
};

// Owners of the arguments of launches that may still be running (see array_args.h). Never destroyed: Python
// objects must not be released after the interpreter is gone; drain_in_use() empties it at exit.
so::DeferredRelease<InUse>& in_use_list() {
  static auto* list = new so::DeferredRelease<InUse>();
  return *list;
}

cudaStream_t stream_order_stream(std::int64_t handle) {
  return so::as_stream(handle);
}

std::shared_ptr<so::DeviceCheck> as_check(const std::shared_ptr<void>& check) {
  return std::static_pointer_cast<so::DeviceCheck>(check);
}

// The message of a failed class_bias check, or "" (finished, all finite, or the kernel never ran).
std::string bias_check_failure(const so::DeviceCheck& check) {
  const std::int32_t code = check.value();
  if (code < 0) return "";
  return check.what + " must be finite, got " + zsseg::bad_class_kind(code) + " at class " + std::to_string(code / 4) +
         " (found by the device-side check after the launch: its outputs are invalid; to drop a class, leave it "
         "out of the vocabulary)";
}

void report_finished_checks(InUse& finished) {
  for (const auto& check : finished.checks) {
    if (!check || !check->armed || !check->finished()) continue;
    const std::string failure = bias_check_failure(*check);
    if (!failure.empty() && check->claim()) throw py::value_error(failure);
  }
}

so::StreamBuffer& stream_buffer(const DeviceBuffer& buffer) {
  return *static_cast<so::StreamBuffer*>(buffer.impl().get());
}

// Wait (without the GIL) for every launch still holding arguments, then release them (reporting a failed
// device-side check when `report`). Registered with atexit (without reporting) and as check_pending_errors.
void drain_in_use(bool report) {
  const auto events = in_use_list().pending_events();
  {
    py::gil_scoped_release release;
    for (const auto& event : events) {
      if (event && event->synchronize() != cudaSuccess) cudaGetLastError();
    }
  }
  if (report) {
    in_use_list().sweep(&report_finished_checks);
  } else {
    in_use_list().sweep();
  }
}
}  // namespace

void sweep_in_use() {
  in_use_list().sweep(&report_finished_checks);
}

std::shared_ptr<void> launch_marker() {
  return std::make_shared<so::ReadyEvent>();
}

int record_launch_marker(const std::shared_ptr<void>& marker, std::int64_t stream, int device) {
  const cudaError_t status = static_cast<so::ReadyEvent*>(marker.get())->record(so::as_stream(stream), device);
  if (status != cudaSuccess) {
    cudaGetLastError();
    py::gil_scoped_release release;
    cudaStreamSynchronize(so::as_stream(stream));  // cannot track the launch: wait for it (error paths only)
    cudaGetLastError();
  }
  return static_cast<int>(status);
}

void keep_until_marker(std::vector<py::object>&& owners, const std::shared_ptr<void>& marker, std::int64_t stream) {
  in_use_list().keep_until(std::static_pointer_cast<so::ReadyEvent>(marker), InUse{std::move(owners), {}},
                           so::as_stream(stream));
}

bool stream_is_capturing(std::int64_t stream) {
  return so::capturing(so::as_stream(stream));
}

unsigned long long ArgParser::stream_id() const {
  if (!stream_id_known_) {
    stream_id_known_ = true;
    stream_id_ = so::stream_id(stream_order_stream(stream_));
  }
  return stream_id_;
}

bool ArgParser::check_bias_on_device(const ArrayArg& bias) const {
  if (capturing()) return true;  // captured into a CUDA graph: no check (see parse_class_bias)
  auto check = so::DeviceCheck::create(zsseg::kBiasNotChecked);
  if (!check) return false;  // every slot in use: the caller checks with a blocking read-back
  check->what = op_ + ": argument 'class_bias'";
  zsseg::BiasCheckParams params;
  params.bias = bias.ptr<float>();
  params.classes = bias.numel();
  params.result = check->device_result();
  CudaDeviceGuard guard(bias.place);
  const zsseg::CudaStatus status = zsseg::bias_check_cuda(params, stream());
  if (status != 0) {
    cudaGetLastError();
    return false;
  }
  // The slot stays taken until the check kernel has run, whatever happens to this call (an error before the
  // op's launch leaves the check unarmed: never reported).
  auto ran = std::make_shared<so::ReadyEvent>();
  if (ran->record(stream_order_stream(stream_int()), bias.place.device_id) != cudaSuccess) {
    cudaGetLastError();
    {
      py::gil_scoped_release release;
      cudaStreamSynchronize(stream_order_stream(stream_int()));  // cannot track it: wait (error paths only)
    }
    cudaGetLastError();
    ran = nullptr;
  }
  check->set_event(ran);
  // The check kernel reads the bias: its owner stays alive until that kernel has run, even when the op fails
  // before its own launch (then nothing else holds it).
  in_use_list().keep_until(ran, InUse{{bias.keep_alive}, {check}}, ran ? stream_order_stream(stream_int()) : nullptr);
  checks_.push_back(std::move(check));
  return true;
}

void order_device_array(const DeviceBuffer& buffer, bool written, const ArgParser& args, const char* name) {
  so::StreamBuffer& sb = stream_buffer(buffer);
  const auto ready = sb.ready();
  const auto graph = sb.graph_ready();  // replays of a graph that writes it
  const auto readers = written ? sb.readers() : std::vector<std::shared_ptr<so::ReadyEvent>>();
  if (args.capturing()) {
    // No wait can be captured on an event recorded outside the capture (cudaErrorStreamCaptureIsolation): the
    // array must be complete already (queried in the relaxed capture mode, which a capture allows).
    const bool pending_write = (ready && !ready->done()) || (graph && !graph->done());
    bool pending_read = false;
    for (const auto& reader : readers) pending_read = pending_read || !reader->done();
    if (pending_write || pending_read) {
      args.fail_value(std::string("argument '") + name + "' is a DeviceArray that a launch still " +
                      (pending_write ? "writes" : "reads") +
                      ", and a CUDA graph capture cannot wait for work outside it; synchronise first (e.g. "
                      "zsseg_rt.ops.native_module().check_pending_errors(wait=True)) and then capture");
    }
    return;
  }
  const cudaStream_t stream = static_cast<cudaStream_t>(args.stream());
  const unsigned long long id = args.stream_id();  // a producer or reader on this very stream needs no wait
  const bool skip_ready = ZS_LIBRARY_MUTATED(kLibSkipInputWait);  // emulated mutation: no wait for the producer
  cudaError_t status = ready && !skip_ready ? ready->order_before(stream, id) : cudaSuccess;
  if (status == cudaSuccess && graph) status = graph->order_before(stream);
  for (const auto& reader : readers) {
    if (status == cudaSuccess) status = reader->order_before(stream, id);
  }
  if (written) {  // what other libraries do with it on the streams it was exported to must come first too
    for (cudaStream_t consumer : sb.consumers()) {
      if (status == cudaSuccess && consumer != stream) status = so::wait_for_stream(stream, consumer);
    }
  }
  if (status != cudaSuccess) {
    cudaGetLastError();
    args.fail_value(std::string("argument '") + name + "': could not order the launch after the DeviceArray's " +
                    "producer: " + cudaGetErrorString(status));
  }
}

int finish_launch(std::int64_t stream, bool capturing, std::vector<py::object>&& in_use,
                  const std::vector<std::shared_ptr<DeviceBuffer>>& outputs,
                  const std::vector<std::shared_ptr<void>>& checks,
                  const std::vector<std::shared_ptr<DeviceBuffer>>& read,
                  const std::vector<std::shared_ptr<DeviceBuffer>>& written, unsigned long long stream_id) {
  if (capturing) {  // (asked once per call by the ArgParser: no second cudaStreamIsCapturing here)
    // Captured into a CUDA graph: the work runs when the graph is launched, so an event recorded now could
    // never be queried (cudaErrorCapturedEvent); what the graph reads is its owner's to keep alive. A DeviceArray
    // the graph writes is filled by replays: an external event node after this launch is recorded by each replay,
    // and the array's reads, consumers and release wait for it (StreamBuffer::set_graph_written).
    for (const auto& buffer : written) stream_buffer(*buffer).set_graph_written(so::as_stream(stream));
    return 0;
  }
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) cudaGetLastError();
  InUse held;
  held.objects = std::move(in_use);
  for (const auto& check : checks) held.checks.push_back(as_check(check));
  auto ready = std::make_shared<so::ReadyEvent>();
  const cudaError_t status = ready->record(so::as_stream(stream), device, stream_id);
  if (status != cudaSuccess) {
    cudaGetLastError();
    // No event: keep nothing pending on it (the outputs fall back to a synchronising cudaFree; the checks are
    // never reported: their kernel's completion cannot be observed).
    in_use_list().keep_until(nullptr, std::move(held));
    return static_cast<int>(status);
  }
  for (const auto& check : held.checks) {
    check->set_event(ready);
    check->armed = true;
  }
  for (const auto& buffer : outputs) {
    stream_buffer(*buffer).set_ready(ready);
    buffer->checks = checks;
  }
  for (const auto& buffer : written) {  // an out= DeviceArray: this launch is its producer now
    stream_buffer(*buffer).set_ready(ready);
    buffer->checks = checks;
  }
  for (const auto& buffer : read) {
    if (!ZS_LIBRARY_MUTATED(kLibSkipReaderRecord)) stream_buffer(*buffer).add_reader(ready);  // emulated mutation
  }
  in_use_list().keep_until(ready, std::move(held), so::as_stream(stream));
  return 0;
}
#else
void sweep_in_use() {}
std::shared_ptr<void> launch_marker() {
  return nullptr;
}
int record_launch_marker(const std::shared_ptr<void>&, std::int64_t, int) {
  return 0;
}
void keep_until_marker(std::vector<py::object>&&, const std::shared_ptr<void>&, std::int64_t) {}
bool stream_is_capturing(std::int64_t) {
  return false;
}
bool ArgParser::check_bias_on_device(const ArrayArg&) const {
  return false;
}
int finish_launch(std::int64_t, bool, std::vector<py::object>&&, const std::vector<std::shared_ptr<DeviceBuffer>>&,
                  const std::vector<std::shared_ptr<void>>&, const std::vector<std::shared_ptr<DeviceBuffer>>&,
                  const std::vector<std::shared_ptr<DeviceBuffer>>&, unsigned long long) {
  return 0;
}
unsigned long long ArgParser::stream_id() const {
  return 0;
}
void order_device_array(const DeviceBuffer&, bool, const ArgParser&, const char*) {}
#endif

// ---- DeviceBuffer -----------------------------------------------------------------------------------
DeviceBuffer::DeviceBuffer(std::size_t bytes, int device_id, std::int64_t stream, bool take_over,
                           unsigned long long stream_id)
    : bytes_(bytes), device_id_(device_id) {
#ifdef ZSSEG_WITH_CUDA
  auto& cache = output_cache::OutputCache::instance();
  std::shared_ptr<so::StreamBuffer> buffer =
      take_over ? cache.take(bytes, device_id, so::as_stream(stream), stream_id) : nullptr;
  cudaError_t status = cudaSuccess;
  if (!buffer) {
    status = so::StreamBuffer::allocate(bytes, device_id, so::as_stream(stream), &buffer);
    if (status == cudaErrorMemoryAllocation && cache.release(device_id) > 0) {  // kept outputs first, then retry
      cudaGetLastError();
      status = so::StreamBuffer::allocate(bytes, device_id, so::as_stream(stream), &buffer);
    }
  }
  if (status != cudaSuccess) {
    cudaGetLastError();
    throw std::runtime_error("allocating " + std::to_string(bytes) + " bytes on cuda:" + std::to_string(device_id) +
                             " failed: " + cudaGetErrorString(status));
  }
  data_ = buffer->data();
  impl_ = std::move(buffer);
#else
  (void)stream;
  (void)take_over;
  (void)stream_id;
  throw std::runtime_error("DeviceBuffer: zsseg_rt was built without CUDA");
#endif
}

DeviceBuffer::~DeviceBuffer() {
#ifdef ZSSEG_WITH_CUDA
  // Kept for a later output of the same size where it may be (output_cache.h); else the StreamBuffer goes here and
  // frees stream-ordered, without blocking.
  auto buffer = std::static_pointer_cast<so::StreamBuffer>(impl_);
  impl_.reset();
  if (buffer) output_cache::OutputCache::instance().put(std::move(buffer));
#endif
}

namespace {

// A DeviceArray holds float32, float16 or int32 (kernel outputs); anything else would export as void / float32.
const char* cai_typestr(ElemType type) {
  const ElemTypeInfo* e = elem_type_info(type);
  return e != nullptr ? e->cai_typestr : "|V0";
}

dlpack::DLDataType dl_dtype(ElemType type) {
  const ElemTypeInfo* e = elem_type_info(type);
  return e != nullptr ? e->dl : dlpack::DLDataType{dlpack::kDLFloat, 32, 1};
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

// Wait (without the GIL) until the DeviceArray's content is complete: its producing launch and the latest launched
// replay of a CUDA graph that writes it (events only, waited for in the relaxed capture mode: legal while another
// thread captures a graph, which is left valid). Only when a graph's event could not be recorded: the whole device
// (refused by CUDA while a stream of it captures: then the error). Throws RuntimeError naming `what` on a CUDA error.
void wait_for_content(const DeviceArray& arr, const char* what) {
#ifdef ZSSEG_WITH_CUDA
  so::StreamBuffer& sb = stream_buffer(*arr.buffer);
  const auto ready = sb.ready();
  const auto graph = sb.graph_ready();
  const bool unordered = sb.graph_written_unordered();
  if (!unordered && (!ready || ready->done()) && (!graph || graph->done())) return;
  cudaError_t status = cudaSuccess;
  {
    py::gil_scoped_release release;  // other Python threads run while this one waits for the GPU
    CudaDeviceGuard guard(Placement{Device::CUDA, arr.buffer->device_id()});
    if (ready) status = ready->synchronize();
    if (status == cudaSuccess && graph) status = graph->synchronize();
    if (status == cudaSuccess && unordered) status = cudaDeviceSynchronize();
  }
  if (status != cudaSuccess) {
    cudaGetLastError();
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(status));
  }
#else
  (void)arr;
  (void)what;
#endif
}

// Make the consumer's stream (DLPack numbering: 1 legacy default, 2 per-thread, else a pointer) wait for
// the stream the array was produced on.
void order_for_consumer(const DeviceArray& arr, const py::object& stream) {
  // DLPack: None means the consumer works on the legacy default stream (1), which must be ordered too.
  const std::int64_t consumer = stream.is_none() ? 1 : stream.cast<std::int64_t>();
  if (consumer == -1) {  // DLPack: -1 = the consumer asks for no synchronisation and names no stream
#ifdef ZSSEG_WITH_CUDA
    stream_buffer(*arr.buffer).add_consumer(cudaStreamLegacy);
#endif
    return;
  }
  if (consumer == 0)
    throw py::value_error(
        "DeviceArray.__dlpack__: stream 0 is ambiguous on CUDA; pass 1 for the legacy default stream");
#ifdef ZSSEG_WITH_CUDA
  // The consumer waits for the completion event of the producing launch; the producer's stream handle is never
  // touched (it may be destroyed by now). DLPack numbering: 1 legacy default, 2 per-thread default, else a handle.
  const cudaStream_t consumer_stream = consumer == 1   ? cudaStreamLegacy
                                       : consumer == 2 ? cudaStreamPerThread
                                                       : so::as_stream(consumer);
  if (stream_buffer(*arr.buffer).graph_written_unordered()) wait_for_content(arr, "DeviceArray.__dlpack__");
  const auto ready = stream_buffer(*arr.buffer).ready();
  const auto graph = stream_buffer(*arr.buffer).graph_ready();  // the latest replay of a graph that writes it
  // A consumer on the stream the array was produced on is ordered after it already (torch.from_dlpack(x) on the
  // stream of the op that made x: no wait per export).
  cudaError_t status = ready ? ready->order_before(consumer_stream, so::stream_id(consumer_stream)) : cudaSuccess;
  if (status == cudaSuccess && graph) status = graph->order_before(consumer_stream);
  // The release of the buffer waits for what the consumer enqueues on its stream (see stream_order.h).
  stream_buffer(*arr.buffer).add_consumer(consumer_stream);
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
#ifdef ZSSEG_WITH_CUDA
  // CAI names no consumer stream: the release waits for the legacy default stream (and so every blocking stream).
  stream_buffer(*arr.buffer).add_consumer(cudaStreamLegacy);
#endif
  py::dict cai;
  cai["shape"] = py::tuple(py::cast(arr.shape));
  cai["typestr"] = cai_typestr(arr.type);
  cai["data"] = py::make_tuple(reinterpret_cast<std::uintptr_t>(arr.buffer->data()), false);
  cai["strides"] = py::none();
  cai["version"] = 3;
  // Consumers of this interface may ignore its "stream" (torch.as_tensor does): the content is complete before the
  // dict is handed out, so None (no synchronisation needed) is true for every consumer.
  wait_for_content(arr, "DeviceArray.__cuda_array_interface__");
  cai["stream"] = py::none();
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
  wait_for_content(arr, "DeviceArray.numpy");
  CudaDeviceGuard guard(Placement{Device::CUDA, arr.buffer->device_id()});
  void* destination = host.mutable_data();
  const std::size_t bytes = static_cast<std::size_t>(shape_numel(arr.shape)) * elem_size(arr.type);
  cudaError_t status = cudaSuccess;
  {
    py::gil_scoped_release release;  // other Python threads run while this one waits for the GPU
    // The copy runs on this library's own non-blocking stream, in the relaxed capture mode: legal while another
    // thread captures a graph (cudaMemcpy would use the legacy stream, illegal then). It comes after the producer
    // and the latest graph replay writing the array, which the host waited for above, also in the relaxed capture
    // mode (wait_for_content): numpy() leaves another thread's capture valid.
    so::RelaxedCaptureScope relaxed;
    cudaStream_t copy_stream = so::release_stream(arr.buffer->device_id());
    if (copy_stream == nullptr) status = cudaErrorInvalidResourceHandle;
    if (status == cudaSuccess)
      status = cudaMemcpyAsync(destination, arr.buffer->data(), bytes, cudaMemcpyDeviceToHost, copy_stream);
    if (status == cudaSuccess) status = cudaStreamSynchronize(copy_stream);
  }
  if (status != cudaSuccess) {
    cudaGetLastError();
    throw std::runtime_error(std::string("DeviceArray.numpy: ") + cudaGetErrorString(status));
  }
  for (const auto& check : arr.buffer->checks) {  // the launch is over: its device-side checks are readable
    const std::string failure = bias_check_failure(*as_check(check));
    if (!failure.empty() && as_check(check)->armed) {
      as_check(check)->claim();
      throw py::value_error(failure);
    }
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
  py::module_::import("atexit").attr("register")(py::cpp_function([] { drain_in_use(false); }));
#endif
  m.def(
      "check_pending_errors",
      [](bool wait) {
#ifdef ZSSEG_WITH_CUDA
        if (wait) {
          drain_in_use(true);
        } else {
          sweep_in_use();
        }
#else
        (void)wait;
#endif
      },
      py::arg("wait") = false,
      "Raise ValueError if a finished CUDA launch's device-side check failed (a non-finite class_bias), once; "
      "wait=True first waits (without the GIL) for every launch still running. Every op call does the "
      "non-waiting form first.");
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
                          "C-contiguous CUDA memory returned by the CUDA ops; the memory lives as long as any "
                          "consumer. Pass it to another op as it is (ordered by its events, no wait), or consume it "
                          "with torch.from_dlpack(x) (ordered on torch's current stream, no wait). "
                          "__cuda_array_interface__ (torch.as_tensor, CuPy) waits on the host until the producing "
                          "launch has finished: torch ignores the interface's 'stream', so the content must be "
                          "complete when it is handed out.")
      .def_property_readonly("shape", [](const DeviceArray& a) { return py::tuple(py::cast(a.shape)); })
      .def_property_readonly("dtype", [](const DeviceArray& a) { return std::string(elem_type_name(a.type)); })
      .def_property_readonly("device",
                             [](const DeviceArray& a) { return "cuda:" + std::to_string(a.buffer->device_id()); })
      .def_property_readonly("nbytes", [](const DeviceArray& a) { return a.buffer->bytes(); })
      .def_property_readonly(
          "ptr", [](const DeviceArray& a) { return reinterpret_cast<std::uintptr_t>(a.buffer->data()); },
          "The device address (an int), without waiting for or ordering after anything: for binding the memory "
          "elsewhere (e.g. a TensorRT tensor address) on a stream ordered after this array's producer.")
      .def_property_readonly(
          "stream", [](const DeviceArray& a) { return a.stream; },
          "The integer cudaStream_t the op was given (0 = default stream); informational only: consumers are "
          "ordered after the launch's completion event, so that stream may be destroyed after the call.")
      .def(
          "ready",
          [](const DeviceArray& a) {
#ifdef ZSSEG_WITH_CUDA
            const auto ready = stream_buffer(*a.buffer).ready();
            const auto graph = stream_buffer(*a.buffer).graph_ready();
            return (!ready || ready->done()) && (!graph || graph->done());
#else
            (void)a;
            return true;
#endif
          },
          "True when the launch that last wrote it, and the latest launched replay of a CUDA graph that writes it, "
          "have finished (never blocks).")
      .def_property_readonly("__cuda_array_interface__", &cuda_array_interface)
      .def("__dlpack__", &dlpack_export, py::kw_only(), py::arg("stream") = py::none(),
           py::arg("max_version") = py::none(), py::arg("dl_device") = py::none(), py::arg("copy") = py::none())
      .def("__dlpack_device__",
           [](const DeviceArray& a) { return py::make_tuple(int(dlpack::kDLCUDA), a.buffer->device_id()); })
      .def("numpy", &to_numpy, "Copy to a new NumPy array (waits, without the GIL, for the producing launch).")
      .def("__repr__", &device_array_repr);
}

}  // namespace zsseg_py
