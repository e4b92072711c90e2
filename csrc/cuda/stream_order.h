// Stream-ordered memory and completion events for the outputs of the CUDA ops. Host code only: the
// binding layer (csrc/bindings, built with the CUDA toolkit, or against csrc/emu's stand-in <cuda_runtime.h> for
// the emulated Python build) and the emulation tests (cpp_tests/emulation) compile this same header.
//
// The rules it implements:
//   * An output is allocated stream-ordered on the launch stream (no implicit device-wide synchronisation), from a
//     memory pool of this library's own (cudaMemPoolCreate + cudaMallocFromPoolAsync; the device's default pool if
//     that cannot be created). Devices without memory pools (cudaDevAttrMemoryPoolsSupported == 0) fall back to
//     cudaMalloc / cudaFree.
//   * A ReadyEvent is recorded on the launch stream right after the allocation and again after the launch.
//     Nothing keeps the caller's stream handle: consumers are ordered after the event (cudaStreamWaitEvent; none
//     for a consumer on the stream the event was recorded on, known by its cudaStreamGetId), host reads wait for
//     the event, and the buffer is released with cudaFreeAsync on a stream of this library's own
//     (release_stream(), one per device, never destroyed) after waiting for the event. So a caller may destroy its
//     stream right after the call.
//   * This library's pool keeps up to kPoolReleaseThreshold bytes of freed memory (a pool's release threshold, 0 by
//     default, would return freed memory to the system at every synchronisation: the next allocation then maps it
//     again). The device's default pool, which torch's cudaMallocAsync backend and other libraries share, is never
//     changed (on a Jetson, memory a pool keeps is the board's CPU RAM).
//   * An output passed back to a later op (a DeviceArray input, or `out=`) is ordered by its events: a read after
//     the write that produced it, a write (`out=`) after that write, after every read of it by this library's
//     launches (add_reader) and after the streams it was exported to.
//   * Pool memory is never released with cudaFree: unlike cudaMalloc memory, cudaFree of pool memory does NOT
//     wait for the device, so work still writing or reading it would race with its next owner.
//   * A buffer exported to another library (__dlpack__, __cuda_array_interface__) is released after the work
//     that library enqueued on the stream it named (DLPack's `stream` argument; CAI has none, so the legacy
//     default stream, which also covers every blocking stream): at release an event is recorded on each
//     consumer stream and the release stream waits for it. No device-wide synchronisation. A consumer working on
//     a non-blocking stream of its own that it did not name must synchronise before dropping the array (as with
//     any CAI producer, e.g. torch); a consumer stream must outlive the arrays it imported (torch's pooled
//     streams never die).
//   * Objects the enqueued work reads (the inputs' Python owners) are handed to a DeferredRelease with the event:
//     they are dropped only once the event has completed (polled without blocking at every op call, drained on
//     exit), so an input freed by its owner right after the call is still alive while the kernel reads it.
//   * Stream capture (CUDA graphs): no query or host synchronisation is made on a capturing stream, and queries
//     and host waits run in the relaxed capture mode, so a capture elsewhere in the process (global mode) is not
//     invalidated: they only wait for events recorded outside any capture. A buffer a captured launch writes gets
//     an event recorded as an external node of the graph (cudaEventRecordExternal): every replay records it, so host
//     reads, consumers and the release wait for the latest replay that was launched, never for the whole device.
//   * Nothing here blocks except ReadyEvent::synchronize() and DeferredRelease::drain(); callers release the GIL
//     around those.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "emu_hooks.h"  // ZS_LIBRARY_MUTATED: the emulated build's mutations (false in a real build)

namespace zsseg {
namespace stream_order {

// A stream handle as the ops take it (integer cudaStream_t; 0 = the legacy default stream).
inline cudaStream_t as_stream(std::int64_t handle) {
  return reinterpret_cast<cudaStream_t>(static_cast<std::uintptr_t>(handle));
}

// True while `stream` is being captured into a CUDA graph (also when the capture was invalidated but not ended):
// no queries, host synchronisations or synchronising allocations may be made for it then.
inline bool capturing(cudaStream_t stream) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(stream, &status) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return status != cudaStreamCaptureStatusNone;
}

// This thread's stream-capture mode is relaxed for the scope: queries made here (cudaEventQuery) are then legal
// even while another thread or stream captures a graph in the default global mode, which would otherwise fail
// them and invalidate that capture.
class RelaxedCaptureScope {
 public:
  RelaxedCaptureScope() {
    if (cudaThreadExchangeStreamCaptureMode(&mode_) != cudaSuccess) {
      cudaGetLastError();
      restore_ = false;
    }
  }
  ~RelaxedCaptureScope() {
    if (restore_) cudaThreadExchangeStreamCaptureMode(&mode_);
  }
  RelaxedCaptureScope(const RelaxedCaptureScope&) = delete;
  RelaxedCaptureScope& operator=(const RelaxedCaptureScope&) = delete;

