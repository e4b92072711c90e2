// Warp: value planes sampled along a dense flow (the temporal filter's one warp, zsseg_rt/stream/temporal.py;
// reference: zsseg_rt/ops/reference.py::warp).
//
//   out[b, c, y, x] = sample(values[b, c], x + flow[b, y, x, 0], y + flow[b, y, x, 1])
//
// Bilinear (or nearest) sampling with the border replicated: the source coordinate (sx, sy) is first clamped to
// [-1, W] x [-1, H] (beyond that every tap is a border pixel anyway; the clamp keeps the float -> int conversion
// defined), then
//   bilinear: x0 = floor(sx), ax = sx - x0 (the same for y), the four taps (x0, x0 + 1) x (y0, y0 + 1), each index
//             clamped to the map, weighted w00 = (1 - ay) (1 - ax), w01 = (1 - ay) ax, w10 = ay (1 - ax),
//             w11 = ay ax and summed in that order (a NaN or inf in any tap of a pixel reaches its result);
//   nearest:  the tap floor(sx + 0.5), floor(sy + 0.5), clamped to the map (a half rounds up).
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

ZS_HD float warp_coordinate_clamp(float v, int64_t size) {
  const float high = static_cast<float>(size);
  return v < -1.f ? -1.f : (v > high ? high : v);
}

// The taps of output pixel (y, x) displaced by (dx, dy), in a [height, width] plane.
ZS_HD WarpTaps warp_taps(float dx, float dy, int64_t y, int64_t x, int64_t height, int64_t width, bool nearest) {
  WarpTaps t;
  for (int i = 0; i < 4; ++i) t.offset[i] = 0, t.weight[i] = 0.f;
  float sx = static_cast<float>(x) + dx;
  float sy = static_cast<float>(y) + dy;
  t.finite = warp_is_finite(sx) && warp_is_finite(sy);
  if (!t.finite) return t;
  sx = warp_coordinate_clamp(sx, width);
  sy = warp_coordinate_clamp(sy, height);
  if (nearest) {
    const int64_t xi = warp_index_clamp(static_cast<int64_t>(floorf(sx + 0.5f)), width);
    const int64_t yi = warp_index_clamp(static_cast<int64_t>(floorf(sy + 0.5f)), height);
    t.offset[0] = yi * width + xi;
    t.weight[0] = 1.f;
    return t;
  }
  const float fx = floorf(sx), fy = floorf(sy);
  const float ax = sx - fx, ay = sy - fy;
  const int64_t x0 = warp_index_clamp(static_cast<int64_t>(fx), width);
  const int64_t x1 = warp_index_clamp(static_cast<int64_t>(fx) + 1, width);
  const int64_t y0 = warp_index_clamp(static_cast<int64_t>(fy), height);
  const int64_t y1 = warp_index_clamp(static_cast<int64_t>(fy) + 1, height);
  t.offset[0] = y0 * width + x0, t.offset[1] = y0 * width + x1;
  t.offset[2] = y1 * width + x0, t.offset[3] = y1 * width + x1;
  t.weight[0] = (1.f - ay) * (1.f - ax), t.weight[1] = (1.f - ay) * ax;
  t.weight[2] = ay * (1.f - ax), t.weight[3] = ay * ax;
  return t;
}

// One plane's value at the taps (NaN where the displacement was not finite).
ZS_HD float warp_sample(const float* plane, const WarpTaps& t, bool nearest) {
  if (!t.finite) return NAN;
  if (nearest) return plane[t.offset[0]];
  return t.weight[0] * plane[t.offset[0]] + t.weight[1] * plane[t.offset[1]] + t.weight[2] * plane[t.offset[2]] +
         t.weight[3] * plane[t.offset[3]];
}

// CPU (OpenMP over rows). The caller validates the sizes (all > 0).
void warp_cpu(const WarpParams& params);
// CUDA: values/flow/output are device pointers; asynchronous on `stream` (one kernel, one thread per output pixel
// looping over the channels). Returns 0 or the cudaError_t.
CudaStatus warp_cuda(const WarpParams& params, Stream stream);

}  // namespace zsseg
