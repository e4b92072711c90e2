// CPU fused upsample + calibration + argmax over classes. OpenMP over output rows (batch * out_height).
//
// Blend order: columns first, then rows, as upsample (CPU and CUDA), the CUDA segment kernel and torch, so the
// upsampled values are bit for bit upsample_cpu's. Each source row of every class is transposed into a
// [crop_width, classes] row (class-contiguous); a thread keeps the two it last used (consecutive output rows
// mostly share their source rows), and per output pixel the four taps of every class are blended (columns,
// then rows) into the C upsampled values v[c] in a [classes] scratch. No [B, C, H, W] buffer exists.
//
// Choosing the winner exactly like the reference (fp64 sigmoid and bias on the fp32 upsampled value):
// * "grouped" path (few distinct bias values, the usual case: ZegCLIP's 0.1 on seen classes, 0 elsewhere):
//   f(x) - b is increasing in x for a fixed b, so within each group of equal bias the winner is the raw
//   argmax (lowest index on ties); the group winners are ranked with the fast sigmoid and those within its
//   error margin of the best are calibrated exactly (fp64) and compared.
// * "general" path (many distinct biases): an approximate calibrated value (fast vectorisable sigmoid) for
//   every class, then the exact fp64 value only for the classes within a safe margin of the approximate
//   maximum (the margin exceeds twice the approximation error, so the exact winner is always re-checked).
// A pixel where any upsampled value is NaN takes the first NaN class, score NaN (torch.argmax's NaN rule).
// The one known difference from the fp64 reference: in the grouped path two different raw values whose fp64
// sigmoid rounds to the same number (|x| > ~36) resolve to the larger raw value instead of the lower index.
// The kernel never reads FP exception flags: let GCC turn the clamps of exp_fast_f32 into vector min/max.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include <omp.h>

#include "bilinear_taps.h"
#include "cpu_dispatch.h"
#include "zsseg/segment.h"

