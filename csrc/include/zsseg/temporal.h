// The video filter's per-frame arithmetic (zsseg_rt/stream/temporal.py; docs/video.md "The method") as native ops,
// so that the filter runs where its state is: on the CPU over NumPy arrays, on CUDA over device buffers that never
// leave the device. Each op is the NumPy code the filter ran before, element for element (float32 products and
// sums rounded one by one, in the written order: no FMA contraction on either device; sqrt and division IEEE), so
// the CPU kernels give the NumPy filter's values bit for bit and the CUDA kernels the CPU kernels' (references:
// zsseg_rt/ops/reference.py::temporal_blend, temporal_hold, temporal_propagate).
//
//   temporal_blend      a keyframe's class scores S [C, h, w] blended with the anchor's state warped along the flow
//                       P [C, h, w]: the weight w = blend + (1 - blend) doubt, the state F = P + w (S - P) where the
//                       flow is valid (S elsewhere), the jitter measured up to the anchor (warped) moved on with this
//                       frame's squared top-2 margin change, the hysteresis' noise sqrt(J w / 2) clip((1 - doubt) /
//                       (1 - hold_doubt), 0, 1), and one flag: whether any valid pixel has a measured jitter (else
//                       the hysteresis does nothing on this frame).
//   temporal_hold       the hysteresis at the frame's size, in place on the labels / scores of argmax(F): where the
//                       flow is valid and the anchor's label (warped, nearest) differs, the anchor's label stays
//                       unless the new winner beats it (both read bilinearly from F) by hysteresis x noise.
//   temporal_propagate  a frame between keyframes: the anchor's labels (nearest) and winning scores (bilinear)
//                       warped along the flow; where the flow is not valid, the label of the nearest valid pixel
//                       (the fill map, computed on the host from the flow's validity).
//   class_state         a frame's per-class state on the device: the calibrated window scores averaged where
//                       windows overlap (segment_windows' merge) and resized to the state size with OpenCV
//                       INTER_AREA's weights (an area average; cv::resize's linear coefficients where the state is
//                       larger than the rescaled image along either axis), for the device pipeline (the host path:
//                       pipeline/class_scores.py).
#pragma once
#include <cmath>
#include <cstdint>

#include "zsseg/bilinear.h"
#include "zsseg/common.h"
#include "zsseg/segment_windows.h"  // WindowPlacement
#include "zsseg/warp.h"

