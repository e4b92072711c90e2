// The CUDA runtime API of the host emulation (included by cuda_emu.h; see its header comment for the model). The
// types it shares with the execution model are in cuda_emu_types.h.
//
// Every stream is a queue of operations run IN ORDER by a worker thread of its own, asynchronously to the host
// thread that enqueued them, after a seeded random delay (ZS_EMU_SEED, ZS_EMU_DELAY_US), so the interleaving of
// streams differs from run to run as it does on a GPU. What the emulation follows because the real runtime does:
//
// * Kernels (ZS_LAUNCH), cudaMemcpyAsync, cudaMemsetAsync, cudaLaunchHostFunc, event records, cudaStreamWaitEvent,
//   cudaMallocAsync and cudaFreeAsync are operations on their stream: they happen when the stream reaches them.
//   Kernels of different streams never overlap in time (one "SM"); copies may run while a kernel runs.
// * The legacy default stream (0 / cudaStreamLegacy) synchronises implicitly with every BLOCKING stream of its
//   device (cudaStreamDefault flags, and the per-thread default stream): an operation on it waits for the work
//   enqueued before it on those streams, and their later operations wait for it. Non-blocking streams take no
//   part in this. cudaMemcpy (synchronous) is an operation on the legacy stream followed by a host wait, so it does
//   NOT wait for non-blocking streams either; with pageable host memory cudaMemcpyAsync is synchronous too.
// * cudaStreamSynchronize / cudaEventSynchronize wait for that work only; cudaDeviceSynchronize waits for every
//   stream of the process. cudaFree of cudaMalloc / managed / pinned memory waits for the whole device; cudaFree of
//   pool memory does NOT (it is returned at once, pending work or not).
// * Pool memory (cudaMallocAsync) is stream-ordered. A block freed with cudaFreeAsync goes back to the pool when
//   its stream reaches the free, then is filled with 0xFF bytes (NaN as float, -1 as int; poisoned under
//   AddressSanitizer until its next allocation). The pool hands it out again as the real pool does by default: at
//   once on the stream that freed it, to another stream once the free has completed, or to another stream with a
//   dependency on the free inserted (cudaMemPoolReuseAllowInternalDependencies). At every host synchronisation the
//   pool releases unused memory above its release threshold (cudaMemPoolAttrReleaseThreshold, 0 by default) to the
//   system, counted in runtime_stats().pool_os_releases; a later allocation maps it again (pool_os_allocations).
// * Stream capture records operations into a graph instead of running them; they run only when an instantiated
//   graph is launched (cudaGraphLaunch), with the kernel arguments and copy addresses captured (a buffer changed
//   or reallocated after the capture is read or written as it is at replay), independent branches of the graph in
//   a seeded random order. A stream that waits for an event recorded in a capture joins that capture; the capture
//   must end on its origin stream with every joined stream joined back. Illegal during capture (the call fails and
//   invalidates the capture, which cudaStreamEndCapture then reports with a null graph), as the CUDA programming
//   guide lists: querying or synchronising a capturing stream, a captured event or the device; a wait on an event
//   recorded outside the capture without cudaEventWaitExternal (cudaEventRecordExternal makes an event record node
//   that each launch records; the event is not a captured one); any use of the legacy stream while a blocking
//   stream of its device captures; potentially unsafe calls (cudaMalloc, cudaFree, cudaMallocHost/cudaHostAlloc,
//   cudaFreeHost, cudaMemcpy, event and stream queries and synchronisations) from a thread whose capture mode
//   forbids them (cudaThreadExchangeStreamCaptureMode: global, thread-local, relaxed); pageable host memory in a
//   captured copy.
// * Handles: a destroyed stream or event is never reused; using it is reported (see below) and fails with
//   cudaErrorInvalidResourceHandle. Work enqueued before cudaStreamDestroy still completes.
//
// Reports (zs_emu::take_reports(), _C._emulation.take_reports() in Python): what a GPU would not flag but gets
// wrong. A happens-before race detector: every operation carries a vector clock (its stream's order, the events it
// waited for, the host's synchronisations), and every access of a kernel (its pointer arguments: const = read,
// otherwise write; a struct argument's pointers through its emu_accesses overload, see cuda_emu.h), copy, memset,
// allocation or free to an allocation is checked against the last write and the reads since then: two accesses, at
// least one a write, with no ordering between them is a "race", whichever runs first. The nodes of one graph launch
// are checked against each other along the captured graph's edges (unjoined branches of a fork run concurrently),
// and the host's reads and writes of page-locked memory where the library makes them (host_access) against the
// device work the host has not synchronised with. An access to pool memory that was freed is a "use-after-free";
// use of a destroyed handle, or a struct kernel argument carrying a tracked pointer with no emu_accesses overload,
// is "misuse". An exception thrown by a kernel (the emulation's device fault) is a "kernel-error", and makes
// cudaErrorLaunchFailure sticky for the process as a fault does for a CUDA context: every later synchronisation,
// query, launch, copy and memset returns it, and kernels enqueued before it do not run; frees and allocations still
// work here (so a test can clean up), and reset_device_error() ends it (cudaDeviceReset on a GPU).
// Reports are printed to stderr as they happen; tests fail on any report (python_tests/conftest.py,
// cpp_tests/emulation/emu_test_utils.h). Not seen: accesses inside one kernel (blocks run in order), host accesses
// the library does not declare, allocation-granular overlaps inside one shared slab (PinnedSlots).
//
// Mutations (ZS_EMU_MUTATION=name[,name], or set_mutations): a class of ordering bug made on purpose, to prove that
// the tests report it (python_tests/test_emulator_mutations.py). By the emulator: drop_event_wait:
// cudaStreamWaitEvent does nothing. free_before_consumer: cudaFreeAsync frees on a stream of its own, ordered after
// nothing its stream waits for (readers elsewhere). skip_host_wait: cudaStreamSynchronize / cudaEventSynchronize /
// cudaDeviceSynchronize return without waiting (and every operation is delayed, so the host reads before the work
// ran: a result read before a graph replay or a kernel finished). wrong_launch_stream: kernels run on a stream of
// their own instead of the one they were launched on. By the library (csrc/cuda/emu_hooks.h, compiled in only
// here): lib_skip_input_wait: an op does not wait for the launch that wrote its DeviceArray input
// (csrc/bindings/device.cpp); lib_skip_reader_record: a launch is not recorded as a reader of its DeviceArray
// inputs, so a later `out=` write or release does not wait for it (device.cpp); lib_skip_release_wait: a
// DeviceArray's release does not wait for its writer (csrc/cuda/stream_order.h); lib_skip_consumer_wait: nor for
// the streams it was exported to (stream_order.h).
#pragma once
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "cuda_emu_api_calls.h"
#include "cuda_emu_types.h"

