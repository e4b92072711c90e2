// Blocked single-precision C = alpha * A' * B'^T (+ addend) for the CPU kernels, "NT" layout: A [M, K] and
// B [N, K] both have K contiguous (text x patches, text x weight rows). Private to csrc/cpu.
//   A'[m, k] = A[m, k] * a_row_scale[m] * k_scale[k]   (each factor optional)
//   B'[n, k] = B[n, k] * b_row_scale[n]                 (optional)
// The scale factors are applied while packing, so no operand is ever copied in scaled form in full.
#pragma once
#include <cstdint>

namespace zsseg::cpu {

struct GemmNT {
  std::int64_t m = 0, n = 0, k = 0;
  const float* a = nullptr;  // [M, K], row stride lda
  std::int64_t lda = 0;
  const float* b = nullptr;  // [N, K], row stride ldb
  std::int64_t ldb = 0;
  const float* a_row_scale = nullptr;  // [M] or nullptr
  const float* b_row_scale = nullptr;  // [N] or nullptr
  const float* k_scale = nullptr;      // [K] or nullptr
  float alpha = 1.0f;
  const float* addend = nullptr;  // [M, N] with row stride ld_addend, or nullptr
  std::int64_t ld_addend = 0;
  float* c = nullptr;  // [M, N], row stride ldc
  std::int64_t ldc = 0;
};

// Runs with OpenMP over panels of N (call it outside any parallel region).
void gemm_nt(const GemmNT& g);

}  // namespace zsseg::cpu
