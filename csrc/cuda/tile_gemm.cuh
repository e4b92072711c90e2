// Shared-memory tile GEMM pieces for the dense CUDA ops (similarity, relation_descriptor): no cuBLAS.
// A block of kThreads threads computes a Tile x Tile tile of C = A . B^T (A [M, K], B [N, K], K contiguous), each
// thread a (Tile / 16) x (Tile / 16) sub-tile, stepping K by kDepth through shared memory, fp32 accumulate.
// Two tile sizes: 64 (4 x 4 per thread: more reuse per load) for large outputs, 32 (2 x 2) when 64-tiles would
// leave most of the GPU idle (prefer_small_tiles). Both sum every dot product in the same order (k ascending, one
// fmaf per k), so the choice never changes a result.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "launch.cuh"
#include "zsseg/similarity.h"

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

template <int Tile = kTile>
struct TilePair {
  float a[kDepth][Tile + kPad];  // a[k][row of A]
  float b[kDepth][Tile + kPad];  // b[k][row of B]
};

// Outputs per thread along each side of a Tile x Tile block tile (16 x 16 threads). A constant, not a constexpr
// function: nvcc refuses calls of __host__ constexpr functions from kernels.
template <int Tile>
struct PerThread {
  static constexpr int value = Tile / 16;
};

// Per-thread share of one Tile x kDepth slab: kPer consecutive k of one row (4 for 64-tiles, 2 for 32-tiles), a
// compile-time count, so the loads are unrolled into registers and issued as one batch (a run-time trip count,
// Tile * kDepth / kThreads, made nvcc emit a remainder loop that issued one load at a time: the first H100 run's
// 32-tile kernels). Thread t owns row t / (kDepth / kPer) and k offset (t % (kDepth / kPer)) * kPer.
template <int Tile>
struct Slab {
  static constexpr int kPer = Tile * kDepth / kThreads;
  static constexpr int kLanesPerRow = kDepth / kPer;
  static_assert(kPer * kThreads == Tile * kDepth && (kPer == 2 || kPer == 4), "tile / thread shape");
};

// The raw values of one slab (loaded for the next K step while the current one is multiplied).
// Raw element type T: converting fp16 right after its load would make the next load wait for it.
template <int Tile, class T>
struct Fragment {
  T x[Slab<Tile>::kPer];      // X[row, k0 + kk + i], 0 outside [rows, depth)
  T scale[Slab<Tile>::kPer];  // k_scale[k0 + kk + i] (1 without one)
};

// Vector loads of kPer floats (float4 / float2) where the row start is aligned: X 16- (8-) byte aligned and ld a
// multiple of kPer; otherwise (or for fp16, or at the depth's edge) scalar loads, still unrolled.
template <int Tile, class T>
__device__ __forceinline__ bool vector_loads_ok(const T* x, std::int64_t ld) {
  constexpr int kPer = Slab<Tile>::kPer;
  return sizeof(T) == 4 && reinterpret_cast<std::uintptr_t>(x) % (kPer * sizeof(T)) == 0 && ld % kPer == 0;
}

template <int Tile, class T>
__device__ __forceinline__ void load_fragment(Fragment<Tile, T>& f, const T* __restrict__ x, std::int64_t ld,
                                              std::int64_t rows, std::int64_t row0, std::int64_t depth, std::int64_t k0,
                                              const T* __restrict__ k_scale, bool vector_ok) {
  constexpr int kPer = Slab<Tile>::kPer;
  const int r = static_cast<int>(threadIdx.x) / Slab<Tile>::kLanesPerRow;
  const int kk = (static_cast<int>(threadIdx.x) % Slab<Tile>::kLanesPerRow) * kPer;
  const std::int64_t row = row0 + r, col = k0 + kk;
  const bool full = row < rows && col + kPer <= depth;
  if constexpr (sizeof(T) == 4) {
    if (full && vector_ok) {
      const float* at = reinterpret_cast<const float*>(x + row * ld + col);
      if constexpr (kPer == 4) {
        const float4 v = __ldg(reinterpret_cast<const float4*>(at));
        f.x[0] = from_float<T>(v.x), f.x[1] = from_float<T>(v.y), f.x[2] = from_float<T>(v.z),
        f.x[3] = from_float<T>(v.w);
      } else {
        const float2 v = __ldg(reinterpret_cast<const float2*>(at));
        f.x[0] = from_float<T>(v.x), f.x[1] = from_float<T>(v.y);
      }
    } else {
#pragma unroll
      for (int i = 0; i < kPer; ++i)
        f.x[i] = row < rows && col + i < depth ? x[row * ld + col + i] : from_float<T>(0.0f);
    }
  } else {
#pragma unroll
    for (int i = 0; i < kPer; ++i) f.x[i] = row < rows && col + i < depth ? x[row * ld + col + i] : from_float<T>(0.0f);
  }
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    f.scale[i] = k_scale != nullptr && col + i < depth ? k_scale[col + i] : from_float<T>(1.0f);
  }
}

