// The CUDA runtime API of the host emulation (included by cuda_emu.h; see its header comment for the model):
// devices, streams, events, stream capture state, memory of every kind the binding layer meets (device, pool,
// managed, page-locked host memory mapped into the device's address space), pointer attributes.
//
// Rules it follows because the real runtime does (and the binding layer depends on them):
// * cudaFree of memory from cudaMalloc waits for the whole device first; cudaFree of memory from cudaMallocAsync
//   (a memory pool) does NOT: the memory is returned at once, whatever work is still pending.
// * With unified addressing (every 64-bit Linux system), cudaHostAlloc memory is mapped: cudaPointerGetAttributes
//   reports cudaMemoryTypeHost with devicePointer == hostPointer (what a Jetson's zero-copy frame buffer is), and
//   ordinary host memory (malloc, NumPy) reports cudaMemoryTypeUnregistered.
// * While a stream capture in the default global mode is active, queries, synchronisations and cudaMalloc /
//   cudaFree / cudaHostAlloc / cudaMemcpy fail with cudaErrorStreamCaptureUnsupported from any thread whose
//   capture mode is not relaxed, and invalidate the capture (cudaStreamEndCapture then fails with
//   cudaErrorStreamCaptureInvalidated). An event recorded on a capturing stream belongs to the graph: querying or
//   waiting for it on the host fails with cudaErrorCapturedEvent.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

enum cudaDeviceAttr : int {
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrIntegrated = 18,
  cudaDevAttrCanMapHostMemory = 19,
  cudaDevAttrMemoryPoolsSupported = 115,
};
enum cudaMemcpyKind : int {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4
};
enum cudaMemoryType : int {
  cudaMemoryTypeUnregistered = 0,
  cudaMemoryTypeHost = 1,
  cudaMemoryTypeDevice = 2,
  cudaMemoryTypeManaged = 3,
};
struct cudaPointerAttributes {
  cudaMemoryType type = cudaMemoryTypeUnregistered;
  int device = -2;
  void* devicePointer = nullptr;
  void* hostPointer = nullptr;
};
enum cudaStreamCaptureStatus : int {
  cudaStreamCaptureStatusNone = 0,
  cudaStreamCaptureStatusActive = 1,
  cudaStreamCaptureStatusInvalidated = 2,
};
enum cudaStreamCaptureMode : int {
  cudaStreamCaptureModeGlobal = 0,
  cudaStreamCaptureModeThreadLocal = 1,
  cudaStreamCaptureModeRelaxed = 2,
};
constexpr unsigned int cudaHostAllocDefault = 0x0;
constexpr unsigned int cudaHostAllocPortable = 0x1;
constexpr unsigned int cudaHostAllocMapped = 0x2;
constexpr unsigned int cudaMemAttachGlobal = 0x1;
constexpr unsigned int cudaStreamDefault = 0x0;
constexpr unsigned int cudaStreamNonBlocking = 0x1;
constexpr unsigned int cudaEventDefault = 0x0;
constexpr unsigned int cudaEventDisableTiming = 0x2;
#define cudaStreamLegacy (reinterpret_cast<cudaStream_t>(0x1))
#define cudaStreamPerThread (reinterpret_cast<cudaStream_t>(0x2))
struct cudaFuncAttributes {
  int maxThreadsPerBlock = 1024;
  int numRegs = 0;
  int ptxVersion = 75;
  int binaryVersion = 75;
};
struct CUgraph_st {};
using cudaGraph_t = CUgraph_st*;

