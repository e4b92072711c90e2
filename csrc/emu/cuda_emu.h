// A small host emulation of the CUDA execution model, so that the kernel bodies of csrc/cuda/ compile with the
// host compiler and run in CI (under AddressSanitizer and UBSan) although no GPU is there.
//
// What it models:
// * __global__ / __device__ / __host__ / __forceinline__ / __launch_bounds__ are plain host functions.
// * A launch (ZS_LAUNCH in csrc/cuda/launch.cuh) runs the blocks of the grid one after another; the threads of
//   a block are fibers, each warp's on its own host thread (cuda_emu_block.h), so __syncthreads() is a real
//   barrier between the warps and a data race or a missing barrier shows up as a wrong result (or a sanitizer
//   report). Every barrier arrival is checked: threads of one block reaching different barriers (one at
//   __syncthreads, another at the end of the kernel) abort with a message -- divergent __syncthreads is undefined
//   behaviour on a GPU. Under a serial
//   schedule (cuda_emu_block.h: BlockScheduleScope) the threads run one at a time between barriers, in thread
//   order or in reverse: deterministic, so a missing barrier gives a result that depends on the order.
// * __shfl_xor_sync and __shfl_sync of full warps exchange the lanes' values (cuda_emu_block.h).
// * blockIdx / threadIdx / blockDim / gridDim are thread-local, set for each fiber when it runs.
// * __shared__ variables are function-local statics: one instance, used by one block at a time (blocks do not
//   overlap), so it behaves as per-block shared memory.
// * The launch configuration is checked as the driver does (block <= 1024 threads, grid.y/z <= 65535, no zero
//   dimension); a bad one is reported by cudaGetLastError() as cudaErrorInvalidConfiguration.
// * __half is IEEE binary16 stored in 16 bits; conversions round to nearest even (the hardware's
//   __float2half_rn), through the compiler's _Float16.
// * A launch is asynchronous, as on a GPU: ZS_LAUNCH checks the configuration and copies the arguments, and the
//   grid runs later on the worker thread of its stream, when the stream reaches it (one kernel at a time across
//   streams: __shared__ memory is one static instance). The runtime API (cuda_emu_runtime.h) runs every stream
//   as an ordered queue with seeded random delays, with the legacy stream's implicit synchronisation, stream-ordered
//   pool memory, events, stream capture into graphs that run only when launched, and a happens-before race
//   detector that reports unordered accesses to the same allocation; see its header comment. A kernel's accesses
//   are its pointer arguments, and the pointers inside a struct argument through an emu_accesses overload
//   (param_accesses below; a struct carrying a tracked pointer without one is reported). An exception thrown by a
//   kernel is a device fault: reported, and sticky (cudaErrorLaunchFailure) as on a GPU.
// What it cannot model: device math functions (expf, sqrtf, fmaf contraction as compiled by nvcc), timing,
// warp scheduling, memory coherence subtleties, kernels of different streams overlapping in time, the driver.
#pragma once
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "cuda_emu_block.h"    // a block's barrier, warp shuffles and thread schedules (serial: deterministic)
#include "cuda_emu_runtime.h"  // the runtime API (streams, events, memory) the launches below are enqueued on
#include "cuda_emu_types.h"    // cudaError_t, last_error, Access: shared with the runtime API

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

inline BlockBarrier*& current_barrier() {
  static thread_local BlockBarrier* barrier = nullptr;
  return barrier;
}

constexpr const char* kSyncthreadsSite = "__syncthreads()";
constexpr const char* kKernelEndSite = "end of kernel";

// Runs `body` for every thread of every block: blocks in order, the threads of a block on fibers (cuda_emu_block.h:
// each warp on its own host thread, or one thread at a time under a serial schedule). Returns what an exception
// thrown by the body said ("" when none was thrown).
template <class Body>
struct GridRun {
  dim3 grid, block;
  const Body* body;
  BlockBarrier* barrier;
  std::vector<dim3> block_of;  // each thread's blockIdx while it is switched out (blockIdx is per host thread)
  std::mutex error_mutex;
  std::string error;