// tile[k][r] = X[row0 + r, k0 + k] * k_scale[k0 + k] * row_scale[r] (both optional; row_scale indexes the tile's
// rows), zero outside [rows, depth): the fragment's values, scaled in the same order as before the rework.
template <int Tile, class T>
__device__ __forceinline__ void store_fragment(float (*tile)[Tile + kPad], const Fragment<Tile, T>& f, bool has_k_scale,
                                               const float* row_scale = nullptr) {
  constexpr int kPer = Slab<Tile>::kPer;
  const int r = static_cast<int>(threadIdx.x) / Slab<Tile>::kLanesPerRow;
  const int kk = (static_cast<int>(threadIdx.x) % Slab<Tile>::kLanesPerRow) * kPer;
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    float value = to_float(f.x[i]);
    if (has_k_scale) value *= to_float(f.scale[i]);
    if (row_scale != nullptr) value *= row_scale[r];
    tile[kk + i][r] = value;
  }
}

// acc[i][j] += sum_k a[k][ty * P + i] * b[k][tx * P + j], P = PerThread<Tile>::value.
template <int Tile, int P = PerThread<Tile>::value>
__device__ __forceinline__ void multiply_tiles(const TilePair<Tile>& s, float (&acc)[P][P], int ty, int tx) {
#pragma unroll
  for (int k = 0; k < kDepth; ++k) {
    float a[P], b[P];
#pragma unroll
    for (int i = 0; i < P; ++i) {
      a[i] = s.a[k][ty * P + i];
      b[i] = s.b[k][tx * P + i];
    }
#pragma unroll
    for (int i = 0; i < P; ++i) {
#pragma unroll
      for (int j = 0; j < P; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
  }
}

// The K loop of a block's tile product, acc += A_slabs . B_slabs^T over k in [0, depth), each slab prefetched into
// registers one K step ahead (its loads are in flight while the previous slab is multiplied):
//   load_slabs(fa, fb, k0)  loads slab [k0, k0 + kDepth) of A into fa and of B into fb (Fragment<Tile, T>);
//   store_slabs(fa, fb)     stores them into tiles.a / tiles.b (store_fragment, with the kernel's scaling).
template <int Tile, class T, int P, class LoadSlabs, class StoreSlabs>
__device__ __forceinline__ void prefetched_k_loop(TilePair<Tile>& tiles, float (&acc)[P][P], std::int64_t depth, int ty,
                                                  int tx, const LoadSlabs& load_slabs, const StoreSlabs& store_slabs) {
  Fragment<Tile, T> fa, fb;
  load_slabs(fa, fb, 0);
  for (std::int64_t k0 = 0; k0 < depth; k0 += kDepth) {
    store_slabs(fa, fb);
    __syncthreads();
    if (k0 + kDepth < depth) load_slabs(fa, fb, k0 + kDepth);
    multiply_tiles<Tile>(tiles, acc, ty, tx);
    __syncthreads();
  }
}

// The thread's results of the tile at (row0, col0): write(row, col, acc[i][j]) for row = row0 + ty * P + i < rows and
// col = col0 + tx * P + j < cols.
template <int P, class Write>
__device__ __forceinline__ void for_each_result(const float (&acc)[P][P], std::int64_t row0, std::int64_t rows,
                                                std::int64_t col0, std::int64_t cols, int ty, int tx,
                                                const Write& write) {
  for (int i = 0; i < P; ++i) {
    const std::int64_t row = row0 + ty * P + i;
    if (row >= rows) break;
    for (int j = 0; j < P; ++j) {
      const std::int64_t col = col0 + tx * P + j;
      if (col >= cols) break;
      write(row, col, acc[i][j]);
    }
  }
}

// The warp's max / sum of `v` over its 32 lanes (butterfly: every lane gets it).
__device__ __forceinline__ int warp_max(int v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) {
    const int other = __shfl_xor_sync(0xffffffffu, v, offset);
    v = other > v ? other : v;
  }
  return v;
}
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// out[r] = 1 / max(||row r||, eps) for the `rows` rows of x [rows, dim] (row r at x + r * dim; rows r >= valid get
// 0), computed by all kThreads threads of the block together (every thread must call it; no barrier inside): warp w
// takes rows w, w + kThreads / 32, ...; its lanes stride over the row (coalesced loads) and combine by butterfly
// shuffles. The largest magnitude is the largest of the values' bits without their sign (as integers they order as
// the magnitudes do, a NaN above infinity: one maximum finds both). No fp32 overflow or underflow: it sets a power
// of two 2^-e that brings it into [0.5, 1) (e from frexpf, kept in the normal range), the row times 2^-e is exact,
// its squares are summed, and the norm is sqrt(sum) 2^e -- torch's / the CPU's (which sums in double) up to fp32
// rounding. One reciprocal per row (the IEEE 1 / norm), none per element. NaN in the row gives NaN, an infinite
// entry (or a norm beyond fp32) 0 (the CPU's 1 / inf), an all-zero row 1 / eps.
template <class T>
__device__ __forceinline__ void block_inverse_row_norms(const T* __restrict__ x, std::int64_t dim, std::int64_t valid,
                                                        int rows, float* out) {
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  for (int r = warp; r < rows; r += kThreads / 32) {  // r is the same for the whole warp: uniform branches below
    float inverse = 0.0f;
    if (r < valid) {
      const T* row = x + r * dim;
      int magnitude = 0;  // the bits of |x| (sign cleared)
      for (std::int64_t d = lane; d < dim; d += 32) {
        const int bits = __float_as_int(to_float(row[d])) & 0x7fffffff;
        magnitude = bits > magnitude ? bits : magnitude;
      }
      magnitude = warp_max(magnitude);
      const float largest = __int_as_float(magnitude);
      if (magnitude > 0x7f800000) {  // a NaN
        inverse = __int_as_float(0x7fc00000);
      } else if (largest == 0.0f) {
        inverse = 1.0f / kNormEps;
      } else if (!(largest > 3.0e38f)) {  // else an infinite entry (or a norm beyond fp32): 0
        int e = 0;
        frexpf(largest, &e);  // largest = m 2^e, m in [0.5, 1)
        e = e < -126 ? -126 : (e > 126 ? 126 : e);
        const float down = ldexpf(1.0f, -e), up = ldexpf(1.0f, e);  // normal powers of two: exact products
        float sum = 0.0f;
        for (std::int64_t d = lane; d < dim; d += 32) {
          const float v = to_float(row[d]) * down;
          sum = fmaf(v, v, sum);
        }
        const float norm = sqrtf(warp_sum(sum)) * up;
        inverse = 1.0f / (norm > kNormEps ? norm : kNormEps);
      }
    }
    if (lane == 0) out[r] = inverse;
  }
}

inline unsigned int grid_dim_capped(std::int64_t tiles) {
  return static_cast<unsigned int>(tiles < ZS_CUDA_GRID_CAP ? tiles : ZS_CUDA_GRID_CAP);
}

// True when a grid of `blocks_with_64` 64-tiles would not give every multiprocessor of the current device two
// blocks: then 32-tiles (four times the blocks) keep the GPU busy. On the first H100 run similarity (C=171,
// N=1024) had 48 blocks and relation_descriptor (C=171, 512 outputs, one image) 24 blocks for 132 SMs: most SMs
// idle, 2.2x and 2.6x torch's time. An unknown SM count keeps the 64-tiles.
inline bool prefer_small_tiles(std::int64_t blocks_with_64) {
  int device = 0;
  int multiprocessors = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&multiprocessors, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return blocks_with_64 < 2 * static_cast<std::int64_t>(multiprocessors);
}

}  // namespace zsseg::dense_cuda