 private:
  cudaStreamCaptureMode mode_ = cudaStreamCaptureModeRelaxed;
  bool restore_ = true;
};

// The unique id of `stream` (cudaStreamGetId: 0 and cudaStreamLegacy name the legacy stream; a destroyed stream's
// handle may be reused by a new stream, its id never is), or 0 when it cannot be had (then nothing is taken for the
// same stream). Asked so that work already on the launch stream is not waited for again (see ReadyEvent).
inline unsigned long long stream_id(cudaStream_t stream) {
  unsigned long long id = 0;
  if (cudaStreamGetId(stream, &id) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return id;
}

// Make `waiter` wait for everything enqueued on `stream` so far (an event recorded now). Never blocks the host.
// A capturing `stream` is skipped (its work runs when the graph is launched, which its owner orders).
inline cudaError_t wait_for_stream(cudaStream_t waiter, cudaStream_t stream);  // below ReadyEvent

// Restores the current device on scope exit.
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    if (cudaGetDevice(&previous_) != cudaSuccess) {
      cudaGetLastError();
      previous_ = -1;
      return;
    }
    if (previous_ == device) {
      previous_ = -1;
      return;
    }
    if (cudaSetDevice(device) != cudaSuccess) {
      cudaGetLastError();
      previous_ = -1;
    }
  }
  ~DeviceScope() {
    if (previous_ >= 0) cudaSetDevice(previous_);
  }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = -1;
};

// This library's own non-blocking stream on `device`, created on first use and never destroyed (a process-wide
// resource, like the primary context). nullptr when it cannot be created (the caller reports the error).
inline cudaStream_t release_stream(int device) {
  constexpr int kMaxDevices = 64;
  static std::mutex mutex;
  static cudaStream_t streams[kMaxDevices] = {};
  if (device < 0 || device >= kMaxDevices) return nullptr;
  std::lock_guard<std::mutex> lock(mutex);
  if (streams[device] == nullptr) {
    DeviceScope scope(device);
    cudaStream_t created = nullptr;
    if (cudaStreamCreateWithFlags(&created, cudaStreamNonBlocking) != cudaSuccess) {
      cudaGetLastError();
      return nullptr;
    }
    streams[device] = created;
  }
  return streams[device];
}

// The release threshold of this library's own memory pool: memory freed to the pool is kept (not returned to the
// system at every synchronisation and mapped again by the next allocation, which a threshold of 0 does) up to this
// many bytes.
constexpr std::uint64_t kPoolReleaseThreshold = 256ull << 20;

// This library's own memory pool on `device` (pinned device memory, the default reuse rules, release threshold
// kPoolReleaseThreshold), created on first use and never destroyed (a process-wide resource, like the release
// stream); nullptr when it cannot be created (then the device's default pool is used, left as it is).
inline cudaMemPool_t library_pool(int device) {
  constexpr int kMaxDevices = 64;
  static std::mutex mutex;
  static cudaMemPool_t pools[kMaxDevices] = {};
  static bool tried[kMaxDevices] = {};
  if (device < 0 || device >= kMaxDevices) return nullptr;
  std::lock_guard<std::mutex> lock(mutex);
  if (!tried[device]) {
    tried[device] = true;
    RelaxedCaptureScope relaxed;  // legal while another thread captures a graph in the global mode
    cudaMemPoolProps props = {};
    props.allocType = cudaMemAllocationTypePinned;
    props.handleTypes = cudaMemHandleTypeNone;
    props.location.type = cudaMemLocationTypeDevice;
    props.location.id = device;
    cudaMemPool_t pool = nullptr;
    if (cudaMemPoolCreate(&pool, &props) != cudaSuccess) {
      cudaGetLastError();
      return nullptr;
    }
    std::uint64_t threshold = kPoolReleaseThreshold;
    if (cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold) != cudaSuccess) cudaGetLastError();
    pools[device] = pool;
  }
  return pools[device];
}

