// Helpers for the dense-op tests: deterministic random data and a GPU buffer that frees itself.
#pragma once
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#ifdef ZSSEG_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace dense_test {

inline std::vector<float> random_vector(std::size_t count, unsigned seed, float low = -1.0f, float high = 1.0f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(low, high);
  std::vector<float> values(count);
  for (float& v : values) v = dist(gen);
  return values;
}

// fp32 tolerance for a D-term dot product of O(1) values: rounding grows ~ sqrt(D) * eps * |terms|.
inline double dot_tolerance(std::int64_t dim) {
  return 1e-5 * std::sqrt(static_cast<double>(dim)) + 1e-6;
}

#ifdef ZSSEG_WITH_CUDA
template <class T>
struct GpuArray {
  T* ptr = nullptr;
  std::size_t count = 0;
  explicit GpuArray(const std::vector<T>& host) : count(host.size()) {
    cudaMalloc(&ptr, count * sizeof(T));
    cudaMemcpy(ptr, host.data(), count * sizeof(T), cudaMemcpyHostToDevice);
  }
  explicit GpuArray(std::size_t n) : count(n) { cudaMalloc(&ptr, count * sizeof(T)); }
  ~GpuArray() { cudaFree(ptr); }
  GpuArray(const GpuArray&) = delete;
  GpuArray& operator=(const GpuArray&) = delete;
  std::vector<T> to_host() const {
    std::vector<T> host(count);
    cudaMemcpy(host.data(), ptr, count * sizeof(T), cudaMemcpyDeviceToHost);
    return host;
  }
};
#endif

}  // namespace dense_test
