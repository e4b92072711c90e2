// Register-blocked GEMM for gemm_nt.h: A is packed into panels of kRows rows ([K][kRows]), B into panels
// of kCols rows ([K][kCols]); a kRows x kCols tile of C lives in registers over the whole K loop.
// On x86-64 GCC the panel loop is compiled for AVX-512 / AVX2+FMA / baseline and picked at run time.
#include "gemm_nt.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace zsseg::cpu {
namespace {

constexpr int kRows = 6;   // MR: rows of A per register tile
constexpr int kCols = 16;  // NR: rows of B per register tile (one 16-float vector)

#if defined(__GNUC__)
typedef float Vec16 __attribute__((vector_size(64)));
#define ZS_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#error "gemm_nt.cpp needs GCC/Clang vector extensions"
#endif

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12 && !defined(ZS_NO_CPU_CLONES)
#define ZS_MULTIVERSION __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define ZS_MULTIVERSION
#endif

// Pack rows [row0, row0 + kPanel) of X [rows, K] into panel[k * kPanel + r], zero-padding missing rows.
template <int kPanel>
void pack_panel(const float* x, std::int64_t ldx, std::int64_t rows, std::int64_t row0, std::int64_t k,
                const float* row_scale, const float* k_scale, float* panel) {
  for (int r = 0; r < kPanel; ++r) {
    const std::int64_t row = row0 + r;
    if (row >= rows) {
      for (std::int64_t kk = 0; kk < k; ++kk) panel[kk * kPanel + r] = 0.0f;
      continue;
    }
    const float* src = x + row * ldx;
    const float factor = row_scale != nullptr ? row_scale[row] : 1.0f;
    if (k_scale != nullptr) {
      for (std::int64_t kk = 0; kk < k; ++kk) panel[kk * kPanel + r] = src[kk] * k_scale[kk] * factor;
    } else {
      for (std::int64_t kk = 0; kk < k; ++kk) panel[kk * kPanel + r] = src[kk] * factor;
    }
  }
}

// One kRows x kCols tile: C[i, j] = alpha * sum_k a_panel[k][i] * b_panel[k][j] (+ addend).
ZS_ALWAYS_INLINE void tile(const float* a_panel, const float* b_panel, std::int64_t k, int rows, int cols,
                           const GemmNT& g, std::int64_t m0, std::int64_t n0) {
  Vec16 acc[kRows];
  for (int i = 0; i < kRows; ++i) acc[i] = Vec16{};
  for (std::int64_t kk = 0; kk < k; ++kk) {
    Vec16 b;
    std::memcpy(&b, b_panel + kk * kCols, sizeof(b));
    const float* a = a_panel + kk * kRows;
    for (int i = 0; i < kRows; ++i) acc[i] += b * a[i];
  }
  for (int i = 0; i < rows; ++i) {
    float values[kCols];
    std::memcpy(values, &acc[i], sizeof(values));
    float* out = g.c + (m0 + i) * g.ldc + n0;
    const float* add = g.addend != nullptr ? g.addend + (m0 + i) * g.ld_addend + n0 : nullptr;
    for (int j = 0; j < cols; ++j) out[j] = g.alpha * values[j] + (add != nullptr ? add[j] : 0.0f);
  }
}

// All tiles of one B panel (columns n0 .. n0 + kCols of C).
ZS_MULTIVERSION void column_panel(const GemmNT& g, const float* packed_a, const float* b_panel, std::int64_t n0) {
  const int cols = static_cast<int>(std::min<std::int64_t>(kCols, g.n - n0));
  for (std::int64_t m0 = 0; m0 < g.m; m0 += kRows) {
    const int rows = static_cast<int>(std::min<std::int64_t>(kRows, g.m - m0));
    tile(packed_a + (m0 / kRows) * g.k * kRows, b_panel, g.k, rows, cols, g, m0, n0);
  }
}

}  // namespace

void gemm_nt(const GemmNT& g) {
  if (g.m <= 0 || g.n <= 0) return;
  const std::int64_t a_panels = (g.m + kRows - 1) / kRows;
  const std::int64_t b_panels = (g.n + kCols - 1) / kCols;
  std::vector<float> packed_a(static_cast<std::size_t>(a_panels * kRows * std::max<std::int64_t>(g.k, 1)));
  const std::int64_t work = g.m * g.n * std::max<std::int64_t>(g.k, 1);
  const bool parallel = work > (1 << 16);
  // Per-thread B panels are allocated before the parallel region (an allocation failure inside an OpenMP
  // region would terminate the process instead of reaching Python as MemoryError).
  const int threads = parallel ? std::max(1, omp_get_max_threads()) : 1;
  const std::size_t panel_size = static_cast<std::size_t>(kCols * std::max<std::int64_t>(g.k, 1));
  std::vector<float> b_panels_ws(panel_size * static_cast<std::size_t>(threads));
#pragma omp parallel num_threads(threads)
  {
#pragma omp for schedule(static)
    for (std::int64_t p = 0; p < a_panels; ++p) {
      pack_panel<kRows>(g.a, g.lda, g.m, p * kRows, g.k, g.a_row_scale, g.k_scale, packed_a.data() + p * g.k * kRows);
    }
    float* b_panel = b_panels_ws.data() + panel_size * static_cast<std::size_t>(omp_get_thread_num());
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t p = 0; p < b_panels; ++p) {
      pack_panel<kCols>(g.b, g.ldb, g.n, p * kCols, g.k, g.b_row_scale, nullptr, b_panel);
      column_panel(g, packed_a.data(), b_panel, p * kCols);
    }
  }
}

}  // namespace zsseg::cpu