inline bool memory_pools_supported(int device) {
  int value = 0;
  if (cudaDeviceGetAttribute(&value, cudaDevAttrMemoryPoolsSupported, device) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return value != 0;
}

// The library's completion events (cudaEventDisableTiming), reused: a launch takes one from its device's free list
// and its last owner gives it back, so a steady stream of op calls creates no event after warm-up (creating one per
// launch cost a cudaEventCreate + cudaEventDestroy each: host time in every eager call, found by the GPU review of
// b991c98). Re-recording a reused event is safe: a cudaStreamWaitEvent waits for the record the event held when it
// was called, never for a later one, and the host only queries or waits through a live owner. Events recorded into
// a CUDA graph (ReadyEvent::record_in_capture) are never given back: each replay records them again.
class EventPool {
 public:
  static constexpr int kMaxDevices = 64;
  static constexpr std::size_t kMaxFree = 4096;  // per device; beyond it a returned event is destroyed
  static EventPool& instance() {
    static auto* pool = new EventPool();  // never destroyed: owners may give events back during exit
    return *pool;
  }
  // A free event of `device` (the current device), or a new one.
  cudaError_t acquire(int device, cudaEvent_t* event) {
    if (ZS_LIBRARY_EVENT_POOL() && device >= 0 && device < kMaxDevices) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!free_[device].empty()) {
        *event = free_[device].back();
        free_[device].pop_back();
        return cudaSuccess;
      }
    }
    return cudaEventCreateWithFlags(event, cudaEventDisableTiming);
  }
  // Give back an event of `device` made by acquire() (the current device is `device`).
  void release(int device, cudaEvent_t event) {
    if (ZS_LIBRARY_EVENT_POOL() && device >= 0 && device < kMaxDevices) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (free_[device].size() < kMaxFree) {
        free_[device].push_back(event);
        return;
      }
    }
    cudaEventDestroy(event);  // CUDA releases it once the recorded work completes
  }

 private:
  EventPool() = default;
  std::mutex mutex_;
  std::vector<cudaEvent_t> free_[kMaxDevices];
};

// An event recorded after the work that produces (or reads) something; owns the cudaEvent_t (from the EventPool,
// given back when it goes; one recorded into a graph is destroyed instead).
class ReadyEvent {
 public:
  ReadyEvent() = default;
  ~ReadyEvent() { reset(); }
  ReadyEvent(const ReadyEvent&) = delete;
  ReadyEvent& operator=(const ReadyEvent&) = delete;
  ReadyEvent(ReadyEvent&& other) noexcept
      : event_(other.event_), device_(other.device_), in_graph_(other.in_graph_), recorded_on_(other.recorded_on_) {
    other.event_ = nullptr;
  }
  ReadyEvent& operator=(ReadyEvent&& other) noexcept {
    if (this != &other) {
      reset();
      event_ = other.event_;
      device_ = other.device_;
      in_graph_ = other.in_graph_;
      recorded_on_ = other.recorded_on_;
      other.event_ = nullptr;
    }
    return *this;
  }

