// The warp-level tensor-core instructions the dense kernels use (sm_80+), by the names the emulated build defines too
// (csrc/emu/cuda_emu_intrinsics.h: the same fragment layouts, exchanged across the emulated warp), so the kernels'
// code is one in both builds:
//   zs_mma_m16n8k16_f32_f16(d, a, b, c)   mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32
//   zs_mma_m16n8k8_f32_tf32(d, a, b, c)   mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32
// Fragment layouts (PTX ISA, "Matrix fragments for mma.m16n8k16 / m16n8k8"), lane = 4 g + t:
//   f16  A (16x16, row): a[0] = A(g, 2t..2t+1), a[1] = A(g+8, 2t..), a[2] = A(g, 2t+8..), a[3] = A(g+8, 2t+8..)
//        B (16x8, col):  b[0] = B(2t..2t+1, g), b[1] = B(2t+8..2t+9, g)      (pairs: the lower half = the lower k)
//   tf32 (an fp32 bit pattern whose 13 low bits are zero; the kernels mask them):
//        A (16x8, row):  a[0] = A(g, t), a[1] = A(g+8, t), a[2] = A(g, t+4), a[3] = A(g+8, t+4)
//        B (8x8, col):   b[0] = B(t, g), b[1] = B(t+4, g)
//   D/C (16x8, f32):     d[0] = (g, 2t), d[1] = (g, 2t+1), d[2] = (g+8, 2t), d[3] = (g+8, 2t+1)
// Every lane of the warp must execute them together (.sync.aligned).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#if !defined(ZS_CUDA_EMULATION)
// Only where the device has them (sm_80+); the kernels that call them are compiled for those architectures only
// (below sm_80 their launchers pick the CUDA-core kernels, and their bodies are empty there).
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define ZS_HAS_MMA_SYNC 1
#else
#define ZS_HAS_MMA_SYNC 0
#endif

__device__ __forceinline__ void zs_mma_m16n8k16_f32_f16(float (&d)[4], const std::uint32_t (&a)[4],
                                                        const std::uint32_t (&b)[2], const float (&c)[4]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%10, %11, %12, %13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
#else
  (void)a, (void)b, d[0] = c[0], d[1] = c[1], d[2] = c[2], d[3] = c[3];
#endif
}

__device__ __forceinline__ void zs_mma_m16n8k8_f32_tf32(float (&d)[4], const std::uint32_t (&a)[4],
                                                        const std::uint32_t (&b)[2], const float (&c)[4]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%10, %11, %12, %13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
#else
  (void)a, (void)b, d[0] = c[0], d[1] = c[1], d[2] = c[2], d[3] = c[3];
#endif
}

#else
#define ZS_HAS_MMA_SYNC 1
#endif