namespace zsseg {
namespace {

using cpu::make_taps;

constexpr int64_t kMaxGroupedBiases = 8;  // above this many distinct biases the general path is faster

// Class order used by the scratch buffers ("slots") and the bias groups over it.
struct ClassLayout {
  bool grouped = false;
  std::vector<int32_t> class_of_slot;  // [C]
  std::vector<int32_t> slot_of_class;  // [C]
  std::vector<float> slot_bias;        // [C] bias of each slot
  std::vector<int64_t> group_begin;    // [K + 1] slot ranges of equal bias (grouped path only)
};

ClassLayout make_class_layout(const float* class_bias, int64_t classes) {
  ClassLayout layout;
  std::vector<float> distinct;
  if (class_bias != nullptr) {
    distinct.assign(class_bias, class_bias + classes);
    std::sort(distinct.begin(), distinct.end());
    distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  } else {
    distinct.push_back(0.f);
  }
  layout.grouped = static_cast<int64_t>(distinct.size()) <= kMaxGroupedBiases;
  auto bias_of = [&](int64_t c) { return class_bias != nullptr ? class_bias[c] : 0.f; };
  for (size_t g = 0; g < (layout.grouped ? distinct.size() : size_t{1}); ++g) {
    layout.group_begin.push_back(static_cast<int64_t>(layout.class_of_slot.size()));
    for (int64_t c = 0; c < classes; ++c) {  // ascending class index inside a group
      if (!layout.grouped || bias_of(c) == distinct[g]) layout.class_of_slot.push_back(static_cast<int32_t>(c));
    }
  }
  layout.group_begin.push_back(classes);
  layout.slot_of_class.resize(static_cast<size_t>(classes));
  layout.slot_bias.resize(static_cast<size_t>(classes));
  for (int64_t s = 0; s < classes; ++s) {
    layout.slot_of_class[static_cast<size_t>(layout.class_of_slot[s])] = static_cast<int32_t>(s);
    layout.slot_bias[static_cast<size_t>(s)] = bias_of(layout.class_of_slot[s]);
  }
  return layout;
}

struct PixelResult {
  int32_t label;
  float score;
};

// Offers class `label` with exact calibrated value `value` to the running best (torch's tie rule).
inline void offer(PixelResult& best, double& best_value, int32_t label, double value) {
  if (best.label < 0 || value > best_value || (value == best_value && label < best.label)) {
    best.label = label;
    best_value = value;
  }
}

// v: [C] upsampled values in slot order. Returns the first class (original order) whose value is NaN, or -1.
int32_t first_nan_class(const float* v, const ClassLayout& layout, int64_t classes) {
  for (int64_t c = 0; c < classes; ++c) {
    if (is_nan_value(v[layout.slot_of_class[static_cast<size_t>(c)]])) return static_cast<int32_t>(c);
  }
  return -1;
}

// One output pixel's four source columns (class-contiguous rows of the transposed source rows: a = upper row,
// b = lower row, 0/1 = left/right) and its weights.
struct PixelTaps {
  const float *a0, *a1, *b0, *b1;
  float wx0, wx1, wy0, wy1;
};

// Bilinear values of one pixel for slots [begin, end) into v, columns first then rows (upsample_cpu's
// expression); returns their maximum (NaN-blind: NaN rows are handled separately).
ZS_CPU_INLINE float blend_and_max(const PixelTaps& p, int64_t begin, int64_t end, float* v) {
  float m = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : m)
  for (int64_t s = begin; s < end; ++s) {
    const float t =
        blend2(blend2(p.a0[s], p.a1[s], p.wx0, p.wx1), blend2(p.b0[s], p.b1[s], p.wx0, p.wx1), p.wy0, p.wy1);
    v[s] = t;
    m = m > t ? m : t;
  }
  return m;
}

// First slot s in [begin, end) with values[s] >= target (one exists). Scans 8 at a time (vectorised).
ZS_CPU_INLINE int64_t first_at_least(const float* values, int64_t begin, int64_t end, float target) {
  int64_t s = begin;
  for (; s + 8 <= end; s += 8) {
    int hit = 0;
    for (int j = 0; j < 8; ++j) hit |= static_cast<int>(values[s + j] >= target);
    if (hit) break;
  }
  while (s < end && !(values[s] >= target)) ++s;
  return s;
}

// Grouped path. v: [C] scratch (slot order), filled here from the pixel's two blended rows.
ZS_CPU_INLINE PixelResult decide_grouped(const PixelTaps& taps, const ClassLayout& layout, bool apply_sigmoid,
                                         bool check_nan, int64_t classes, float* v) {
  const size_t groups = layout.group_begin.size() - 1;  // <= kMaxGroupedBiases
  float group_max[kMaxGroupedBiases];
  for (size_t g = 0; g < groups; ++g) {
    group_max[g] = blend_and_max(taps, layout.group_begin[g], layout.group_begin[g + 1], v);
  }
  if (check_nan) {
    const int32_t nan_class = first_nan_class(v, layout, classes);
    if (nan_class >= 0) return {nan_class, std::numeric_limits<float>::quiet_NaN()};
  }
  // Rank the group winners with the fast sigmoid; only groups within its error margin of the best are
  // re-evaluated exactly (fp64), so most pixels need a single exact evaluation (the winner's score).
  float group_approx[kMaxGroupedBiases];
  float approx_best = -std::numeric_limits<float>::infinity();
  for (size_t g = 0; g < groups; ++g) {
    const float bias = layout.slot_bias[static_cast<size_t>(layout.group_begin[g])];
    group_approx[g] = (apply_sigmoid ? sigmoid_fast_f32(group_max[g]) : group_max[g]) - bias;
    approx_best = std::max(approx_best, group_approx[g]);
  }
  const float margin = 1e-6f + 1e-6f * std::fabs(approx_best);  // as in decide_general
  const float threshold = std::isinf(approx_best) ? approx_best : approx_best - margin;
  PixelResult best{-1, 0.f};
  double best_value = 0.0;
  for (size_t g = 0; g < groups; ++g) {
    if (!(group_approx[g] >= threshold)) continue;
    const int64_t slot = first_at_least(v, layout.group_begin[g], layout.group_begin[g + 1], group_max[g]);
    const float bias = layout.slot_bias[static_cast<size_t>(layout.group_begin[g])];
    offer(best, best_value, layout.class_of_slot[static_cast<size_t>(slot)],
          calibrate_f64(group_max[g], bias, apply_sigmoid));
  }
  best.score = static_cast<float>(best_value);
  return best;
}

// Approximate calibrated values of all classes into approx; returns their maximum.
ZS_CPU_INLINE float approximate_calibrated(const float* v, const float* bias, bool apply_sigmoid, int64_t classes,
                                           float* approx) {
  float m = -std::numeric_limits<float>::infinity();
  if (apply_sigmoid) {
#pragma omp simd reduction(max : m)
    for (int64_t c = 0; c < classes; ++c) {
      const float a = sigmoid_fast_f32(v[c]) - bias[c];
      approx[c] = a;
      m = m > a ? m : a;
    }
  } else {
#pragma omp simd reduction(max : m)
    for (int64_t c = 0; c < classes; ++c) {
      const float a = v[c] - bias[c];
      approx[c] = a;
      m = m > a ? m : a;
    }
  }
  return m;
}

// General path (slot order == class order). v, approx: [C] scratch.
ZS_CPU_INLINE PixelResult decide_general(const PixelTaps& taps, const ClassLayout& layout, bool apply_sigmoid,
                                         bool check_nan, int64_t classes, float* v, float* approx) {
  blend_and_max(taps, 0, classes, v);
  if (check_nan) {
    const int32_t nan_class = first_nan_class(v, layout, classes);
    if (nan_class >= 0) return {nan_class, std::numeric_limits<float>::quiet_NaN()};
  }
  const float* bias = layout.slot_bias.data();
  const float approx_max = approximate_calibrated(v, bias, apply_sigmoid, classes, approx);
  // fast sigmoid error < 1e-7 and fp32 rounding of the subtraction < 1.2e-7 * |value|: 10x safety.
  const float margin = 1e-6f + 1e-6f * std::fabs(approx_max);
  const float threshold = std::isinf(approx_max) ? approx_max : approx_max - margin;
  PixelResult best{-1, 0.f};
  double best_value = 0.0;
  for (int64_t c = first_at_least(approx, 0, classes, threshold); c < classes;
       c = first_at_least(approx, c + 1, classes, threshold)) {
    offer(best, best_value, static_cast<int32_t>(c), calibrate_f64(v[c], bias[c], apply_sigmoid));
  }
  best.score = static_cast<float>(best_value);
  return best;
}

// out: [crop_width, C]; source row `src_row` (of the crop) of every class, transposed class-contiguous (slot
// order). Returns true when every value is finite.
ZS_CPU_CLONES bool transpose_source_row(const float* batch_logits, const ResizeGeometry& g, int64_t src_row,
                                        const ClassLayout& layout, float* out) {
  const int64_t classes = g.channels;
  const int64_t plane = g.in_height * g.in_width;
  const int64_t row_offset = (g.crop_top + src_row) * g.in_width + g.crop_left;
  for (int64_t s = 0; s < classes; ++s) {
    const float* row = batch_logits + layout.class_of_slot[static_cast<size_t>(s)] * plane + row_offset;
    for (int64_t x = 0; x < g.crop_width; ++x) out[x * classes + s] = row[x];
  }
  int non_finite = 0;
  const float max_finite = std::numeric_limits<float>::max();
#pragma omp simd reduction(| : non_finite)
  for (int64_t i = 0; i < classes * g.crop_width; ++i)
    non_finite |= static_cast<int>(!(std::fabs(out[i]) <= max_finite));
  return non_finite == 0;
}

// A transposed source row kept by a thread: `key` = batch * crop_height + source row (-1: empty).
struct BlendedRow {
  float* values = nullptr;  // [crop_width, C]
  int64_t key = -1;
  bool finite = true;
};

struct RowContext {
  const ResizeGeometry& geometry;
  const ClassLayout& layout;
  const std::vector<BilinearTap>& col_taps;
  bool apply_sigmoid;
};

// One output row from its two blended source rows (vertical blend with ty); v / approx: [C] per thread.
ZS_CPU_CLONES void segment_row(const RowContext& ctx, const BlendedRow& top, const BlendedRow& bottom,
                               const BilinearTap& ty, float* v, float* approx, int32_t* labels, float* scores) {
  const ResizeGeometry& g = ctx.geometry;
  const int64_t classes = g.channels;
  // Finite rows cannot produce NaN (weights are in [0, 1]); otherwise check every pixel.
  const bool check_nan = !(top.finite && bottom.finite);
  for (int64_t x = 0; x < g.out_width; ++x) {
    const BilinearTap& tx = ctx.col_taps[static_cast<size_t>(x)];
    const PixelTaps taps{top.values + tx.i0 * classes,
                         top.values + tx.i1 * classes,
                         bottom.values + tx.i0 * classes,
                         bottom.values + tx.i1 * classes,
                         tx.w0,
                         tx.w1,
                         ty.w0,
                         ty.w1};
    const PixelResult result = ctx.layout.grouped
                                   ? decide_grouped(taps, ctx.layout, ctx.apply_sigmoid, check_nan, classes, v)
                                   : decide_general(taps, ctx.layout, ctx.apply_sigmoid, check_nan, classes, v, approx);
    labels[x] = result.label;
    scores[x] = result.score;
  }
}

}  // namespace