  // Record on `stream` (current device = `device`); replaces an earlier record. `stream_id`: the stream's
  // stream_id() where the caller has it (0: unknown), so that a consumer on that same stream is not made to wait.
  cudaError_t record(cudaStream_t stream, int device, unsigned long long stream_id = 0) {
    DeviceScope scope(device);
    const cudaError_t status = ensure_event(device);
    recorded_on_ = 0;
    if (status != cudaSuccess) return status;
    const cudaError_t recorded = cudaEventRecord(event_, stream);
    if (recorded == cudaSuccess) recorded_on_ = stream_id;
    return recorded;
  }
  bool recorded() const { return event_ != nullptr; }
  cudaEvent_t get() const { return event_; }
  int device() const { return device_; }
  // Make `consumer` wait for the recorded work (no-op when nothing was recorded). Never blocks the host. When the
  // record was made on the consumer's own stream (`consumer_id`, its stream_id(); 0: unknown), stream order has it
  // already: no wait (the hand-off between calls on one stream: a wait per argument and call otherwise).
  cudaError_t order_before(cudaStream_t consumer, unsigned long long consumer_id = 0) const {
    if (event_ == nullptr) return cudaSuccess;
    if (consumer_id != 0 && recorded_on_ == consumer_id) return cudaSuccess;
    DeviceScope scope(device_);
    return cudaStreamWaitEvent(consumer, event_, 0);
  }
  // True when the recorded work has finished (or nothing was recorded); never blocks, and never disturbs a stream
  // capture elsewhere (relaxed capture mode). Errors count as done (the work will never finish; what waits for it
  // must not wait forever) and are cleared.
  bool done() const {
    if (event_ == nullptr) return true;
    RelaxedCaptureScope relaxed;
    const cudaError_t status = cudaEventQuery(event_);
    if (status == cudaErrorNotReady) return false;
    if (status != cudaSuccess) cudaGetLastError();
    return true;
  }
  // Block the calling thread until the recorded work has finished. In the relaxed capture mode: legal while another
  // thread captures a graph in the global mode (the event is never one recorded inside a capture).
  cudaError_t synchronize() const {
    if (event_ == nullptr) return cudaSuccess;
    RelaxedCaptureScope relaxed;
    return cudaEventSynchronize(event_);
  }
  // Record on the capturing `stream` as an external event node of the graph being captured: each launch of the
  // graph records the event after the captured work before it (the event itself stays an ordinary one, recorded by
  // replays; a wait for it waits for the latest replay launched; never recorded: complete).
  cudaError_t record_in_capture(cudaStream_t stream, int device) {
    DeviceScope scope(device);
    const cudaError_t status = ensure_event(device);
    if (status != cudaSuccess) return status;
    in_graph_ = true;  // a node of a graph now: its replays record it, so it never goes back to the pool
    recorded_on_ = 0;  // each replay records it on the stream the graph is launched on
    return cudaEventRecordWithFlags(event_, stream, cudaEventRecordExternal);
  }

 private:
  // The event of `device` from the pool, once (current device = `device`); a failed acquire leaves none.
  cudaError_t ensure_event(int device) {
    if (event_ != nullptr) return cudaSuccess;
    const cudaError_t status = EventPool::instance().acquire(device, &event_);
    if (status != cudaSuccess) {
      event_ = nullptr;
      return status;
    }
    device_ = device;
    return cudaSuccess;
  }
  void reset() {
    if (event_ != nullptr) {
      DeviceScope scope(device_);
      if (in_graph_) {
        cudaEventDestroy(event_);  // CUDA releases it once the recorded work completes
      } else {
        EventPool::instance().release(device_, event_);
      }
      event_ = nullptr;
    }
  }
  cudaEvent_t event_ = nullptr;
  int device_ = 0;
  bool in_graph_ = false;
  unsigned long long recorded_on_ = 0;  // stream_id() of the stream the last record was made on (0: unknown)
};

inline cudaError_t wait_for_stream(cudaStream_t waiter, cudaStream_t stream) {
  if (capturing(stream)) return cudaSuccess;
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) cudaGetLastError();
  ReadyEvent marker;  // a pooled event: given back at once (the wait holds the record it saw)
  cudaError_t status = marker.record(stream, device);
  if (status == cudaSuccess) status = marker.order_before(waiter);
  return status;
}

