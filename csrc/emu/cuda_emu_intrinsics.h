// Device intrinsics and vector types of the CUDA kernels, for the host emulation (cuda_emu.h). Until cuda_emu.h
// includes this file, a kernel source that needs them includes it behind `#if defined(ZS_CUDA_EMULATION)`
// (the include guard makes both orders safe).
//
// What is modelled: the values (fast-math intrinsics are computed exactly here: the device's approximations are
// within the documented ulp bounds, which the tests' tolerances cover), alignment-free vector loads (a float4
// load from an address that is not 16-byte aligned is a fault on a GPU: the kernels only issue them after an
// alignment check, and `zs_emu::vector_load_alignment_checked` asserts that here; stores likewise), cp.async as a
// plain copy (its wait is then a no-op: the data is there at once, which a GPU also guarantees after the wait), and
// the warp-level tensor-core instructions the kernels use (mma.sync m16n8k16 f16 and m16n8k8 tf32;
// csrc/cuda/mma.cuh has their device side): each lane's fragment registers as the PTX ISA lays them
// out, exchanged across the full warp (a lane's result is made from the registers of the lanes that hold its row of
// A and its column of B, so a kernel that puts a value in the wrong register or lane computes a wrong result here as
// on a GPU). The arithmetic is exact products summed in double and rounded once to fp32; a GPU truncates within
// its fp32 accumulation (a few ulp per instruction), which the tests' tolerances and the kernels' design cover.
#pragma once
#ifndef ZS_CUDA_EMU_INTRINSICS_H
#define ZS_CUDA_EMU_INTRINSICS_H
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

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
// The store twin of vector_load_alignment_checked (a misaligned vector store faults on a GPU as well).
template <typename V>
inline V* vector_store_alignment_checked(V* p) {
  if (reinterpret_cast<std::uintptr_t>(p) % alignof(V) != 0) {
    std::fprintf(stderr, "zs_emu: misaligned %zu-byte vector store at %p (a GPU faults here)\n", sizeof(V),
                 static_cast<void*>(p));
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
inline unsigned int __float_as_uint(float v) {
  unsigned int bits;
  std::memcpy(&bits, &v, sizeof(bits));
  return bits;
}
inline float __uint_as_float(unsigned int bits) {
  float v;
  std::memcpy(&v, &bits, sizeof(v));
  return v;
}
inline __half __ushort_as_half(unsigned short bits) {
  __half h;
  h.bits = bits;
  return h;
}
inline unsigned short __half_as_ushort(__half h) {
  return h.bits;
}

// ---- cp.async (sm_80+) stand-ins -----------------------------------------------------------------------------------
// __pipeline_memcpy_async(dst_shared, src_global, bytes) copies at once; commit/wait are no-ops.
inline void __pipeline_memcpy_async(void* dst, const void* src, std::size_t bytes, std::size_t /*zero_fill*/ = 0) {
  std::memcpy(dst, src, bytes);
}
inline void __pipeline_commit() {}
inline void __pipeline_wait_prior(std::size_t /*prior*/) {}

// ---- tensor cores: mma.sync (sm_80+) ----------------------------------------------------------------------------
// The device side of these is csrc/cuda/mma.cuh (inline PTX); the kernels call the same names in both builds.
namespace zs_emu {

// Every lane of a full warp publishes `mine`; once all 32 have, `use(lanes)` reads them (lanes[l]: lane l's), and no
// lane goes on before every lane has used them (two rendezvous of the warp, as __shfl_xor_sync's: a lane that does
// not take part, or waits at a barrier instead, aborts). A warp-synchronous instruction's register exchange.
template <class T, class Use>
inline void warp_collective(const char* what, const T& mine, Use&& use) {
  static_assert(std::is_trivially_copyable<T>::value, "registers");
  static thread_local std::vector<T> slots;  // a block's warps: one host thread each, or all on one (serial)
  const unsigned int t = linear_thread_index();
  BlockBarrier& barrier = barrier_of_kernel(what);
  if (slots.size() < 1024) slots.resize(1024);
  slots[t] = mine;
  barrier.warp_exchange(t, 0, t % 32);  // every lane has published
  use(&slots[t / 32 * 32]);
  barrier.warp_exchange(t, 0, t % 32);  // every lane has read: the slots may be written again
}

struct MmaLane {
  std::uint32_t a[4];
  std::uint32_t b[2];
};

inline double half_bits_value(std::uint32_t word, int which) {
  __half h;
  h.bits = static_cast<std::uint16_t>(which == 0 ? word & 0xffffu : word >> 16);  // the lower half: the lower k
  return static_cast<double>(__half2float(h));
}

// A tf32 operand is an fp32 bit pattern with its 13 low bits zero (what cvt.rna.tf32.f32 gives); the kernels
// convert every operand first, so one that is not is a kernel bug here (the device's use of those bits is not
// documented to be anything a kernel may rely on). NaN excepted (its payload is never looked at).
inline double tf32_value(std::uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  if ((bits & 0x1fffu) != 0 && value == value) {
    std::fprintf(stderr, "zs_emu: mma.sync tf32 operand %#010x has its low 13 bits set (convert it first)\n",
                 static_cast<unsigned int>(bits));
    std::abort();
  }
  return static_cast<double>(value);
}

// D = A B + C of one warp: `a_at(lanes, row, k)` and `b_at(lanes, k, col)` read an element from the lanes' fragment
// registers; lane (g = lane / 4, t = lane % 4) gets D at rows g, g + 8 and columns 2t, 2t + 1 (d[0] (g, 2t),
// d[1] (g, 2t + 1), d[2] (g + 8, 2t), d[3] (g + 8, 2t + 1): the f32 accumulator layout of both shapes).
template <int K, class AAt, class BAt>
inline void mma_m16n8(const char* what, float (&d)[4], const MmaLane& mine, const float (&c)[4], AAt a_at, BAt b_at) {
  const unsigned int lane = linear_thread_index() % 32;
  const int g = static_cast<int>(lane / 4), t = static_cast<int>(lane % 4);
  float out[4];
  warp_collective(what, mine, [&](const MmaLane* lanes) {
    for (int i = 0; i < 4; ++i) {
      const int row = g + (i >= 2 ? 8 : 0), col = 2 * t + (i & 1);
      double sum = static_cast<double>(c[i]);
      for (int k = 0; k < K; ++k) sum += a_at(lanes, row, k) * b_at(lanes, k, col);  // exact products
      out[i] = static_cast<float>(sum);
    }
  });
  for (int i = 0; i < 4; ++i) d[i] = out[i];
}

}  // namespace zs_emu

// mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32: A 16x16 (row-major), B 16x8 (column-major), fp16 pairs in
// 32-bit registers (the lower half holds the lower k). Lane (g, t): a[0] = A(g, 2t..2t+1), a[1] = A(g+8, 2t..),
// a[2] = A(g, 2t+8..2t+9), a[3] = A(g+8, 2t+8..); b[0] = B(2t..2t+1, g), b[1] = B(2t+8..2t+9, g).
inline void zs_mma_m16n8k16_f32_f16(float (&d)[4], const std::uint32_t (&a)[4], const std::uint32_t (&b)[2],
                                    const float (&c)[4]) {
  const zs_emu::MmaLane mine{{a[0], a[1], a[2], a[3]}, {b[0], b[1]}};
  zs_emu::mma_m16n8<16>(
      "mma.sync m16n8k16 f16", d, mine, c,
      [](const zs_emu::MmaLane* lanes, int row, int k) {
        const int reg = (row >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0);
        return zs_emu::half_bits_value(lanes[(row % 8) * 4 + (k % 8) / 2].a[reg], k % 2);
      },
      [](const zs_emu::MmaLane* lanes, int k, int col) {
        return zs_emu::half_bits_value(lanes[col * 4 + (k % 8) / 2].b[k >= 8 ? 1 : 0], k % 2);
      });
}

// mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32: A 16x8, B 8x8, tf32 in fp32 registers. Lane (g, t):
// a[0] = A(g, t), a[1] = A(g+8, t), a[2] = A(g, t+4), a[3] = A(g+8, t+4); b[0] = B(t, g), b[1] = B(t+4, g).
inline void zs_mma_m16n8k8_f32_tf32(float (&d)[4], const std::uint32_t (&a)[4], const std::uint32_t (&b)[2],
                                    const float (&c)[4]) {
  const zs_emu::MmaLane mine{{a[0], a[1], a[2], a[3]}, {b[0], b[1]}};
  zs_emu::mma_m16n8<8>(
      "mma.sync m16n8k8 tf32", d, mine, c,
      [](const zs_emu::MmaLane* lanes, int row, int k) {
        return zs_emu::tf32_value(lanes[(row % 8) * 4 + k % 4].a[(row >= 8 ? 1 : 0) + (k >= 4 ? 2 : 0)]);
      },
      [](const zs_emu::MmaLane* lanes, int k, int col) {
        return zs_emu::tf32_value(lanes[col * 4 + k % 4].b[k >= 4 ? 1 : 0]);
      });
}

#endif  // ZS_CUDA_EMU_INTRINSICS_H