namespace zsseg {

struct TemporalBlendParams {
  const float* current = nullptr;          // [classes, height, width] S
  const float* previous = nullptr;         // [classes, height, width] P: the anchor's state warped
  const float* previous_jitter = nullptr;  // [height, width] the anchor's jitter warped
  const float* doubt = nullptr;            // [height, width] in [0, 1]
  const uint8_t* valid = nullptr;          // [height, width] 0 / 1
  int64_t classes = 0, height = 0, width = 0;
  float blend = 0.f, rest = 0.f;  // float32(blend), float32(1 - blend) (the latter rounded once from double)
  float hold_span = 0.f;          // float32(1 - hold_doubt)
  float* state = nullptr;         // [classes, height, width]
  float* jitter = nullptr;        // [height, width]
  float* noise = nullptr;         // [height, width]
  int32_t* measured = nullptr;    // [1]: 1 when some valid pixel has previous_jitter != 0, else 0
};

struct TemporalHoldParams {
  int32_t* labels = nullptr;               // [height, width] in place
  float* scores = nullptr;                 // [height, width] in place
  const float* state = nullptr;            // [classes, state_height, state_width]
  const float* noise = nullptr;            // [state_height, state_width]
  const int32_t* anchor_labels = nullptr;  // [height, width]
  const float* flow = nullptr;             // [height, width, 2] at the frame's size
  const uint8_t* valid = nullptr;          // [height, width]
  const int32_t* measured = nullptr;       // [1] (temporal_blend's flag) or nullptr: hold
  int64_t classes = 0, state_height = 0, state_width = 0, height = 0, width = 0;
  float hysteresis = 0.f;
};

struct TemporalPropagateParams {
  const int32_t* anchor_labels = nullptr;  // [height, width]
  const float* anchor_scores = nullptr;    // [height, width]
  const float* flow = nullptr;             // [height, width, 2]
  // The fill (nullptr: none): fill[i, j] (flow resolution) is -1 where the flow is valid, else the flat index
  // (flow resolution) of the nearest valid pixel; rows_down [height] / cols_down [width] map the frame to the
  // flow resolution, rows_up [fill_height] / cols_up [fill_width] back (OpenCV INTER_NEAREST's index maps).
  const int32_t* fill = nullptr;
  const int32_t* rows_down = nullptr;
  const int32_t* cols_down = nullptr;
  const int32_t* rows_up = nullptr;
  const int32_t* cols_up = nullptr;
  int64_t height = 0, width = 0, fill_height = 0, fill_width = 0;
  int32_t* labels = nullptr;  // [height, width]
  float* scores = nullptr;    // [height, width]
};

constexpr int64_t kMaxStateWindows = 64;

struct ClassStateParams {
  const void* logits = nullptr;  // [num_windows, classes, in_height, in_width] window logits, `dtype`
  DType dtype = DType::Float32;  // Float16: CUDA only
  int64_t num_windows = 0, classes = 0, in_height = 0, in_width = 0;
  const WindowPlacement* windows = nullptr;  // [num_windows] HOST memory
  int64_t head_height = 0, head_width = 0, scaled_height = 0, scaled_width = 0;
  int64_t state_height = 0, state_width = 0;
  const float* class_bias = nullptr;  // [classes] or nullptr, on the logits' device
  bool apply_sigmoid = true;
  float* state = nullptr;  // [classes, state_height, state_width]
};

// ---- per-element arithmetic shared by both devices ------------------------------------------------------------

ZS_HD float tf_sub(float a, float b) {
  return warp_add(a, -b);  // exact negation: a - b rounded once
}

// NumPy's argmax over `count` values `stride` apart: the first maximum, the first NaN if there is one. `skip`
// (an index or -1) reads as -inf (the second best of _margin_change).
ZS_HD int64_t tf_argmax(const float* v, int64_t count, int64_t stride, int64_t skip) {
  int64_t best = 0;
  float top = skip == 0 ? -INFINITY : v[0];
  if (top != top) return 0;
  for (int64_t c = 1; c < count; ++c) {
    const float x = c == skip ? -INFINITY : v[c * stride];
    if (x != x) return c;
    if (x > top) top = x, best = c;
  }
  return best;
}

// One state pixel of temporal_blend (plane offset `p`).
ZS_HD void temporal_blend_pixel(const TemporalBlendParams& q, int64_t p) {
  const int64_t plane = q.height * q.width;
  const float doubt = q.doubt[p];
  const float w = warp_add(q.blend, warp_mul(q.rest, doubt));
  const bool valid = q.valid[p] != 0;
  for (int64_t c = 0; c < q.classes; ++c) {
    const float s = q.current[c * plane + p], prev = q.previous[c * plane + p];
    q.state[c * plane + p] = valid ? warp_add(prev, warp_mul(w, tf_sub(s, prev))) : s;
  }
  const float before = valid ? q.previous_jitter[p] : 0.f;
  float clip = tf_sub(1.f, doubt) / q.hold_span;
  clip = clip != clip ? clip : (clip < 0.f ? 0.f : (clip > 1.f ? 1.f : clip));
  q.noise[p] = warp_mul(sqrtf(warp_mul(before, w / 2.f)), clip);
  float change = 0.f;
  if (q.classes >= 2) {
    const int64_t a = tf_argmax(q.current + p, q.classes, plane, -1);
    const int64_t b = tf_argmax(q.current + p, q.classes, plane, a);
    const float now = tf_sub(q.current[a * plane + p], q.current[b * plane + p]);
    const float then = tf_sub(q.previous[a * plane + p], q.previous[b * plane + p]);
    const float moved = fabsf(tf_sub(now, then));
    change = warp_mul(moved, moved);
  }
  q.jitter[p] = valid ? warp_add(before, warp_mul(w, tf_sub(change, before))) : 0.f;
}

// Whether state pixel p has a measured jitter (NumPy's before.any(): a NaN counts).
ZS_HD bool temporal_measured(const TemporalBlendParams& q, int64_t p) {
  return q.valid[p] != 0 && q.previous_jitter[p] != 0.f;
}

// twin (by shape): warp.h warp_mul - the double product rounded once (__dmul_rn on the device), as warp_mul
// rounds the float one; a product of another type, with its own intrinsic
ZS_HD double tf_dmul(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}

// One plane of a [*, h, w] map read bilinearly at frame pixel (y, x) of a [height, width] frame, as the filter's
// NumPy code did (_bilinear_at: the source coordinate in double, align_corners=False, the weights rounded to float).
ZS_HD float tf_bilinear_at(const float* plane, int64_t h, int64_t w, int64_t y, int64_t x, int64_t height,
                           int64_t width) {
  double sy = tf_dmul(static_cast<double>(y) + 0.5, static_cast<double>(h) / static_cast<double>(height)) - 0.5;
  double sx = tf_dmul(static_cast<double>(x) + 0.5, static_cast<double>(w) / static_cast<double>(width)) - 0.5;
  sy = sy > 0.0 ? sy : 0.0;
  sx = sx > 0.0 ? sx : 0.0;
  int64_t y0 = static_cast<int64_t>(sy), x0 = static_cast<int64_t>(sx);
  y0 = y0 < h - 1 ? y0 : h - 1;
  x0 = x0 < w - 1 ? x0 : w - 1;
  const int64_t y1 = y0 + 1 < h - 1 ? y0 + 1 : h - 1, x1 = x0 + 1 < w - 1 ? x0 + 1 : w - 1;
  const float wy = static_cast<float>(sy - static_cast<double>(y0)),
              wx = static_cast<float>(sx - static_cast<double>(x0));
  const float top = warp_add(warp_mul(plane[y0 * w + x0], 1.f - wx), warp_mul(plane[y0 * w + x1], wx));
  const float bottom = warp_add(warp_mul(plane[y1 * w + x0], 1.f - wx), warp_mul(plane[y1 * w + x1], wx));
  return warp_add(warp_mul(top, 1.f - wy), warp_mul(bottom, wy));
}

// One frame pixel of temporal_hold.
ZS_HD void temporal_hold_pixel(const TemporalHoldParams& q, int64_t y, int64_t x) {
  const int64_t p = y * q.width + x;
  if (q.valid[p] == 0) return;
  const WarpTaps t = warp_taps(q.flow[2 * p], q.flow[2 * p + 1], y, x, q.height, q.width, true);
  if (!t.finite) return;
  const int64_t held = q.anchor_labels[t.offset[0]];
  if (held == q.labels[p] || held < 0 || held >= q.classes) return;
  const int64_t plane = q.state_height * q.state_width;
  const float kept = tf_bilinear_at(q.state + held * plane, q.state_height, q.state_width, y, x, q.height, q.width);
  const float margin =
      warp_mul(q.hysteresis, tf_bilinear_at(q.noise, q.state_height, q.state_width, y, x, q.height, q.width));
  if (tf_sub(q.scores[p], kept) < margin) {
    q.labels[p] = static_cast<int32_t>(held);
    q.scores[p] = kept;
  }
}

// One frame pixel of temporal_propagate.
ZS_HD void temporal_propagate_pixel(const TemporalPropagateParams& q, int64_t y, int64_t x) {
  const int64_t p = y * q.width + x;
  const WarpTaps t = warp_taps(q.flow[2 * p], q.flow[2 * p + 1], y, x, q.height, q.width, false);
  q.scores[p] = warp_sample(q.anchor_scores, t, false);
  int64_t src = p, sy = y, sx = x;
  if (q.fill != nullptr) {
    const int64_t k = q.fill[static_cast<int64_t>(q.rows_down[y]) * q.fill_width + q.cols_down[x]];
    if (k >= 0) {
      sy = q.rows_up[k / q.fill_width], sx = q.cols_up[k % q.fill_width];
      src = sy * q.width + sx;
    }
  }
  const WarpTaps n = warp_taps(q.flow[2 * src], q.flow[2 * src + 1], sy, sx, q.height, q.width, true);
  q.labels[p] = n.finite ? q.anchor_labels[n.offset[0]] : 0;
}

// cv::resize(INTER_AREA)'s weights along one axis, as pipeline/class_scores.py::_area_resize gets them (the host
// path). Where neither axis enlarges (cv::resize's `scale_x >= 1 && scale_y >= 1`), the area average
// (computeResizeAreaTab): destination index d reads source indices [first, first + count) with weights
// `area_weight`. Where either axis enlarges, cv::resize emulates INTER_AREA on BOTH axes with its linear
// coefficients (resizeGeneric's `area_mode`): source index sx = floor(d * scale), fraction
// f = float((d + 1) - (sx + 1) * inv_scale) (0 where <= 0, else its fractional part), weights float(1 - f) and f at
// sx and sx + 1; along the columns a destination with sx + 1 past the source reads sx = src - 1 alone (HResizeLinear
// past xmax: weight 1), along the rows sx + 1 is clamped to src - 1 (the row pair of resizeGeneric's invoker, both
// weights kept). `a`-th tap: index `area_index(s, a)`, weight `area_weight(s, a)`.
struct AreaSpan {
  int64_t first = 0, count = 0;
  double start = 0.0, end = 0.0, cell = 1.0;  // area: the source interval [start, end) and its length
  bool linear = false;                        // the enlarging (linear) coefficients
  int64_t second = 0;                         // linear: the second tap's index
  float frac = 0.f;                           // linear: f (the weights 1 - f, f)
};

// Whether cv::resize takes the linear coefficients for a `src` -> `dst` resize (either axis enlarges).
ZS_HD bool area_enlarges(int64_t src_h, int64_t src_w, int64_t dst_h, int64_t dst_w) {
  return dst_h > src_h || dst_w > src_w;
}

ZS_HD AreaSpan area_span(int64_t d, int64_t src, int64_t dst) {
  const double scale = 1.0 / (static_cast<double>(dst) / static_cast<double>(src));  // as cv::resize
  AreaSpan s;
  s.start = static_cast<double>(d) * scale;
  s.end = s.start + scale;
  s.cell = scale < static_cast<double>(src) - s.start ? scale : static_cast<double>(src) - s.start;
  int64_t first = static_cast<int64_t>(ceil(s.start)), last = static_cast<int64_t>(floor(s.end));
  last = last < src - 1 ? last : src - 1;
  first = first < last ? first : last;
  s.first = first - (static_cast<double>(first) - s.start > 1e-3 ? 1 : 0);
  s.count = last - s.first + (s.end - static_cast<double>(last) > 1e-3 ? 1 : 0);
  return s;
}

// The linear coefficients (see above); `columns`: the horizontal pass (a lone last tap), else the vertical one.
ZS_HD AreaSpan area_linear_span(int64_t d, int64_t src, int64_t dst, bool columns) {
  const double inv_scale = static_cast<double>(dst) / static_cast<double>(src), scale = 1.0 / inv_scale;
  AreaSpan s;
  s.linear = true;
  int64_t sx = static_cast<int64_t>(floor(static_cast<double>(d) * scale));
  float f = static_cast<float>(static_cast<double>(d + 1) - tf_dmul(static_cast<double>(sx + 1), inv_scale));  // no FMA
  f = f <= 0.f ? 0.f : f - floorf(f);
  if (columns && sx + 1 >= src) {
    s.first = s.second = src - 1, s.count = 1, s.frac = 0.f;
    return s;
  }
  s.first = sx < src - 1 ? sx : src - 1;
  s.second = sx + 1 < src - 1 ? sx + 1 : src - 1;
  s.count = 2, s.frac = f;
  return s;
}

ZS_HD int64_t area_index(const AreaSpan& s, int64_t a) {
  return s.linear ? (a == 0 ? s.first : s.second) : s.first + a;
}

ZS_HD float area_weight(const AreaSpan& s, int64_t a) {
  if (s.linear) return a == 0 ? 1.f - s.frac : s.frac;
  const int64_t i = s.first + a;
  const double lo = static_cast<double>(i) < s.start ? s.start : static_cast<double>(i);
  double hi = static_cast<double>(i + 1) < s.end ? static_cast<double>(i + 1) : s.end;
  double part = hi - lo;
  part = part < s.cell ? part : s.cell;
  return static_cast<float>(part / s.cell);
}

// class_state's sizes, without pointers (a CUDA kernel takes them by value).
struct ClassStateDims {
  int64_t num_windows, classes, in_h, in_w, head_h, head_w, scaled_h, scaled_w, state_h, state_w;
  bool sigmoid;
};

inline ClassStateDims class_state_dims(const ClassStateParams& p) {
  return ClassStateDims{p.num_windows,   p.classes,      p.in_height,    p.in_width,    p.head_height,  p.head_width,
                        p.scaled_height, p.scaled_width, p.state_height, p.state_width, p.apply_sigmoid};
}

// One state pixel (row i, column j) of class_state for one class: the merged (window-averaged) calibrated values
// at the rescaled pixels it covers, as segment_windows merges, area-averaged. `read(k, ty, tx)` is the class's
// logits plane of window k read bilinearly at taps (ty, tx) (float logits on the CPU; float or half on CUDA).
template <typename Read>
ZS_HD float class_state_pixel(const ClassStateDims& d, const WindowPlacement* windows, float bias, int64_t i, int64_t j,
                              const Read& read) {
  const float scale_y = bilinear_scale(d.in_h, d.head_h), scale_x = bilinear_scale(d.in_w, d.head_w);
  const bool linear = area_enlarges(d.scaled_h, d.scaled_w, d.state_h, d.state_w);
  const AreaSpan rows =
      linear ? area_linear_span(i, d.scaled_h, d.state_h, false) : area_span(i, d.scaled_h, d.state_h);
  const AreaSpan cols = linear ? area_linear_span(j, d.scaled_w, d.state_w, true) : area_span(j, d.scaled_w, d.state_w);
  float value = 0.f;
  for (int64_t a = 0; a < rows.count; ++a) {
    const int64_t r = area_index(rows, a);
    float sum = 0.f;
    for (int64_t b = 0; b < cols.count; ++b) {
      const int64_t q = area_index(cols, b);
      float total = 0.f, count = 0.f;
      for (int64_t k = 0; k < d.num_windows; ++k) {
        const WindowPlacement& w = windows[k];
        if (r < w.y1 || r >= w.y2 || q < w.x1 || q >= w.x2) continue;
        float v = read(k, bilinear_tap(scale_y, r - w.y1, d.in_h), bilinear_tap(scale_x, q - w.x1, d.in_w));
        if (d.sigmoid) v = logistic(v);
        total += v - bias;
        count += 1.f;
      }
      const float merged = count > 1.f ? total / count : total;
      sum = warp_add(sum, warp_mul(merged, area_weight(cols, b)));
    }
    value = a == 0 ? warp_mul(area_weight(rows, a), sum) : warp_add(value, warp_mul(area_weight(rows, a), sum));
  }
  return value;
}

// CPU kernels (OpenMP). The caller validates the sizes.
void temporal_blend_cpu(const TemporalBlendParams& params);
void temporal_hold_cpu(const TemporalHoldParams& params);
void temporal_propagate_cpu(const TemporalPropagateParams& params);
void class_state_cpu(const ClassStateParams& params);
// CUDA: pointers on the device (ClassStateParams::windows on the host); asynchronous on `stream`.
CudaStatus temporal_blend_cuda(const TemporalBlendParams& params, Stream stream);
CudaStatus temporal_hold_cuda(const TemporalHoldParams& params, Stream stream);
CudaStatus temporal_propagate_cuda(const TemporalPropagateParams& params, Stream stream);
CudaStatus class_state_cuda(const ClassStateParams& params, Stream stream);

}  // namespace zsseg
