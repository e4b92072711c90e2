// A small host emulation of the CUDA execution model, so that the kernel bodies of csrc/cuda/ compile with the
// host compiler and run in CI (under AddressSanitizer and UBSan) although no GPU is there.
//
// What it models:
// * __global__ / __device__ / __host__ / __forceinline__ / __launch_bounds__ are plain host functions.
// * A launch (ZS_LAUNCH in csrc/cuda/launch.cuh) runs the blocks of the grid one after another; the threads of
//   a block are real host threads (one std::thread per CUDA thread), so __syncthreads() is a real barrier and a
//   data race or a missing barrier shows up as a wrong result (or a sanitizer report). Every barrier arrival is
//   checked: threads of one block reaching different barriers (one at __syncthreads, another at the end of the
//   kernel) abort with a message -- divergent __syncthreads is undefined behaviour on a GPU.
// * blockIdx / threadIdx / blockDim / gridDim are thread-local.
// * __shared__ variables are function-local statics: one instance, used by one block at a time (blocks do not
//   overlap), so it behaves as per-block shared memory.
// * The launch configuration is checked as the driver does (block <= 1024 threads, grid.y/z <= 65535, no zero
//   dimension); a bad one is reported by cudaGetLastError() as cudaErrorInvalidConfiguration.
// * __half is IEEE binary16 stored in 16 bits; conversions round to nearest even (the hardware's
//   __float2half_rn), through the compiler's _Float16.
// * The runtime calls of the binding layer's stream-ordered memory (csrc/cuda/stream_order.h): streams, events,
//   cudaMalloc / cudaMallocAsync / cudaFree / cudaFreeAsync (host memory, so the kernels can use it), device
//   attributes and cudaFuncGetAttributes. Work "runs" at once, but a test can hold a stream (zs_emu::StreamHold):
//   events recorded on it, streams made to wait for such an event, and memory freed asynchronously on such a
//   stream stay pending until the hold is released (or something synchronises with it, as a GPU would finish
//   the work). Stream and event handles are heap objects, so a use after cudaStreamDestroy / cudaEventDestroy is
//   a heap-use-after-free under AddressSanitizer. zs_emu::runtime_stats() counts what a test wants to forbid
//   (implicitly synchronising cudaMalloc/cudaFree, blocking synchronisations) and zs_emu::device_config() sets
//   what the "device" reports (device count, memory pools, a missing kernel image).
// What it cannot model: device math functions (expf, sqrtf, fmaf contraction as compiled by nvcc), timing,
// warp scheduling, memory coherence subtleties, real concurrency of streams, the driver.
#pragma once
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#define ZS_CUDA_EMULATION 1
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};
using uint3 = dim3;

inline thread_local dim3 threadIdx{0, 0, 0};
inline thread_local dim3 blockIdx{0, 0, 0};
inline thread_local dim3 blockDim{1, 1, 1};
inline thread_local dim3 gridDim{1, 1, 1};

// ---- runtime API subset ------------------------------------------------------------------------------------
enum cudaError_t : int {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidDevice = 101,
  cudaErrorNoKernelImageForDevice = 209,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorNotReady = 600,
  cudaErrorLaunchFailure = 719,
};
struct CUstream_st;
using cudaStream_t = CUstream_st*;
struct CUevent_st;
using cudaEvent_t = CUevent_st*;

// ---- fp16 ----------------------------------------------------------------------------------------------------
struct __half {
  std::uint16_t bits;
};
inline __half __float2half_rn(float v) {
  const _Float16 h = static_cast<_Float16>(v);  // IEEE round to nearest even
  __half out;
  static_assert(sizeof(h) == sizeof(out.bits), "binary16 is 16 bits");
  std::memcpy(&out.bits, &h, sizeof(h));
  return out;
}
inline float __half2float(__half v) {
  _Float16 h;
  std::memcpy(&h, &v.bits, sizeof(h));
  return static_cast<float>(h);
}

