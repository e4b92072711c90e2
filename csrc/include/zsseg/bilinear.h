// Per-element arithmetic shared by the CPU and CUDA upsample / segment kernels.
//
// Bilinear taps follow torch.nn.functional.interpolate(mode="bilinear", align_corners=False) on the CPU
// (aten/src/ATen/native/UpSample.h semantics), in float ("opmath") arithmetic for float/half input:
//   scale = float(in) / out
//   src   = max(scale * (i + 0.5f) - 0.5f, 0)
//   i0    = min(int(src), in - 1), i1 = min(i0 + 1, in - 1)
//   w1    = clamp(src - i0, 0, 1), w0 = 1 - w1
// and the 2-D blend is  w0y * (w0x * a00 + w1x * a01) + w1y * (w0x * a10 + w1x * a11)  (rows outer).
// Every tap is multiplied even when its weight is 0, so a NaN/inf neighbour propagates exactly as in torch.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "zsseg/common.h"

namespace zsseg {

// One output index's two source indices and their weights along one axis.
struct BilinearTap {
  int32_t i0;  // lower source index
  int32_t i1;  // upper source index (== i0 at the border)
  float w0;    // weight of i0
  float w1;    // weight of i1
};

// Geometry shared by upsample and segment: a contiguous [batch, channels, in_height, in_width] map, the
// valid crop inside it (the whole map when there is no crop) and the output size.
struct ResizeGeometry {
  int64_t batch = 0;
  int64_t channels = 0;
  int64_t in_height = 0;  // full map height (row stride = in_width)
  int64_t in_width = 0;
  int64_t crop_top = 0;   // valid region: rows [crop_top, crop_top + crop_height)
  int64_t crop_left = 0;  //               cols [crop_left, crop_left + crop_width)
  int64_t crop_height = 0;
  int64_t crop_width = 0;
  int64_t out_height = 0;
  int64_t out_width = 0;
};

// torch's area_pixel_compute_scale for align_corners=False and no explicit scale factor.
ZS_HD float bilinear_scale(int64_t in_size, int64_t out_size) {
  return static_cast<float>(in_size) / static_cast<float>(out_size);
}

// Source index and weights of output index `out_index` (torch's compute_indices_weights_linear), in the integer type
// `Index`: int64_t (bilinear_tap), or int32_t where a kernel's sizes fit it (the same values: the float conversions
// and the truncation of src, which is at most in_size, give the same results in either type).
template <typename Index>
ZS_HD BilinearTap bilinear_tap_in(float scale, Index out_index, Index in_size) {
  float src = scale * (static_cast<float>(out_index) + 0.5f) - 0.5f;
  src = src < 0.f ? 0.f : src;
  Index i0 = static_cast<Index>(src);  // src >= 0, so truncation == floor
  if (i0 > in_size - 1) i0 = in_size - 1;
  const Index i1 = i0 + 1 < in_size ? i0 + 1 : in_size - 1;
  float w1 = src - static_cast<float>(i0);
  w1 = w1 < 0.f ? 0.f : (w1 > 1.f ? 1.f : w1);
  BilinearTap tap;
  tap.i0 = static_cast<int32_t>(i0);
  tap.i1 = static_cast<int32_t>(i1);
  tap.w0 = 1.f - w1;
  tap.w1 = w1;
  return tap;
}
ZS_HD BilinearTap bilinear_tap(float scale, int64_t out_index, int64_t in_size) {
  return bilinear_tap_in<int64_t>(scale, out_index, in_size);
}

// Linear blend of two values with torch's operation order (w0 * a + w1 * b).
ZS_HD float blend2(float a, float b, float w0, float w1) {
  return a * w0 + b * w1;
}

// The 2-D bilinear value from the four neighbours (a<row><col>), rows outer as in torch.
ZS_HD float blend4(float a00, float a01, float a10, float a11, const BilinearTap& ty, const BilinearTap& tx) {
  return blend2(a00, a01, tx.w0, tx.w1) * ty.w0 + blend2(a10, a11, tx.w0, tx.w1) * ty.w1;
}

// The logistic function in T: float (the CUDA kernels: fp32 expf, CUDA's exp(float)) or double (the CPU kernels'
// exact calibration step). Saturates to exactly 0/1 for large |x|, propagates NaN.
template <typename T>
ZS_HD T logistic(T x) {
#if defined(__CUDA_ARCH__)
  return T(1) / (T(1) + exp(-x));
#else
  return T(1) / (T(1) + std::exp(-x));
#endif
}

// exp(x) for |x| <= 87 without libm, branch-free so that CPU loops vectorise: x = k ln2 + r, |r| <= ln2/2,
// exp(r) by its degree-6 Taylor polynomial (truncation < 1.3e-7 relative), 2^k from the exponent bits.
// Inputs are clamped to [-87, 87]; NaN must be filtered by the caller (the result is unspecified).
ZS_HD float exp_fast_f32(float x) {
  x = x > -87.f ? x : -87.f;  // two single selects (not nested) so that loops vectorise to max/min
  x = x < 87.f ? x : 87.f;
  const float rounder = 12582912.f;  // 1.5 * 2^23: adding and subtracting it rounds to nearest integer
  const float k = (x * 1.44269504f + rounder) - rounder;
  // ln2 = 0.693359375 (9 significant bits, so k * it is exact) - 2.12194440e-4 (Cody-Waite split)
  const float r = (x - k * 0.693359375f) + k * 2.12194440e-4f;
  float p = 1.f / 720.f;
  p = p * r + 1.f / 120.f;
  p = p * r + 1.f / 24.f;
  p = p * r + 1.f / 6.f;
  p = p * r + 0.5f;
  p = p * r + 1.f;
  p = p * r + 1.f;
  const int32_t bits = (static_cast<int32_t>(k) + 127) << 23;
#if defined(__CUDA_ARCH__)
  const float two_k = __int_as_float(bits);
#else
  float two_k;
  std::memcpy(&two_k, &bits, sizeof(float));
#endif
  return p * two_k;
}

// Logistic function from exp_fast_f32: absolute error below 1e-7 for non-NaN input (checked in cpp_tests).
ZS_HD float sigmoid_fast_f32(float x) {
  return 1.f / (1.f + exp_fast_f32(-x));
}

// sigmoid_fast_f32 that also propagates NaN like torch.sigmoid (a select, so loops still vectorise). Used by
// the fused calibration of upsample on the CPU: absolute error below 1e-7 against the exact logistic function.
ZS_HD float sigmoid_fast_nan_f32(float x) {
  const float s = sigmoid_fast_f32(x);
  return x == x ? s : x;
}

ZS_HD bool is_nan_value(float x) {
  return x != x;
}
ZS_HD bool is_nan_value(double x) {
  return x != x;
}

// torch.argmax's order when scanning classes in increasing index: does `candidate` (at a higher index than
// the current best) replace `best`? A NaN beats any number and the first NaN stays; on equality the lower
// index (the current best) stays.
template <typename T>
ZS_HD bool argmax_better(T candidate, T best) {
  if (is_nan_value(best)) return false;
  return is_nan_value(candidate) || candidate > best;
}

// Calibrated class value: f(x) - bias with f = sigmoid or identity.
ZS_HD float calibrate_f32(float x, float bias, bool apply_sigmoid) {
  return (apply_sigmoid ? logistic(x) : x) - bias;
}
ZS_HD double calibrate_f64(float x, float bias, bool apply_sigmoid) {
  const double v = static_cast<double>(x);
  return (apply_sigmoid ? logistic(v) : v) - static_cast<double>(bias);
}

}  // namespace zsseg