// One device allocation, stream-ordered: made on the launch stream, released after its ReadyEvent and after the
// streams of the libraries it was exported to (see the rules at the top) on release_stream(). Shared
// (std::shared_ptr) by a DeviceArray and every DLPack capsule exported from it.
class StreamBuffer {
 public:
  // Allocate `bytes` on `device`, ordered on `stream`. On failure returns the error and leaves `out` empty.
  static cudaError_t allocate(std::size_t bytes, int device, cudaStream_t stream, std::shared_ptr<StreamBuffer>* out) {
    DeviceScope scope(device);
    auto buffer = std::shared_ptr<StreamBuffer>(new StreamBuffer());
    buffer->bytes_ = bytes;
    buffer->device_ = device;
    buffer->pooled_ = memory_pools_supported(device);
    cudaMemPool_t pool = buffer->pooled_ ? library_pool(device) : nullptr;
    const cudaError_t status = !buffer->pooled_  ? cudaMalloc(&buffer->data_, bytes)
                               : pool != nullptr ? cudaMallocFromPoolAsync(&buffer->data_, bytes, pool, stream)
                                                 : cudaMallocAsync(&buffer->data_, bytes, stream);
    if (status != cudaSuccess) {
      buffer->data_ = nullptr;
      return status;
    }
    if (buffer->pooled_) {
      // The release must come after the allocation in stream order even if no launch follows (a later argument
      // error): an event now, replaced by the launch's completion event.
      auto allocated = std::make_shared<ReadyEvent>();
      if (allocated->record(stream, device) == cudaSuccess) {
        buffer->ready_ = std::move(allocated);
      } else {
        cudaGetLastError();
        cudaStreamSynchronize(stream);  // error path only: the allocation has happened once this returns
        cudaGetLastError();
      }
    }
    *out = std::move(buffer);
    return cudaSuccess;
  }
  ~StreamBuffer() {
    if (data_ == nullptr) return;
    DeviceScope scope(device_);
    if (pooled_ && release_stream_ordered()) return;  // freed once every producer and consumer is done
    cudaGetLastError();
    if (pooled_) {
      // Error path (no release stream, a failed record): cudaFree of pool memory does not wait for the device, so
      // wait here before returning the memory.
      cudaDeviceSynchronize();
      cudaGetLastError();
    }
    cudaFree(data_);  // cudaMalloc memory: cudaFree itself waits for the device
    cudaGetLastError();
  }
  StreamBuffer(const StreamBuffer&) = delete;
  StreamBuffer& operator=(const StreamBuffer&) = delete;

  void* data() const { return data_; }
  std::size_t bytes() const { return bytes_; }
  int device() const { return device_; }
  bool pooled() const { return pooled_; }
  // The event recorded after the work that writes the buffer: consumers and the release wait for it. A new write
  // (the buffer given as `out=`) was ordered after every earlier read (see readers()): they are forgotten.
  void set_ready(std::shared_ptr<ReadyEvent> event) {
    std::lock_guard<std::mutex> lock(mutex_);
    ready_ = std::move(event);
    readers_.clear();
  }
  std::shared_ptr<ReadyEvent> ready() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return ready_;
  }
  // A launch of this library that reads the buffer (an op input): a later write (`out=`) and the release are
  // ordered after it. Finished reads are dropped as new ones come.
  void add_reader(std::shared_ptr<ReadyEvent> event) {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<std::shared_ptr<ReadyEvent>> kept;
    for (auto& reader : readers_)
      if (!reader->done()) kept.push_back(std::move(reader));
    kept.push_back(std::move(event));
    readers_.swap(kept);
  }
  std::vector<std::shared_ptr<ReadyEvent>> readers() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return readers_;
  }
  // Written by a launch captured into a CUDA graph (on the capturing `stream`): its content comes from replays, so
  // an event recorded by each replay (ReadyEvent::record_in_capture) orders host reads, consumers and the release
  // after the latest one launched. If that record fails, host reads and exports wait for the whole device
  // (graph_written_unordered; illegal while another stream captures: the caller reports the error).
  void set_graph_written(cudaStream_t stream) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!graph_ready_) graph_ready_ = std::make_shared<ReadyEvent>();
    if (graph_ready_->record_in_capture(stream, device_) != cudaSuccess) {
      cudaGetLastError();
      graph_written_unordered_ = true;
    }
  }
  // The event the replays of the graphs that write the buffer record (nullptr: none does).
  std::shared_ptr<ReadyEvent> graph_ready() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return graph_ready_;
  }
  bool graph_written_unordered() const { return graph_written_unordered_; }
  // May a new owner take this memory instead of its release (csrc/bindings/output_cache.h)? Pool memory whose uses
  // are all this library's recorded events: never exported to another library, never written by a CUDA graph.
  bool reusable() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return pooled_ && data_ != nullptr && ready_ && ready_->recorded() && !graph_ready_ && consumers_.empty() &&
           !per_thread_consumer_ && !graph_written_unordered_;
  }
  // Order `stream` (its stream_id(), 0: unknown) after every use so far (the writer, the readers), as the release is.
  cudaError_t order_reuse(cudaStream_t stream, unsigned long long stream_id) const {
    std::lock_guard<std::mutex> lock(mutex_);
    const bool skip_ready = ZS_LIBRARY_MUTATED(kLibSkipReleaseWait);  // emulated mutation: no wait for the writer
    cudaError_t status = ready_ && !skip_ready ? ready_->order_before(stream, stream_id) : cudaSuccess;
    for (const auto& reader : readers_) {
      if (status == cudaSuccess) status = reader->order_before(stream, stream_id);
    }
    return status;
  }
  // Exported to another library that works on `consumer` (cudaStreamLegacy for the legacy default stream,
  // cudaStreamPerThread for the per-thread default stream of the exporting thread): the release waits for the
  // work enqueued there until then.
  void add_consumer(cudaStream_t consumer) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (consumer == cudaStreamPerThread) {
      // Another thread's per-thread stream cannot be named at release time: wait for the device then.
      per_thread_consumer_ = true;
      return;
    }
    for (cudaStream_t known : consumers_)
      if (known == consumer) return;
    consumers_.push_back(consumer);
  }
  std::vector<cudaStream_t> consumers() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return consumers_;
  }

 private:
  StreamBuffer() = default;
  bool release_stream_ordered() {
    cudaStream_t release = release_stream(device_);
    if (release == nullptr) return false;
    const bool skip_ready = ZS_LIBRARY_MUTATED(kLibSkipReleaseWait);  // emulated mutation: no wait for the writer
    if (ready_ && !skip_ready && ready_->order_before(release) != cudaSuccess) return false;
    if (graph_ready_ && graph_ready_->order_before(release) != cudaSuccess) return false;
    for (const auto& reader : readers_) {
      if (reader->order_before(release) != cudaSuccess) return false;
    }
    for (cudaStream_t consumer : consumers_) {
      if (ZS_LIBRARY_MUTATED(kLibSkipConsumerWait)) break;  // emulated mutation: no wait for the consumers
      if (wait_for_stream(release, consumer) != cudaSuccess) return false;
    }
    if (per_thread_consumer_ && cudaDeviceSynchronize() != cudaSuccess) return false;
    return cudaFreeAsync(data_, release) == cudaSuccess;
  }
  mutable std::mutex mutex_;
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
  int device_ = 0;
  bool pooled_ = false;
  bool per_thread_consumer_ = false;
  std::vector<cudaStream_t> consumers_;
  std::shared_ptr<ReadyEvent> ready_;
  std::vector<std::shared_ptr<ReadyEvent>> readers_;
  std::shared_ptr<ReadyEvent> graph_ready_;
  std::atomic<bool> graph_written_unordered_{false};
};