// ---- device intrinsics used by the kernels ---------------------------------------------------------------------
template <typename T>
inline T __ldg(const T* p) {
  return *p;
}
inline float __fdiv_rn(float a, float b) {
  return a / b;
}
inline float __int_as_float(int bits) {
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

namespace zs_emu {

// Largest grid dimension the launchers ask for (CUDA: 65535 on y/z, what csrc/cuda caps every dimension at).
// Tests lower it so that the grid-stride loops wrap with small inputs; restored by GridCapScope.
inline std::atomic<std::int64_t>& grid_cap_storage() {
  static std::atomic<std::int64_t> cap{65535};
  return cap;
}
inline std::int64_t grid_cap() {
  return grid_cap_storage().load();
}
struct GridCapScope {
  std::int64_t saved;
  explicit GridCapScope(std::int64_t cap) : saved(grid_cap_storage().exchange(cap)) {}
  ~GridCapScope() { grid_cap_storage().store(saved); }
  GridCapScope(const GridCapScope&) = delete;
  GridCapScope& operator=(const GridCapScope&) = delete;
};

inline cudaError_t& last_error() {
  static thread_local cudaError_t error = cudaSuccess;
  return error;
}

// Barrier of the threads of one block. Each arrival names its site (a __syncthreads or the end of the kernel);
// all threads of one phase must name the same site.
class BlockBarrier {
 public:
  explicit BlockBarrier(unsigned int threads) : threads_(threads) {}
  void arrive_and_wait(const char* site) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (arrived_ == 0) {
      site_ = site;
    } else if (site_ != site) {
      std::fprintf(stderr, "zs_emu: divergent barrier in block (%u,%u,%u): '%s' and '%s'\n", blockIdx.x, blockIdx.y,
                   blockIdx.z, site_, site);
      std::abort();
    }
    const std::uint64_t phase = phase_;
    if (++arrived_ == threads_) {
      arrived_ = 0;
      ++phase_;
      lock.unlock();
      wake_.notify_all();
      return;
    }
    wake_.wait(lock, [&] { return phase_ != phase; });
  }

 private:
  const unsigned int threads_;
  unsigned int arrived_ = 0;
  std::uint64_t phase_ = 0;
  const char* site_ = nullptr;
  std::mutex mutex_;
  std::condition_variable wake_;
};

inline BlockBarrier*& current_barrier() {
  static thread_local BlockBarrier* barrier = nullptr;
  return barrier;
}

constexpr const char* kSyncthreadsSite = "__syncthreads()";
constexpr const char* kKernelEndSite = "end of kernel";

// Runs `body` for every thread of every block: blocks in order, the threads of a block concurrently.
template <class Body>
void run_grid(dim3 grid, dim3 block, const Body& body) {
  const unsigned int threads = block.x * block.y * block.z;
  BlockBarrier barrier(threads);
  std::vector<std::thread> workers;
  workers.reserve(threads);
  std::mutex error_mutex;
  std::string error;
  for (unsigned int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      threadIdx = dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
      blockDim = block;
      gridDim = grid;
      current_barrier() = &barrier;
      for (unsigned int bz = 0; bz < grid.z; ++bz) {
        for (unsigned int by = 0; by < grid.y; ++by) {
          for (unsigned int bx = 0; bx < grid.x; ++bx) {
            blockIdx = dim3(bx, by, bz);
            try {
              body();
            } catch (const std::exception& e) {
              std::lock_guard<std::mutex> lock(error_mutex);
              error = e.what();
            }
            barrier.arrive_and_wait(kKernelEndSite);  // shared memory is reused by the next block
          }
        }
      }
      current_barrier() = nullptr;
    });
  }
  for (std::thread& w : workers) w.join();
  if (!error.empty()) {
    std::fprintf(stderr, "zs_emu: kernel threw: %s\n", error.c_str());
    last_error() = cudaErrorLaunchFailure;
  }
}

inline bool valid_configuration(dim3 grid, dim3 block) {
  const std::uint64_t threads = static_cast<std::uint64_t>(block.x) * block.y * block.z;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || threads == 0 || threads > 1024) return false;
  if (block.z > 64 || grid.y > 65535 || grid.z > 65535 || grid.x > 2147483647u) return false;
  return true;
}

// kernel<<<grid, block, 0, stream>>>(args...): arguments are copied per thread, as CUDA passes them by value.
template <class... Params, class... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, cudaStream_t /*stream: runs synchronously*/,
            Args&&... args) {
  if (!valid_configuration(grid, block)) {
    last_error() = cudaErrorInvalidConfiguration;
    return;
  }
  const std::tuple<std::decay_t<Params>...> copied(std::forward<Args>(args)...);
  run_grid(grid, block, [&] {
    std::tuple<std::decay_t<Params>...> local = copied;
    std::apply(kernel, local);
  });
}

}  // namespace zs_emu

inline void __syncthreads() {
  zs_emu::BlockBarrier* barrier = zs_emu::current_barrier();
  if (barrier == nullptr) {
    std::fprintf(stderr, "zs_emu: __syncthreads() outside a kernel launch\n");
    std::abort();
  }
  barrier->arrive_and_wait(zs_emu::kSyncthreadsSite);
}

inline cudaError_t cudaGetLastError() {
  const cudaError_t error = zs_emu::last_error();
  zs_emu::last_error() = cudaSuccess;
  return error;
}

// ---- runtime: devices, streams, events, memory (see the header comment) -------------------------------------
enum cudaDeviceAttr : int { cudaDevAttrMemoryPoolsSupported = 115 };
enum cudaMemcpyKind : int {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4
};
constexpr unsigned int cudaHostAllocDefault = 0x0;
constexpr unsigned int cudaHostAllocPortable = 0x1;
constexpr unsigned int cudaHostAllocMapped = 0x2;
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
  std::vector<cudaError_t> kernel_image;  // per device; missing entries = cudaSuccess
};
struct RuntimeStats {
  int sync_malloc = 0;     // cudaMalloc: may synchronise the device
  int sync_free = 0;       // cudaFree: synchronises the device
  int async_malloc = 0;    // cudaMallocAsync
  int async_free = 0;      // cudaFreeAsync
  int blocking_waits = 0;  // cudaEventSynchronize / cudaStreamSynchronize / cudaDeviceSynchronize
  int streams_created = 0;
  int streams_destroyed = 0;
};