// CUDA's runtime enums as cuda_runtime_api.h spells them (cudaError_t: cuda_emu_types.h)
enum cudaDeviceAttr : int {
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrComputeCapabilityMajor = 75,
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
enum cudaMemPoolAttr : int {
  cudaMemPoolReuseFollowEventDependencies = 1,
  cudaMemPoolReuseAllowOpportunistic = 2,
  cudaMemPoolReuseAllowInternalDependencies = 3,
  cudaMemPoolAttrReleaseThreshold = 4,
  cudaMemPoolAttrReservedMemCurrent = 5,
  cudaMemPoolAttrReservedMemHigh = 6,
  cudaMemPoolAttrUsedMemCurrent = 7,
  cudaMemPoolAttrUsedMemHigh = 8,
};
// cudaMemPoolCreate's properties, as cuda_runtime_api.h spells them (the emulation reads allocType and location).
enum cudaMemAllocationType : int { cudaMemAllocationTypeInvalid = 0, cudaMemAllocationTypePinned = 1 };
enum cudaMemAllocationHandleType : int { cudaMemHandleTypeNone = 0 };
enum cudaMemLocationType : int { cudaMemLocationTypeInvalid = 0, cudaMemLocationTypeDevice = 1 };
struct cudaMemLocation {
  cudaMemLocationType type = cudaMemLocationTypeInvalid;
  int id = 0;
};
struct cudaMemPoolProps {
  cudaMemAllocationType allocType = cudaMemAllocationTypeInvalid;
  cudaMemAllocationHandleType handleTypes = cudaMemHandleTypeNone;
  cudaMemLocation location;
  void* win32SecurityAttributes = nullptr;
  std::size_t maxSize = 0;
  unsigned short usage = 0;
  unsigned char reserved[54] = {};
};
constexpr unsigned int cudaHostAllocDefault = 0x0;
constexpr unsigned int cudaHostAllocPortable = 0x1;
constexpr unsigned int cudaHostAllocMapped = 0x2;
constexpr unsigned int cudaMemAttachGlobal = 0x1;
constexpr unsigned int cudaStreamDefault = 0x0;
constexpr unsigned int cudaStreamNonBlocking = 0x1;
constexpr unsigned int cudaEventDefault = 0x0;
constexpr unsigned int cudaEventDisableTiming = 0x2;
constexpr unsigned int cudaEventWaitDefault = 0x0;
constexpr unsigned int cudaEventWaitExternal = 0x1;
constexpr unsigned int cudaEventRecordDefault = 0x0;
constexpr unsigned int cudaEventRecordExternal = 0x1;
#define cudaStreamLegacy (reinterpret_cast<cudaStream_t>(0x1))
#define cudaStreamPerThread (reinterpret_cast<cudaStream_t>(0x2))
struct cudaFuncAttributes {
  int maxThreadsPerBlock = 1024;
  int numRegs = 0;
  int ptxVersion = 75;
  int binaryVersion = 75;
};
struct CUstream_st;
using cudaStream_t = CUstream_st*;
struct CUevent_st;
using cudaEvent_t = CUevent_st*;
struct CUgraph_st;
using cudaGraph_t = CUgraph_st*;
struct CUgraphExec_st;
using cudaGraphExec_t = CUgraphExec_st*;
struct CUgraphNode_st;
using cudaGraphNode_t = CUgraphNode_st*;
struct CUmemPoolHandle_st;
using cudaMemPool_t = CUmemPoolHandle_st*;
using cudaHostFn_t = void (*)(void* user_data);

namespace zs_emu {

// ---- options, mutations, reports ---------------------------------------------------------------------------
enum Mutation : unsigned {
  kDropEventWait = 1u << 0,
  kFreeBeforeConsumer = 1u << 1,
  kSkipHostWait = 1u << 2,
  kWrongLaunchStream = 1u << 3,
  // Mutations of the library (csrc/bindings, csrc/cuda/stream_order.h), read there through ZS_LIBRARY_MUTATED
  // (csrc/cuda/emu_hooks.h), which only the emulated build compiles in.
  kLibSkipInputWait = 1u << 4,
  kLibSkipReaderRecord = 1u << 5,
  kLibSkipReleaseWait = 1u << 6,
  kLibSkipConsumerWait = 1u << 7,
};
inline const std::vector<std::pair<const char*, Mutation>>& mutation_names() {
  static const std::vector<std::pair<const char*, Mutation>> names{{"drop_event_wait", kDropEventWait},
                                                                   {"free_before_consumer", kFreeBeforeConsumer},
                                                                   {"skip_host_wait", kSkipHostWait},
                                                                   {"wrong_launch_stream", kWrongLaunchStream},
                                                                   {"lib_skip_input_wait", kLibSkipInputWait},
                                                                   {"lib_skip_reader_record", kLibSkipReaderRecord},
                                                                   {"lib_skip_release_wait", kLibSkipReleaseWait},
                                                                   {"lib_skip_consumer_wait", kLibSkipConsumerWait}};
  return names;
}
// Parses "a,b" into a mask; unknown names abort (a mistyped mutation must not pass as "no mutation").
inline unsigned parse_mutations(const std::string& text) {
  unsigned mask = 0;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t comma = text.find(',', start);
    const std::string name = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (!name.empty()) {
      bool known = false;
      for (const auto& entry : mutation_names()) {
        if (name == entry.first) {
          mask |= entry.second;
          known = true;
        }
      }
      if (!known) {
        std::fprintf(stderr, "zs_emu: unknown mutation '%s' (ZS_EMU_MUTATION)\n", name.c_str());
        std::abort();
      }
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return mask;
}

struct Options {
  std::uint64_t seed = 0;
  bool seed_from_env = false;
  int max_delay_us = 300;  // an operation waits 0..max_delay_us (half of them not at all) before it runs
};
inline Options& options() {
  static Options opts = [] {
    Options o;
    const char* seed = std::getenv("ZS_EMU_SEED");
    if (seed != nullptr && *seed != '\0') {
      o.seed = std::strtoull(seed, nullptr, 0);
      o.seed_from_env = true;
    } else {
      std::random_device device;
      o.seed = (static_cast<std::uint64_t>(device()) << 32) ^ device();
    }
    const char* delay = std::getenv("ZS_EMU_DELAY_US");
    if (delay != nullptr && *delay != '\0') o.max_delay_us = std::max(0, std::atoi(delay));
    return o;
  }();
  return opts;
}
inline std::atomic<unsigned>& mutation_mask() {
  static std::atomic<unsigned> mask{[] {
    const char* text = std::getenv("ZS_EMU_MUTATION");
    return text == nullptr ? 0u : parse_mutations(text);
  }()};
  return mask;
}
inline bool mutated(Mutation m) {
  return (mutation_mask().load() & m) != 0;
}

struct Report {
  std::string kind;  // "race", "use-after-free", "misuse", "kernel-error"
  std::string message;
};
inline std::mutex& report_mutex() {
  static auto* m = new std::mutex();
  return *m;
}
inline std::vector<Report>& report_list() {
  static auto* list = new std::vector<Report>();
  return *list;
}
inline void report(const std::string& kind, const std::string& message) {
  std::fprintf(stderr, "zs_emu %s: %s\n", kind.c_str(), message.c_str());
  std::lock_guard<std::mutex> lock(report_mutex());
  report_list().push_back(Report{kind, message});
}
inline std::vector<Report> take_reports() {
  std::lock_guard<std::mutex> lock(report_mutex());
  std::vector<Report> out;
  out.swap(report_list());
  return out;
}

inline std::string hex(const void* ptr) {
  char text[32];
  std::snprintf(text, sizeof(text), "%p", ptr);
  return text;
}

// A device fault: an exception thrown by a kernel (the emulation's stand-in for a trap or an illegal address).
// Sticky for the process, as a fault is for a CUDA context: from then on synchronisations, queries, launches,
// copies and memsets return it, and cudaGetLastError returns it without clearing it (see the header comment).
inline std::atomic<int>& sticky_error_storage() {
  static std::atomic<int> error{cudaSuccess};
  return error;
}
inline cudaError_t sticky_error() {
  return static_cast<cudaError_t>(sticky_error_storage().load());
}
// cudaSuccess, or the sticky error (also made this thread's last error).
inline cudaError_t sticky_status() {
  const cudaError_t error = sticky_error();
  return error == cudaSuccess ? error : (last_error() = error);
}
inline void device_fault(const char* kernel, const std::string& what) {
  report("kernel-error", std::string("'") + kernel + "' threw: " + what +
                             " (a device fault: every later synchronisation and launch returns "
                             "cudaErrorLaunchFailure)");
  sticky_error_storage().store(cudaErrorLaunchFailure);
}
// What cudaDeviceReset does to a faulted context, for tests (the memory is kept here).
inline void reset_device_error() {
  sticky_error_storage().store(cudaSuccess);
}

// ---- happens-before ---------------------------------------------------------------------------------------------
using Clock = std::map<std::uint32_t, std::uint64_t>;  // queue id -> last operation of that queue ordered before
inline void join(Clock& into, const Clock& other) {
  for (const auto& entry : other) {
    std::uint64_t& tick = into[entry.first];
    if (entry.second > tick) tick = entry.second;
  }
}
struct Epoch {  // one operation: the tick-th operation of queue `queue` (queue 0: none)
  std::uint32_t queue = 0;
  std::uint64_t tick = 0;
  std::string label;
  bool valid() const { return queue != 0; }
};
inline bool covers(const Clock& clock, const Epoch& epoch) {
  if (!epoch.valid()) return true;
  const auto it = clock.find(epoch.queue);
  return it != clock.end() && it->second >= epoch.tick;
}

// Completion of an operation (or a test's manual gate). Fields guarded by runtime().mutex.
struct Signal {
  bool done = false;
  Clock clock;  // the operation's happens-before clock (what is ordered before it, itself included)
  Epoch epoch;  // the operation it completes (invalid for a gate)
};
using SignalPtr = std::shared_ptr<Signal>;
// The steady clock in ns, never 0 (0 marks "not recorded yet": CUevent_st::stamp).
inline std::int64_t now_ns() {
  const auto since = std::chrono::steady_clock::now().time_since_epoch();
  return std::chrono::duration_cast<std::chrono::nanoseconds>(since).count() + 1;
}
inline SignalPtr done_signal() {
  auto s = std::make_shared<Signal>();
  s->done = true;
  return s;
}

struct Op {
  std::string label;
  std::function<void()> run;
  std::vector<SignalPtr> waits;
  SignalPtr done;
  std::vector<Access> accesses;
  bool kernel = false;
};

struct Queue {
  std::uint32_t id = 0;
  int device = 0;
  bool blocking = true;  // synchronises with the legacy stream (not cudaStreamNonBlocking)
  bool legacy = false;
  std::string name;
  std::deque<std::shared_ptr<Op>> ops;
  SignalPtr tail;  // the last operation enqueued (null: none yet)
  Clock clock;     // its clock
  std::uint64_t ticks = 0;
  bool retired = false;   // its stream was destroyed: the worker ends once the queue is empty
  bool finished = false;  // the worker has ended
  std::thread worker;
  std::mt19937_64 rng;
};

// ---- devices, memory, statistics --------------------------------------------------------------------------------
struct DeviceConfig {
  int device_count = 1;
  bool memory_pools = true;
  bool integrated = false;                // cudaDevAttrIntegrated (a Jetson: one DRAM for CPU and GPU)
  int multiprocessors = 16;               // cudaDevAttrMultiProcessorCount (0: unknown)
  int compute_capability_major = 9;       // cudaDevAttrComputeCapabilityMajor (an sm_90 device: mma.sync is emulated)
  std::vector<cudaError_t> kernel_image;  // per device; missing entries = cudaSuccess
  bool library_event_pool = true;         // the library reuses its completion events (ZS_LIBRARY_EVENT_POOL)
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
  int capture_violations = 0;       // calls that are illegal during an active stream capture
  int pool_os_allocations = 0;      // pool blocks taken from the system (not reused from the pool)
  int pool_os_releases = 0;         // pool blocks given back to the system at a synchronisation (release threshold)
  int pool_reuses = 0;              // allocations served from memory the pool already held
  int pool_reuse_dependencies = 0;  // ... of which on another stream, with a wait on the free inserted
  int graph_launches = 0;
  int ops_run = 0;  // operations the stream workers have run
};

enum class MemoryKind { Device, Pool, Managed, Host };
struct Allocation {
  MemoryKind kind = MemoryKind::Device;
  std::size_t bytes = 0;
  int device = 0;
  unsigned int flags = 0;
  CUgraph_st* graph = nullptr;  // a graph's allocation (cudaMallocAsync during capture)
  int pool = -1;                // pool memory: the pool's key (RuntimeState::pools)
  // Pool memory: a block stays registered until the pool gives it back to the system. `generation` counts its
  // allocations as the host made them (`host_owned` until the host frees it); `device_generation` is the one the
  // streams have reached (0: free as they see it); `cancelled`: an allocation freed by cudaFree before its stream
  // reached it (that stream's allocation then allocates nothing). Other memory: always 1 and 1.
  bool host_owned = true;
  std::uint64_t generation = 1;
  std::uint64_t device_generation = 1;
  std::uint64_t cancelled = 0;
  SignalPtr pending_free;    // the last cudaFreeAsync of it (live until the stream has reached it)
  Epoch last_write;          // race detector: the last operation that wrote it ...
  std::vector<Epoch> reads;  // ... and the reads since (one per queue)
};
struct PoolBlock {
  void* ptr = nullptr;
  std::size_t bytes = 0;
  std::uint32_t freed_on = 0;  // the queue whose cudaFreeAsync returned it
  SignalPtr freed;             // that free's completion
};
constexpr int kCreatedPools = 1 << 16;  // keys of created pools (below it: the devices' default pools)
struct Pool {
  int device = 0;
  bool destroyed = false;  // cudaMemPoolDestroy: its memory goes back once freed
  std::uint64_t release_threshold = 0;
  std::size_t reserved = 0;  // bytes of every block the pool holds, allocated or free
  std::size_t used = 0;
  std::vector<PoolBlock> free_blocks;
};

struct Capture;

struct RuntimeState {
  std::mutex mutex;  // guards everything below, streams' and events' fields, signals
  std::condition_variable cv;
  std::mutex kernel_mutex;  // one kernel at a time (kernels share csrc/emu's static __shared__ memory)
  DeviceConfig config;
  RuntimeStats stats;
  std::map<std::uintptr_t, Allocation> live;  // by address: allocations not yet returned (pending frees included)
  std::map<int, Pool> pools;  // by key: a device's default pool is its device index, created pools kCreatedPools + i
  int next_pool = 0;
  std::vector<std::shared_ptr<Queue>> queues;
  std::uint32_t next_queue = 1;
  Clock host_clock;  // what every host thread has seen completed (synchronisations, successful queries)
  std::vector<std::shared_ptr<Capture>> captures;  // active (or invalidated, not yet ended) captures
  std::vector<std::pair<Epoch, SignalPtr>> holds;  // StreamHolds: the hold operation and its gate
  bool exiting = false;
};
inline RuntimeState& runtime();
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
// cudaStreamGetId's numbers: one per stream made, never given again (a destroyed stream's handle may be reused on a
// GPU, its id never is).
inline unsigned long long next_stream_id() {
  static std::atomic<unsigned long long> last{0};
  return ++last;
}

}  // namespace zs_emu

struct CUstream_st {
  unsigned long long id = zs_emu::next_stream_id();
  unsigned int flags = 0;
  int device = 0;
  bool legacy = false;
  bool destroyed = false;
  std::shared_ptr<zs_emu::Queue> queue;
  std::shared_ptr<zs_emu::Capture> capture;  // the capture this stream is part of (origin or joined)
  std::vector<int> capture_deps;             // graph nodes its next captured operation depends on
};
struct CUevent_st {
  unsigned int flags = 0;
  bool destroyed = false;
  zs_emu::SignalPtr signal;  // the last record's operation (null: never recorded)
  // cudaEventElapsedTime: when the last record ran on its stream (steady clock, ns; 0 until then): the record's own
  // operation, or for an event record node of a graph (cudaEventRecordExternal) the node, at each launch
  std::shared_ptr<std::atomic<std::int64_t>> stamp;
  std::shared_ptr<zs_emu::Capture> capture;  // the last record was in this capture (a node of its graph)
  std::vector<int> capture_nodes;
};

namespace zs_emu {

struct GraphNode {
  std::string label;
  std::function<void()> run;
  std::vector<Access> accesses;
  std::vector<int> deps;
  CUevent_st* external_wait = nullptr;    // an event wait node (cudaEventWaitExternal)
  CUevent_st* external_record = nullptr;  // an event record node (cudaEventRecordExternal): recorded at each launch
  void* free_ptr = nullptr;               // a free node (cudaFreeAsync during capture)
};
struct Capture {
  std::vector<GraphNode> nodes;
  bool invalid = false;
  cudaError_t error = cudaSuccess;  // why it was invalidated
  cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal;
  std::thread::id thread;
  CUstream_st* origin = nullptr;
  std::vector<CUstream_st*> members;  // origin first, then every stream that joined
  std::vector<void*> owned;           // allocations made in the capture (the graph's)
};

}  // namespace zs_emu

struct CUgraph_st {
  std::vector<zs_emu::GraphNode> nodes;
  std::vector<void*> owned;
  bool destroyed = false;
};
struct CUgraphExec_st {
  std::shared_ptr<const std::vector<zs_emu::GraphNode>> nodes;
  std::shared_ptr<const std::vector<std::vector<bool>>> ancestors;  // [i][k]: node k is ordered before node i
  zs_emu::SignalPtr last_launch;
  std::uint64_t launches = 0;
  bool destroyed = false;
};
struct CUmemPoolHandle_st {
  int device = 0;
  int key = 0;  // RuntimeState::pools
  bool destroyed = false;
};

namespace zs_emu {

// Leaked on purpose: stream workers, stream and event handles and the atexit drain must outlive every static
// destructor of the process.
inline RuntimeState& runtime() {
  static RuntimeState* state = [] {
    auto* created = new RuntimeState();
    std::atexit([] {
      // The process ends: the GPU finishes what is enqueued (holds released), then the workers stop.
      RuntimeState& rt = runtime();
      std::unique_lock<std::mutex> lock(rt.mutex);
      rt.exiting = true;
      for (auto& hold : rt.holds) hold.second->done = true;
      rt.holds.clear();
      rt.cv.notify_all();
      for (auto& q : rt.queues) q->retired = true;
      rt.cv.notify_all();
      std::vector<std::shared_ptr<Queue>> queues = rt.queues;
      lock.unlock();
      for (auto& q : queues)
        if (q->worker.joinable()) q->worker.join();
    });
    return created;
  }();
  return *state;
}

// Zombie handles: a destroyed stream or event stays allocated (flagged), so a later use is reported instead of
// touching freed memory, and its address is never handed out again.
inline std::vector<void*>& zombies() {
  static auto* list = new std::vector<void*>();
  return *list;
}

inline CUstream_st* legacy_stream(int device) {
  static CUstream_st* streams[64] = {};
  if (device < 0 || device >= 64) device = 0;
  if (streams[device] == nullptr) {
    auto* s = new CUstream_st();
    s->legacy = true;
    s->device = device;
    streams[device] = s;
  }
  return streams[device];
}
void retire_queue_locked(const std::shared_ptr<Queue>& q);
struct PerThreadStream {
  CUstream_st* stream = nullptr;
  ~PerThreadStream();
};
inline CUstream_st* per_thread_stream() {
  static thread_local PerThreadStream holder;
  if (holder.stream == nullptr) {
    holder.stream = new CUstream_st();
    holder.stream->device = current_device();
  }
  return holder.stream;
}
// The stream a handle names (nullptr / cudaStreamLegacy: the current device's legacy stream). Caller holds the lock
// or only reads immutable fields.
inline CUstream_st* stream_of(cudaStream_t handle) {
  if (handle == nullptr || handle == cudaStreamLegacy) return legacy_stream(current_device());
  if (handle == cudaStreamPerThread) return per_thread_stream();
  return handle;
}
inline bool is_destroyed(const CUstream_st* s) {
  return s->destroyed;
}

// A non-blocking stream of the emulator's own: where the mutations put the work they take out of stream order.
inline CUstream_st* mutation_stream() {
  static CUstream_st* s = [] {
    auto* made = new CUstream_st();
    made->flags = cudaStreamNonBlocking;
    return made;
  }();
  return s;
}

// ---- workers -------------------------------------------------------------------------------------------------
inline void run_op(Queue& q, Op& op);

inline void worker_loop(Queue* q) {
  RuntimeState& rt = runtime();
  std::unique_lock<std::mutex> lock(rt.mutex);
  for (;;) {
    rt.cv.wait(lock, [&] { return !q->ops.empty() || q->retired; });
    if (q->ops.empty()) break;
    std::shared_ptr<Op> op = q->ops.front();
    rt.cv.wait(lock, [&] {
      for (const auto& w : op->waits)
        if (!w->done) return false;
      return true;
    });
    lock.unlock();
    run_op(*q, *op);
    lock.lock();
    op->done->done = true;
    q->ops.pop_front();
    ++rt.stats.ops_run;
    rt.cv.notify_all();
  }
  q->finished = true;
  rt.cv.notify_all();
}

inline std::shared_ptr<Queue> make_queue_locked(int device, bool blocking, bool legacy, const std::string& name) {
  RuntimeState& rt = runtime();
  // Reap the workers of destroyed streams that have finished.
  for (auto it = rt.queues.begin(); it != rt.queues.end();) {
    if ((*it)->finished) {
      if ((*it)->worker.joinable()) (*it)->worker.join();
      it = rt.queues.erase(it);
    } else {
      ++it;
    }
  }
  auto q = std::make_shared<Queue>();
  q->id = rt.next_queue++;
  q->device = device;
  q->blocking = blocking;
  q->legacy = legacy;
  q->name = name;
  q->rng.seed(options().seed ^ (0x9E3779B97F4A7C15ULL * q->id));
  q->worker = std::thread(worker_loop, q.get());
  rt.queues.push_back(q);
  return q;
}
inline Queue& queue_of_locked(CUstream_st* s) {
  if (!s->queue) {
    const bool blocking = s->legacy || (s->flags & cudaStreamNonBlocking) == 0;
    std::string name = s->legacy ? "legacy stream of cuda:" + std::to_string(s->device) : "stream " + hex(s);
    s->queue = make_queue_locked(s->device, blocking, s->legacy, name);
  }
  return *s->queue;
}
inline void retire_queue_locked(const std::shared_ptr<Queue>& q) {
  if (!q) return;
  q->retired = true;
  runtime().cv.notify_all();
}
inline PerThreadStream::~PerThreadStream() {
  if (stream == nullptr) return;
  RuntimeState& rt = runtime();
  std::lock_guard<std::mutex> lock(rt.mutex);
  stream->destroyed = true;
  retire_queue_locked(stream->queue);
  zombies().push_back(stream);
}

// Enqueue `op` on queue `q` (caller holds the lock): its clock, its implicit legacy-stream dependencies, its
// completion signal. Returns that signal.
inline SignalPtr enqueue_locked(Queue& q, std::shared_ptr<Op> op) {
  RuntimeState& rt = runtime();
  if (q.legacy) {  // the legacy stream waits for the work enqueued so far on every blocking stream of its device
    for (const auto& other : rt.queues) {
      if (other.get() == &q || !other->blocking || other->device != q.device || !other->tail) continue;
      if (!other->tail->done) op->waits.push_back(other->tail);
    }
  } else if (q.blocking) {  // ... and they wait for it
    Queue& legacy = queue_of_locked(legacy_stream(q.device));
    if (legacy.tail && !legacy.tail->done) op->waits.push_back(legacy.tail);
  }
  auto done = std::make_shared<Signal>();
  done->clock = q.clock;
  join(done->clock, rt.host_clock);
  for (const auto& w : op->waits) join(done->clock, w->clock);
  done->epoch = Epoch{q.id, ++q.ticks, op->label};
  done->clock[q.id] = q.ticks;
  q.clock = done->clock;
  op->done = done;
  q.tail = done;
  q.ops.push_back(std::move(op));
  rt.cv.notify_all();
  return done;
}

inline std::string describe_epoch(const Epoch& e) {
  return "'" + e.label + "' (operation " + std::to_string(e.tick) + " of queue " + std::to_string(e.queue) + ")";
}
// The host has seen `signal` complete: everything ordered before it is ordered before later host calls.
inline void host_saw_locked(const SignalPtr& signal) {
  if (signal) join(runtime().host_clock, signal->clock);
}
// Open the StreamHolds that `signal` depends on: the host waits for that work, and on a GPU it would finish.
inline void release_holds_before_locked(const SignalPtr& signal) {
  RuntimeState& rt = runtime();
  for (auto it = rt.holds.begin(); it != rt.holds.end();) {
    if (signal == nullptr || covers(signal->clock, it->first)) {
      if (std::getenv("ZS_EMU_DEBUG_HOLDS"))
        std::fprintf(stderr, "zs_emu: hold %s released by a host wait for %s\n", describe_epoch(it->first).c_str(),
                     signal ? describe_epoch(signal->epoch).c_str() : "the device");
      it->second->done = true;
      it = rt.holds.erase(it);
    } else {
      ++it;
    }
  }
  rt.cv.notify_all();
}
// Block until `signal` is done (lock held on entry and exit; released while waiting).
inline void host_wait_locked(std::unique_lock<std::mutex>& lock, const SignalPtr& signal) {
  if (!signal) return;
  RuntimeState& rt = runtime();
  release_holds_before_locked(signal);
  rt.cv.wait(lock, [&] { return signal->done; });
  host_saw_locked(signal);
}

// ---- the race detector ------------------------------------------------------------------------------------------
// The allocation holding `ptr` (any address inside it), or nullptr. Caller holds the lock.
inline std::pair<const std::uintptr_t, Allocation>* find_allocation(const void* ptr) {
  auto& live = runtime().live;
  const auto address = reinterpret_cast<std::uintptr_t>(ptr);
  auto it = live.upper_bound(address);
  if (it == live.begin()) return nullptr;
  --it;
  const std::size_t extent = it->second.bytes == 0 ? 1 : it->second.bytes;
  return address - it->first < extent ? &*it : nullptr;
}
inline std::string describe(const Epoch& e) {
  return "'" + e.label + "' (operation " + std::to_string(e.tick) + " of queue " + std::to_string(e.queue) + ")";
}
// Check and record the accesses of an operation about to run. Caller holds the lock.
inline void check_accesses_locked(const std::vector<Access>& accesses, const SignalPtr& done) {
  for (const Access& access : accesses) {
    auto* found = find_allocation(access.ptr);
    if (found == nullptr) continue;  // memory the emulation does not track (host memory of the C++ kernel tests)
    Allocation& a = found->second;
    const std::string where = hex(reinterpret_cast<void*>(found->first)) + " (" + std::to_string(a.bytes) + " bytes)";
    if (access.role == Access::kUse && a.device_generation == 0) {
      report("use-after-free", describe(done->epoch) + " " + (access.write ? "writes" : "reads") + " " + where +
                                   ", pool memory no allocation owns (freed in stream order before)");
      ZS_EMU_UNPOISON(reinterpret_cast<void*>(found->first), a.bytes == 0 ? 1 : a.bytes);  // reported: let it run
    } else if (access.role == Access::kRelease && a.device_generation != access.generation) {
      report("misuse", describe(done->epoch) + " frees " + where + ", which is not allocated");
    }
    if (access.role == Access::kAllocate && access.generation != a.cancelled) a.device_generation = access.generation;
    if (access.role == Access::kRelease) a.device_generation = 0;
    if (a.last_write.valid() && !covers(done->clock, a.last_write)) {
      report("race", describe(done->epoch) + (access.write ? " writes " : " reads ") + where +
                         " without being ordered after the write by " + describe(a.last_write));
    }
    if (access.write) {
      for (const Epoch& r : a.reads) {
        if (!covers(done->clock, r)) {
          report("race", describe(done->epoch) + " writes " + where + " without being ordered after the read by " +
                             describe(r));
        }
      }
      a.reads.clear();
      a.last_write = done->epoch;
    } else {
      bool replaced = false;
      for (Epoch& r : a.reads) {
        if (r.queue == done->epoch.queue) {
          r = done->epoch;
          replaced = true;
        }
      }
      if (!replaced) a.reads.push_back(done->epoch);
    }
  }
}

// The host's accesses to page-locked or mapped memory where the library makes them (a staging buffer read after
// a download, a frame written before its upload; zsseg_rt's Memory.host_access, _C._emulation.host_access): each
// is an operation of the calling thread's own queue (an id of the queues' numbering that no worker runs), ordered
// after what the host has seen complete (host_clock). Checked like a device access: a host read of memory that a
// device operation wrote, or a host write of memory a device operation reads or writes, with no synchronisation
// in between is a race, whichever runs first. Work enqueued after the access is ordered after it.
inline void host_access(const void* ptr, std::size_t bytes, bool write, const std::string& label) {
  static thread_local std::uint32_t id = 0;
  static thread_local std::uint64_t ticks = 0;
  RuntimeState& rt = runtime();
  std::lock_guard<std::mutex> lock(rt.mutex);
  if (find_allocation(ptr) == nullptr) return;  // memory the runtime does not track (pageable)
  if (id == 0) id = rt.next_queue++;
  auto access = std::make_shared<Signal>();
  access->clock = rt.host_clock;
  access->epoch = Epoch{id, ++ticks, label};
  access->clock[id] = ticks;
  check_accesses_locked({Access{ptr, bytes, write}}, access);
  rt.host_clock[id] = ticks;
}

// A kernel parameter that is a struct with no emu_accesses overload (cuda_emu.h, param_accesses) must carry no
// pointer the detector tracks: one that does would go unchecked, so it is reported ("misuse" of the emulation) and
// the test fails until the struct gets its overload. Scans the struct's pointer-aligned words.
inline void check_untracked_struct(const char* kernel, std::size_t index, const void* value, std::size_t size) {
  std::lock_guard<std::mutex> lock(runtime().mutex);
  for (std::size_t offset = 0; offset + sizeof(void*) <= size; offset += alignof(void*)) {
    std::uintptr_t word = 0;
    std::memcpy(&word, static_cast<const char*>(value) + offset, sizeof(word));
    if (word == 0 || find_allocation(reinterpret_cast<const void*>(word)) == nullptr) continue;
    report("misuse", std::string("kernel '") + kernel + "': parameter " + std::to_string(index) + " (a struct of " +
                         std::to_string(size) + " bytes) carries the address " + hex(reinterpret_cast<void*>(word)) +
                         " of a tracked allocation at byte " + std::to_string(offset) +
                         ", but has no emu_accesses overload: the race detector cannot see what the kernel reads "
                         "and writes through it (declare one next to the kernel, under ZS_CUDA_EMULATION)");
    return;
  }
}

inline void delay(Queue& q) {
  int max_us = options().max_delay_us;
  if (mutated(kSkipHostWait)) max_us = std::max(max_us, 20000);  // the host surely looks before the work ran
  if (max_us <= 0) return;
  std::uint64_t draw;
  {
    std::lock_guard<std::mutex> lock(runtime().mutex);
    draw = q.rng();
  }
  if (!mutated(kSkipHostWait) && (draw & 1) == 0) return;
  const auto us = static_cast<int>((draw >> 1) % static_cast<std::uint64_t>(max_us + 1));
  if (us > 0) std::this_thread::sleep_for(std::chrono::microseconds(us));
}

inline void run_op(Queue& q, Op& op) {
  delay(q);
  {
    std::lock_guard<std::mutex> lock(runtime().mutex);
    check_accesses_locked(op.accesses, op.done);
  }
  if (op.run) op.run();
}

inline cudaError_t& last_error_ref() {
  return last_error();
}

// ---- capture ------------------------------------------------------------------------------------------------
inline bool capturing(const CUstream_st* s) {
  return s->capture != nullptr;
}
inline void invalidate_locked(const std::shared_ptr<Capture>& c, cudaError_t why) {
  if (!c || c->invalid) return;
  c->invalid = true;
  c->error = why;
  ++runtime().stats.capture_violations;
}
// A potentially unsafe call (cudaMalloc, cudaMemcpy, queries, synchronisations...) from this thread: illegal while a
// capture forbids it (see cudaThreadExchangeStreamCaptureMode). Invalidates those captures.
inline cudaError_t unsafe_call_check_locked() {
  const cudaStreamCaptureMode mode = thread_capture_mode();
  if (mode == cudaStreamCaptureModeRelaxed) return cudaSuccess;
  const std::thread::id me = std::this_thread::get_id();
  bool violated = false;
  for (const auto& c : runtime().captures) {
    const bool own = c->thread == me && c->mode != cudaStreamCaptureModeRelaxed;
    const bool other = mode == cudaStreamCaptureModeGlobal && c->thread != me && c->mode == cudaStreamCaptureModeGlobal;
    if (own || other) {
      invalidate_locked(c, cudaErrorStreamCaptureUnsupported);
      violated = true;
    }
  }
  return violated ? (last_error() = cudaErrorStreamCaptureUnsupported) : cudaSuccess;
}
// Any use of the legacy stream of `device` while a blocking stream of that device captures is illegal.
inline cudaError_t legacy_use_check_locked(int device) {
  bool violated = false;
  for (const auto& c : runtime().captures) {
    for (CUstream_st* member : c->members) {
      const bool blocking = (member->flags & cudaStreamNonBlocking) == 0;
      if (blocking && member->device == device && !member->legacy) {
        invalidate_locked(c, cudaErrorStreamCaptureImplicit);
        violated = true;
      }
    }
  }
  return violated ? (last_error() = cudaErrorStreamCaptureImplicit) : cudaSuccess;
}
inline cudaError_t capture_status_error(const CUstream_st* s) {
  return s->capture && s->capture->invalid ? cudaErrorStreamCaptureInvalidated : cudaSuccess;
}

// Record `op` as a node of the capture `s` belongs to. Caller holds the lock.
inline cudaError_t capture_node_locked(CUstream_st* s, const std::shared_ptr<Op>& op, CUevent_st* external = nullptr,
                                       void* free_ptr = nullptr) {
  const auto& c = s->capture;
  if (c->invalid) return last_error() = cudaErrorStreamCaptureInvalidated;
  GraphNode node;
  node.label = op->label;
  node.run = op->run;
  node.accesses = op->accesses;
  node.deps = s->capture_deps;
  node.external_wait = external;
  node.free_ptr = free_ptr;
  c->nodes.push_back(std::move(node));
  s->capture_deps = {static_cast<int>(c->nodes.size()) - 1};
  return cudaSuccess;
}

// Enqueue an operation on the stream `handle` names: run on its queue, or recorded if it is capturing. Checks the
// handle and the capture rules. Caller holds the lock.
inline cudaError_t submit_locked(cudaStream_t handle, std::shared_ptr<Op> op, SignalPtr* done = nullptr) {
  CUstream_st* s = stream_of(handle);
  if (s->destroyed) {
    report("misuse", "'" + op->label + "' enqueued on destroyed stream " + hex(s));
    return last_error() = cudaErrorInvalidResourceHandle;
  }
  if (sticky_error() != cudaSuccess) return sticky_status();  // a faulted device runs nothing more
  if (s->legacy) {
    const cudaError_t legacy = legacy_use_check_locked(s->device);
    if (legacy != cudaSuccess) return legacy;
  }
  if (capturing(s)) return capture_node_locked(s, op);
  SignalPtr signal = enqueue_locked(queue_of_locked(s), std::move(op));
  if (done != nullptr) *done = signal;
  return cudaSuccess;
}

// A call on a destroyed stream / event (`call` = "<API> of" or "<API> on"): reported, and refused.
inline cudaError_t destroyed_handle_locked(const char* call, const char* what, const void* handle) {
  report("misuse", std::string(call) + " destroyed " + what + " " + hex(handle));
  return last_error() = cudaErrorInvalidResourceHandle;
}
// The legacy stream's implicit synchronisation (see legacy_use_check_locked), for a runtime call on `s`.
inline cudaError_t legacy_stream_check_locked(const CUstream_st* s) {
  if (s->legacy && legacy_use_check_locked(s->device) != cudaSuccess) return cudaErrorStreamCaptureImplicit;
  return cudaSuccess;
}
// The checks of a runtime call that orders work on `s` (an event record or wait, a stream-ordered allocation or
// free): the handle, then the legacy stream's rule. Caller holds the lock.
inline cudaError_t stream_work_check_locked(const CUstream_st* s, const char* call) {
  if (s->destroyed) return destroyed_handle_locked(call, "stream", s);
  return legacy_stream_check_locked(s);
}
// The checks of a host call that waits for or queries `s` (cudaStreamSynchronize, cudaStreamQuery): the handle,
// the capture rules (a capturing stream's capture is invalidated), then the legacy stream's rule. Caller holds the
// lock.
inline cudaError_t stream_host_check_locked(const CUstream_st* s, const char* call) {
  if (s->destroyed) return destroyed_handle_locked(call, "stream", s);
  if (unsafe_call_check_locked() != cudaSuccess) return cudaErrorStreamCaptureUnsupported;
  if (capturing(s)) {
    invalidate_locked(s->capture, cudaErrorStreamCaptureUnsupported);
    return last_error() = cudaErrorStreamCaptureUnsupported;
  }
  return legacy_stream_check_locked(s);
}

// Host wait for everything enqueued on `s` so far. Caller holds `lock`.
inline void wait_stream_locked(std::unique_lock<std::mutex>& lock, CUstream_st* s) {
  if (mutated(kSkipHostWait)) return;
  if (s->legacy) {  // legacy: also what blocking streams enqueued before now (a marker operation covers it)
    auto marker = std::make_shared<Op>();
    marker->label = "synchronise legacy stream";
    SignalPtr done = enqueue_locked(queue_of_locked(s), marker);
    host_wait_locked(lock, done);
    return;
  }
  if (s->queue && s->queue->tail) host_wait_locked(lock, s->queue->tail);
}

// Host wait for everything every queue has enqueued so far, holds released first (cudaDeviceSynchronize, and
// cudaFree / cudaFreeHost, which wait for the device). Caller holds `lock`.
inline void wait_device_locked(std::unique_lock<std::mutex>& lock) {
  release_holds_before_locked(nullptr);
  std::vector<SignalPtr> tails;
  for (const auto& q : runtime().queues)
    if (q->tail) tails.push_back(q->tail);
  for (const auto& tail : tails) host_wait_locked(lock, tail);
}

// The checks of a host call that waits for or queries `event` (cudaEventQuery, cudaEventSynchronize): the handle,
// then the capture rules (an event recorded in a capture: that capture is invalidated). Caller holds the lock.
inline cudaError_t event_host_check_locked(const CUevent_st* event, const char* call) {
  if (event->destroyed) return destroyed_handle_locked(call, "event", event);
  if (unsafe_call_check_locked() != cudaSuccess) return cudaErrorStreamCaptureUnsupported;
  if (event->capture) {
    invalidate_locked(event->capture, cudaErrorCapturedEvent);
    return last_error() = cudaErrorCapturedEvent;
  }
  return cudaSuccess;
}

inline void trim_pools_locked();

}  // namespace zs_emu

// ---- reporting device errors ----------------------------------------------------------------------------------
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
    case cudaErrorIllegalState:
      return "the operation cannot be performed in the present state";
    case cudaErrorNotSupported:
      return "operation not supported";
    case cudaErrorNotReady:
      return "device not ready";
    case cudaErrorLaunchFailure:
      return "unspecified launch failure";
    case cudaErrorStreamCaptureUnsupported:
      return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated:
      return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureMerge:
      return "operation would result in a merge of separate capture sequences";
    case cudaErrorStreamCaptureUnmatched:
      return "capture was not ended in the same stream as it began";
    case cudaErrorStreamCaptureUnjoined:
      return "capturing stream has unjoined work";
    case cudaErrorStreamCaptureIsolation:
      return "dependency created on uncaptured work in another stream";
    case cudaErrorStreamCaptureImplicit:
      return "operation would make the legacy stream depend on a capturing blocking stream";
    case cudaErrorStreamCaptureWrongThread:
      return "attempt to terminate a thread-local capture sequence from another thread";
    case cudaErrorCapturedEvent:
      return "operation not permitted on an event last recorded in a capturing stream";
  }
  return "unknown error";
}

