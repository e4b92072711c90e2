// Small helpers shared by the CUDA upsample and segment kernels.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>

#include "launch.cuh"
#include "zsseg/bilinear.h"

namespace zsseg {
namespace cuda_detail {

constexpr int kThreadsPerBlock = 256;

__device__ __forceinline__ float load_as_float(const float* p) {
  return __ldg(p);
}
__device__ __forceinline__ float load_as_float(const __half* p) {
  return __half2float(p[0]);
}
__device__ __forceinline__ void store_from_float(float* p, float v) {
  *p = v;
}
__device__ __forceinline__ void store_from_float(__half* p, float v) {
  *p = __float2half_rn(v);
}

// V consecutive values, each rounded to T, in one V * sizeof(T)-byte store (16 bytes for 4 floats, 8 for 4 halves):
// `p` must be aligned to it (the launcher checks; the emulation aborts on a misaligned one, as a GPU faults).
template <typename T, int V>
struct alignas(V * sizeof(T)) Pack {
  T v[V];
};
template <typename T, int V>
__device__ __forceinline__ void store_pack(T* p, const float (&v)[V]) {
  if constexpr (V == 1) {
    store_from_float(p, v[0]);
  } else {
    Pack<T, V> pack;
#pragma unroll
    for (int j = 0; j < V; ++j) store_from_float(&pack.v[j], v[j]);
#if defined(ZS_CUDA_EMULATION)
    std::memcpy(zs_emu::vector_store_alignment_checked(reinterpret_cast<Pack<T, V>*>(p)), &pack, sizeof(pack));
#else
    *reinterpret_cast<Pack<T, V>*>(p) = pack;
#endif
  }
}

inline int blocks_for(int64_t work_items) {
  int64_t blocks = (work_items + kThreadsPerBlock - 1) / kThreadsPerBlock;
  if (blocks > ZS_CUDA_GRID_CAP) blocks = ZS_CUDA_GRID_CAP;  // grid-stride loops cover the rest
  return static_cast<int>(blocks < 1 ? 1 : blocks);
}

// The four neighbours of output pixel (ty, tx) in one [in_height, in_width] plane at the crop origin.
template <typename T>
__device__ __forceinline__ float bilinear_at(const T* plane_at_crop, int64_t in_width, const BilinearTap& ty,
                                             const BilinearTap& tx) {
  const T* row0 = plane_at_crop + static_cast<int64_t>(ty.i0) * in_width;
  const T* row1 = plane_at_crop + static_cast<int64_t>(ty.i1) * in_width;
  return blend4(load_as_float(row0 + tx.i0), load_as_float(row0 + tx.i1), load_as_float(row1 + tx.i0),
                load_as_float(row1 + tx.i1), ty, tx);
}

}  // namespace cuda_detail
}  // namespace zsseg