struct RuntimeState {
  std::recursive_mutex mutex;
  DeviceConfig config;
  RuntimeStats stats;
  std::vector<std::pair<std::shared_ptr<Gate>, void*>> pending_frees;
  std::vector<void*> live;  // allocations not yet freed (pending frees included)
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

}  // namespace zs_emu

struct CUstream_st {
  unsigned int flags = 0;
  int device = 0;
  std::shared_ptr<zs_emu::Gate> tail;  // completion of everything enqueued so far
};
struct CUevent_st {
  unsigned int flags = 0;
  std::shared_ptr<zs_emu::Gate> gate;  // null: never recorded (counts as complete)
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
    for (std::size_t i = 0; i < rt.live.size(); ++i) {
      if (rt.live[i] == entry.second) {
        rt.live.erase(rt.live.begin() + static_cast<std::ptrdiff_t>(i));
        break;
      }
    }
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
  for (void* p : runtime().live)
    if (p == ptr) return true;
  return false;
}
inline void reset_runtime(const DeviceConfig& config = DeviceConfig()) {
  RuntimeState& rt = runtime();
  std::lock_guard<std::recursive_mutex> lock(rt.mutex);
  rt.config = config;
  rt.stats = RuntimeStats();
  current_device() = 0;
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
  }
  return "unknown error";
}

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
  *value = attr == cudaDevAttrMemoryPoolsSupported && zs_emu::device_config().memory_pools ? 1 : 0;
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

inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int flags) {
  auto* created = new CUstream_st();
  created->flags = flags;
  created->device = zs_emu::current_device();
  *stream = created;
  ++zs_emu::runtime_stats().streams_created;
  return cudaSuccess;
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
  ++zs_emu::runtime_stats().blocking_waits;
  auto& tail = zs_emu::stream_of(stream).tail;
  if (tail) tail->force();
  zs_emu::collect_frees();
  return cudaSuccess;
}
inline cudaError_t cudaDeviceSynchronize() {
  ++zs_emu::runtime_stats().blocking_waits;
  std::lock_guard<std::recursive_mutex> lock(zs_emu::runtime().mutex);
  for (auto& entry : zs_emu::runtime().pending_frees)
    if (entry.first) entry.first->force();
  auto& tail = zs_emu::legacy_stream().tail;
  if (tail) tail->force();
  zs_emu::collect_frees();
  return cudaSuccess;
}

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
  event->gate = zs_emu::stream_of(stream).tail;
  if (!event->gate) event->gate = std::make_shared<zs_emu::Gate>();
  return cudaSuccess;
}
inline cudaError_t cudaEventQuery(cudaEvent_t event) {
  if (event == nullptr) return zs_emu::last_error() = cudaErrorInvalidResourceHandle;
  return !event->gate || event->gate->done() ? cudaSuccess : cudaErrorNotReady;
}
inline cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  if (event == nullptr) return zs_emu::last_error() = cudaErrorInvalidResourceHandle;
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

inline cudaError_t zs_emu_allocate(void** ptr, std::size_t bytes) {
  *ptr = std::malloc(bytes == 0 ? 1 : bytes);
  if (*ptr == nullptr) return zs_emu::last_error() = cudaErrorMemoryAllocation;
  std::lock_guard<std::recursive_mutex> lock(zs_emu::runtime().mutex);
  zs_emu::runtime().live.push_back(*ptr);
  return cudaSuccess;
}
inline cudaError_t cudaMalloc(void** ptr, std::size_t bytes) {
  ++zs_emu::runtime_stats().sync_malloc;
  return zs_emu_allocate(ptr, bytes);
}
inline cudaError_t cudaMallocAsync(void** ptr, std::size_t bytes, cudaStream_t /*stream*/) {
  if (!zs_emu::device_config().memory_pools) return zs_emu::last_error() = cudaErrorInvalidValue;
  ++zs_emu::runtime_stats().async_malloc;
  return zs_emu_allocate(ptr, bytes);
}
inline cudaError_t cudaFree(void* ptr) {
  ++zs_emu::runtime_stats().sync_free;
  if (ptr == nullptr) return cudaSuccess;
  cudaDeviceSynchronize();                   // cudaFree waits for the device
  --zs_emu::runtime_stats().blocking_waits;  // counted as sync_free, not as an explicit wait
  std::lock_guard<std::recursive_mutex> lock(zs_emu::runtime().mutex);
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
// Page-locked host memory: plain host memory here (the emulated device reads and writes host memory anyway).
inline cudaError_t cudaHostAlloc(void** ptr, std::size_t bytes, unsigned int /*flags*/) {
  *ptr = std::malloc(bytes == 0 ? 1 : bytes);
  return *ptr == nullptr ? (zs_emu::last_error() = cudaErrorMemoryAllocation) : cudaSuccess;
}
inline cudaError_t cudaFreeHost(void* ptr) {
  std::free(ptr);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind /*kind*/) {
  std::memcpy(dst, src, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind /*kind*/,
                                   cudaStream_t /*stream*/ = nullptr) {
  std::memcpy(dst, src, bytes);
  return cudaSuccess;
}
