// CPU bilinear resize (torch align_corners=False), OpenMP over output rows, with the optional calibration
// f(v) - class_bias[c] (f = sigmoid or identity) fused into the same pass over the output.
// The kernel never reads FP exception flags: let GCC turn the clamps of exp_fast_f32 into vector min/max.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include <vector>

#include "bilinear_taps.h"
#include "cpu_dispatch.h"
#include "zsseg/upsample.h"

namespace zsseg {
namespace {

using cpu::blend_at;
using cpu::ColumnTaps;
using cpu::make_taps;

// How an output row is finished after the bilinear blend.
enum class Calibration : int {
  None = 0,         // plain resize (bit-for-bit the uncalibrated op)
  Bias = 1,         // v - bias
  SigmoidBias = 2,  // sigmoid(v) - bias (bias 0 when there is none: x - 0.f == x exactly)
};

// One output row from its two source rows (already offset to the crop's left column), then the calibration.
// One loop per mode so that each vectorises (gathers + the branch-free sigmoid on AVX2).
ZS_CPU_CLONES void resize_row(const float* row0, const float* row1, float wy0, float wy1, const ColumnTaps& cols,
                              int64_t out_width, Calibration mode, float bias, float* out) {
  const int32_t* i0 = cols.i0.data();
  const int32_t* i1 = cols.i1.data();
  const float* w0 = cols.w0.data();
  const float* w1 = cols.w1.data();
  if (mode == Calibration::None) {
#pragma omp simd
    for (int64_t x = 0; x < out_width; ++x) out[x] = blend_at(row0, row1, wy0, wy1, i0, i1, w0, w1, x);
  } else if (mode == Calibration::Bias) {
#pragma omp simd
    for (int64_t x = 0; x < out_width; ++x) out[x] = blend_at(row0, row1, wy0, wy1, i0, i1, w0, w1, x) - bias;
  } else {
#pragma omp simd
    for (int64_t x = 0; x < out_width; ++x) {
      out[x] = sigmoid_fast_nan_f32(blend_at(row0, row1, wy0, wy1, i0, i1, w0, w1, x)) - bias;
    }
  }
}

}  // namespace

void upsample_cpu(const UpsampleParams& params) {
  const ResizeGeometry& g = params.geometry;
  const std::vector<BilinearTap> row_taps = make_taps(g.crop_height, g.out_height);
  const ColumnTaps col_taps = cpu::column_taps(make_taps(g.crop_width, g.out_width));
  const float* input = static_cast<const float*>(params.input);  // [B, C, in_h, in_w]
  float* output = static_cast<float*>(params.output);            // [B, C, H, W]
  const int64_t plane_in = g.in_height * g.in_width;
  const int64_t crop_offset = g.crop_top * g.in_width + g.crop_left;
  const int64_t total_rows = g.batch * g.channels * g.out_height;
  const Calibration mode = params.apply_sigmoid           ? Calibration::SigmoidBias
                           : params.class_bias != nullptr ? Calibration::Bias
                                                          : Calibration::None;

#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < total_rows; ++row) {
    const int64_t plane = row / g.out_height;
    const BilinearTap& ty = row_taps[static_cast<size_t>(row % g.out_height)];
    const float* src = input + plane * plane_in + crop_offset;
    const float bias = params.class_bias != nullptr ? params.class_bias[plane % g.channels] : 0.f;
    resize_row(src + ty.i0 * g.in_width, src + ty.i1 * g.in_width, ty.w0, ty.w1, col_taps, g.out_width, mode, bias,
               output + row * g.out_width);
  }
}

}  // namespace zsseg