// ---- devices -----------------------------------------------------------------------------------------------
inline cudaError_t cudaGetDeviceCount(int* count) {
  ZS_EMU_API();
  const int n = zs_emu::device_config().device_count;
  *count = n < 0 ? 0 : n;
  return n <= 0 ? cudaErrorNoDevice : cudaSuccess;
}
inline cudaError_t cudaGetDevice(int* device) {
  ZS_EMU_API();
  *device = zs_emu::current_device();
  return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int device) {
  ZS_EMU_API();
  if (device < 0 || device >= zs_emu::device_config().device_count)
    return zs_emu::last_error() = cudaErrorInvalidDevice;
  zs_emu::current_device() = device;
  return cudaSuccess;
}
inline cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  ZS_EMU_API();
  if (device < 0 || device >= zs_emu::device_config().device_count)
    return zs_emu::last_error() = cudaErrorInvalidDevice;
  const zs_emu::DeviceConfig& config = zs_emu::device_config();
  *value = attr == cudaDevAttrMemoryPoolsSupported     ? config.memory_pools
           : attr == cudaDevAttrIntegrated             ? config.integrated
           : attr == cudaDevAttrCanMapHostMemory       ? 1
           : attr == cudaDevAttrMultiProcessorCount    ? config.multiprocessors
           : attr == cudaDevAttrComputeCapabilityMajor ? config.compute_capability_major
                                                       : 0;
  return cudaSuccess;
}
// The emulated "module" has code for a device unless device_config().kernel_image says otherwise.
template <class Function>
inline cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* attributes, Function* /*function*/) {
  ZS_EMU_API();
  const auto& images = zs_emu::device_config().kernel_image;
  const int device = zs_emu::current_device();
  if (device < static_cast<int>(images.size()) && images[static_cast<std::size_t>(device)] != cudaSuccess) {
    return zs_emu::last_error() = images[static_cast<std::size_t>(device)];
  }
  *attributes = cudaFuncAttributes();
  return cudaSuccess;
}
inline cudaError_t cudaDeviceSynchronize() {
  ZS_EMU_API();
  zs_emu::RuntimeState& rt = zs_emu::runtime();
  std::unique_lock<std::mutex> lock(rt.mutex);
  if (!rt.captures.empty()) {  // synchronising the device encompasses every capturing stream: illegal
    for (const auto& c : rt.captures) zs_emu::invalidate_locked(c, cudaErrorStreamCaptureUnsupported);
    return zs_emu::last_error() = cudaErrorStreamCaptureUnsupported;
  }
  ++rt.stats.blocking_waits;
  if (zs_emu::mutated(zs_emu::kSkipHostWait)) return zs_emu::sticky_status();
  zs_emu::wait_device_locked(lock);
  zs_emu::trim_pools_locked();
  return zs_emu::sticky_status();
}