namespace zs_emu {

// Completion of enqueued work: done when open and every dependency is done.
struct Gate {
  bool open = true;
  std::vector<std::shared_ptr<Gate>> deps;
  bool done() const {
    if (!open) return false;
    for (const auto& d : deps)
      if (d && !d->done()) return false;
    return true;
  }
  void force() {  // what the GPU does eventually: finish the work
    open = true;
    for (const auto& d : deps)
      if (d) d->force();
  }
};

struct DeviceConfig {
  int device_count = 1;
  bool memory_pools = true;
  bool integrated = false;                // cudaDevAttrIntegrated (a Jetson: one DRAM for CPU and GPU)
  int multiprocessors = 16;               // cudaDevAttrMultiProcessorCount (0: unknown)
  std::vector<cudaError_t> kernel_image;  // per device; missing entries = cudaSuccess
};
struct RuntimeStats {
  int sync_malloc = 0;     // cudaMalloc: may synchronise the device
  int sync_free = 0;       // cudaFree of cudaMalloc memory: synchronises the device
  int pool_free = 0;       // cudaFree of pool memory: returned at once, NOT synchronised
  int async_malloc = 0;    // cudaMallocAsync
  int async_free = 0;      // cudaFreeAsync
  int blocking_waits = 0;  // cudaEventSynchronize / cudaStreamSynchronize / cudaDeviceSynchronize
  int streams_created = 0;
  int streams_destroyed = 0;
  int capture_violations = 0;  // calls that are illegal during an active stream capture
};

enum class MemoryKind { Device, Pool, Managed, Host };
struct Allocation {
  MemoryKind kind = MemoryKind::Device;
  std::size_t bytes = 0;
  int device = 0;
  unsigned int flags = 0;
};

struct RuntimeState {
  std::recursive_mutex mutex;
  DeviceConfig config;
  RuntimeStats stats;
  std::vector<std::pair<std::shared_ptr<Gate>, void*>> pending_frees;
  std::map<std::uintptr_t, Allocation> live;  // by address: allocations not yet returned (pending frees included)
  int global_captures = 0;                    // active (or invalidated, not yet ended) global-mode captures
};
inline RuntimeState& runtime() {
  static RuntimeState state;
  return state;
}
inline DeviceConfig& device_config() {
  return runtime().config;
}
inline RuntimeStats& runtime_stats() {
  return runtime().stats;
}
inline int& current_device() {
  static thread_local int device = 0;
  return device;
}
inline cudaStreamCaptureMode& thread_capture_mode() {
  static thread_local cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal;
  return mode;
}

}  // namespace zs_emu

struct CUstream_st {
  unsigned int flags = 0;
  int device = 0;
  std::shared_ptr<zs_emu::Gate> tail;  // completion of everything enqueued so far
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  cudaStreamCaptureMode capture_mode = cudaStreamCaptureModeGlobal;
};
struct CUevent_st {
  unsigned int flags = 0;
  std::shared_ptr<zs_emu::Gate> gate;  // null: never recorded (counts as complete)
  bool captured = false;               // last recorded on a capturing stream: a node of the graph
};

namespace zs_emu {

inline CUstream_st& legacy_stream() {
  static CUstream_st stream;
  return stream;
}
inline CUstream_st& per_thread_stream() {
  static thread_local CUstream_st stream;
  return stream;
}
inline CUstream_st& stream_of(cudaStream_t handle) {
  if (handle == nullptr || handle == cudaStreamLegacy) return legacy_stream();
  if (handle == cudaStreamPerThread) return per_thread_stream();
  return *handle;
}

// Every stream capture that is (or was, until cudaStreamEndCapture) active. Guarded by runtime().mutex.
inline std::vector<CUstream_st*>& capturing_streams() {
  static std::vector<CUstream_st*> streams;
  return streams;
}

// A call that is illegal while a capture is active: fails (and invalidates the captures it would break) when the
// calling thread's mode is not relaxed and a global-mode capture is active.
inline cudaError_t capture_check() {
  if (thread_capture_mode() == cudaStreamCaptureModeRelaxed) return cudaSuccess;
  std::lock_guard<std::recursive_mutex> lock(runtime().mutex);
  if (runtime().global_captures == 0) return cudaSuccess;
  for (CUstream_st* s : capturing_streams()) s->capture = cudaStreamCaptureStatusInvalidated;
  ++runtime().stats.capture_violations;
  return last_error() = cudaErrorStreamCaptureUnsupported;
}

// Frees whose stream work has completed really happen now.
inline void collect_frees() {
  RuntimeState& rt = runtime();
  std::lock_guard<std::recursive_mutex> lock(rt.mutex);
  std::vector<std::pair<std::shared_ptr<Gate>, void*>> keep;
  for (auto& entry : rt.pending_frees) {
    if (entry.first && !entry.first->done()) {
      keep.push_back(entry);
      continue;
    }
    rt.live.erase(reinterpret_cast<std::uintptr_t>(entry.second));
    std::free(entry.second);
  }
  rt.pending_frees.swap(keep);
}

// Holds a stream: work enqueued on it from now on stays pending until release() (or the destructor).
class StreamHold {
 public:
  explicit StreamHold(cudaStream_t stream) : gate_(std::make_shared<Gate>()) {
    CUstream_st& s = stream_of(stream);
    gate_->open = false;
    gate_->deps.push_back(s.tail);
    s.tail = gate_;
  }
  ~StreamHold() { release(); }
  void release() {
    gate_->open = true;
    collect_frees();
  }
  StreamHold(const StreamHold&) = delete;
  StreamHold& operator=(const StreamHold&) = delete;

