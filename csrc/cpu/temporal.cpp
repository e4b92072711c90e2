// CPU kernels of the video filter's ops (see zsseg/temporal.h): the shared per-pixel functions, OpenMP over rows.
// Compiled without FMA contraction (CMakeLists.txt): the NumPy filter's values bit for bit.
#include "zsseg/temporal.h"

#include "zsseg/bilinear.h"

namespace zsseg {

void temporal_blend_cpu(const TemporalBlendParams& p) {
  const int64_t plane = p.height * p.width;
  int32_t measured = 0;
#pragma omp parallel for schedule(static) reduction(| : measured)
  for (int64_t i = 0; i < plane; ++i) {
    temporal_blend_pixel(p, i);
    measured |= temporal_measured(p, i) ? 1 : 0;
  }
  *p.measured = measured;
}

void temporal_hold_cpu(const TemporalHoldParams& p) {
  if (p.measured != nullptr && *p.measured == 0) return;
#pragma omp parallel for schedule(static)
  for (int64_t y = 0; y < p.height; ++y) {
    for (int64_t x = 0; x < p.width; ++x) temporal_hold_pixel(p, y, x);
  }
}

void temporal_propagate_cpu(const TemporalPropagateParams& p) {
#pragma omp parallel for schedule(static)
  for (int64_t y = 0; y < p.height; ++y) {
    for (int64_t x = 0; x < p.width; ++x) temporal_propagate_pixel(p, y, x);
  }
}

void class_state_cpu(const ClassStateParams& p) {
  const float* logits = static_cast<const float*>(p.logits);
  const ClassStateDims d = class_state_dims(p);
  const int64_t plane = p.in_height * p.in_width;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t c = 0; c < p.classes; ++c) {
    for (int64_t i = 0; i < p.state_height; ++i) {
      const float bias = p.class_bias != nullptr ? p.class_bias[c] : 0.f;
      const auto read = [&](int64_t k, const BilinearTap& ty, const BilinearTap& tx) {
        const float* at = logits + (k * p.classes + c) * plane;
        return blend4(at[ty.i0 * p.in_width + tx.i0], at[ty.i0 * p.in_width + tx.i1], at[ty.i1 * p.in_width + tx.i0],
                      at[ty.i1 * p.in_width + tx.i1], ty, tx);
      };
      for (int64_t j = 0; j < p.state_width; ++j) {
        p.state[(c * p.state_height + i) * p.state_width + j] = class_state_pixel(d, p.windows, bias, i, j, read);
      }
    }
  }
}

#ifndef ZSSEG_WITH_CUDA
// A build without CUDA: the bindings name the launchers, so they must link (see cuda_launchers_absent.cpp).
CudaStatus temporal_blend_cuda(const TemporalBlendParams&, Stream) {
  return 1;
}
CudaStatus temporal_hold_cuda(const TemporalHoldParams&, Stream) {
  return 1;
}
CudaStatus temporal_propagate_cuda(const TemporalPropagateParams&, Stream) {
  return 1;
}
CudaStatus class_state_cuda(const ClassStateParams&, Stream) {
  return 1;
}
#endif

}  // namespace zsseg