// ---- streams and capture -------------------------------------------------------------------------------------
inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int flags) {
  ZS_EMU_API();
  auto* created = new CUstream_st();
  created->flags = flags;
  created->device = zs_emu::current_device();
  *stream = created;
  std::lock_guard<std::mutex> lock(zs_emu::runtime().mutex);
  ++zs_emu::runtime_stats().streams_created;
  return cudaSuccess;
}
inline cudaError_t cudaStreamCreate(cudaStream_t* stream) {
  ZS_EMU_API();
  return cudaStreamCreateWithFlags(stream, cudaStreamDefault);
}
// The stream's unique id (the legacy stream's for 0 / cudaStreamLegacy, this thread's per-thread stream's for
// cudaStreamPerThread); a destroyed stream is an invalid handle.
inline cudaError_t cudaStreamGetId(cudaStream_t stream, unsigned long long* id) {
  ZS_EMU_API();
  std::lock_guard<std::mutex> lock(zs_emu::runtime().mutex);
  CUstream_st* s = zs_emu::stream_of(stream);
  if (s->destroyed) return zs_emu::destroyed_handle_locked("cudaStreamGetId of", "stream", s);
  *id = s->id;
  return cudaSuccess;
}
inline cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  ZS_EMU_API();
  if (stream == nullptr || stream == cudaStreamLegacy || stream == cudaStreamPerThread) {
    return zs_emu::last_error() = cudaErrorInvalidResourceHandle;
  }
  std::lock_guard<std::mutex> lock(zs_emu::runtime().mutex);
  if (stream->destroyed) {
    zs_emu::report("misuse", "cudaStreamDestroy of stream " + zs_emu::hex(stream) + ", already destroyed");
    return zs_emu::last_error() = cudaErrorInvalidResourceHandle;
  }
  ++zs_emu::runtime_stats().streams_destroyed;
  stream->destroyed = true;  // pending work still completes; the handle is dead (kept: a later use is reported)
  zs_emu::retire_queue_locked(stream->queue);
  zs_emu::zombies().push_back(stream);
  return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  ZS_EMU_API();
  zs_emu::RuntimeState& rt = zs_emu::runtime();
  std::unique_lock<std::mutex> lock(rt.mutex);
  CUstream_st* s = zs_emu::stream_of(stream);
  const cudaError_t checked = zs_emu::stream_host_check_locked(s, "cudaStreamSynchronize of");
  if (checked != cudaSuccess) return checked;
  ++rt.stats.blocking_waits;
  zs_emu::wait_stream_locked(lock, s);
  zs_emu::trim_pools_locked();
  return zs_emu::sticky_status();
}
inline cudaError_t cudaStreamQuery(cudaStream_t stream) {
  ZS_EMU_API();
  zs_emu::RuntimeState& rt = zs_emu::runtime();
  std::lock_guard<std::mutex> lock(rt.mutex);
  CUstream_st* s = zs_emu::stream_of(stream);
  const cudaError_t checked = zs_emu::stream_host_check_locked(s, "cudaStreamQuery of");
  if (checked != cudaSuccess) return checked;
  if (zs_emu::sticky_error() != cudaSuccess) return zs_emu::sticky_status();
  if (!s->queue || !s->queue->tail || s->queue->tail->done) {
    if (s->queue) zs_emu::host_saw_locked(s->queue->tail);
    return cudaSuccess;
  }
  return cudaErrorNotReady;
}
inline cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* status) {
  ZS_EMU_API();
  std::lock_guard<std::mutex> lock(zs_emu::runtime().mutex);
  CUstream_st* s = zs_emu::stream_of(stream);
  if (s->destroyed) return zs_emu::destroyed_handle_locked("cudaStreamIsCapturing of", "stream", s);
  *status = !s->capture           ? cudaStreamCaptureStatusNone
            : s->capture->invalid ? cudaStreamCaptureStatusInvalidated
                                  : cudaStreamCaptureStatusActive;
  return cudaSuccess;
}
inline cudaError_t cudaThreadExchangeStreamCaptureMode(cudaStreamCaptureMode* mode) {
  ZS_EMU_API();
  std::swap(*mode, zs_emu::thread_capture_mode());
  return cudaSuccess;
}
inline cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode) {
  ZS_EMU_API();
  std::lock_guard<std::mutex> lock(zs_emu::runtime().mutex);
  CUstream_st* s = zs_emu::stream_of(stream);
  if (s->legacy) return zs_emu::last_error() = cudaErrorStreamCaptureUnsupported;
  if (s->destroyed) return zs_emu::destroyed_handle_locked("cudaStreamBeginCapture on", "stream", s);
  if (s->capture) return zs_emu::last_error() = cudaErrorIllegalState;
  auto c = std::make_shared<zs_emu::Capture>();
  c->mode = mode;
  c->thread = std::this_thread::get_id();
  c->origin = s;
  c->members.push_back(s);
  s->capture = c;
  s->capture_deps.clear();
  zs_emu::runtime().captures.push_back(c);
  return cudaSuccess;
}
inline cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  ZS_EMU_API();
  std::lock_guard<std::mutex> lock(zs_emu::runtime().mutex);
  *graph = nullptr;
  CUstream_st* s = zs_emu::stream_of(stream);
  if (!s->capture) return zs_emu::last_error() = cudaErrorIllegalState;
  std::shared_ptr<zs_emu::Capture> c = s->capture;
  if (c->origin != s) {
    zs_emu::invalidate_locked(c, cudaErrorStreamCaptureUnmatched);
    return zs_emu::last_error() = cudaErrorStreamCaptureUnmatched;
  }
  if (c->mode != cudaStreamCaptureModeRelaxed && c->thread != std::this_thread::get_id()) {
    return zs_emu::last_error() = cudaErrorStreamCaptureWrongThread;
  }
  // Every stream that joined must have joined back: its last nodes are ancestors of the origin's.
  std::vector<bool> reach(c->nodes.size(), false);
  std::vector<int> stack(s->capture_deps.begin(), s->capture_deps.end());
  while (!stack.empty()) {
    const int n = stack.back();
    stack.pop_back();
    if (reach[static_cast<std::size_t>(n)]) continue;
    reach[static_cast<std::size_t>(n)] = true;
    for (int d : c->nodes[static_cast<std::size_t>(n)].deps) stack.push_back(d);
  }
  bool unjoined = false;
  for (CUstream_st* member : c->members) {
    if (member == s) continue;
    for (int d : member->capture_deps)
      if (!reach[static_cast<std::size_t>(d)]) unjoined = true;
  }
  for (CUstream_st* member : c->members) {
    member->capture = nullptr;
    member->capture_deps.clear();
  }
  auto& captures = zs_emu::runtime().captures;
  captures.erase(std::remove(captures.begin(), captures.end(), c), captures.end());
  if (c->invalid || unjoined) {
    for (void* owned : c->owned) {  // a graph that is not made does not own its allocations
      zs_emu::runtime().live.erase(reinterpret_cast<std::uintptr_t>(owned));
      std::free(owned);
    }
    return zs_emu::last_error() = c->invalid ? cudaErrorStreamCaptureInvalidated : cudaErrorStreamCaptureUnjoined;
  }
  auto* made = new CUgraph_st();
  made->nodes = std::move(c->nodes);
  made->owned = std::move(c->owned);
  for (void* owned : made->owned) {
    auto* found = zs_emu::find_allocation(owned);
    if (found != nullptr) found->second.graph = made;
  }
  *graph = made;
  return cudaSuccess;
}

