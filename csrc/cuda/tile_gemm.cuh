// Shared-memory tile GEMM pieces for the dense CUDA ops (similarity, relation_descriptor): no cuBLAS.
// A block of kThreads threads computes a kTile x kTile tile of C = A . B^T (A [M, K], B [N, K], K
// contiguous), each thread a 4 x 4 sub-tile, stepping K by kDepth through shared memory, fp32 accumulate.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace zsseg::dense_cuda {

constexpr int kTile = 64;
constexpr int kDepth = 16;
constexpr int kThreads = 256;  // 16 x 16 threads, 4 x 4 outputs each
constexpr int kPad = 4;        // keeps rows 16-byte aligned and spreads banks

__device__ __forceinline__ float to_float(float v) {
  return v;
}
__device__ __forceinline__ float to_float(__half v) {
  return __half2float(v);
}
template <class T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half_rn(v);
}

struct TilePair {
  float a[kDepth][kTile + kPad];  // a[k][row of A]
  float b[kDepth][kTile + kPad];  // b[k][row of B]
};

// tile[k][r] = X[row0 + r, k0 + k] * k_scale[k0 + k] (k_scale optional), zero outside [rows, depth).
template <class T>
__device__ __forceinline__ void load_tile(float (*tile)[kTile + kPad], const T* x, std::int64_t ld, std::int64_t rows,
                                          std::int64_t row0, std::int64_t depth, std::int64_t k0, const T* k_scale) {
  for (int e = threadIdx.x; e < kTile * kDepth; e += kThreads) {
    const int r = e / kDepth, k = e % kDepth;
    const std::int64_t row = row0 + r, col = k0 + k;
    float value = 0.0f;
    if (row < rows && col < depth) {
      value = to_float(x[row * ld + col]);
      if (k_scale != nullptr) value *= to_float(k_scale[col]);
    }
    tile[k][r] = value;
  }
}

// acc[i][j] += sum_k a[k][ty * 4 + i] * b[k][tx * 4 + j].
__device__ __forceinline__ void multiply_tiles(const TilePair& s, float (&acc)[4][4], int ty, int tx) {
#pragma unroll
  for (int k = 0; k < kDepth; ++k) {
    float a[4], b[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      a[i] = s.a[k][ty * 4 + i];
      b[i] = s.b[k][tx * 4 + i];
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
#pragma unroll
      for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
  }
}

// Threads 0..kTile-1 add the squares of A-tile row r, threads kTile..2*kTile-1 those of B-tile row r.
__device__ __forceinline__ void accumulate_row_squares(const TilePair& s, float* a_squares, float* b_squares) {
  const int t = threadIdx.x;
  if (t >= 2 * kTile) return;
  const bool is_a = t < kTile;
  const int r = is_a ? t : t - kTile;
  float sum = 0.0f;
#pragma unroll
  for (int k = 0; k < kDepth; ++k) {
    const float v = is_a ? s.a[k][r] : s.b[k][r];
    sum = fmaf(v, v, sum);
  }
  (is_a ? a_squares : b_squares)[r] += sum;
}

inline unsigned int grid_dim_capped(std::int64_t tiles) {
  return static_cast<unsigned int>(tiles < 65535 ? tiles : 65535);
}

}  // namespace zsseg::dense_cuda