  static void lane_main(void* arg, unsigned int t) {
    GridRun& run = *static_cast<GridRun*>(arg);
    const dim3 grid_ = run.grid;
    for (unsigned int bz = 0; bz < grid_.z; ++bz) {
      for (unsigned int by = 0; by < grid_.y; ++by) {
        for (unsigned int bx = 0; bx < grid_.x; ++bx) {
          blockIdx = dim3(bx, by, bz);
          try {
            (*run.body)();
          } catch (const std::exception& e) {
            std::lock_guard<std::mutex> lock(run.error_mutex);
            run.error = e.what();
          } catch (...) {
            std::lock_guard<std::mutex> lock(run.error_mutex);
            run.error = "an exception that is not a std::exception";
          }
          run.barrier->arrive_and_wait(t, kKernelEndSite);  // shared memory is reused by the next block
        }
      }
    }
  }
  static void on_switch(void* arg, unsigned int t, bool resume) {
    GridRun& run = *static_cast<GridRun*>(arg);
    if (!resume) {
      run.block_of[t] = blockIdx;
      return;
    }
    const dim3 b = run.block;
    threadIdx = dim3(t % b.x, (t / b.x) % b.y, t / (b.x * b.y));
    blockIdx = run.block_of[t];
    blockDim = b;
    gridDim = run.grid;
    current_barrier() = run.barrier;
  }
};

template <class Body>
std::string run_grid(dim3 grid, dim3 block, const Body& body) {
  const unsigned int threads = block.x * block.y * block.z;
  BlockBarrier barrier(threads, block_schedule());
  GridRun<Body> run{grid, block, &body, &barrier, std::vector<dim3>(threads, dim3(0, 0, 0)), {}, {}};
  barrier.run(&GridRun<Body>::lane_main, &GridRun<Body>::on_switch, &run);
  current_barrier() = nullptr;
  return run.error;
}

inline bool valid_configuration(dim3 grid, dim3 block) {
  const std::uint64_t threads = static_cast<std::uint64_t>(block.x) * block.y * block.z;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || threads == 0 || threads > 1024) return false;
  if (block.z > 64 || grid.y > 65535 || grid.z > 65535 || grid.x > 2147483647u) return false;
  return true;
}

// A kernel parameter's accesses: pointers directly; a struct parameter through an overload
// `void emu_accesses(const Params&, std::vector<zs_emu::Access>&)` found by argument-dependent lookup (declared
// next to the kernel, under ZS_CUDA_EMULATION; e.g. csrc/cuda/preprocess.cu); anything else has none. A struct
// without an overload that carries a pointer the runtime tracks is reported at the launch (check_untracked_struct):
// a new struct-parameter kernel cannot go unchecked silently.
template <class T, class = void>
struct HasEmuAccesses : std::false_type {};
template <class T>
struct HasEmuAccesses<
    T, std::void_t<decltype(emu_accesses(std::declval<const T&>(), std::declval<std::vector<Access>&>()))>>
    : std::true_type {};
template <class T>
void param_accesses(const char* kernel, std::size_t index, const T& value, std::vector<Access>& out) {
  if constexpr (std::is_pointer<T>::value) {
    using Pointee = std::remove_pointer_t<T>;
    if (value != nullptr) out.push_back(Access{static_cast<const void*>(value), 0, !std::is_const<Pointee>::value});
  } else if constexpr (HasEmuAccesses<T>::value) {
    emu_accesses(value, out);
  } else if constexpr (std::is_class<T>::value) {
    static_assert(std::is_trivially_copyable<T>::value, "a kernel parameter is copied as bytes");
    check_untracked_struct(kernel, index, &value, sizeof(T));
  }
}
template <class Tuple, std::size_t... I>
void tuple_accesses(const char* kernel, const Tuple& t, std::vector<Access>& out, std::index_sequence<I...>) {
  (param_accesses(kernel, I, std::get<I>(t), out), ...);
}

