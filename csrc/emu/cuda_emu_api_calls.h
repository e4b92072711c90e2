// Counts of the emulated CUDA runtime's API calls, by function name, and of kernel launches, by kernel: what a test
// reads to prove how many calls, allocations, event creations, synchronisations and launches a frame costs the host
// (python_tests/runtime/test_frame_api_calls.py; _C._emulation.api_calls()). A GPU profiler (nsys, torch.profiler)
// counts the same calls on a device; here they are counted where they are made, so a test can fail on one extra
// cudaEventCreate per frame without a GPU.
//
// A call is counted once, at the outermost runtime function the caller entered on its thread: an API function the
// emulation implements with another (cudaEventCreate -> cudaEventCreateWithFlags, cudaEventRecordWithFlags ->
// cudaEventRecord) counts as the one the caller made. Kernel launches count as "cudaLaunchKernel" and as
// "kernel <name>" (the name ZS_LAUNCH gives). cudaGetLastError / cudaGetErrorString are not counted (host bookkeeping
// with no device counterpart).
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>

namespace zs_emu {

struct ApiCounter {
  std::string name;
  std::atomic<std::uint64_t> calls{0};
};

struct ApiRegistry {
  std::mutex mutex;                 // guards the two containers (registration, lookup by name)
  std::deque<ApiCounter> counters;  // stable addresses: each API function keeps a reference to its own
  std::map<std::string, ApiCounter*> by_name;
};

inline ApiRegistry& api_registry() {
  static auto* registry = new ApiRegistry();  // never destroyed: stream workers may still count at exit
  return *registry;
}

// The counter of `name`, made on first use.
inline ApiCounter& api_counter(const std::string& name) {
  ApiRegistry& r = api_registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  auto found = r.by_name.find(name);
  if (found != r.by_name.end()) return *found->second;
  r.counters.emplace_back();
  ApiCounter& counter = r.counters.back();
  counter.name = name;
  r.by_name[name] = &counter;
  return counter;
}

inline int& api_depth() {
  static thread_local int depth = 0;
  return depth;
}

// One API call for its scope: counted when no other counted call of this thread encloses it.
class ApiCall {
 public:
  explicit ApiCall(ApiCounter& counter) {
    if (api_depth()++ == 0) counter.calls.fetch_add(1, std::memory_order_relaxed);
  }
  ~ApiCall() { --api_depth(); }
  ApiCall(const ApiCall&) = delete;
  ApiCall& operator=(const ApiCall&) = delete;
};

// Every counter with a non-zero count, by name.
inline std::map<std::string, std::uint64_t> api_calls() {
  ApiRegistry& r = api_registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  std::map<std::string, std::uint64_t> out;
  for (const ApiCounter& c : r.counters) {
    const std::uint64_t n = c.calls.load(std::memory_order_relaxed);
    if (n != 0) out[c.name] = n;
  }
  return out;
}

inline void reset_api_calls() {
  ApiRegistry& r = api_registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  for (ApiCounter& c : r.counters) c.calls.store(0, std::memory_order_relaxed);
}

// A kernel launch: "cudaLaunchKernel" and "kernel <name>".
inline void count_kernel_launch(const char* name) {
  static ApiCounter& launches = api_counter("cudaLaunchKernel");
  ApiCall call(launches);
  if (api_depth() == 1) api_counter(std::string("kernel ") + name).calls.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace zs_emu

// The first statement of every counted runtime API function.
#define ZS_EMU_API()                                                                  \
  static ::zs_emu::ApiCounter& zs_emu_api_counter_ = ::zs_emu::api_counter(__func__); \
  ::zs_emu::ApiCall zs_emu_api_call_(zs_emu_api_counter_)
