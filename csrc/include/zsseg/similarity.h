// similarity: out[b, c, n] = scale * <t_c, p_n> with optional L2 normalisation of both sides over D.
//   patches [B, N, D], text [C, D] (shared by the batch) or [B, C, D], out [B, C, N].
// CPU: float32 only. CUDA: float32 or float16 inputs (fp32 accumulation); out has the inputs' dtype. On sm_80+ the
// CUDA products run on the tensor cores (fp16: exact products; fp32: 3xTF32, within 3 * 2^-20 |a b| of each product).
#pragma once
#include <cmath>
#include <cstdint>

#include "zsseg/common.h"

namespace zsseg {

// L2 normalisation divides by max(||x||, kNormEps), as torch.nn.functional.normalize.
constexpr float kNormEps = 1e-12f;

struct SimilarityParams {
  const void* patches = nullptr;  // [B, N, D]
  const void* text = nullptr;     // [C, D] or [B, C, D] when text_batched
  void* out = nullptr;            // [B, C, N]
  std::int64_t batch = 0;         // B
  std::int64_t num_patches = 0;   // N
  std::int64_t num_classes = 0;   // C
  std::int64_t dim = 0;           // D
  bool text_batched = false;
  bool normalize = false;
  float scale = 1.0f;
  DType dtype = DType::Float32;
  // CUDA: the tensor-core kernel where the device has mma.sync (sm_80+); false: the CUDA-core kernel on every device
  // (its tests, and a comparison of the two).
  bool tensor_cores = true;
};

// 1 / max(sqrt(sum_squares), eps): the factor a vector is multiplied by when normalised.
ZS_HD float inverse_l2_norm(float sum_squares) {
  const float norm = sqrtf(sum_squares);
  return 1.0f / (norm > kNormEps ? norm : kNormEps);
}
ZS_HD double inverse_l2_norm(double sum_squares) {  // CPU: sums of squares are accumulated in double
  const double norm = sqrt(sum_squares);
  return 1.0 / (norm > static_cast<double>(kNormEps) ? norm : static_cast<double>(kNormEps));
}

// Validated sizes are the caller's job (the binding); these only compute.
void similarity_cpu(const SimilarityParams& params);
CudaStatus similarity_cuda(const SimilarityParams& params, Stream stream);

}  // namespace zsseg
