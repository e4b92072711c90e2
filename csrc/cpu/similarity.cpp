// CPU similarity: per batch item one blocked GEMM text [C, D] x patches [N, D]^T -> out [C, N]; the
// inverse L2 norms (computed once, in double) are folded into the operand packing, the scale into the store.
#include <omp.h>

#include <vector>

#include "gemm_nt.h"
#include "zsseg/similarity.h"

namespace zsseg {
namespace {

// inverse[r] = 1 / max(||x_r||, eps) for the rows of x [rows, dim].
std::vector<float> inverse_row_norms(const float* x, std::int64_t rows, std::int64_t dim) {
  std::vector<float> inverse(static_cast<std::size_t>(rows));
#pragma omp parallel for schedule(static) if (rows * dim > (1 << 16))
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * dim;
    double sum_squares = 0.0;
    for (std::int64_t d = 0; d < dim; ++d) sum_squares += static_cast<double>(row[d]) * row[d];
    inverse[static_cast<std::size_t>(r)] = static_cast<float>(inverse_l2_norm(sum_squares));
  }
  return inverse;
}

}  // namespace

void similarity_cpu(const SimilarityParams& p) {
  const auto* patches = static_cast<const float*>(p.patches);  // [B, N, D]
  const auto* text = static_cast<const float*>(p.text);        // [C, D] or [B, C, D]
  auto* out = static_cast<float*>(p.out);                      // [B, C, N]
  const std::int64_t text_rows = p.text_batched ? p.batch * p.num_classes : p.num_classes;
  std::vector<float> text_inverse, patch_inverse;
  if (p.normalize) {
    text_inverse = inverse_row_norms(text, text_rows, p.dim);
    patch_inverse = inverse_row_norms(patches, p.batch * p.num_patches, p.dim);
  }
  for (std::int64_t b = 0; b < p.batch; ++b) {
    const std::int64_t text_row0 = p.text_batched ? b * p.num_classes : 0;
    cpu::GemmNT g;
    g.m = p.num_classes;
    g.n = p.num_patches;
    g.k = p.dim;
    g.a = text + text_row0 * p.dim;
    g.lda = p.dim;
    g.b = patches + b * p.num_patches * p.dim;
    g.ldb = p.dim;
    if (p.normalize) {
      g.a_row_scale = text_inverse.data() + text_row0;
      g.b_row_scale = patch_inverse.data() + b * p.num_patches;
    }
    g.alpha = p.scale;
    g.c = out + b * p.num_classes * p.num_patches;
    g.ldc = p.num_patches;
    cpu::gemm_nt(g);
  }
}

}  // namespace zsseg