void segment_cpu(const SegmentParams& params) {
  const ResizeGeometry& g = params.geometry;
  const std::vector<BilinearTap> row_taps = make_taps(g.crop_height, g.out_height);
  const std::vector<BilinearTap> col_taps = make_taps(g.crop_width, g.out_width);
  const ClassLayout layout = make_class_layout(params.class_bias, g.channels);
  const RowContext ctx{g, layout, col_taps, params.apply_sigmoid};
  const float* logits = static_cast<const float*>(params.logits);  // [B, C, in_h, in_w]
  const int64_t batch_stride = g.channels * g.in_height * g.in_width;
  const int64_t total_rows = g.batch * g.out_height;

  // Per-thread scratch is allocated here, before the parallel region: an allocation failure inside an OpenMP
  // region cannot propagate and would terminate the process; here it reaches Python as MemoryError.
  const int threads = std::max(1, omp_get_max_threads());
  const size_t blended = static_cast<size_t>(g.crop_width * g.channels);
  const size_t per_thread = 2 * blended + static_cast<size_t>(2 * g.channels);
  std::vector<float> workspace(per_thread * static_cast<size_t>(threads));

#pragma omp parallel num_threads(threads)
  {
    float* base = workspace.data() + per_thread * static_cast<size_t>(omp_get_thread_num());
    BlendedRow cache[2];
    cache[0].values = base;            // [crop_w, C]
    cache[1].values = base + blended;  // [crop_w, C]
    float* v = base + 2 * blended;     // [C]
    float* approx = v + g.channels;    // [C]
    // The cached row for `key`, computed if needed; never evicts the row `keep`.
    auto blended_row = [&](int64_t b, int64_t src_row, int64_t keep) -> BlendedRow& {
      const int64_t key = b * g.crop_height + src_row;
      for (BlendedRow& r : cache) {
        if (r.key == key) return r;
      }
      BlendedRow& r = cache[0].key == keep ? cache[1]
                                           : (cache[1].key == keep          ? cache[0]
                                              : cache[0].key < cache[1].key ? cache[0]
                                                                            : cache[1]);
      r.finite = transpose_source_row(logits + b * batch_stride, g, src_row, layout, r.values);
      r.key = key;
      return r;
    };
#pragma omp for schedule(static)
    for (int64_t row = 0; row < total_rows; ++row) {
      const int64_t b = row / g.out_height;
      const BilinearTap& ty = row_taps[static_cast<size_t>(row % g.out_height)];
      const BlendedRow& top = blended_row(b, ty.i0, -1);
      const BlendedRow& bottom = blended_row(b, ty.i1, b * g.crop_height + ty.i0);
      segment_row(ctx, top, bottom, ty, v, approx, params.labels + row * g.out_width,
                  params.scores + row * g.out_width);
    }
  }
}

}  // namespace zsseg
