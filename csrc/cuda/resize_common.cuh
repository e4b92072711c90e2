// Small helpers shared by the CUDA upsample and segment kernels.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

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