// ---- events ----------------------------------------------------------------------------------------------------
inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int flags) {
  ZS_EMU_API();
  auto* created = new CUevent_st();
  created->flags = flags;
  *event = created;
  return cudaSuccess;
}
inline cudaError_t cudaEventCreate(cudaEvent_t* event) {
  ZS_EMU_API();
  return cudaEventCreateWithFlags(event, cudaEventDefault);
}
inline cudaError_t cudaEventDestroy(cudaEvent_t event) {
  ZS_EMU_API();
  if (event == nullptr) return zs_emu::last_error() = cudaErrorInvalidResourceHandle;
  std::lock_guard<std::mutex> lock(zs_emu::runtime().mutex);
  if (event->destroyed) {
    zs_emu::report("misuse", "cudaEventDestroy of event " + zs_emu::hex(event) + ", already destroyed");
    return zs_emu::last_error() = cudaErrorInvalidResourceHandle;
  }
  event->destroyed = true;  // a pending record still completes (its signal is shared); the handle is dead
  zs_emu::zombies().push_back(event);
  return cudaSuccess;
}
inline cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream = nullptr) {
  ZS_EMU_API();
  if (event == nullptr) return zs_emu::last_error() = cudaErrorInvalidResourceHandle;
  std::lock_guard<std::mutex> lock(zs_emu::runtime().mutex);
  if (event->destroyed) return zs_emu::destroyed_handle_locked("cudaEventRecord of", "event", event);
  CUstream_st* s = zs_emu::stream_of(stream);
  const cudaError_t checked = zs_emu::stream_work_check_locked(s, "cudaEventRecord on");
  if (checked != cudaSuccess) return checked;
  if (zs_emu::capturing(s)) {
    if (s->capture->invalid) return zs_emu::last_error() = cudaErrorStreamCaptureInvalidated;
    event->capture = s->capture;  // a node of the graph: the event can be waited on inside the capture only
    event->capture_nodes = s->capture_deps;
    event->signal = nullptr;
    return cudaSuccess;
  }
  auto marker = std::make_shared<zs_emu::Op>();
  marker->label = "cudaEventRecord";
  event->stamp = std::make_shared<std::atomic<std::int64_t>>(0);
  marker->run = [stamp = event->stamp] { stamp->store(zs_emu::now_ns()); };
  event->capture = nullptr;
  event->capture_nodes.clear();
  event->signal = zs_emu::enqueue_locked(zs_emu::queue_of_locked(s), marker);
  return cudaSuccess;
}
// cudaEventRecordExternal during a capture: an event record node of the graph; the event itself is untouched (not
// a captured event: it may be queried and waited for outside the capture), and each launch of the graph records it
// (conservatively at the launch's end: cudaGraphLaunch). Outside a capture: cudaEventRecord.
inline cudaError_t cudaEventRecordWithFlags(cudaEvent_t event, cudaStream_t stream = nullptr, unsigned int flags = 0) {
  ZS_EMU_API();
  if (event == nullptr) return zs_emu::last_error() = cudaErrorInvalidResourceHandle;
  {
    std::lock_guard<std::mutex> lock(zs_emu::runtime().mutex);
    if (event->destroyed) return zs_emu::destroyed_handle_locked("cudaEventRecordWithFlags of", "event", event);
    CUstream_st* s = zs_emu::stream_of(stream);
    if ((flags & cudaEventRecordExternal) != 0 && !s->destroyed && zs_emu::capturing(s)) {
      auto node = std::make_shared<zs_emu::Op>();
      node->label = "event record node (external)";
      const cudaError_t status = zs_emu::capture_node_locked(s, node);
      if (status == cudaSuccess) s->capture->nodes.back().external_record = event;
      return status;
    }
  }
  return cudaEventRecord(event, stream);
}
inline cudaError_t cudaEventQuery(cudaEvent_t event) {
  ZS_EMU_API();
  if (event == nullptr) return zs_emu::last_error() = cudaErrorInvalidResourceHandle;
  std::lock_guard<std::mutex> lock(zs_emu::runtime().mutex);
  const cudaError_t checked = zs_emu::event_host_check_locked(event, "cudaEventQuery of");
  if (checked != cudaSuccess) return checked;
  if (zs_emu::sticky_error() != cudaSuccess) return zs_emu::sticky_status();
  if (!event->signal || event->signal->done) {
    zs_emu::host_saw_locked(event->signal);
    return cudaSuccess;
  }
  return cudaErrorNotReady;
}
inline cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  ZS_EMU_API();
  if (event == nullptr) return zs_emu::last_error() = cudaErrorInvalidResourceHandle;
  zs_emu::RuntimeState& rt = zs_emu::runtime();
  std::unique_lock<std::mutex> lock(rt.mutex);
  const cudaError_t checked = zs_emu::event_host_check_locked(event, "cudaEventSynchronize of");
  if (checked != cudaSuccess) return checked;
  ++rt.stats.blocking_waits;
  if (!zs_emu::mutated(zs_emu::kSkipHostWait)) zs_emu::host_wait_locked(lock, event->signal);
  zs_emu::trim_pools_locked();
  return zs_emu::sticky_status();
}
// The milliseconds between two completed records (as on a GPU: both events made without cudaEventDisableTiming and
// recorded outside a capture, or by an event record node of a launched graph; cudaErrorNotReady until both ran).
// The emulation's times are the host's steady clock when the stream workers reached the records: their differences
// have no meaning for speed, only for order and presence.
inline cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  ZS_EMU_API();
  if (ms == nullptr) return zs_emu::last_error() = cudaErrorInvalidValue;
  if (start == nullptr || end == nullptr) return zs_emu::last_error() = cudaErrorInvalidResourceHandle;
  std::lock_guard<std::mutex> lock(zs_emu::runtime().mutex);
  for (CUevent_st* e : {start, end}) {
    const cudaError_t checked = zs_emu::event_host_check_locked(e, "cudaEventElapsedTime of");
    if (checked != cudaSuccess) return checked;
    if ((e->flags & cudaEventDisableTiming) != 0 || !e->stamp || e->capture)
      return zs_emu::last_error() = cudaErrorInvalidResourceHandle;  // no timing, never recorded, or captured
  }
  if (zs_emu::sticky_error() != cudaSuccess) return zs_emu::sticky_status();
  const std::int64_t t0 = start->stamp->load(), t1 = end->stamp->load();
  if (t0 == 0 || t1 == 0 || (start->signal && !start->signal->done) || (end->signal && !end->signal->done))
    return cudaErrorNotReady;
  *ms = static_cast<float>(static_cast<double>(t1 - t0) / 1.0e6);
  return cudaSuccess;
}
inline cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags = 0) {
  ZS_EMU_API();
  if (event == nullptr) return zs_emu::last_error() = cudaErrorInvalidResourceHandle;
  std::lock_guard<std::mutex> lock(zs_emu::runtime().mutex);
  if (event->destroyed) return zs_emu::destroyed_handle_locked("cudaStreamWaitEvent on", "event", event);
  CUstream_st* s = zs_emu::stream_of(stream);
  const cudaError_t checked = zs_emu::stream_work_check_locked(s, "cudaStreamWaitEvent of");
  if (checked != cudaSuccess) return checked;
  if (event->capture) {  // recorded in a capture: a dependency inside that graph
    const auto& c = event->capture;
    const bool active = std::find(zs_emu::runtime().captures.begin(), zs_emu::runtime().captures.end(), c) !=
                        zs_emu::runtime().captures.end();
    if (!active) return cudaSuccess;  // that capture has ended: the event stands for no work of this process
    if (s->capture && s->capture != c) {
      zs_emu::invalidate_locked(c, cudaErrorStreamCaptureMerge);
      zs_emu::invalidate_locked(s->capture, cudaErrorStreamCaptureMerge);
      return zs_emu::last_error() = cudaErrorStreamCaptureMerge;
    }
    if (c->invalid) return zs_emu::last_error() = cudaErrorStreamCaptureInvalidated;
    if (!s->capture) {  // fork: the stream joins the capture
      s->capture = c;
      s->capture_deps = event->capture_nodes;
      c->members.push_back(s);
      return cudaSuccess;
    }
    for (int n : event->capture_nodes)
      if (std::find(s->capture_deps.begin(), s->capture_deps.end(), n) == s->capture_deps.end())
        s->capture_deps.push_back(n);
    return cudaSuccess;
  }
  if (zs_emu::capturing(s)) {  // a capturing stream waiting for work outside its capture
    if ((flags & cudaEventWaitExternal) == 0) {
      zs_emu::invalidate_locked(s->capture, cudaErrorStreamCaptureIsolation);
      return zs_emu::last_error() = cudaErrorStreamCaptureIsolation;
    }
    auto node = std::make_shared<zs_emu::Op>();
    node->label = "external event wait";
    return zs_emu::capture_node_locked(s, node, event);
  }
  if (zs_emu::mutated(zs_emu::kDropEventWait)) return cudaSuccess;
  if (!event->signal || event->signal->done) {
    // complete already: nothing to wait for, but what it completed is ordered before the stream's next work
    if (event->signal) {
      auto marker = std::make_shared<zs_emu::Op>();
      marker->label = "cudaStreamWaitEvent (completed)";
      marker->waits.push_back(event->signal);
      zs_emu::enqueue_locked(zs_emu::queue_of_locked(s), marker);
    }
    return cudaSuccess;
  }
  auto wait = std::make_shared<zs_emu::Op>();
  wait->label = "cudaStreamWaitEvent";
  wait->waits.push_back(event->signal);
  zs_emu::enqueue_locked(zs_emu::queue_of_locked(s), wait);
  return cudaSuccess;
}

