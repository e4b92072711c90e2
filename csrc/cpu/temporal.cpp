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

namespace {

// The merged (window-averaged) calibrated value of class c at rescaled pixel (r, q), as segment_windows merges.
float merged_at(const ClassStateParams& p, const float* logits, int64_t c, float bias, int64_t r, int64_t q) {
  const float scale_y = bilinear_scale(p.in_height, p.head_height), scale_x = bilinear_scale(p.in_width, p.head_width);
  const int64_t plane = p.in_height * p.in_width;
  float total = 0.f, count = 0.f;
  for (int64_t k = 0; k < p.num_windows; ++k) {
    const WindowPlacement& w = p.windows[k];
    if (r < w.y1 || r >= w.y2 || q < w.x1 || q >= w.x2) continue;
    const BilinearTap ty = bilinear_tap(scale_y, r - w.y1, p.in_height);
    const BilinearTap tx = bilinear_tap(scale_x, q - w.x1, p.in_width);
    const float* at = logits + (k * p.classes + c) * plane;
    float v = blend4(at[ty.i0 * p.in_width + tx.i0], at[ty.i0 * p.in_width + tx.i1], at[ty.i1 * p.in_width + tx.i0],
                     at[ty.i1 * p.in_width + tx.i1], ty, tx);
    if (p.apply_sigmoid) v = logistic(v);
    total += v - bias;
    count += 1.f;
  }
  return count > 1.f ? total / count : total;
}

}  // namespace

void class_state_cpu(const ClassStateParams& p) {
  const float* logits = static_cast<const float*>(p.logits);
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t c = 0; c < p.classes; ++c) {
    for (int64_t i = 0; i < p.state_height; ++i) {
      const float bias = p.class_bias != nullptr ? p.class_bias[c] : 0.f;
      const AreaSpan rows = area_span(i, p.scaled_height, p.state_height);
      for (int64_t j = 0; j < p.state_width; ++j) {
        const AreaSpan cols = area_span(j, p.scaled_width, p.state_width);
        float total = 0.f;
        for (int64_t a = 0; a < rows.count; ++a) {
          const int64_t r = rows.first + a;
          float row = 0.f;
          for (int64_t b = 0; b < cols.count; ++b) {
            const int64_t q = cols.first + b;
            row += merged_at(p, logits, c, bias, r, q) * area_weight(cols, q);
          }
          total = a == 0 ? area_weight(rows, r) * row : total + area_weight(rows, r) * row;
        }
        p.state[(c * p.state_height + i) * p.state_width + j] = total;
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
