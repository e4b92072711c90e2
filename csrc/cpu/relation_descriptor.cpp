// CPU relation descriptor: base[c, o] = text . W[:, D:]^T + bias once, then per image one blocked GEMM
// (text * g_b) . W[:, :D]^T + base, with g_b folded into the packing of text (no concat, no t * g copy).
#include <omp.h>

#include <vector>

#include "gemm_nt.h"
#include "zsseg/relation_descriptor.h"

namespace zsseg {
namespace {

// out [B, C, 2D] = concat(t * g_b, t).
void concat_features(const RelationDescriptorParams& p) {
  const auto* text = static_cast<const float*>(p.text);            // [C, D]
  const auto* global = static_cast<const float*>(p.image_global);  // [B, D]
  auto* out = static_cast<float*>(p.out);                          // [B, C, 2D]
  const std::int64_t rows = p.batch * p.num_classes, dim = p.dim;
#pragma omp parallel for schedule(static) if (rows * dim > (1 << 15))
  for (std::int64_t row = 0; row < rows; ++row) {
    const std::int64_t b = row / p.num_classes, c = row % p.num_classes;
    const float* t = text + c * dim;
    const float* g = global + b * dim;
    float* o = out + row * 2 * dim;
    for (std::int64_t d = 0; d < dim; ++d) o[d] = relation_concat_value(t[d], g[d], true);
    for (std::int64_t d = 0; d < dim; ++d) o[dim + d] = relation_concat_value(t[d], g[d], false);
  }
}

// text [C, D] . W_half^T -> [C, Dout] (row stride Dout) with W_half one half of W [Dout, 2D]: `weight_half` = W
// (the t * g columns) or W + D (the text columns). The caller sets the output (c) and any scale or addend.
cpu::GemmNT text_weight_gemm(const RelationDescriptorParams& p, const float* weight_half) {
  cpu::GemmNT g;
  g.m = p.num_classes;
  g.n = p.out_dim;
  g.k = p.dim;
  g.a = static_cast<const float*>(p.text);
  g.lda = p.dim;
  g.b = weight_half;
  g.ldb = 2 * p.dim;
  g.ldc = p.out_dim;
  return g;
}

// base [C, Dout] = text . W[:, D:]^T + bias.
std::vector<float> text_only_term(const RelationDescriptorParams& p) {
  const auto* weight = static_cast<const float*>(p.weight);  // [Dout, 2D]
  const auto* bias = static_cast<const float*>(p.bias);      // [Dout] or nullptr
  std::vector<float> base(static_cast<std::size_t>(p.num_classes * p.out_dim));
  cpu::GemmNT g = text_weight_gemm(p, weight + p.dim);
  g.c = base.data();
  cpu::gemm_nt(g);
  if (bias != nullptr) {
    for (std::int64_t c = 0; c < p.num_classes; ++c) {
      float* row = base.data() + c * p.out_dim;
      for (std::int64_t o = 0; o < p.out_dim; ++o) row[o] += bias[o];
    }
  }
  return base;
}

}  // namespace

void relation_descriptor_cpu(const RelationDescriptorParams& p) {
  if (p.weight == nullptr) {
    concat_features(p);
    return;
  }
  const std::vector<float> base = text_only_term(p);  // [C, Dout]
  const auto* global = static_cast<const float*>(p.image_global);
  auto* out = static_cast<float*>(p.out);
  for (std::int64_t b = 0; b < p.batch; ++b) {
    cpu::GemmNT g = text_weight_gemm(p, static_cast<const float*>(p.weight));
    g.k_scale = global + b * p.dim;  // t[c, d] * g[b, d], applied while packing
    g.addend = base.data();
    g.ld_addend = p.out_dim;
    g.c = out + b * p.num_classes * p.out_dim;
    cpu::gemm_nt(g);
  }
}

}  // namespace zsseg