// ---- memory ----------------------------------------------------------------------------------------------------
namespace zs_emu {

inline cudaError_t allocate_locked(void** ptr, std::size_t bytes, MemoryKind kind, unsigned int flags = 0) {
  *ptr = std::malloc(bytes == 0 ? 1 : bytes);
  if (*ptr == nullptr) return last_error() = cudaErrorMemoryAllocation;
  Allocation a;
  a.kind = kind;
  a.bytes = bytes;
  a.device = current_device();
  a.flags = flags;
  runtime().live[reinterpret_cast<std::uintptr_t>(*ptr)] = a;
  return cudaSuccess;
}
inline Pool& pool_of_locked(int key) {  // a device index: its default pool
  Pool& pool = runtime().pools[key];
  if (key < kCreatedPools) pool.device = key;
  return pool;
}
// What a free does to the memory once it happens: filled with 0xFF bytes (NaN as float, -1 as int: a stale read
// is visible), poisoned under AddressSanitizer until it is allocated again.
inline void scribble_freed(void* ptr, std::size_t bytes) {
  std::memset(ptr, 0xFF, bytes == 0 ? 1 : bytes);
  // (not under a mutation: the detector reports what it breaks, which an AddressSanitizer abort would hide)
  if (mutation_mask().load() == 0) ZS_EMU_POISON(ptr, bytes == 0 ? 1 : bytes);
}
// cudaFree of pool memory, or a graph's free node: the block is free at once, as the host sees it and as the
// streams see it. If its stream had not reached the allocation yet, that is reported (the allocation is cancelled).
inline void free_pool_block_now_locked(void* ptr, Allocation& a, const char* what) {
  if (a.device_generation != a.generation) {
    report("use-after-free", std::string(what) + " of pool memory " + hex(ptr) +
                                 " before its stream reached the allocation: that stream would use memory the pool "
                                 "may hand out again");
    a.cancelled = a.generation;
  }
  a.device_generation = 0;
  scribble_freed(ptr, a.bytes);
}
// The host gives pool block `a` at `ptr` back (cudaFreeAsync, cudaFree, a graph's free node): the pool may hand it
// out again as its rules say, ordered after `freed` (null: at once).
inline void pool_free_locked(void* ptr, Allocation& a, std::uint32_t queue, const SignalPtr& freed) {
  a.host_owned = false;
  Pool& pool = pool_of_locked(a.pool >= 0 ? a.pool : a.device);
  pool.used -= std::min(pool.used, a.bytes);
  pool.free_blocks.push_back(PoolBlock{ptr, a.bytes, queue, freed});
}
// Give pool memory above the release threshold back to the system (at host synchronisations, as the driver does).
inline void trim_pools_locked() {
  RuntimeState& rt = runtime();
  for (auto& entry : rt.pools) {
    Pool& pool = entry.second;
    const std::uint64_t keep = pool.destroyed ? 0 : pool.release_threshold;
    for (auto it = pool.free_blocks.begin(); it != pool.free_blocks.end() && pool.reserved > keep;) {
      auto found = rt.live.find(reinterpret_cast<std::uintptr_t>(it->ptr));
      const bool idle = (!it->freed || it->freed->done) &&
                        (found == rt.live.end() || (found->second.device_generation == 0 && !found->second.host_owned));
      if (!idle) {
        ++it;
        continue;
      }
      if (found != rt.live.end()) rt.live.erase(found);
      pool.reserved -= std::min(pool.reserved, it->bytes);
      ZS_EMU_UNPOISON(it->ptr, it->bytes == 0 ? 1 : it->bytes);
      std::free(it->ptr);
      ++rt.stats.pool_os_releases;
      it = pool.free_blocks.erase(it);
    }
  }
}
// The live pool allocation at exactly `ptr` (as the host sees it), or nullptr.
inline Allocation* host_pool_allocation_locked(const void* ptr) {
  auto it = runtime().live.find(reinterpret_cast<std::uintptr_t>(ptr));
  if (it == runtime().live.end() || it->second.kind != MemoryKind::Pool || !it->second.host_owned) return nullptr;
  return &it->second;
}

}  // namespace zs_emu

