// relation_descriptor: ZegCLIP's Linear(concat(text * g_b, text)) without materialising the concat.
//   text [C, D], image_global [B, D], weight [Dout, 2D] (optional), bias [Dout] (optional, needs weight).
//   out[b, c, o] = sum_d W[o, d] t[c, d] g[b, d] + (sum_d W[o, D + d] t[c, d] + bias[o])
//   The bracket does not depend on b and is computed once per (c, o) (per block of b on CUDA).
//   Without weight: out[b, c, :] = concat(t_c * g_b, t_c), i.e. Dout = 2D.
// CPU: float32 only. CUDA: float32 or float16 (all inputs one dtype; fp32 accumulation; out in that dtype).
#pragma once
#include <cstdint>

#include "zsseg/common.h"

namespace zsseg {

struct RelationDescriptorParams {
  const void* text = nullptr;          // [C, D]
  const void* image_global = nullptr;  // [B, D]
  const void* weight = nullptr;        // [Dout, 2D] or nullptr
  const void* bias = nullptr;          // [Dout] or nullptr
  void* out = nullptr;                 // [B, C, Dout], Dout = 2D without weight
  std::int64_t batch = 0;              // B
  std::int64_t num_classes = 0;        // C
  std::int64_t dim = 0;                // D
  std::int64_t out_dim = 0;            // Dout (2D when weight is nullptr)
  DType dtype = DType::Float32;
};

// Feature j of concat(t * g, t) given t[j mod D] and g[j mod D]: shared by the CPU and CUDA weight-less paths.
ZS_HD float relation_concat_value(float text_value, float global_value, bool product_half) {
  return product_half ? text_value * global_value : text_value;
}

void relation_descriptor_cpu(const RelationDescriptorParams& params);
CudaStatus relation_descriptor_cuda(const RelationDescriptorParams& params, Stream stream);

}  // namespace zsseg