 private:
  std::shared_ptr<Gate> gate_;
};

// Allocations not yet returned (a pending cudaFreeAsync still counts).
inline std::size_t live_allocations() {
  collect_frees();
  std::lock_guard<std::recursive_mutex> lock(runtime().mutex);
  return runtime().live.size();
}
inline bool is_live(const void* ptr) {
  collect_frees();
  std::lock_guard<std::recursive_mutex> lock(runtime().mutex);
  return runtime().live.count(reinterpret_cast<std::uintptr_t>(ptr)) != 0;
}
// The allocation holding `ptr` (any address inside it), or nullptr. Caller holds runtime().mutex.
inline std::pair<const std::uintptr_t, Allocation>* find_allocation(const void* ptr) {
  auto& live = runtime().live;
  const auto address = reinterpret_cast<std::uintptr_t>(ptr);
  auto it = live.upper_bound(address);
  if (it == live.begin()) return nullptr;
  --it;
  const std::size_t extent = it->second.bytes == 0 ? 1 : it->second.bytes;
  return address - it->first < extent ? &*it : nullptr;
}
inline void reset_runtime(const DeviceConfig& config = DeviceConfig()) {
  RuntimeState& rt = runtime();
  std::lock_guard<std::recursive_mutex> lock(rt.mutex);
  rt.config = config;
  rt.stats = RuntimeStats();
  current_device() = 0;
}

inline cudaError_t allocate(void** ptr, std::size_t bytes, MemoryKind kind, unsigned int flags = 0) {
  *ptr = std::malloc(bytes == 0 ? 1 : bytes);
  if (*ptr == nullptr) return last_error() = cudaErrorMemoryAllocation;
  std::lock_guard<std::recursive_mutex> lock(runtime().mutex);
  runtime().live[reinterpret_cast<std::uintptr_t>(*ptr)] = Allocation{kind, bytes, current_device(), flags};
  return cudaSuccess;
}

}  // namespace zs_emu

inline const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess:
      return "no error";
    case cudaErrorInvalidValue:
      return "invalid argument";
    case cudaErrorMemoryAllocation:
      return "out of memory";
    case cudaErrorInvalidConfiguration:
      return "invalid configuration argument";
    case cudaErrorNoDevice:
      return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice:
      return "invalid device ordinal";
    case cudaErrorNoKernelImageForDevice:
      return "no kernel image is available for execution on the device";
    case cudaErrorInvalidResourceHandle:
      return "invalid resource handle";
    case cudaErrorNotReady:
      return "device not ready";
    case cudaErrorLaunchFailure:
      return "unspecified launch failure";
    case cudaErrorStreamCaptureUnsupported:
      return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated:
      return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureWrongThread:
      return "attempt to terminate a thread-local capture sequence from another thread";
    case cudaErrorCapturedEvent:
      return "operation not permitted on an event last recorded in a capturing stream";
  }
  return "unknown error";
}