// kernel<<<grid, block, 0, stream>>>(args...): the configuration is checked at once (cudaGetLastError), the
// arguments are copied now (CUDA passes them by value at the launch: a pointer captured into a graph stays that
// pointer), and the grid runs when `stream` reaches it, on the stream's worker thread.
template <class... Params, class... Args>
void launch_named(const char* name, void (*kernel)(Params...), dim3 grid, dim3 block, cudaStream_t stream,
                  Args&&... args) {
  count_kernel_launch(name);
  if (!valid_configuration(grid, block)) {
    last_error() = cudaErrorInvalidConfiguration;
    return;
  }
  using Copied = std::tuple<std::decay_t<Params>...>;
  auto copied = std::make_shared<const Copied>(std::forward<Args>(args)...);
  std::vector<Access> accesses;
  tuple_accesses(name, *copied, accesses, std::index_sequence_for<Params...>());
  const cudaError_t status = enqueue_kernel(
      stream, name,
      [name, kernel, grid, block, copied] {
        std::lock_guard<std::mutex> one_kernel_at_a_time(runtime().kernel_mutex);
        if (sticky_error() != cudaSuccess) return;  // enqueued before a fault: a faulted device runs nothing more
        const std::string error = run_grid(grid, block, [&] {
          Copied local = *copied;
          std::apply(kernel, local);
        });
        if (!error.empty()) device_fault(name, error);
      },
      std::move(accesses));
  if (status != cudaSuccess) last_error() = status;
}
template <class... Params, class... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, cudaStream_t stream, Args&&... args) {
  launch_named("kernel", kernel, grid, block, stream, std::forward<Args>(args)...);
}

}  // namespace zs_emu

namespace zs_emu {
inline unsigned int linear_thread_index() {
  return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
}
inline BlockBarrier& barrier_of_kernel(const char* call) {
  BlockBarrier* barrier = current_barrier();
  if (barrier == nullptr) {
    std::fprintf(stderr, "zs_emu: %s outside a kernel launch\n", call);
    std::abort();
  }
  return *barrier;
}
}  // namespace zs_emu

inline void __syncthreads() {
  zs_emu::barrier_of_kernel("__syncthreads()").arrive_and_wait(zs_emu::linear_thread_index(), zs_emu::kSyncthreadsSite);
}
// A full warp's butterfly shuffle (the only form the kernels use): every lane of the warp must take part with the
// full mask (a partial warp or mask aborts: not modelled).
template <class T>
inline T __shfl_xor_sync(unsigned int mask, T value, int lane_mask, int width = 32) {
  static_assert(sizeof(T) <= sizeof(std::uint64_t) && std::is_trivially_copyable<T>::value, "a register value");
  if (mask != 0xffffffffu || width != 32) {
    std::fprintf(stderr, "zs_emu: __shfl_xor_sync with mask %#x width %d (only full warps are modelled)\n", mask,
                 width);
    std::abort();
  }
  const unsigned int t = zs_emu::linear_thread_index();
  std::uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(T));
  bits = zs_emu::barrier_of_kernel("__shfl_xor_sync")
             .warp_exchange(t, bits, (t % 32) ^ static_cast<unsigned int>(lane_mask));
  std::memcpy(&value, &bits, sizeof(T));
  return value;
}

// A full warp's indexed shuffle: lane gets src_lane's value (the same model as __shfl_xor_sync).
template <class T>
inline T __shfl_sync(unsigned int mask, T value, int src_lane, int width = 32) {
  static_assert(sizeof(T) <= sizeof(std::uint64_t) && std::is_trivially_copyable<T>::value, "a register value");
  if (mask != 0xffffffffu || width != 32) {
    std::fprintf(stderr, "zs_emu: __shfl_sync with mask %#x width %d (only full warps are modelled)\n", mask, width);
    std::abort();
  }
  const unsigned int t = zs_emu::linear_thread_index();
  std::uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(T));
  bits = zs_emu::barrier_of_kernel("__shfl_sync").warp_exchange(t, bits, static_cast<unsigned int>(src_lane) & 31u);
  std::memcpy(&value, &bits, sizeof(T));
  return value;
}

// The last error of this thread, cleared; a device fault (sticky) is returned and stays.
inline cudaError_t cudaGetLastError() {
  const cudaError_t error = zs_emu::last_error();
  zs_emu::last_error() = cudaSuccess;
  const cudaError_t sticky = zs_emu::sticky_error();
  return sticky != cudaSuccess ? sticky : error;
}

#include "cuda_emu_intrinsics.h"  // NOLINT(build/include): device intrinsics beyond the basics (vector types...)
