// Stream-ordered memory and completion events for the outputs of the CUDA ops (issue 13). Host code only: the
// binding layer (csrc/bindings, built with the CUDA toolkit) and the emulation tests (cpp_tests/emulation, built
// against csrc/emu's stand-in <cuda_runtime.h>) compile this same header.
//
// The rules it implements:
//   * An output is allocated with cudaMallocAsync on the launch stream (no implicit device-wide synchronisation;
//     capturable in a CUDA graph). Devices without memory pools (cudaDevAttrMemoryPoolsSupported == 0) fall back
//     to cudaMalloc / cudaFree.
//   * After the launch a ReadyEvent is recorded on the launch stream. Nothing keeps the caller's stream handle:
//     consumers are ordered after the event (cudaStreamWaitEvent), host reads wait for the event, and the buffer
//     is released with cudaFreeAsync on a stream of this library's own (release_stream(), one per device, never
//     destroyed) after waiting for the event. So a caller may destroy its stream right after the call.
//   * Objects the enqueued work reads (the inputs' Python owners) are handed to a DeferredRelease with the event:
//     they are dropped only once the event has completed (polled without blocking at every op call, drained on
//     exit), so an input freed by its owner right after the call is still alive while the kernel reads it.
//   * Nothing here blocks except ReadyEvent::synchronize() and DeferredRelease::drain(); callers release the GIL
//     around those.
#pragma once
#include <cuda_runtime.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace zsseg {
namespace stream_order {

// A stream handle as the ops take it (integer cudaStream_t; 0 = the legacy default stream).
inline cudaStream_t as_stream(std::int64_t handle) {
  return reinterpret_cast<cudaStream_t>(static_cast<std::uintptr_t>(handle));
}

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

inline bool memory_pools_supported(int device) {
  int value = 0;
  if (cudaDeviceGetAttribute(&value, cudaDevAttrMemoryPoolsSupported, device) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return value != 0;
}

// An event recorded after the work that produces (or reads) something; owns the cudaEvent_t.
class ReadyEvent {
 public:
  ReadyEvent() = default;
  ~ReadyEvent() { reset(); }
  ReadyEvent(const ReadyEvent&) = delete;
  ReadyEvent& operator=(const ReadyEvent&) = delete;
  ReadyEvent(ReadyEvent&& other) noexcept : event_(other.event_), device_(other.device_) { other.event_ = nullptr; }
  ReadyEvent& operator=(ReadyEvent&& other) noexcept {
    if (this != &other) {
      reset();
      event_ = other.event_;
      device_ = other.device_;
      other.event_ = nullptr;
    }
    return *this;
  }

  // Record on `stream` (current device = `device`); replaces an earlier record.
  cudaError_t record(cudaStream_t stream, int device) {
    DeviceScope scope(device);
    if (event_ == nullptr) {
      const cudaError_t status = cudaEventCreateWithFlags(&event_, cudaEventDisableTiming);
      if (status != cudaSuccess) {
        event_ = nullptr;
        return status;
      }
    }
    device_ = device;
    return cudaEventRecord(event_, stream);
  }
  bool recorded() const { return event_ != nullptr; }
  cudaEvent_t get() const { return event_; }
  int device() const { return device_; }
  // Make `consumer` wait for the recorded work (no-op when nothing was recorded). Never blocks the host.
  cudaError_t order_before(cudaStream_t consumer) const {
    if (event_ == nullptr) return cudaSuccess;
    DeviceScope scope(device_);
    return cudaStreamWaitEvent(consumer, event_, 0);
  }
  // True when the recorded work has finished (or nothing was recorded); never blocks. Errors count as done
  // (the work will never finish; what waits for it must not wait forever) and are cleared.
  bool done() const {
    if (event_ == nullptr) return true;
    const cudaError_t status = cudaEventQuery(event_);
    if (status == cudaErrorNotReady) return false;
    if (status != cudaSuccess) cudaGetLastError();
    return true;
  }
  // Block the calling thread until the recorded work has finished.
  cudaError_t synchronize() const { return event_ == nullptr ? cudaSuccess : cudaEventSynchronize(event_); }

 private:
  void reset() {
    if (event_ != nullptr) {
      DeviceScope scope(device_);
      cudaEventDestroy(event_);  // CUDA releases it once the recorded work completes
      event_ = nullptr;
    }
  }
  cudaEvent_t event_ = nullptr;
  int device_ = 0;
};

// One device allocation, stream-ordered: made on the launch stream, released after its ReadyEvent on
// release_stream(). Shared (std::shared_ptr) by a DeviceArray and every DLPack capsule exported from it.
class StreamBuffer {
 public:
  // Allocate `bytes` on `device`, ordered on `stream`. On failure returns the error and leaves `out` empty.
  static cudaError_t allocate(std::size_t bytes, int device, cudaStream_t stream, std::shared_ptr<StreamBuffer>* out) {
    DeviceScope scope(device);
    auto buffer = std::shared_ptr<StreamBuffer>(new StreamBuffer());
    buffer->bytes_ = bytes;
    buffer->device_ = device;
    buffer->pooled_ = memory_pools_supported(device);
    const cudaError_t status =
        buffer->pooled_ ? cudaMallocAsync(&buffer->data_, bytes, stream) : cudaMalloc(&buffer->data_, bytes);
    if (status != cudaSuccess) {
      buffer->data_ = nullptr;
      return status;
    }
    *out = std::move(buffer);
    return cudaSuccess;
  }
  ~StreamBuffer() {
    if (data_ == nullptr) return;
    DeviceScope scope(device_);
    // A buffer handed to another library (DLPack / __cuda_array_interface__) may still be read by work that library
    // queued on its own streams, which our completion event does not cover: free it with cudaFree, which waits for
    // the whole device (as before stream-ordered allocation), never with the stream-ordered release.
    cudaStream_t release =
        pooled_ && ready_ != nullptr && !shared_.load(std::memory_order_acquire) ? release_stream(device_) : nullptr;
    if (release != nullptr && ready_->order_before(release) == cudaSuccess &&
        cudaFreeAsync(data_, release) == cudaSuccess) {
      return;  // freed once the producing work is done; nothing blocks here
    }
    cudaGetLastError();
    // No pools, no event (the launch never got recorded) or an error above: cudaFree waits for the device.
    cudaFree(data_);
    cudaGetLastError();
  }
  StreamBuffer(const StreamBuffer&) = delete;
  StreamBuffer& operator=(const StreamBuffer&) = delete;

  void* data() const { return data_; }
  std::size_t bytes() const { return bytes_; }
  int device() const { return device_; }
  bool pooled() const { return pooled_; }
  // The event recorded after the work that writes the buffer: consumers and the release wait for it.
  void set_ready(std::shared_ptr<ReadyEvent> event) { ready_ = std::move(event); }
  const std::shared_ptr<ReadyEvent>& ready() const { return ready_; }
  // Exported to another library: released with a device-wide cudaFree instead of cudaFreeAsync.
  void mark_shared() { shared_.store(true, std::memory_order_release); }
  bool shared() const { return shared_.load(std::memory_order_acquire); }

 private:
  StreamBuffer() = default;
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
  int device_ = 0;
  bool pooled_ = false;
  std::atomic<bool> shared_{false};
  std::shared_ptr<ReadyEvent> ready_;
};

// Objects kept alive until the work recorded in their event has completed. `Payload` is destroyed outside the
// lock (it may run arbitrary code, e.g. a Python destructor that calls back into an op).
template <class Payload>
class DeferredRelease {
 public:
  void keep_until(std::shared_ptr<ReadyEvent> event, Payload payload) {
    std::lock_guard<std::mutex> lock(mutex_);
    entries_.emplace_back(std::move(event), std::move(payload));
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
      for (Entry& entry : entries_) {
        if (entry.first == nullptr || entry.first->done()) {
          finished.push_back(std::move(entry));
        } else {
          keep.push_back(std::move(entry));
        }
      }
      entries_.swap(keep);
      pending = entries_.size();
    }
    std::exception_ptr first_error;
    for (Entry& entry : finished) {
      try {
        visit(entry.second);
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
    for (const Entry& entry : entries_) events.push_back(entry.first);
    return events;
  }
  std::size_t size() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return entries_.size();
  }

 private:
  using Entry = std::pair<std::shared_ptr<ReadyEvent>, Payload>;
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
