// CPU fused multi-window exact post-processing (see zsseg/segment_windows.h). OpenMP over output rows; each
// thread keeps a [C, scaled_w] merged-row scratch and a cache of two merged rescaled rows transposed to [scaled_w,
// C]; each output pixel blends columns first, then rows, as every resize here.
//
// Sigmoid path with class pruning (segment_windows_cpu_pruned): OpenMP over output tiles (kTileRows x kTileCols).
// Per tile, per class, the min and max of the window logits the tile's footprint reads bound every output value
// of the class in the tile (bilinear blends and window averages are convex, the sigmoid is increasing): a class
// whose upper bound is below another class's lower bound (strictly, with a slack of 1e-5 (1 + |bias|) that covers
// every rounding and the vectorised sigmoid's error) wins no pixel of the tile and is skipped. The other classes'
// merged values are computed over the footprint with the same per-element arithmetic as merged_row and the output
// blend and argmax as output_row, so labels and scores are bit-identical to the streaming path. A first pass
// computes every tile's list; when more than half of the (tile, class) pairs remain, the streaming path runs
// instead (footprints of neighbouring tiles overlap by a row or two: recomputing them only pays with pruning).
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
#include "zsseg/segment_windows.h"

namespace zsseg {
namespace {

struct Geometry {
  const SegmentWindowsParams& p;
  std::vector<BilinearTap> head_rows, head_cols;  // window pixel -> logits taps (head resolution)
  std::vector<BilinearTap> out_rows, out_cols;    // output pixel -> rescaled taps
  cpu::ColumnTaps cols;                           // head_cols as arrays (vectorisable gathers), as upsample_cpu does
};

// One window row (window-local row u, window-local columns [x0, x0 + width): the whole row, or a footprint's part
// of it) of class c, calibrated like upsample_cpu, added into acc[x]. Same expression as upsample_cpu's resize_row
// (cpu::blend_at: blend columns, then rows), then f, then - bias.
ZS_CPU_INLINE void add_window_row(const float* row0, const float* row1, float wy0, float wy1, const Geometry& geo,
                                  int64_t x0, int64_t width, bool sigmoid, float bias, float* acc) {
  const int32_t* i0 = geo.cols.i0.data() + x0;
  const int32_t* i1 = geo.cols.i1.data() + x0;
  const float* w0 = geo.cols.w0.data() + x0;
  const float* w1 = geo.cols.w1.data() + x0;
  if (sigmoid) {
#pragma omp simd
    for (int64_t x = 0; x < width; ++x) {
      acc[x] += sigmoid_fast_nan_f32(cpu::blend_at(row0, row1, wy0, wy1, i0, i1, w0, w1, x)) - bias;
    }
  } else {
#pragma omp simd
    for (int64_t x = 0; x < width; ++x) acc[x] += cpu::blend_at(row0, row1, wy0, wy1, i0, i1, w0, w1, x) - bias;
  }
}

// Merged rescaled row r of every class into merged [C, scaled_w]; count [scaled_w] scratch. False when a
// pixel of the row is covered by no window.
ZS_CPU_CLONES bool merged_row(const Geometry& geo, int64_t r, float* merged, float* count) {
  const SegmentWindowsParams& p = geo.p;
  const float* logits = static_cast<const float*>(p.logits);
  const int64_t ws = p.scaled_width, plane = p.in_height * p.in_width;
  std::fill(merged, merged + p.classes * ws, 0.f);
  std::fill(count, count + ws, 0.f);
  int windows_here = 0;
  for (int64_t k = 0; k < p.num_windows; ++k) {
    const WindowPlacement& w = p.windows[k];
    if (r < w.y1 || r >= w.y2) continue;
    ++windows_here;
    const BilinearTap& ty = geo.head_rows[static_cast<size_t>(r - w.y1)];
    const int64_t width = w.x2 - w.x1;
    for (int64_t x = w.x1; x < w.x2; ++x) count[x] += 1.f;
    const float* base = logits + k * p.classes * plane;
    for (int64_t c = 0; c < p.classes; ++c) {
      const float* src = base + c * plane;
      // softmax: raw logits are averaged; the bias applies after the softmax (output_row_softmax)
      const float bias = p.class_bias != nullptr && !p.softmax ? p.class_bias[c] : 0.f;
      add_window_row(src + ty.i0 * p.in_width, src + ty.i1 * p.in_width, ty.w0, ty.w1, geo, 0, width,
                     p.apply_sigmoid && !p.softmax, bias, merged + c * ws + w.x1);
    }
  }
  bool covered = windows_here > 0;
  for (int64_t x = 0; x < ws; ++x) covered = covered && count[x] > 0.f;
  if (!covered) return false;
  if (windows_here > 1) {  // total /= count, as merge_windows (a single covering window is returned as is)
    for (int64_t c = 0; c < p.classes; ++c) {
      float* row = merged + c * ws;
#pragma omp simd
      for (int64_t x = 0; x < ws; ++x) row[x] /= count[x];
    }
  } else {
    for (int64_t x = 0; x < ws; ++x) {
      if (count[x] != 1.f) {  // cannot happen with one window; keeps the division semantics if it ever did
        for (int64_t c = 0; c < p.classes; ++c) merged[c * ws + x] /= count[x];
      }
    }
  }
  return true;
}

// A merged rescaled row transposed class-contiguous, [scaled_w, C], cached per thread; `row` = the rescaled row
// (-1: empty).
struct MergedRowT {
  float* values = nullptr;
  int64_t row = -1;
  bool finite = true;
};

// merged [C, scaled_w] -> out [scaled_w, C]. Returns true when every value is finite.
ZS_CPU_CLONES bool transpose_merged_row(const Geometry& geo, const float* merged, float* out) {
  const SegmentWindowsParams& p = geo.p;
  const int64_t classes = p.classes, ws = p.scaled_width;
  if (p.softmax && p.logit_scale != 1.f) {  // softmax_segment: merged * logit_scale before the output resize
    const float scale = p.logit_scale;
    for (int64_t c = 0; c < classes; ++c) {
      const float* row = merged + c * ws;
      for (int64_t x = 0; x < ws; ++x) out[x * classes + c] = row[x] * scale;
    }
  } else {
    for (int64_t c = 0; c < classes; ++c) {
      const float* row = merged + c * ws;
      for (int64_t x = 0; x < ws; ++x) out[x * classes + c] = row[x];
    }
  }
  int non_finite = 0;
  const float max_finite = std::numeric_limits<float>::max();
#pragma omp simd reduction(| : non_finite)
  for (int64_t i = 0; i < classes * ws; ++i) non_finite |= static_cast<int>(!(std::fabs(out[i]) <= max_finite));
  return non_finite == 0;
}

// The resized values v[c] of one output pixel (column taps tx, row taps ty) for every class, from two transposed
// merged rows: per class the bilinear value blending columns first, then rows, as every resize here. Returns
// the max reduction of the values (not meaningful when one is NaN: the callers scan v for NaN).
ZS_CPU_INLINE float blend_pixel(const MergedRowT& top, const MergedRowT& bottom, const BilinearTap& tx,
                                const BilinearTap& ty, int64_t classes, float* v) {
  const float* a0 = top.values + tx.i0 * classes;
  const float* a1 = top.values + tx.i1 * classes;
  const float* b0 = bottom.values + tx.i0 * classes;
  const float* b1 = bottom.values + tx.i1 * classes;
  float best = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : best)
  for (int64_t c = 0; c < classes; ++c) {
    const float t = blend2(blend2(a0[c], a1[c], tx.w0, tx.w1), blend2(b0[c], b1[c], tx.w0, tx.w1), ty.w0, ty.w1);
    v[c] = t;
    best = best > t ? best : t;
  }
  return best;
}

// One output row from two merged rows (as segment_cpu with no bias and no sigmoid: per pixel and class the
// bilinear value blending columns first, then rows, as every resize here; raw argmax, lowest index on ties,
// first NaN wins).
ZS_CPU_CLONES void output_row(const Geometry& geo, const MergedRowT& top, const MergedRowT& bottom,
                              const BilinearTap& ty, float* v, int32_t* labels, float* scores) {
  const SegmentWindowsParams& p = geo.p;
  const int64_t classes = p.classes;
  const bool finite = top.finite && bottom.finite;
  for (int64_t x = 0; x < p.out_width; ++x) {
    const float best = blend_pixel(top, bottom, geo.out_cols[static_cast<size_t>(x)], ty, classes, v);
    int32_t label = -1;
    if (!finite) {
      for (int64_t c = 0; c < classes && label < 0; ++c) {
        if (is_nan_value(v[c])) label = static_cast<int32_t>(c);
      }
    }
    if (label >= 0) {
      labels[x] = label;
      scores[x] = std::numeric_limits<float>::quiet_NaN();
      continue;
    }
    int64_t c = 0;
    while (c < classes && !(v[c] >= best)) ++c;
    labels[x] = static_cast<int32_t>(c < classes ? c : 0);
    scores[x] = c < classes ? v[c] : best;
  }
}

// Softmax variant of output_row: per output pixel the resized logits v (as output_row), then the softmax over
// classes (names, with class_of) in NumPy's order (v - max, exp, sum in class order, divide), with class_of the
// max over each class's names, dropped classes zeroed, minus the bias, argmax (lowest index on ties). A NaN logit
// or a non-finite max gives (0, NaN).
ZS_CPU_CLONES void output_row_softmax(const Geometry& geo, const MergedRowT& top, const MergedRowT& bottom,
                                      const BilinearTap& ty, float* v, int32_t* labels, float* scores) {
  const SegmentWindowsParams& p = geo.p;
  const int64_t classes = p.classes;
  const bool finite = top.finite && bottom.finite;
  const float* bias = p.class_bias;
  const uint8_t* drop = p.class_drop;
  const int32_t* class_of = p.class_of;
  const float inf = std::numeric_limits<float>::infinity();
  for (int64_t x = 0; x < p.out_width; ++x) {
    const float best = blend_pixel(top, bottom, geo.out_cols[static_cast<size_t>(x)], ty, classes, v);
    bool bad = !(std::fabs(best) <= std::numeric_limits<float>::max());  // max is +-inf (or NaN)
    if (!finite || bad) {  // a blend of finite rows can still overflow: scan for NaN
      for (int64_t c = 0; c < classes && !bad; ++c) bad = is_nan_value(v[c]);
    }
    if (bad) {
      labels[x] = 0;
      scores[x] = std::numeric_limits<float>::quiet_NaN();
      continue;
    }
    for (int64_t c = 0; c < classes; ++c) v[c] = std::exp(v[c] - best);
    float sum = 0.f;
    for (int64_t c = 0; c < classes; ++c) sum += v[c];  // class order, as NumPy's reduction over the class axis
    int32_t label = 0;
    float top_value = -inf;
    auto consider = [&](int64_t c, float prob) {  // one class's probability: area filter, bias, argmax
      if (drop != nullptr && drop[c] != 0) prob = 0.f;
      if (bias != nullptr) prob -= bias[c];
      if (c == 0 || prob > top_value) {  // all finite here: strict > keeps the lowest index on ties
        label = static_cast<int32_t>(c);
        top_value = prob;
      }
    };
    if (class_of == nullptr) {
      for (int64_t c = 0; c < classes; ++c) consider(c, v[c] / sum);
    } else {  // names grouped by class: the running max over a class's names (probabilities are >= 0)
      int64_t current = class_of[0];
      float class_prob = 0.f;
      for (int64_t n = 0; n < classes; ++n) {
        const float prob = v[n] / sum;
        if (class_of[n] != current) {
          consider(current, class_prob);
          current = class_of[n];
          class_prob = 0.f;
        }
        class_prob = prob > class_prob ? prob : class_prob;
      }
      consider(current, class_prob);
    }
    labels[x] = label;
    scores[x] = top_value;
  }
}

// ---- the pruned (tiled) sigmoid path -----------------------------------------------------------------------

constexpr int64_t kTileRows = 16, kTileCols = 64;  // output pixels per tile
constexpr float kTameLogit = 1e30f;                // |logit| above this (or non-finite): the class is always kept
constexpr float kPruneSlack = 1e-5f;               // bound slack, times (1 + |bias|)

struct TileBox {
  int64_t y0, y1, x0, x1;      // output rows [y0, y1), columns [x0, x1)
  int64_t fy0, fy1, fx0, fx1;  // footprint: rescaled rows [fy0, fy1], columns [fx0, fx1]
};

TileBox tile_box(const Geometry& geo, int64_t ty, int64_t tx) {
  const SegmentWindowsParams& p = geo.p;
  TileBox b;
  b.y0 = ty * kTileRows;
  b.y1 = std::min(b.y0 + kTileRows, p.out_height);
  b.x0 = tx * kTileCols;
  b.x1 = std::min(b.x0 + kTileCols, p.out_width);
  b.fy0 = geo.out_rows[static_cast<size_t>(b.y0)].i0;
  b.fy1 = geo.out_rows[static_cast<size_t>(b.y1 - 1)].i1;
  b.fx0 = geo.out_cols[static_cast<size_t>(b.x0)].i0;
  b.fx1 = geo.out_cols[static_cast<size_t>(b.x1 - 1)].i1;
  return b;
}

// The classes that can win a pixel of the tile, in class order, appended to `listed`; `wild`: some listed class
// has a non-finite or huge logit (its merged values may be NaN).
ZS_CPU_CLONES void tile_classes(const Geometry& geo, const TileBox& b, std::vector<float>& lower,
                                std::vector<float>& upper, std::vector<uint16_t>& listed, bool& wild) {
  const SegmentWindowsParams& p = geo.p;
  const float* logits = static_cast<const float*>(p.logits);
  const int64_t classes = p.classes, plane = p.in_height * p.in_width;
  std::fill(lower.begin(), lower.end(), std::numeric_limits<float>::infinity());
  std::fill(upper.begin(), upper.end(), -std::numeric_limits<float>::infinity());
  std::vector<uint8_t> tame(static_cast<size_t>(classes), 1);
  for (int64_t k = 0; k < p.num_windows; ++k) {
    const WindowPlacement& w = p.windows[k];
    const int64_t ry0 = std::max<int64_t>(b.fy0, w.y1), ry1 = std::min<int64_t>(b.fy1, w.y2 - 1);
    const int64_t cx0 = std::max<int64_t>(b.fx0, w.x1), cx1 = std::min<int64_t>(b.fx1, w.x2 - 1);
    if (ry0 > ry1 || cx0 > cx1) continue;
    const int64_t lr0 = geo.head_rows[static_cast<size_t>(ry0 - w.y1)].i0,
                  lr1 = geo.head_rows[static_cast<size_t>(ry1 - w.y1)].i1;
    const int64_t lc0 = geo.head_cols[static_cast<size_t>(cx0 - w.x1)].i0,
                  lc1 = geo.head_cols[static_cast<size_t>(cx1 - w.x1)].i1;
    for (int64_t c = 0; c < classes; ++c) {
      const float* src = logits + (k * classes + c) * plane;
      float lo = lower[static_cast<size_t>(c)], hi = upper[static_cast<size_t>(c)];
      bool ok = true;
      for (int64_t r = lr0; r <= lr1; ++r) {
        for (int64_t q = lc0; q <= lc1; ++q) {
          const float v = src[r * p.in_width + q];
          ok = ok && std::fabs(v) <= kTameLogit;  // false for NaN and +-inf
          lo = std::min(lo, v);
          hi = std::max(hi, v);
        }
      }
      lower[static_cast<size_t>(c)] = lo;
      upper[static_cast<size_t>(c)] = hi;
      if (!ok) tame[static_cast<size_t>(c)] = 0;
    }
  }
  float threshold = -std::numeric_limits<float>::infinity();  // the largest lower bound of a tame class
  for (int64_t c = 0; c < classes; ++c) {
    const float bias = p.class_bias != nullptr ? p.class_bias[c] : 0.f;
    const float slack = kPruneSlack * (1.f + std::fabs(bias));
    const float lo = lower[static_cast<size_t>(c)], hi = upper[static_cast<size_t>(c)];
    if (!(lo <= hi) || !tame[static_cast<size_t>(c)]) {  // no logit read (cannot happen when covered) or wild
      lower[static_cast<size_t>(c)] = -std::numeric_limits<float>::infinity();
      upper[static_cast<size_t>(c)] = std::numeric_limits<float>::infinity();
      continue;
    }
    lower[static_cast<size_t>(c)] = sigmoid_fast_nan_f32(lo) - bias - slack;
    upper[static_cast<size_t>(c)] = sigmoid_fast_nan_f32(hi) - bias + slack;
    threshold = std::max(threshold, lower[static_cast<size_t>(c)]);
  }
  wild = false;
  for (int64_t c = 0; c < classes; ++c) {
    if (upper[static_cast<size_t>(c)] < threshold) continue;
    listed.push_back(static_cast<uint16_t>(c));
    wild = wild || upper[static_cast<size_t>(c)] == std::numeric_limits<float>::infinity();
  }
}

struct TileScratch {
  std::vector<float> merged;  // [listed][footprint rows][footprint cols]
  std::vector<float> values;  // [footprint rows][footprint cols][listed] (class-contiguous)
  std::vector<float> counts;  // [footprint cols] windows covering each column of a row
  std::vector<float> v;       // [listed] one pixel's values
};

// One tile: merged values of the listed classes over the footprint (merged_row's arithmetic), then output_row's
// blend and argmax over them. False when a footprint pixel is covered by no window.
ZS_CPU_CLONES bool run_tile(const Geometry& geo, const TileBox& b, const uint16_t* listed, int64_t n, bool wild,
                            TileScratch& t) {
  const SegmentWindowsParams& p = geo.p;
  const float* logits = static_cast<const float*>(p.logits);
  const int64_t classes = p.classes, plane = p.in_height * p.in_width;
  const int64_t fh = b.fy1 - b.fy0 + 1, fw = b.fx1 - b.fx0 + 1, area = fh * fw;
  t.merged.assign(static_cast<size_t>(n * area), 0.f);
  t.values.resize(static_cast<size_t>(n * area));
  t.counts.resize(static_cast<size_t>(fw));
  t.v.resize(static_cast<size_t>(n));
  bool covered = true;
  for (int64_t fr = 0; fr < fh; ++fr) {
    const int64_t r = b.fy0 + fr;
    std::fill(t.counts.begin(), t.counts.end(), 0.f);
    int windows_here = 0;
    for (int64_t k = 0; k < p.num_windows; ++k) {
      const WindowPlacement& w = p.windows[k];
      if (r < w.y1 || r >= w.y2) continue;
      ++windows_here;
      const int64_t q0 = std::max<int64_t>(b.fx0, w.x1), q1 = std::min<int64_t>(b.fx1 + 1, w.x2);
      if (q0 >= q1) continue;
      for (int64_t q = q0; q < q1; ++q) t.counts[static_cast<size_t>(q - b.fx0)] += 1.f;
      const BilinearTap& ty = geo.head_rows[static_cast<size_t>(r - w.y1)];
      const float* base = logits + k * classes * plane;
      for (int64_t i = 0; i < n; ++i) {
        const int64_t c = listed[i];
        const float* src = base + c * plane;
        const float bias = p.class_bias != nullptr ? p.class_bias[c] : 0.f;
        add_window_row(src + ty.i0 * p.in_width, src + ty.i1 * p.in_width, ty.w0, ty.w1, geo, q0 - w.x1, q1 - q0, true,
                       bias, t.merged.data() + (i * fh + fr) * fw + (q0 - b.fx0));
      }
    }
    for (int64_t q = 0; q < fw; ++q) covered = covered && t.counts[static_cast<size_t>(q)] > 0.f;
    if (windows_here > 1) {  // as merged_row: every column of a row in several windows is divided by its count
      for (int64_t i = 0; i < n; ++i) {
        float* row = t.merged.data() + (i * fh + fr) * fw;
#pragma omp simd
        for (int64_t q = 0; q < fw; ++q) row[q] /= t.counts[static_cast<size_t>(q)];
      }
    }
  }
  for (int64_t i = 0; i < n; ++i) {  // class-contiguous, as transpose_merged_row
    const float* src = t.merged.data() + i * area;
    for (int64_t e = 0; e < area; ++e) t.values[static_cast<size_t>(e * n + i)] = src[e];
  }
  const float inf = std::numeric_limits<float>::infinity();
  float* v = t.v.data();
  for (int64_t y = b.y0; y < b.y1; ++y) {
    const BilinearTap& ty = geo.out_rows[static_cast<size_t>(y)];
    const float* top = t.values.data() + (ty.i0 - b.fy0) * fw * n;
    const float* bottom = t.values.data() + (ty.i1 - b.fy0) * fw * n;
    int32_t* labels = p.labels + y * p.out_width;
    float* scores = p.scores + y * p.out_width;
    for (int64_t x = b.x0; x < b.x1; ++x) {
      const BilinearTap& tx = geo.out_cols[static_cast<size_t>(x)];
      const float* a0 = top + (tx.i0 - b.fx0) * n;
      const float* a1 = top + (tx.i1 - b.fx0) * n;
      const float* b0 = bottom + (tx.i0 - b.fx0) * n;
      const float* b1 = bottom + (tx.i1 - b.fx0) * n;
      float best = -inf;
#pragma omp simd reduction(max : best)
      for (int64_t i = 0; i < n; ++i) {
        const float value =
            blend2(blend2(a0[i], a1[i], tx.w0, tx.w1), blend2(b0[i], b1[i], tx.w0, tx.w1), ty.w0, ty.w1);
        v[i] = value;
        best = best > value ? best : value;
      }
      int64_t nan_at = -1;
      if (wild) {  // only a listed class with a non-finite or huge logit can give NaN
        for (int64_t i = 0; i < n && nan_at < 0; ++i) {
          if (is_nan_value(v[i])) nan_at = i;
        }
      }
      if (nan_at >= 0) {
        labels[x] = listed[nan_at];
        scores[x] = std::numeric_limits<float>::quiet_NaN();
        continue;
      }
      int64_t i = 0;
      while (i < n && !(v[i] >= best)) ++i;
      labels[x] = i < n ? static_cast<int32_t>(listed[i]) : 0;  // n >= 1: a tame class's lower bound is the threshold
      scores[x] = i < n ? v[i] : best;
    }
  }
  return covered;
}

// The pruned path; false (nothing written) when pruning would not pay (more than half the tile-class pairs kept).
// `uncovered` is set when a footprint pixel is in no window.
bool segment_windows_cpu_pruned(const Geometry& geo, bool& uncovered) {
  const SegmentWindowsParams& p = geo.p;
  const int64_t tiles_y = (p.out_height + kTileRows - 1) / kTileRows,
                tiles_x = (p.out_width + kTileCols - 1) / kTileCols;
  const int64_t tiles = tiles_y * tiles_x;
  std::vector<std::vector<uint16_t>> lists(static_cast<size_t>(tiles));
  std::vector<uint8_t> wild(static_cast<size_t>(tiles), 0);
  int64_t kept = 0;
#pragma omp parallel reduction(+ : kept)
  {
    std::vector<float> lower(static_cast<size_t>(p.classes)), upper(static_cast<size_t>(p.classes));
#pragma omp for schedule(dynamic, 4)
    for (int64_t t = 0; t < tiles; ++t) {
      bool w = false;
      tile_classes(geo, tile_box(geo, t / tiles_x, t % tiles_x), lower, upper, lists[static_cast<size_t>(t)], w);
      wild[static_cast<size_t>(t)] = w ? 1 : 0;
      kept += static_cast<int64_t>(lists[static_cast<size_t>(t)].size());
    }
  }
  if (2 * kept > tiles * p.classes) return false;
  int bad = 0;
#pragma omp parallel reduction(| : bad)
  {
    TileScratch scratch;
#pragma omp for schedule(dynamic, 2)
    for (int64_t t = 0; t < tiles; ++t) {
      const std::vector<uint16_t>& list = lists[static_cast<size_t>(t)];
      if (!run_tile(geo, tile_box(geo, t / tiles_x, t % tiles_x), list.data(), static_cast<int64_t>(list.size()),
                    wild[static_cast<size_t>(t)] != 0, scratch)) {
        bad = 1;
      }
    }
  }
  uncovered = bad != 0;
  return true;
}

}  // namespace