// Objects kept alive until the work recorded in their event has completed. `Payload` is destroyed outside the
// lock (it may run arbitrary code, e.g. a Python destructor that calls back into an op).
// Entries are kept in the order they came with the stream their event was recorded on: events of one stream complete
// in that order, so a sweep queries each stream's entries only up to its first unfinished one (one query per busy
// stream, however long the backlog: querying every pending entry on every op call grew with the backlog).
template <class Payload>
class DeferredRelease {
 public:
  // `stream`: where `event` was recorded (entries of one stream complete in order); nullptr keeps no order.
  void keep_until(std::shared_ptr<ReadyEvent> event, Payload payload, cudaStream_t stream = nullptr) {
    std::lock_guard<std::mutex> lock(mutex_);
    entries_.push_back(Entry{std::move(event), std::move(payload), stream});
  }
  // Drop the payloads whose work is done (never blocks); returns how many are still pending.
  std::size_t sweep() {
    return sweep([](Payload&) {});
  }
  // Same, calling `visit(payload)` on each finished payload first (outside the lock; an exception from `visit`
  // propagates after every finished payload was visited and dropped).
  template <class Visit>
  std::size_t sweep(Visit&& visit) {
    std::vector<Entry> finished;
    std::size_t pending = 0;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      std::vector<Entry> keep;
      std::vector<cudaStream_t> busy;  // streams with an unfinished entry: their later entries are not done either
      for (Entry& entry : entries_) {
        const bool ordered = entry.stream != nullptr;
        const bool behind = ordered && std::find(busy.begin(), busy.end(), entry.stream) != busy.end();
        if (!behind && (entry.event == nullptr || entry.event->done())) {
          finished.push_back(std::move(entry));
        } else {
          if (ordered && !behind) busy.push_back(entry.stream);
          keep.push_back(std::move(entry));
        }
      }
      entries_.swap(keep);
      pending = entries_.size();
    }
    std::exception_ptr first_error;
    for (Entry& entry : finished) {
      try {
        visit(entry.payload);
      } catch (...) {
        if (!first_error) first_error = std::current_exception();
      }
    }
    finished.clear();  // destroyed here, outside the lock
    if (first_error) std::rethrow_exception(first_error);
    return pending;
  }
  // The events to wait for before everything can be dropped (for drain()).
  std::vector<std::shared_ptr<ReadyEvent>> pending_events() const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<std::shared_ptr<ReadyEvent>> events;
    for (const Entry& entry : entries_) events.push_back(entry.event);
    return events;
  }
  std::size_t size() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return entries_.size();
  }

 private:
  struct Entry {
    std::shared_ptr<ReadyEvent> event;
    Payload payload;
    cudaStream_t stream;
  };
  mutable std::mutex mutex_;
  std::vector<Entry> entries_;
};