inline cudaError_t cudaMalloc(void** ptr, std::size_t bytes) {
  ZS_EMU_API();
  std::lock_guard<std::mutex> lock(zs_emu::runtime().mutex);
  if (zs_emu::unsafe_call_check_locked() != cudaSuccess) return cudaErrorStreamCaptureUnsupported;
  ++zs_emu::runtime_stats().sync_malloc;
  return zs_emu::allocate_locked(ptr, bytes, zs_emu::MemoryKind::Device);
}
inline cudaError_t cudaMallocManaged(void** ptr, std::size_t bytes, unsigned int flags = cudaMemAttachGlobal) {
  ZS_EMU_API();
  std::lock_guard<std::mutex> lock(zs_emu::runtime().mutex);
  if (zs_emu::unsafe_call_check_locked() != cudaSuccess) return cudaErrorStreamCaptureUnsupported;
  return zs_emu::allocate_locked(ptr, bytes, zs_emu::MemoryKind::Managed, flags);
}
namespace zs_emu {
// Stream-ordered allocation (see the rules at the top) from `pool` (nullptr: the default pool of the stream's
// device): cudaMallocAsync, cudaMallocFromPoolAsync.
inline cudaError_t malloc_async(void** ptr, std::size_t bytes, cudaMemPool_t from, cudaStream_t stream) {
  zs_emu::RuntimeState& rt = zs_emu::runtime();
  std::lock_guard<std::mutex> lock(rt.mutex);
  *ptr = nullptr;
  if (!rt.config.memory_pools) return zs_emu::last_error() = cudaErrorInvalidValue;
  if (from != nullptr && from->destroyed) {
    zs_emu::report("misuse", "cudaMallocFromPoolAsync from destroyed pool " + zs_emu::hex(from));
    return zs_emu::last_error() = cudaErrorInvalidValue;
  }
  CUstream_st* s = zs_emu::stream_of(stream);
  const cudaError_t checked = zs_emu::stream_work_check_locked(s, "cudaMallocAsync on");
  if (checked != cudaSuccess) return checked;
  ++rt.stats.async_malloc;
  if (zs_emu::capturing(s)) {  // a graph allocation: owned by the graph made from this capture
    if (s->capture->invalid) return zs_emu::last_error() = cudaErrorStreamCaptureInvalidated;
    const cudaError_t status = zs_emu::allocate_locked(ptr, bytes, zs_emu::MemoryKind::Pool);
    if (status != cudaSuccess) return status;  // allocated and owned from now on (no stream reaches it)
    s->capture->owned.push_back(*ptr);
    auto node = std::make_shared<zs_emu::Op>();
    node->label = "cudaMallocAsync (graph)";
    return zs_emu::capture_node_locked(s, node);
  }
  zs_emu::Queue& q = zs_emu::queue_of_locked(s);
  const int key = from != nullptr ? from->key : s->device;
  zs_emu::Pool& pool = zs_emu::pool_of_locked(key);
  // The best free block of bytes..2*bytes: on this stream first (stream order covers the free), then one whose
  // free has completed, then one freed on another stream (a dependency on that free is inserted).
  int best = -1;
  int best_rank = 3;
  for (std::size_t i = 0; i < pool.free_blocks.size(); ++i) {
    const zs_emu::PoolBlock& b = pool.free_blocks[i];
    if (b.bytes < bytes || b.bytes > std::max<std::size_t>(2 * bytes, 256)) continue;
    const int rank = b.freed_on == q.id ? 0 : (!b.freed || b.freed->done) ? 1 : 2;
    if (rank < best_rank ||
        (rank == best_rank && best >= 0 && b.bytes < pool.free_blocks[static_cast<std::size_t>(best)].bytes)) {
      best = static_cast<int>(i);
      best_rank = rank;
    }
  }
  auto op = std::make_shared<zs_emu::Op>();
  op->label = "cudaMallocAsync";
  std::size_t block_bytes = bytes;
  if (best >= 0) {
    const zs_emu::PoolBlock block = pool.free_blocks[static_cast<std::size_t>(best)];
    pool.free_blocks.erase(pool.free_blocks.begin() + best);
    *ptr = block.ptr;
    block_bytes = block.bytes;
    if (block.freed) op->waits.push_back(block.freed);  // after the free: stream order, done, or an inserted wait
    ++rt.stats.pool_reuses;
    if (best_rank == 2) ++rt.stats.pool_reuse_dependencies;
  } else {
    const cudaError_t status = zs_emu::allocate_locked(ptr, bytes, zs_emu::MemoryKind::Pool);
    if (status != cudaSuccess) return status;
    rt.live[reinterpret_cast<std::uintptr_t>(*ptr)].generation = 0;
    rt.live[reinterpret_cast<std::uintptr_t>(*ptr)].device_generation = 0;  // until its stream reaches it
    rt.live[reinterpret_cast<std::uintptr_t>(*ptr)].pool = key;
    rt.live[reinterpret_cast<std::uintptr_t>(*ptr)].device = pool.device;
    ++rt.stats.pool_os_allocations;
    pool.reserved += bytes;
  }
  zs_emu::Allocation& allocation = rt.live[reinterpret_cast<std::uintptr_t>(*ptr)];
  allocation.host_owned = true;
  const std::uint64_t generation = ++allocation.generation;
  pool.used += block_bytes;
  void* memory = *ptr;
  op->run = [memory, block_bytes] { ZS_EMU_UNPOISON(memory, block_bytes == 0 ? 1 : block_bytes); };
  op->accesses.push_back(zs_emu::Access{memory, 0, true, zs_emu::Access::kAllocate, generation});
  zs_emu::enqueue_locked(q, op);
  return cudaSuccess;
}
}  // namespace zs_emu
inline cudaError_t cudaMallocAsync(void** ptr, std::size_t bytes, cudaStream_t stream) {
  ZS_EMU_API();
  return zs_emu::malloc_async(ptr, bytes, nullptr, stream);
}
inline cudaError_t cudaMallocFromPoolAsync(void** ptr, std::size_t bytes, cudaMemPool_t pool, cudaStream_t stream) {
  ZS_EMU_API();
  if (pool == nullptr) return zs_emu::last_error() = cudaErrorInvalidValue;
  return zs_emu::malloc_async(ptr, bytes, pool, stream);
}
// cudaFree: memory from cudaMalloc / cudaMallocManaged waits for the whole device first; pool memory is returned
// at once (pending work may still use it: the caller must have ordered it, e.g. with cudaFreeAsync).
inline cudaError_t cudaFree(void* ptr) {
  ZS_EMU_API();
  if (ptr == nullptr) return cudaSuccess;
  zs_emu::RuntimeState& rt = zs_emu::runtime();
  std::unique_lock<std::mutex> lock(rt.mutex);
  if (zs_emu::unsafe_call_check_locked() != cudaSuccess) return cudaErrorStreamCaptureUnsupported;
  auto* found = zs_emu::find_allocation(ptr);
  if (found == nullptr || found->first != reinterpret_cast<std::uintptr_t>(ptr) ||
      found->second.kind == zs_emu::MemoryKind::Host) {
    zs_emu::report("misuse", "cudaFree of " + zs_emu::hex(ptr) + ", which is not a live device allocation");
    return zs_emu::last_error() = cudaErrorInvalidValue;
  }
  if (found->second.kind == zs_emu::MemoryKind::Pool) {
    if (!found->second.host_owned) {
      zs_emu::report("misuse", "cudaFree of pool memory " + zs_emu::hex(ptr) + ", already freed");
      return zs_emu::last_error() = cudaErrorInvalidValue;
    }
    ++rt.stats.pool_free;
    // returned at once, whatever work is still pending on it (what makes cudaFree of pool memory a hazard)
    zs_emu::free_pool_block_now_locked(ptr, found->second, "cudaFree");
    zs_emu::pool_free_locked(ptr, found->second, 0, nullptr);
    return cudaSuccess;
  }
  ++rt.stats.sync_free;
  if (!zs_emu::mutated(zs_emu::kSkipHostWait)) zs_emu::wait_device_locked(lock);  // cudaFree waits for the device
  rt.live.erase(reinterpret_cast<std::uintptr_t>(ptr));
  std::free(ptr);
  return cudaSuccess;
}
inline cudaError_t cudaFreeAsync(void* ptr, cudaStream_t stream) {
  ZS_EMU_API();
  if (ptr == nullptr) return cudaSuccess;
  zs_emu::RuntimeState& rt = zs_emu::runtime();
  std::lock_guard<std::mutex> lock(rt.mutex);
  zs_emu::Allocation* allocation = zs_emu::host_pool_allocation_locked(ptr);
  if (allocation == nullptr) {
    zs_emu::report("misuse", "cudaFreeAsync of " + zs_emu::hex(ptr) + ", which is not a live pool allocation");
    return zs_emu::last_error() = cudaErrorInvalidValue;
  }
  CUstream_st* s = zs_emu::stream_of(stream);
  const cudaError_t checked = zs_emu::stream_work_check_locked(s, "cudaFreeAsync on");
  if (checked != cudaSuccess) return checked;
  ++rt.stats.async_free;
  if (zs_emu::capturing(s)) {
    auto node = std::make_shared<zs_emu::Op>();
    node->label = "cudaFreeAsync (graph)";
    node->accesses.push_back(zs_emu::Access{ptr, 0, true});
    return zs_emu::capture_node_locked(s, node, nullptr, ptr);
  }
  auto op = std::make_shared<zs_emu::Op>();
  op->label = "cudaFreeAsync";
  op->accesses.push_back(zs_emu::Access{ptr, 0, true, zs_emu::Access::kRelease, allocation->generation});
  const std::size_t bytes = allocation->bytes;
  op->run = [ptr, bytes] { zs_emu::scribble_freed(ptr, bytes); };
  // the mutation: the free runs on a queue of its own, ordered after nothing the stream waits for
  zs_emu::Queue& q =
      zs_emu::queue_of_locked(zs_emu::mutated(zs_emu::kFreeBeforeConsumer) ? zs_emu::mutation_stream() : s);
  const zs_emu::SignalPtr freed = zs_emu::enqueue_locked(q, op);
  allocation->pending_free = freed;
  zs_emu::pool_free_locked(ptr, *allocation, q.id, freed);  // reusable in that stream's order from now on
  return cudaSuccess;
}
inline cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t* pool, int device) {
  ZS_EMU_API();
  if (device < 0 || device >= zs_emu::device_config().device_count)
    return zs_emu::last_error() = cudaErrorInvalidDevice;
  if (!zs_emu::device_config().memory_pools) return zs_emu::last_error() = cudaErrorNotSupported;
  static CUmemPoolHandle_st handles[64];
  handles[device].device = device;
  handles[device].key = device;
  *pool = &handles[device];
  return cudaSuccess;
}
// A pool of its own (pinned device memory of props->location.id): release threshold 0, the default reuse rules, as
// cudaMemPoolCreate makes one; stream-ordered allocations come from it with cudaMallocFromPoolAsync.
inline cudaError_t cudaMemPoolCreate(cudaMemPool_t* pool, const cudaMemPoolProps* props) {
  ZS_EMU_API();
  if (pool == nullptr || props == nullptr || props->allocType != cudaMemAllocationTypePinned ||
      props->location.type != cudaMemLocationTypeDevice) {
    return zs_emu::last_error() = cudaErrorInvalidValue;
  }
  const int device = props->location.id;
  if (device < 0 || device >= zs_emu::device_config().device_count)
    return zs_emu::last_error() = cudaErrorInvalidDevice;
  if (!zs_emu::device_config().memory_pools) return zs_emu::last_error() = cudaErrorNotSupported;
  std::lock_guard<std::mutex> lock(zs_emu::runtime().mutex);
  auto* made = new CUmemPoolHandle_st();
  made->device = device;
  made->key = zs_emu::kCreatedPools + zs_emu::runtime().next_pool++;
  zs_emu::pool_of_locked(made->key).device = device;
  *pool = made;
  return cudaSuccess;
}
// Returns at once; memory still allocated from the pool (or freed with the free still pending) goes back to the
// system once freed and idle (at the next host synchronisation), as the driver releases a destroyed pool's memory
// once there are no outstanding allocations. A device's default pool cannot be destroyed; a destroyed pool's handle
// is never reused, and allocating from it is a reported misuse.
inline cudaError_t cudaMemPoolDestroy(cudaMemPool_t pool) {
  ZS_EMU_API();
  if (pool == nullptr) return zs_emu::last_error() = cudaErrorInvalidValue;
  std::lock_guard<std::mutex> lock(zs_emu::runtime().mutex);
  if (pool->key < zs_emu::kCreatedPools) return zs_emu::last_error() = cudaErrorInvalidValue;
  if (pool->destroyed) {
    zs_emu::report("misuse", "cudaMemPoolDestroy of pool " + zs_emu::hex(pool) + ", already destroyed");
    return zs_emu::last_error() = cudaErrorInvalidValue;
  }
  pool->destroyed = true;
  zs_emu::pool_of_locked(pool->key).destroyed = true;
  zs_emu::zombies().push_back(pool);
  zs_emu::trim_pools_locked();
  return cudaSuccess;
}
inline cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t pool, cudaMemPoolAttr attr, void* value) {
  ZS_EMU_API();
  if (pool == nullptr || value == nullptr) return zs_emu::last_error() = cudaErrorInvalidValue;
  std::lock_guard<std::mutex> lock(zs_emu::runtime().mutex);
  if (pool->destroyed) return zs_emu::destroyed_handle_locked("cudaMemPoolSetAttribute of", "pool", pool);
  zs_emu::Pool& p = zs_emu::pool_of_locked(pool->key);
  if (attr == cudaMemPoolAttrReleaseThreshold) {
    p.release_threshold = *static_cast<std::uint64_t*>(value);
    return cudaSuccess;
  }
  if (attr == cudaMemPoolReuseFollowEventDependencies || attr == cudaMemPoolReuseAllowOpportunistic ||
      attr == cudaMemPoolReuseAllowInternalDependencies) {
    return cudaSuccess;  // the emulated pool always follows the defaults (all on)
  }
  return zs_emu::last_error() = cudaErrorInvalidValue;
}
inline cudaError_t cudaMemPoolGetAttribute(cudaMemPool_t pool, cudaMemPoolAttr attr, void* value) {
  ZS_EMU_API();
  if (pool == nullptr || value == nullptr) return zs_emu::last_error() = cudaErrorInvalidValue;
  std::lock_guard<std::mutex> lock(zs_emu::runtime().mutex);
  if (pool->destroyed) return zs_emu::destroyed_handle_locked("cudaMemPoolGetAttribute of", "pool", pool);
  zs_emu::Pool& p = zs_emu::pool_of_locked(pool->key);
  switch (attr) {
    case cudaMemPoolAttrReleaseThreshold:
      *static_cast<std::uint64_t*>(value) = p.release_threshold;
      return cudaSuccess;
    case cudaMemPoolAttrReservedMemCurrent:
      *static_cast<std::uint64_t*>(value) = p.reserved;
      return cudaSuccess;
    case cudaMemPoolAttrUsedMemCurrent:
      *static_cast<std::uint64_t*>(value) = p.used;
      return cudaSuccess;
    case cudaMemPoolReuseFollowEventDependencies:
    case cudaMemPoolReuseAllowOpportunistic:
    case cudaMemPoolReuseAllowInternalDependencies:
      *static_cast<int*>(value) = 1;
      return cudaSuccess;
    default:
      return zs_emu::last_error() = cudaErrorInvalidValue;
  }
}
// Page-locked host memory; with unified addressing it is mapped (the device uses the same address).
inline cudaError_t cudaHostAlloc(void** ptr, std::size_t bytes, unsigned int flags) {
  ZS_EMU_API();
  std::lock_guard<std::mutex> lock(zs_emu::runtime().mutex);
  if (zs_emu::unsafe_call_check_locked() != cudaSuccess) return cudaErrorStreamCaptureUnsupported;
  return zs_emu::allocate_locked(ptr, bytes, zs_emu::MemoryKind::Host, flags);
}
inline cudaError_t cudaMallocHost(void** ptr, std::size_t bytes) {
  ZS_EMU_API();
  return cudaHostAlloc(ptr, bytes, cudaHostAllocDefault);
}
inline cudaError_t cudaFreeHost(void* ptr) {
  ZS_EMU_API();
  if (ptr == nullptr) return cudaSuccess;
  zs_emu::RuntimeState& rt = zs_emu::runtime();
  std::unique_lock<std::mutex> lock(rt.mutex);
  if (zs_emu::unsafe_call_check_locked() != cudaSuccess) return cudaErrorStreamCaptureUnsupported;
  auto* found = zs_emu::find_allocation(ptr);
  if (found == nullptr || found->second.kind != zs_emu::MemoryKind::Host) {
    zs_emu::report("misuse", "cudaFreeHost of " + zs_emu::hex(ptr) + ", which is not live page-locked memory");
    return zs_emu::last_error() = cudaErrorInvalidValue;
  }
  if (!zs_emu::mutated(zs_emu::kSkipHostWait)) zs_emu::wait_device_locked(lock);  // like cudaFree: waits for the device
  rt.live.erase(reinterpret_cast<std::uintptr_t>(ptr));
  std::free(ptr);
  return cudaSuccess;
}
inline cudaError_t cudaHostGetDevicePointer(void** device_ptr, void* host_ptr, unsigned int /*flags*/) {
  ZS_EMU_API();
  std::lock_guard<std::mutex> lock(zs_emu::runtime().mutex);
  auto* found = zs_emu::find_allocation(host_ptr);
  if (found == nullptr || found->second.kind != zs_emu::MemoryKind::Host) {
    return zs_emu::last_error() = cudaErrorInvalidValue;
  }
  *device_ptr = host_ptr;  // unified addressing: one address for host and device
  return cudaSuccess;
}
inline cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* attributes, const void* ptr) {
  ZS_EMU_API();
  *attributes = cudaPointerAttributes();
  std::lock_guard<std::mutex> lock(zs_emu::runtime().mutex);
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

namespace zs_emu {
// Pageable host memory: not an allocation of this runtime.
inline bool pageable_locked(const void* ptr) {
  return find_allocation(ptr) == nullptr;
}
inline std::shared_ptr<Op> copy_op(void* dst, const void* src, std::size_t bytes, const char* label) {
  auto op = std::make_shared<Op>();
  op->label = label;
  op->run = [dst, src, bytes] {
    if (bytes > 0) std::memmove(dst, src, bytes);
  };
  if (bytes > 0) {
    op->accesses.push_back(Access{src, bytes, false});
    op->accesses.push_back(Access{dst, bytes, true});
  }
  return op;
}
}  // namespace zs_emu

inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind /*kind*/,
                                   cudaStream_t stream = nullptr) {
  ZS_EMU_API();
  zs_emu::RuntimeState& rt = zs_emu::runtime();
  std::unique_lock<std::mutex> lock(rt.mutex);
  CUstream_st* s = zs_emu::stream_of(stream);
  const bool pageable = bytes > 0 && (zs_emu::pageable_locked(dst) || zs_emu::pageable_locked(src));
  if (pageable && zs_emu::capturing(s)) {  // a pageable copy needs a host synchronisation: not capturable
    zs_emu::invalidate_locked(s->capture, cudaErrorStreamCaptureUnsupported);
    return zs_emu::last_error() = cudaErrorStreamCaptureUnsupported;
  }
  zs_emu::SignalPtr done;
  const cudaError_t status = zs_emu::submit_locked(stream, zs_emu::copy_op(dst, src, bytes, "cudaMemcpyAsync"), &done);
  if (status != cudaSuccess) return status;
  // Pageable host memory: the call returns once the copy has happened (staged or done), as cudaMemcpyAsync does.
  if (pageable && done && !zs_emu::mutated(zs_emu::kSkipHostWait)) zs_emu::host_wait_locked(lock, done);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind /*kind*/) {
  ZS_EMU_API();
  zs_emu::RuntimeState& rt = zs_emu::runtime();
  std::unique_lock<std::mutex> lock(rt.mutex);
  if (zs_emu::unsafe_call_check_locked() != cudaSuccess) return cudaErrorStreamCaptureUnsupported;
  // an operation on the legacy default stream, then a host wait for it
  zs_emu::SignalPtr done;
  const cudaError_t status = zs_emu::submit_locked(nullptr, zs_emu::copy_op(dst, src, bytes, "cudaMemcpy"), &done);
  if (status != cudaSuccess) return status;
  if (!zs_emu::mutated(zs_emu::kSkipHostWait)) zs_emu::host_wait_locked(lock, done);
  return cudaSuccess;
}
inline cudaError_t cudaMemsetAsync(void* ptr, int value, std::size_t bytes, cudaStream_t stream = nullptr) {
  ZS_EMU_API();
  std::lock_guard<std::mutex> lock(zs_emu::runtime().mutex);
  auto op = std::make_shared<zs_emu::Op>();
  op->label = "cudaMemsetAsync";
  op->run = [ptr, value, bytes] { std::memset(ptr, value, bytes); };
  if (bytes > 0) op->accesses.push_back(zs_emu::Access{ptr, bytes, true});
  return zs_emu::submit_locked(stream, op);
}
inline cudaError_t cudaLaunchHostFunc(cudaStream_t stream, cudaHostFn_t fn, void* user_data) {
  ZS_EMU_API();
  std::lock_guard<std::mutex> lock(zs_emu::runtime().mutex);
  auto op = std::make_shared<zs_emu::Op>();
  op->label = "cudaLaunchHostFunc";
  op->run = [fn, user_data] { fn(user_data); };
  return zs_emu::submit_locked(stream, op);
}