bool segment_windows_cpu(const SegmentWindowsParams& p) {
  Geometry geo{p,
               cpu::make_taps(p.in_height, p.head_height),
               cpu::make_taps(p.in_width, p.head_width),
               cpu::make_taps(p.scaled_height, p.out_height),
               cpu::make_taps(p.scaled_width, p.out_width),
               {}};
  geo.cols = cpu::column_taps(geo.head_cols);
  if (p.apply_sigmoid && !p.softmax && p.classes > 1 && p.classes <= 65535 && p.out_height > 0 && p.out_width > 0) {
    bool uncovered = false;
    if (segment_windows_cpu_pruned(geo, uncovered)) return !uncovered;
  }
  const int threads = std::max(1, omp_get_max_threads());
  const size_t merged_size = static_cast<size_t>(p.classes * p.scaled_width);
  // per thread: one merged row and its counts, two cached transposed merged rows and a [C] pixel vector;
  // allocated before the parallel region so that a failure reaches Python as MemoryError
  const size_t per_thread = 3 * merged_size + static_cast<size_t>(p.scaled_width) + static_cast<size_t>(p.classes);
  std::vector<float> workspace(per_thread * static_cast<size_t>(threads));
  int uncovered = 0;
#pragma omp parallel num_threads(threads) reduction(| : uncovered)
  {
    float* merged = workspace.data() + per_thread * static_cast<size_t>(omp_get_thread_num());  // [C, scaled_w]
    float* counts = merged + merged_size;
    MergedRowT cache[2];
    cache[0].values = counts + p.scaled_width;
    cache[1].values = cache[0].values + merged_size;
    float* v = cache[1].values + merged_size;
    auto merged_for = [&](int64_t r, int64_t keep) -> const MergedRowT& {  // never evicts the cached row `keep`
      for (const MergedRowT& m : cache) {
        if (m.row == r) return m;
      }
      MergedRowT& slot = cache[0].row == keep   ? cache[1]
                         : cache[1].row == keep ? cache[0]
                                                : (cache[0].row < cache[1].row ? cache[0] : cache[1]);
      if (!merged_row(geo, r, merged, counts)) uncovered = 1;
      slot.finite = transpose_merged_row(geo, merged, slot.values);
      slot.row = r;
      return slot;
    };
#pragma omp for schedule(static)
    for (int64_t y = 0; y < p.out_height; ++y) {
      const BilinearTap& ty = geo.out_rows[static_cast<size_t>(y)];
      const MergedRowT& top = merged_for(ty.i0, -1);
      const MergedRowT& bottom = merged_for(ty.i1, ty.i0);
      if (p.softmax) {
        output_row_softmax(geo, top, bottom, ty, v, p.labels + y * p.out_width, p.scores + y * p.out_width);
      } else {
        output_row(geo, top, bottom, ty, v, p.labels + y * p.out_width, p.scores + y * p.out_width);
      }
    }
  }
  return uncovered == 0;
}

}  // namespace zsseg