// ---- devices -----------------------------------------------------------------------------------------------
inline cudaError_t cudaGetDeviceCount(int* count) {
  const int n = zs_emu::device_config().device_count;
  *count = n < 0 ? 0 : n;
  return n <= 0 ? cudaErrorNoDevice : cudaSuccess;
}
inline cudaError_t cudaGetDevice(int* device) {
  *device = zs_emu::current_device();
  return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int device) {
  if (device < 0 || device >= zs_emu::device_config().device_count)
    return zs_emu::last_error() = cudaErrorInvalidDevice;
  zs_emu::current_device() = device;
  return cudaSuccess;
}
inline cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (device < 0 || device >= zs_emu::device_config().device_count)
    return zs_emu::last_error() = cudaErrorInvalidDevice;
  const zs_emu::DeviceConfig& config = zs_emu::device_config();
  *value = attr == cudaDevAttrMemoryPoolsSupported  ? config.memory_pools
           : attr == cudaDevAttrIntegrated          ? config.integrated
           : attr == cudaDevAttrCanMapHostMemory    ? 1
           : attr == cudaDevAttrMultiProcessorCount ? config.multiprocessors
                                                    : 0;
  return cudaSuccess;
}
// The emulated "module" has code for a device unless device_config().kernel_image says otherwise.
template <class Function>
inline cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* attributes, Function* /*function*/) {
  const auto& images = zs_emu::device_config().kernel_image;
  const int device = zs_emu::current_device();
  if (device < static_cast<int>(images.size()) && images[static_cast<std::size_t>(device)] != cudaSuccess) {
    return zs_emu::last_error() = images[static_cast<std::size_t>(device)];
  }
  *attributes = cudaFuncAttributes();
  return cudaSuccess;
}
inline cudaError_t cudaDeviceSynchronize() {
  if (zs_emu::capture_check() != cudaSuccess) return cudaErrorStreamCaptureUnsupported;
  ++zs_emu::runtime_stats().blocking_waits;
  std::lock_guard<std::recursive_mutex> lock(zs_emu::runtime().mutex);
  for (auto& entry : zs_emu::runtime().pending_frees)
    if (entry.first) entry.first->force();
  auto& tail = zs_emu::legacy_stream().tail;
  if (tail) tail->force();
  zs_emu::collect_frees();
  return cudaSuccess;
}

// ---- streams and capture -------------------------------------------------------------------------------------
inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int flags) {
  auto* created = new CUstream_st();
  created->flags = flags;
  created->device = zs_emu::current_device();
  *stream = created;
  ++zs_emu::runtime_stats().streams_created;
  return cudaSuccess;
}
inline cudaError_t cudaStreamCreate(cudaStream_t* stream) {
  return cudaStreamCreateWithFlags(stream, cudaStreamDefault);
}
inline cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  if (stream == nullptr || stream == cudaStreamLegacy || stream == cudaStreamPerThread) {
    return zs_emu::last_error() = cudaErrorInvalidResourceHandle;
  }
  ++zs_emu::runtime_stats().streams_destroyed;
  delete stream;  // pending work still completes (its gates are shared); the handle is dead
  return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  if (zs_emu::capture_check() != cudaSuccess) return cudaErrorStreamCaptureUnsupported;
  ++zs_emu::runtime_stats().blocking_waits;
  auto& tail = zs_emu::stream_of(stream).tail;
  if (tail) tail->force();
  zs_emu::collect_frees();
  return cudaSuccess;
}
inline cudaError_t cudaStreamQuery(cudaStream_t stream) {
  if (zs_emu::capture_check() != cudaSuccess) return cudaErrorStreamCaptureUnsupported;
  const auto& tail = zs_emu::stream_of(stream).tail;
  return !tail || tail->done() ? cudaSuccess : cudaErrorNotReady;
}
inline cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* status) {
  *status = zs_emu::stream_of(stream).capture;
  return cudaSuccess;
}
inline cudaError_t cudaThreadExchangeStreamCaptureMode(cudaStreamCaptureMode* mode) {
  std::swap(*mode, zs_emu::thread_capture_mode());
  return cudaSuccess;
}
inline cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode) {
  if (stream == nullptr || stream == cudaStreamLegacy) return zs_emu::last_error() = cudaErrorStreamCaptureUnsupported;
  CUstream_st& s = zs_emu::stream_of(stream);
  if (s.capture != cudaStreamCaptureStatusNone) return zs_emu::last_error() = cudaErrorInvalidValue;
  std::lock_guard<std::recursive_mutex> lock(zs_emu::runtime().mutex);
  s.capture = cudaStreamCaptureStatusActive;
  s.capture_mode = mode;
  zs_emu::capturing_streams().push_back(&s);
  if (mode == cudaStreamCaptureModeGlobal) ++zs_emu::runtime().global_captures;
  return cudaSuccess;
}
inline cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  CUstream_st& s = zs_emu::stream_of(stream);
  if (s.capture == cudaStreamCaptureStatusNone) return zs_emu::last_error() = cudaErrorInvalidValue;
  std::lock_guard<std::recursive_mutex> lock(zs_emu::runtime().mutex);
  auto& streams = zs_emu::capturing_streams();
  for (std::size_t i = 0; i < streams.size(); ++i) {
    if (streams[i] == &s) {
      streams.erase(streams.begin() + static_cast<std::ptrdiff_t>(i));
      break;
    }
  }
  if (s.capture_mode == cudaStreamCaptureModeGlobal) --zs_emu::runtime().global_captures;
  const bool valid = s.capture == cudaStreamCaptureStatusActive;
  s.capture = cudaStreamCaptureStatusNone;
  *graph = valid ? new CUgraph_st() : nullptr;
  return valid ? cudaSuccess : (zs_emu::last_error() = cudaErrorStreamCaptureInvalidated);
}
inline cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete graph;
  return cudaSuccess;
}