// A fixed slab of int32 slots in page-locked, mapped host memory (allocated on first use, never freed): a kernel
// writes a slot through its device address, the host reads it once the kernel's event has passed -- no copy and
// no wait. acquire() gives -1 when every slot is in use (the caller falls back to a blocking check).
class PinnedSlots {
 public:
  static constexpr int kSlots = 1024;
  static PinnedSlots& instance() {
    static auto* slots = new PinnedSlots();  // never destroyed: slots may be read until the process ends
    return *slots;
  }
  int acquire() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (base_ == nullptr) {
      void* memory = nullptr;
      if (cudaHostAlloc(&memory, sizeof(std::int32_t) * kSlots, cudaHostAllocMapped | cudaHostAllocPortable) !=
          cudaSuccess) {
        cudaGetLastError();
        return -1;
      }
      base_ = static_cast<std::int32_t*>(memory);
      for (int i = kSlots - 1; i >= 0; --i) free_.push_back(i);
    }
    if (free_.empty()) return -1;
    const int slot = free_.back();
    free_.pop_back();
    return slot;
  }
  void release(int slot) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (slot >= 0) free_.push_back(slot);
  }
  // Host view of a slot (with unified addressing, also the address kernels use for mapped memory).
  volatile std::int32_t* at(int slot) const { return base_ + slot; }
  std::size_t in_use() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return base_ == nullptr ? 0 : kSlots - free_.size();
  }

 private:
  PinnedSlots() = default;
  mutable std::mutex mutex_;
  std::int32_t* base_ = nullptr;
  std::vector<int> free_;
};

// The result of a device-side check (e.g. the class-bias check) that the host reads once `event` has passed,
// reported at most once. Owns one PinnedSlots slot.
class DeviceCheck {
 public:
  // nullptr when no slot is free.
  static std::shared_ptr<DeviceCheck> create(std::int32_t initial) {
    const int slot = PinnedSlots::instance().acquire();
    if (slot < 0) return nullptr;
    auto check = std::shared_ptr<DeviceCheck>(new DeviceCheck(slot));
    *PinnedSlots::instance().at(slot) = initial;  // written before the launch: the kernel sees it
    return check;
  }
  ~DeviceCheck() { PinnedSlots::instance().release(slot_); }
  DeviceCheck(const DeviceCheck&) = delete;
  DeviceCheck& operator=(const DeviceCheck&) = delete;

  std::int32_t* device_result() const { return const_cast<std::int32_t*>(PinnedSlots::instance().at(slot_)); }
  void set_event(std::shared_ptr<ReadyEvent> event) { event_ = std::move(event); }
  // True once the checking kernel has finished (never blocks); false while no event is set.
  bool finished() const { return event_ != nullptr && event_->done(); }
  const std::shared_ptr<ReadyEvent>& event() const { return event_; }
  // The value the kernel wrote; only meaningful when finished().
  std::int32_t value() const { return *PinnedSlots::instance().at(slot_); }
  // Claims the report: true exactly once (so an error is raised by one reporter, not by every later one).
  bool claim() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (reported_) return false;
    reported_ = true;
    return true;
  }
  std::string what;    // context for the message, e.g. "segment: argument 'class_bias'"
  bool armed = false;  // set once the op's own launch was enqueued: only armed checks are reported

 private:
  explicit DeviceCheck(int slot) : slot_(slot) {}
  int slot_;
  std::shared_ptr<ReadyEvent> event_;
  std::mutex mutex_;
  bool reported_ = false;
};

}  // namespace stream_order
}  // namespace zsseg
