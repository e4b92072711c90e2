// Warp: value planes sampled along a dense flow (the temporal filter's one warp, zsseg_rt/stream/temporal.py;
// reference: zsseg_rt/ops/reference.py::warp).
//
//   out[b, c, y, x] = sample(values[b, c], x + flow[b, y, x, 0], y + flow[b, y, x, 1])
//
// OpenCV's remap rule (cv::remap with float maps, BORDER_REPLICATE), which the video filter was measured with:
//   bilinear: the source coordinate is put on a grid of 1/32 pixel, X = rint(32 sx) (a half to even), then
//             x0 = floor(X / 32), ax = (X mod 32) / 32 (the same for y), the four taps (x0, x0 + 1) x (y0, y0 + 1),
//             each index clamped to the map, weighted w00 = (1 - ay) (1 - ax), w01 = (1 - ay) ax,
//             w10 = ay (1 - ax), w11 = ay ax (exact products) and summed in that order without FMA contraction
//             (a NaN or inf in any tap of a pixel reaches its result);
//   nearest:  the tap rint(sx), rint(sy) (a half to even, as cvRound), clamped to the map.
// A coordinate is clamped to [-2^20, 2^20] first (the float -> int conversion stays defined; the grid fraction of
// every coordinate a flow can hold is kept). OpenCV 4.14's vectorised remap sums the taps in another order inside
// the map: it differs from this rule by at most 1 ulp of the values there (python_tests/ops/test_warp.py).
// A displacement that is not finite gives NaN in every channel at that pixel.
#pragma once
#include <cmath>
#include <cstdint>

#include "zsseg/common.h"

namespace zsseg {

struct WarpParams {
  const float* values = nullptr;  // [batch, channels, height, width] float32, contiguous
  const float* flow = nullptr;    // [batch, height, width, 2] float32, contiguous: (dx, dy) in pixels
  int64_t batch = 0, channels = 0, height = 0, width = 0;
  bool nearest = false;
  float* output = nullptr;  // [batch, channels, height, width], must not overlap the inputs
};

// Where one output pixel reads (offsets into a [height, width] plane) and with which weights.
struct WarpTaps {
  int64_t offset[4];
  float weight[4];
  bool finite;
};

ZS_HD bool warp_is_finite(float v) {
  return v - v == 0.f;  // NaN - NaN and inf - inf are NaN
}

ZS_HD int64_t warp_index_clamp(int64_t v, int64_t size) {
  return v < 0 ? 0 : (v >= size ? size - 1 : v);
}

ZS_HD float warp_coordinate_clamp(float v) {
  const float reach = 1048576.f;  // 2^20
  return v < -reach ? -reach : (v > reach ? reach : v);
}

// Round half to even (cvRound; __float2int_rn on the device).
ZS_HD int64_t warp_round(float v) {
#if defined(__CUDA_ARCH__)
  return static_cast<int64_t>(__float2ll_rn(v));
#else
  return static_cast<int64_t>(std::nearbyint(v));  // the default rounding mode: to nearest, a half to even
#endif
}

// Products and sums rounded one by one (no FMA contraction, on the device either), as NumPy and OpenCV compute.
ZS_HD float warp_mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

ZS_HD float warp_add(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

// The taps of output pixel (y, x) displaced by (dx, dy), in a [height, width] plane.
ZS_HD WarpTaps warp_taps(float dx, float dy, int64_t y, int64_t x, int64_t height, int64_t width, bool nearest) {
  WarpTaps t;
  for (int i = 0; i < 4; ++i) t.offset[i] = 0, t.weight[i] = 0.f;
  float sx = warp_add(static_cast<float>(x), dx);
  float sy = warp_add(static_cast<float>(y), dy);
  t.finite = warp_is_finite(sx) && warp_is_finite(sy);
  if (!t.finite) return t;
  sx = warp_coordinate_clamp(sx);
  sy = warp_coordinate_clamp(sy);
  if (nearest) {
    const int64_t xi = warp_index_clamp(warp_round(sx), width);
    const int64_t yi = warp_index_clamp(warp_round(sy), height);
    t.offset[0] = yi * width + xi;
    t.weight[0] = 1.f;
    return t;
  }
  const int64_t qx = warp_round(sx * 32.f), qy = warp_round(sy * 32.f);  // exact: a power of two
  const int64_t fx = qx & 31, fy = qy & 31;                              // two's complement: the grid fraction
  const int64_t ix = (qx - fx) / 32, iy = (qy - fy) / 32;                // exact: floor(X / 32)
  const float ax = static_cast<float>(fx) * (1.f / 32.f), ay = static_cast<float>(fy) * (1.f / 32.f);
  const int64_t x0 = warp_index_clamp(ix, width), x1 = warp_index_clamp(ix + 1, width);
  const int64_t y0 = warp_index_clamp(iy, height), y1 = warp_index_clamp(iy + 1, height);
  t.offset[0] = y0 * width + x0, t.offset[1] = y0 * width + x1;
  t.offset[2] = y1 * width + x0, t.offset[3] = y1 * width + x1;
  t.weight[0] = (1.f - ay) * (1.f - ax), t.weight[1] = (1.f - ay) * ax;  // exact: multiples of 1/1024
  t.weight[2] = ay * (1.f - ax), t.weight[3] = ay * ax;
  return t;
}

// One plane's value at the taps (NaN where the displacement was not finite).
ZS_HD float warp_sample(const float* plane, const WarpTaps& t, bool nearest) {
  if (!t.finite) return NAN;
  if (nearest) return plane[t.offset[0]];
  float sum = warp_mul(t.weight[0], plane[t.offset[0]]);
  sum = warp_add(sum, warp_mul(t.weight[1], plane[t.offset[1]]));
  sum = warp_add(sum, warp_mul(t.weight[2], plane[t.offset[2]]));
  return warp_add(sum, warp_mul(t.weight[3], plane[t.offset[3]]));
}

// CPU (OpenMP over rows). The caller validates the sizes (all > 0).
void warp_cpu(const WarpParams& params);
// CUDA: values/flow/output are device pointers; asynchronous on `stream` (one kernel, one thread per output pixel
// looping over the channels). Returns 0 or the cudaError_t.
CudaStatus warp_cuda(const WarpParams& params, Stream stream);

}  // namespace zsseg