// ---- events ----------------------------------------------------------------------------------------------------
inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int flags) {
  auto* created = new CUevent_st();
  created->flags = flags;
  *event = created;
  return cudaSuccess;
}
inline cudaError_t cudaEventDestroy(cudaEvent_t event) {
  if (event == nullptr) return zs_emu::last_error() = cudaErrorInvalidResourceHandle;
  delete event;
  return cudaSuccess;
}
inline cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream = nullptr) {
  if (event == nullptr) return zs_emu::last_error() = cudaErrorInvalidResourceHandle;
  CUstream_st& s = zs_emu::stream_of(stream);
  event->captured = s.capture != cudaStreamCaptureStatusNone;
  event->gate = s.tail;
  if (!event->gate) event->gate = std::make_shared<zs_emu::Gate>();
  return cudaSuccess;
}
inline cudaError_t cudaEventQuery(cudaEvent_t event) {
  if (event == nullptr) return zs_emu::last_error() = cudaErrorInvalidResourceHandle;
  if (zs_emu::capture_check() != cudaSuccess) return cudaErrorStreamCaptureUnsupported;
  if (event->captured) return zs_emu::last_error() = cudaErrorCapturedEvent;
  return !event->gate || event->gate->done() ? cudaSuccess : cudaErrorNotReady;
}
inline cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  if (event == nullptr) return zs_emu::last_error() = cudaErrorInvalidResourceHandle;
  if (zs_emu::capture_check() != cudaSuccess) return cudaErrorStreamCaptureUnsupported;
  if (event->captured) return zs_emu::last_error() = cudaErrorCapturedEvent;
  ++zs_emu::runtime_stats().blocking_waits;
  if (event->gate) event->gate->force();
  zs_emu::collect_frees();
  return cudaSuccess;
}
inline cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int /*flags*/ = 0) {
  if (event == nullptr) return zs_emu::last_error() = cudaErrorInvalidResourceHandle;
  CUstream_st& s = zs_emu::stream_of(stream);
  if (event->gate && !event->gate->done()) {
    auto joined = std::make_shared<zs_emu::Gate>();
    joined->deps = {s.tail, event->gate};
    s.tail = joined;
  }
  return cudaSuccess;
}

