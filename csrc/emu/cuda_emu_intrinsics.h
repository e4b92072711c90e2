// Device intrinsics and vector types of the CUDA kernels, for the host emulation (cuda_emu.h). Until cuda_emu.h
// includes this file, a kernel source that needs them includes it behind `#if defined(ZS_CUDA_EMULATION)`
// (the include guard makes both orders safe).
//
// What is modelled: the values (fast-math intrinsics are computed exactly here: the device's approximations are
// within the documented ulp bounds, which the tests' tolerances cover), alignment-free vector loads (a float4
// load from an address that is not 16-byte aligned is a fault on a GPU: the kernels only issue them after an
// alignment check, and `zs_emu::vector_load_alignment_checked` asserts that here), and cp.async as a plain copy
// (its wait is then a no-op: the data is there at once, which a GPU also guarantees after the wait).
#pragma once
#ifndef ZS_CUDA_EMU_INTRINSICS_H
#define ZS_CUDA_EMU_INTRINSICS_H
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

// ---- vector types ------------------------------------------------------------------------------------------------
struct alignas(8) float2 {
  float x, y;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
inline float2 make_float2(float x, float y) {
  return float2{x, y};
}
inline float4 make_float4(float x, float y, float z, float w) {
  return float4{x, y, z, w};
}

namespace zs_emu {
// A vector load from an address that is not aligned to the vector's size faults on a GPU (misaligned address).
template <typename V>
inline const V* vector_load_alignment_checked(const V* p) {
  if (reinterpret_cast<std::uintptr_t>(p) % alignof(V) != 0) {
    std::fprintf(stderr, "zs_emu: misaligned %zu-byte vector load at %p (a GPU faults here)\n", sizeof(V),
                 static_cast<const void*>(p));
    std::abort();
  }
  return p;
}
}  // namespace zs_emu

inline float4 __ldg(const float4* p) {
  return *zs_emu::vector_load_alignment_checked(p);
}
inline float2 __ldg(const float2* p) {
  return *zs_emu::vector_load_alignment_checked(p);
}

// ---- fast-math and bit intrinsics ---------------------------------------------------------------------------------
// __expf: ex2.approx on a GPU (2 + 1.17|x| ulp); exact here.
inline float __expf(float x) {
  return std::exp(x);
}
// __fdividef: x * rcp.approx(y) on a GPU (2 ulp; 0 for 2^126 < |y| < 2^128); IEEE division here.
inline float __fdividef(float x, float y) {
  return x / y;
}
inline int __popc(unsigned int x) {
  return __builtin_popcount(x);
}
inline int __float_as_int(float v) {
  int bits;
  std::memcpy(&bits, &v, sizeof(bits));
  return bits;
}

// ---- cp.async (sm_80+) stand-ins -----------------------------------------------------------------------------------
// __pipeline_memcpy_async(dst_shared, src_global, bytes) copies at once; commit/wait are no-ops.
inline void __pipeline_memcpy_async(void* dst, const void* src, std::size_t bytes, std::size_t /*zero_fill*/ = 0) {
  std::memcpy(dst, src, bytes);
}
inline void __pipeline_commit() {}
inline void __pipeline_wait_prior(std::size_t /*prior*/) {}

#endif  // ZS_CUDA_EMU_INTRINSICS_H