// ---- graphs -------------------------------------------------------------------------------------------------------
namespace zs_emu {

// [i][k]: node k is an ancestor of node i (a node's dependencies are earlier nodes: captured in order).
inline std::vector<std::vector<bool>> graph_ancestors(const std::vector<GraphNode>& nodes) {
  const std::size_t n = nodes.size();
  std::vector<std::vector<bool>> ancestors(n, std::vector<bool>(n, false));
  for (std::size_t i = 0; i < n; ++i) {
    for (int d : nodes[i].deps) {
      const auto dep = static_cast<std::size_t>(d);
      ancestors[i][dep] = true;
      for (std::size_t k = 0; k < dep; ++k)
        if (ancestors[dep][k]) ancestors[i][k] = true;
    }
  }
  return ancestors;
}

// Nodes of one graph with no path between them run concurrently on a GPU (unjoined branches of a fork in the
// capture): two of them accessing overlapping bytes of one allocation, one writing, race at every launch. The
// launch itself is checked against other operations as one operation (its nodes' accesses merged); this checks its
// nodes against each other. Caller holds the lock.
inline void check_graph_nodes_locked(const std::vector<GraphNode>& nodes,
                                     const std::vector<std::vector<bool>>& ancestors, const std::string& launch) {
  struct Span {
    std::size_t node;
    std::uintptr_t base, lo, hi;
    std::size_t bytes;
    bool write;
  };
  std::vector<Span> spans;
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    for (const Access& access : nodes[i].accesses) {
      const auto* found = find_allocation(access.ptr);
      if (found == nullptr) continue;
      const auto lo = reinterpret_cast<std::uintptr_t>(access.ptr);
      const std::uintptr_t end = found->first + std::max<std::size_t>(found->second.bytes, 1);
      const std::uintptr_t hi = access.bytes > 0 ? std::min(end, lo + access.bytes) : end;
      spans.push_back(Span{i, found->first, lo, hi, found->second.bytes, access.write});
    }
  }
  std::vector<std::pair<std::size_t, std::size_t>> reported;
  for (std::size_t x = 0; x < spans.size(); ++x) {
    for (std::size_t y = x + 1; y < spans.size(); ++y) {
      const Span& p = spans[x];
      const Span& q = spans[y];
      if (p.node == q.node || p.base != q.base || !(p.write || q.write) || p.lo >= q.hi || q.lo >= p.hi) continue;
      const std::size_t i = std::min(p.node, q.node);
      const std::size_t j = std::max(p.node, q.node);
      if (ancestors[j][i]) continue;
      const auto pair = std::make_pair(i, j);
      if (std::find(reported.begin(), reported.end(), pair) != reported.end()) continue;
      reported.push_back(pair);
      report("race", "'" + launch + "': graph nodes '" + nodes[i].label + "' (node " + std::to_string(i) + ") and '" +
                         nodes[j].label + "' (node " + std::to_string(j) + ") " +
                         (p.write && q.write ? "both write " : "write and read ") +
                         hex(reinterpret_cast<void*>(p.base)) + " (" + std::to_string(p.bytes) +
                         " bytes) with no dependency between them in the captured graph");
    }
  }
}

}  // namespace zs_emu

inline cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long /*flags*/ = 0) {
  ZS_EMU_API();
  if (graph == nullptr || graph->destroyed) return zs_emu::last_error() = cudaErrorInvalidValue;
  auto* made = new CUgraphExec_st();
  made->nodes = std::make_shared<const std::vector<zs_emu::GraphNode>>(graph->nodes);
  made->ancestors = std::make_shared<const std::vector<std::vector<bool>>>(zs_emu::graph_ancestors(graph->nodes));
  *exec = made;
  return cudaSuccess;
}
inline cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  ZS_EMU_API();
  if (exec == nullptr) return zs_emu::last_error() = cudaErrorInvalidValue;
  std::lock_guard<std::mutex> lock(zs_emu::runtime().mutex);
  if (exec->destroyed) {
    zs_emu::report("misuse", "cudaGraphExecDestroy of a destroyed graph exec");
    return zs_emu::last_error() = cudaErrorInvalidValue;
  }
  exec->destroyed = true;  // a launch still pending keeps its nodes (shared); the handle is dead
  zs_emu::zombies().push_back(exec);
  return cudaSuccess;
}
inline cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  ZS_EMU_API();
  if (graph == nullptr) return cudaSuccess;
  std::lock_guard<std::mutex> lock(zs_emu::runtime().mutex);
  if (graph->destroyed) {
    zs_emu::report("misuse", "cudaGraphDestroy of a destroyed graph");
    return zs_emu::last_error() = cudaErrorInvalidValue;
  }
  graph->destroyed = true;
  graph->nodes.clear();
  zs_emu::zombies().push_back(graph);
  // The graph's own allocations stay until freed (as cudaMallocAsync in a graph without a free node does)
  return cudaSuccess;
}
inline cudaError_t cudaGraphGetNodes(cudaGraph_t graph, cudaGraphNode_t* nodes, std::size_t* count) {
  ZS_EMU_API();
  if (graph == nullptr || count == nullptr) return zs_emu::last_error() = cudaErrorInvalidValue;
  if (nodes != nullptr) {
    for (std::size_t i = 0; i < std::min(*count, graph->nodes.size()); ++i)
      nodes[i] = reinterpret_cast<cudaGraphNode_t>(i + 1);
  }
  *count = graph->nodes.size();
  return cudaSuccess;
}
// Launch: one operation on `stream` that runs the graph's nodes in a seeded random order that respects their
// dependencies (ordered after the exec's previous launch, as CUDA orders launches of one exec).
inline cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  ZS_EMU_API();
  if (exec == nullptr) return zs_emu::last_error() = cudaErrorInvalidValue;
  zs_emu::RuntimeState& rt = zs_emu::runtime();
  std::lock_guard<std::mutex> lock(rt.mutex);
  if (exec->destroyed) {
    zs_emu::report("misuse", "cudaGraphLaunch of a destroyed graph exec");
    return zs_emu::last_error() = cudaErrorInvalidValue;
  }
  auto nodes = exec->nodes;
  auto ancestors = exec->ancestors;
  const std::uint64_t seed = zs_emu::options().seed ^ (0xD1B54A32D192ED03ULL * ++exec->launches);
  auto op = std::make_shared<zs_emu::Op>();
  op->label = "cudaGraphLaunch (" + std::to_string(nodes->size()) + " nodes)";
  for (const auto& node : *nodes)
    for (const auto& access : node.accesses) op->accesses.push_back(access);
  if (exec->last_launch && !exec->last_launch->done) op->waits.push_back(exec->last_launch);
  // this launch's times of its event record nodes (cudaEventElapsedTime), stamped as each node runs
  auto stamps = std::make_shared<std::vector<std::shared_ptr<std::atomic<std::int64_t>>>>(nodes->size());
  for (std::size_t i = 0; i < nodes->size(); ++i)
    if ((*nodes)[i].external_record != nullptr) (*stamps)[i] = std::make_shared<std::atomic<std::int64_t>>(0);
  op->run = [nodes, ancestors, seed, stamps, label = op->label] {
    {
      std::lock_guard<std::mutex> inner(zs_emu::runtime().mutex);
      zs_emu::check_graph_nodes_locked(*nodes, *ancestors, label);
    }
    std::mt19937_64 rng(seed);
    const std::size_t n = nodes->size();
    std::vector<int> pending(n, 0);
    std::vector<std::vector<std::size_t>> users(n);
    for (std::size_t i = 0; i < n; ++i) {
      for (int d : (*nodes)[i].deps) {
        ++pending[i];
        users[static_cast<std::size_t>(d)].push_back(i);
      }
    }
    std::vector<std::size_t> ready;
    for (std::size_t i = 0; i < n; ++i)
      if (pending[i] == 0) ready.push_back(i);
    while (!ready.empty()) {
      const std::size_t pick = static_cast<std::size_t>(rng() % ready.size());
      const std::size_t i = ready[pick];
      ready.erase(ready.begin() + static_cast<std::ptrdiff_t>(pick));
      const zs_emu::GraphNode& node = (*nodes)[i];
      if (node.external_wait != nullptr) {
        zs_emu::RuntimeState& state = zs_emu::runtime();
        std::unique_lock<std::mutex> inner(state.mutex);
        zs_emu::SignalPtr signal = node.external_wait->destroyed ? nullptr : node.external_wait->signal;
        if (signal) state.cv.wait(inner, [&] { return signal->done; });
      }
      if (node.free_ptr != nullptr) {
        std::lock_guard<std::mutex> inner(zs_emu::runtime().mutex);
        auto* found = zs_emu::find_allocation(node.free_ptr);
        if (found == nullptr || (found->second.graph == nullptr && !found->second.host_owned)) {
          zs_emu::report("misuse", "a graph's free node frees " + zs_emu::hex(node.free_ptr) +
                                       ", which is not live (freed by an earlier launch?)");
        } else if (found->second.graph != nullptr) {
          std::memset(node.free_ptr, 0xFF, found->second.bytes);  // the graph's allocation: dead until reallocated
        } else {
          zs_emu::free_pool_block_now_locked(node.free_ptr, found->second, "a graph's free node");
          zs_emu::pool_free_locked(node.free_ptr, found->second, 0, nullptr);
        }
      }
      if (node.run) node.run();
      if ((*stamps)[i]) (*stamps)[i]->store(zs_emu::now_ns());
      for (std::size_t user : users[i])
        if (--pending[user] == 0) ready.push_back(user);
    }
  };
  zs_emu::SignalPtr done;
  const cudaError_t status = zs_emu::submit_locked(stream, op, &done);
  if (status == cudaSuccess) {
    ++rt.stats.graph_launches;
    if (done) exec->last_launch = done;
    for (std::size_t i = 0; i < nodes->size(); ++i) {  // event record nodes: recorded by this launch (done with it)
      const zs_emu::GraphNode& node = (*nodes)[i];
      if (node.external_record == nullptr || !done) continue;
      if (node.external_record->destroyed) {
        zs_emu::report("misuse", "cudaGraphLaunch of a graph whose event record node records destroyed event " +
                                     zs_emu::hex(node.external_record));
        continue;
      }
      node.external_record->signal = done;
      node.external_record->stamp = (*stamps)[i];
      node.external_record->capture = nullptr;
      node.external_record->capture_nodes.clear();
    }
  }
  return status;
}

namespace zs_emu {

// Enqueue a kernel launch (from launch() in cuda_emu.h).
inline cudaError_t enqueue_kernel(cudaStream_t stream, std::string label, std::function<void()> body,
                                  std::vector<Access> accesses) {
  RuntimeState& rt = runtime();
  std::lock_guard<std::mutex> lock(rt.mutex);
  if (sticky_error() != cudaSuccess) return sticky_status();  // a faulted device launches nothing more
  auto op = std::make_shared<Op>();
  op->label = std::move(label);
  op->kernel = true;
  op->run = std::move(body);
  op->accesses = std::move(accesses);
  if (mutated(kWrongLaunchStream)) {  // the mutation: the kernel goes to a stream of its own
    CUstream_st* s = stream_of(stream);
    if (!capturing(s) && !s->destroyed) {
      enqueue_locked(queue_of_locked(mutation_stream()), op);
      return cudaSuccess;
    }
  }
  return submit_locked(stream, op);
}

// Waits (without holding anything) until every stream has run what is enqueued and no hold is left open: what
// the C++ tests call after releasing holds before looking at the memory state.
inline void settle() {
  RuntimeState& rt = runtime();
  std::unique_lock<std::mutex> lock(rt.mutex);
  // quiet: every queue is empty or waits for something that cannot happen by itself (a hold, or a queue that does)
  rt.cv.wait(lock, [&] {
    for (const auto& q : rt.queues) {
      if (q->ops.empty()) continue;
      bool blocked = false;
      for (const auto& w : q->ops.front()->waits) blocked = blocked || !w->done;
      if (!blocked) return false;
    }
    return true;
  });
}

// Holds a stream: work enqueued on it from now on stays pending until release() (or the destructor), as a kernel
// still running on a GPU. A host wait for that work releases the hold (the GPU finishes it eventually).
class StreamHold {
 public:
  explicit StreamHold(cudaStream_t stream) : gate_(std::make_shared<Signal>()) {
    RuntimeState& rt = runtime();
    std::lock_guard<std::mutex> lock(rt.mutex);
    auto op = std::make_shared<Op>();
    op->label = "StreamHold";
    op->waits.push_back(gate_);
    CUstream_st* s = stream_of(stream);
    SignalPtr done = enqueue_locked(queue_of_locked(s), op);
    rt.holds.emplace_back(done->epoch, gate_);
  }
  ~StreamHold() { release(); }
  // The held work (and whatever waits for it) runs; returns once every stream is quiet again (settle()), so a test
  // observes the state the GPU reaches after that work finished.
  void release() {
    {
      RuntimeState& rt = runtime();
      std::lock_guard<std::mutex> lock(rt.mutex);
      if (gate_->done) return;
      gate_->done = true;
      for (auto it = rt.holds.begin(); it != rt.holds.end(); ++it) {
        if (it->second == gate_) {
          rt.holds.erase(it);
          break;
        }
      }
      rt.cv.notify_all();
    }
    settle();
  }
  StreamHold(const StreamHold&) = delete;
  StreamHold& operator=(const StreamHold&) = delete;

 private:
  SignalPtr gate_;
};

// An allocation the host holds, or the streams still see (a pending cudaMallocAsync or cudaFreeAsync counts).
inline bool held_locked(const Allocation& a) {
  return a.host_owned || a.device_generation != 0 || (a.pending_free && !a.pending_free->done);
}
// Allocations not yet returned (a pending cudaFreeAsync still counts). Waits for streams with no hold in the way
// to run what they can first (the state a GPU reaches on its own).
inline std::size_t live_allocations() {
  settle();
  std::lock_guard<std::mutex> lock(runtime().mutex);
  std::size_t count = 0;
  for (const auto& entry : runtime().live)
    if (entry.second.graph == nullptr && held_locked(entry.second)) ++count;
  return count;
}
// Held by an allocation the host made or the streams still see (a pending cudaMallocAsync or cudaFreeAsync counts).
inline bool is_live(const void* ptr) {
  settle();
  std::lock_guard<std::mutex> lock(runtime().mutex);
  const auto it = runtime().live.find(reinterpret_cast<std::uintptr_t>(ptr));
  return it != runtime().live.end() && held_locked(it->second);
}
inline void reset_runtime(const DeviceConfig& config = DeviceConfig()) {
  RuntimeState& rt = runtime();
  std::lock_guard<std::mutex> lock(rt.mutex);
  rt.config = config;
  rt.stats = RuntimeStats();
  current_device() = 0;
  reset_device_error();
}
inline void set_mutations(unsigned mask) {
  mutation_mask().store(mask);
}

}  // namespace zs_emu