// ---- memory ----------------------------------------------------------------------------------------------------
inline cudaError_t cudaMalloc(void** ptr, std::size_t bytes) {
  if (zs_emu::capture_check() != cudaSuccess) return cudaErrorStreamCaptureUnsupported;
  ++zs_emu::runtime_stats().sync_malloc;
  return zs_emu::allocate(ptr, bytes, zs_emu::MemoryKind::Device);
}
inline cudaError_t cudaMallocAsync(void** ptr, std::size_t bytes, cudaStream_t /*stream*/) {
  if (!zs_emu::device_config().memory_pools) return zs_emu::last_error() = cudaErrorInvalidValue;
  ++zs_emu::runtime_stats().async_malloc;
  return zs_emu::allocate(ptr, bytes, zs_emu::MemoryKind::Pool);
}
inline cudaError_t cudaMallocManaged(void** ptr, std::size_t bytes, unsigned int flags = cudaMemAttachGlobal) {
  if (zs_emu::capture_check() != cudaSuccess) return cudaErrorStreamCaptureUnsupported;
  return zs_emu::allocate(ptr, bytes, zs_emu::MemoryKind::Managed, flags);
}
// cudaFree: memory from cudaMalloc / cudaMallocManaged waits for the whole device first; pool memory is returned
// at once (pending work may still use it: the caller must have ordered it, e.g. with cudaFreeAsync).
inline cudaError_t cudaFree(void* ptr) {
  if (ptr == nullptr) return cudaSuccess;
  if (zs_emu::capture_check() != cudaSuccess) return cudaErrorStreamCaptureUnsupported;
  std::lock_guard<std::recursive_mutex> lock(zs_emu::runtime().mutex);
  auto* found = zs_emu::find_allocation(ptr);
  if (found == nullptr || found->first != reinterpret_cast<std::uintptr_t>(ptr) ||
      found->second.kind == zs_emu::MemoryKind::Host) {
    return zs_emu::last_error() = cudaErrorInvalidValue;
  }
  if (found->second.kind == zs_emu::MemoryKind::Pool) {
    ++zs_emu::runtime_stats().pool_free;
  } else {
    ++zs_emu::runtime_stats().sync_free;
    cudaDeviceSynchronize();                   // cudaFree waits for the device
    --zs_emu::runtime_stats().blocking_waits;  // counted as sync_free, not as an explicit wait
  }
  zs_emu::runtime().pending_frees.emplace_back(nullptr, ptr);
  zs_emu::collect_frees();
  return cudaSuccess;
}
inline cudaError_t cudaFreeAsync(void* ptr, cudaStream_t stream) {
  if (ptr == nullptr) return cudaSuccess;
  ++zs_emu::runtime_stats().async_free;
  std::lock_guard<std::recursive_mutex> lock(zs_emu::runtime().mutex);
  zs_emu::runtime().pending_frees.emplace_back(zs_emu::stream_of(stream).tail, ptr);
  zs_emu::collect_frees();
  return cudaSuccess;
}
// Page-locked host memory; with unified addressing it is mapped (the device uses the same address).
inline cudaError_t cudaHostAlloc(void** ptr, std::size_t bytes, unsigned int flags) {
  if (zs_emu::capture_check() != cudaSuccess) return cudaErrorStreamCaptureUnsupported;
  return zs_emu::allocate(ptr, bytes, zs_emu::MemoryKind::Host, flags);
}
inline cudaError_t cudaFreeHost(void* ptr) {
  if (ptr == nullptr) return cudaSuccess;
  if (zs_emu::capture_check() != cudaSuccess) return cudaErrorStreamCaptureUnsupported;
  std::lock_guard<std::recursive_mutex> lock(zs_emu::runtime().mutex);
  auto* found = zs_emu::find_allocation(ptr);
  if (found == nullptr || found->second.kind != zs_emu::MemoryKind::Host) {
    return zs_emu::last_error() = cudaErrorInvalidValue;
  }
  cudaDeviceSynchronize();  // like cudaFree: waits for the device
  --zs_emu::runtime_stats().blocking_waits;
  zs_emu::runtime().pending_frees.emplace_back(nullptr, ptr);
  zs_emu::collect_frees();
  return cudaSuccess;
}
inline cudaError_t cudaHostGetDevicePointer(void** device_ptr, void* host_ptr, unsigned int /*flags*/) {
  std::lock_guard<std::recursive_mutex> lock(zs_emu::runtime().mutex);
  auto* found = zs_emu::find_allocation(host_ptr);
  if (found == nullptr || found->second.kind != zs_emu::MemoryKind::Host) {
    return zs_emu::last_error() = cudaErrorInvalidValue;
  }
  *device_ptr = host_ptr;  // unified addressing: one address for host and device
  return cudaSuccess;
}
inline cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* attributes, const void* ptr) {
  *attributes = cudaPointerAttributes();
  std::lock_guard<std::recursive_mutex> lock(zs_emu::runtime().mutex);
  auto* found = zs_emu::find_allocation(ptr);
  if (found == nullptr) return cudaSuccess;  // CUDA >= 11: unregistered host memory is not an error
  void* address = const_cast<void*>(ptr);
  attributes->device = found->second.device;
  switch (found->second.kind) {
    case zs_emu::MemoryKind::Device:
    case zs_emu::MemoryKind::Pool:
      attributes->type = cudaMemoryTypeDevice;
      attributes->devicePointer = address;
      break;
    case zs_emu::MemoryKind::Managed:
      attributes->type = cudaMemoryTypeManaged;
      attributes->devicePointer = address;
      attributes->hostPointer = address;
      break;
    case zs_emu::MemoryKind::Host:
      attributes->type = cudaMemoryTypeHost;
      attributes->devicePointer = address;
      attributes->hostPointer = address;
      break;
  }
  return cudaSuccess;
}
inline cudaError_t cudaMemcpy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind /*kind*/) {
  if (zs_emu::capture_check() != cudaSuccess) return cudaErrorStreamCaptureUnsupported;
  std::memcpy(dst, src, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind /*kind*/,
                                   cudaStream_t /*stream*/ = nullptr) {
  std::memcpy(dst, src, bytes);
  return cudaSuccess;
}
