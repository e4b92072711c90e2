// CPU fused multi-window exact post-processing (see zsseg/segment_windows.h). OpenMP over output rows. The bilinear
// blends are separable in the order every resize here uses (columns first, then rows), so each pass is done once:
// a window's logits row is blended along x once per (window, logits row) (blend_source_row, cached per thread),
// each merged rescaled row is blended along x once to the output columns (blend_merged_row, the two latest cached
// per thread), and an output row blends two of those rows per class and keeps the running argmax over classes per
// pixel (output_row): no transposed copy, no gathers in the per-pixel loops. The kernels are built without FMA
// contraction (CMakeLists.txt), so these values are bit for bit those of the unfused upsample -> segment path, and
// the AVX-512 / AVX2 clones and the portable code agree. The softmax path keeps the merged rows transposed to
// [scaled_w, C] (its per-pixel softmax runs over classes).
//
// The sigmoid path has three forms, all with the same labels and scores bit for bit (class pruning only skips
// classes that are strictly below another class at every pixel of a tile, so no argmax and no tie changes):
// 1. bounded (segment_windows_cpu_bounded, the default where it applies: windows on a grid, every logit finite with
//    |x| <= 1e30): per output tile (kBandRows x kBandCols) tile bounds, then per-pixel second-order bounds (see the
//    section "the bounded path"), then the few classes left evaluated exactly (run_tile). Abandoned for the
//    streaming path when a sample of the tiles keeps more than half their classes.
// 2. tiles (segment_windows_cpu_pruned, where the bounded path does not apply): OpenMP over output tiles
//    (kTileRows x kTileCols). Per tile, per class, the min and max of the window logits the tile's footprint reads
//    bound every output value of the class in the tile (bilinear blends and window averages are convex, the sigmoid
//    is increasing): a class whose upper bound is below another class's lower bound (strictly, with a slack of
//    1e-5 (1 + |bias|) that covers every rounding and the vectorised sigmoid's error) wins no pixel of the tile and
//    is skipped. The other classes' merged values are computed over the footprint with the same per-element
//    arithmetic as merged_row and the output blend and argmax as output_row. A first pass computes every tile's
//    list; when more than half of the (tile, class) pairs remain, the streaming path runs instead (footprints of
//    neighbouring tiles overlap by a row or two: recomputing them only pays with pruning).
// 3. streaming (above): every class at every pixel.
// segment_windows_cpu_testing (zsseg/segment_windows_cpu_testing.h) forces a form and counts which ran, for tests.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include <omp.h>

#include "bilinear_taps.h"
#include "cpu_dispatch.h"
#include "zsseg/segment_windows.h"
#include "zsseg/segment_windows_cpu_testing.h"

namespace zsseg {
namespace {

using segment_windows_cpu_testing::Path;

std::atomic<int> g_path{static_cast<int>(Path::kAuto)};
std::atomic<int64_t> g_bounded{0}, g_tiled{0}, g_streamed{0}, g_tiles{0}, g_pairs{0}, g_kept{0}, g_probed{0};

void record_bound_pass(int64_t tiles, int64_t pairs, int64_t kept, int64_t probed = 0) {
  g_tiles += tiles, g_pairs += pairs, g_kept += kept, g_probed += probed;
}

struct Geometry {
  const SegmentWindowsParams& p;
  std::vector<BilinearTap> head_rows, head_cols;  // window pixel -> logits taps (head resolution)
  std::vector<BilinearTap> out_rows, out_cols;    // output pixel -> rescaled taps
  cpu::ColumnTaps cols;                           // head_cols as arrays (vectorisable gathers), as upsample_cpu does
  cpu::ColumnTaps out_col_taps;                   // out_cols as arrays
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

// A window's logits row blended along x to the window's columns, for every class: [C, head_w] (the first
// `width` columns used). The streaming path blends each source row once per window instead of once per rescaled
// row that reads it (16 rescaled rows per source row for 32x32 logits in 512 windows), then blends two of these
// rows per rescaled row: the same expression as cpu::blend_at (columns first, then rows), so the same values.
struct SourceRowSlot {
  float* values = nullptr;
  int64_t window = -1, row = -1;  // the (window, logits row) held; -1: empty
  int64_t used = 0;               // last use (least recently used slot is evicted)
};

// Each of `classes` rows (src + c * src_stride) blended along x through column taps to `width` columns
// (out + c * out_stride): the first half of every resize here (columns first, then rows). Inlined into each caller's
// clones, so it is vectorised for the instruction set the caller runs with.
ZS_CPU_INLINE void blend_rows_along_x(const float* src, int64_t src_stride, const cpu::ColumnTaps& taps,
                                      int64_t classes, int64_t width, float* out, int64_t out_stride) {
  const int32_t* i0 = taps.i0.data();
  const int32_t* i1 = taps.i1.data();
  const float* w0 = taps.w0.data();
  const float* w1 = taps.w1.data();
  for (int64_t c = 0; c < classes; ++c) {
    const float* row = src + c * src_stride;
    float* dst = out + c * out_stride;
#pragma omp simd
    for (int64_t x = 0; x < width; ++x) dst[x] = blend2(row[i0[x]], row[i1[x]], w0[x], w1[x]);
  }
}

ZS_CPU_CLONES_AVX512 void blend_source_row(const Geometry& geo, int64_t k, int64_t j, int64_t width, float* out) {
  const SegmentWindowsParams& p = geo.p;
  const int64_t plane = p.in_height * p.in_width;
  const float* base = static_cast<const float*>(p.logits) + k * p.classes * plane + j * p.in_width;
  blend_rows_along_x(base, plane, geo.cols, p.classes, width, out, p.head_width);
}

// Per-thread cache of x-blended source rows: 2 slots per window that can cover one rescaled row.
struct SourceRows {
  std::vector<SourceRowSlot> slots;
  int64_t clock = 0;
};

// The slot holding (window k, logits row j), filled if absent; never evicts a slot used since `since`.
const float* source_row(const Geometry& geo, SourceRows& rows, int64_t k, int64_t j, int64_t width, int64_t since) {
  SourceRowSlot* victim = nullptr;
  for (SourceRowSlot& s : rows.slots) {
    if (s.window == k && s.row == j) {
      s.used = ++rows.clock;
      return s.values;
    }
    if (s.used < since && (victim == nullptr || s.used < victim->used)) victim = &s;
  }
  // the pool holds 2 slots per covering window and a row needs 2 per window, so a victim always exists
  blend_source_row(geo, k, j, width, victim->values);
  victim->window = k, victim->row = j, victim->used = ++rows.clock;
  return victim->values;
}

// One window's calibrated row (rows h0, h1 of x-blended logits, weights wy0, wy1) added into acc[0, width).
ZS_CPU_INLINE void add_blended_row(const float* h0, const float* h1, float wy0, float wy1, int64_t width, bool sigmoid,
                                   float bias, float* acc) {
  if (sigmoid) {
#pragma omp simd
    for (int64_t x = 0; x < width; ++x) acc[x] += sigmoid_fast_nan_f32(h0[x] * wy0 + h1[x] * wy1) - bias;
  } else {
#pragma omp simd
    for (int64_t x = 0; x < width; ++x) acc[x] += (h0[x] * wy0 + h1[x] * wy1) - bias;
  }
}

// merged[c][x] /= count[x] for x in [lo, hi), every class; pow2: every count there is a power of two.
ZS_CPU_INLINE void divide_by_counts(float* merged, const float* count, int64_t classes, int64_t ws, int64_t lo,
                                    int64_t hi, bool pow2) {
  if (pow2) {
    float inverse[64];
    for (int64_t x0 = lo; x0 < hi; x0 += 64) {
      const int64_t n = std::min<int64_t>(64, hi - x0);
      for (int64_t x = 0; x < n; ++x) inverse[x] = 1.f / count[x0 + x];  // exact: a power of two
      for (int64_t c = 0; c < classes; ++c) {
        float* row = merged + c * ws + x0;
#pragma omp simd
        for (int64_t x = 0; x < n; ++x) row[x] *= inverse[x];
      }
    }
    return;
  }
  for (int64_t c = 0; c < classes; ++c) {
    float* row = merged + c * ws;
#pragma omp simd
    for (int64_t x = lo; x < hi; ++x) row[x] /= count[x];
  }
}

// Merged rescaled row r of every class into merged [C, scaled_w]; count [scaled_w] scratch. False when a
// pixel of the row is covered by no window.
ZS_CPU_CLONES_AVX512 bool merged_row(const Geometry& geo, int64_t r, float* merged, float* count, SourceRows& rows) {
  const SegmentWindowsParams& p = geo.p;
  const int64_t ws = p.scaled_width, hw = p.head_width;
  std::fill(merged, merged + p.classes * ws, 0.f);
  std::fill(count, count + ws, 0.f);
  int windows_here = 0;
  const int64_t since = rows.clock + 1;  // slots used for this row are not evicted while it is computed
  for (int64_t k = 0; k < p.num_windows; ++k) {
    const WindowPlacement& w = p.windows[k];
    if (r < w.y1 || r >= w.y2) continue;
    ++windows_here;
    const BilinearTap& ty = geo.head_rows[static_cast<size_t>(r - w.y1)];
    const int64_t width = w.x2 - w.x1;
    for (int64_t x = w.x1; x < w.x2; ++x) count[x] += 1.f;
    const float* h0 = source_row(geo, rows, k, ty.i0, width, since);
    const float* h1 = source_row(geo, rows, k, ty.i1, width, since);
    for (int64_t c = 0; c < p.classes; ++c) {
      // softmax: raw logits are averaged; the bias applies after the softmax (output_row_softmax)
      const float bias = p.class_bias != nullptr && !p.softmax ? p.class_bias[c] : 0.f;
      add_blended_row(h0 + c * hw, h1 + c * hw, ty.w0, ty.w1, width, p.apply_sigmoid && !p.softmax, bias,
                      merged + c * ws + w.x1);
    }
  }
  bool covered = windows_here > 0;
  for (int64_t x = 0; x < ws; ++x) covered = covered && count[x] > 0.f;
  if (!covered) return false;
  // total /= count, as merge_windows. Columns covered once are left as they are (x / 1 == x); over the span of the
  // others, a count that is a power of two divides as the multiplication by its reciprocal (both are the correctly
  // rounded x / count), the others by division.
  int64_t lo = ws, hi = 0;
  bool pow2 = true;
  for (int64_t x = 0; x < ws; ++x) {
    if (count[x] == 1.f) continue;
    lo = std::min(lo, x), hi = x + 1;
    int exponent = 0;
    pow2 = pow2 && std::frexp(count[x], &exponent) == 0.5f;
  }
  if (lo < hi) divide_by_counts(merged, count, p.classes, ws, lo, hi, pow2);
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

// A merged rescaled row blended along x to the output columns, class-major [C, out_w]: per class the first half of
// the output blend (columns first, as every resize here), computed once per rescaled row instead of once per output
// row that reads it.
ZS_CPU_CLONES_AVX512 void blend_merged_row(const Geometry& geo, const float* merged, float* out) {
  const SegmentWindowsParams& p = geo.p;
  blend_rows_along_x(merged, p.scaled_width, geo.out_col_taps, p.classes, p.out_width, out, p.out_width);
}

// One output row from two x-blended merged rows (blend_merged_row; as segment_cpu with no bias and no sigmoid):
// per class the rows' blend, and the running argmax over classes in index order per pixel, torch's rules
// (argmax_better: a larger value replaces, equal keeps the lower index, the first NaN wins and stays), vectorised
// over the row's pixels. best/label: [out_w] scratch.
ZS_CPU_CLONES_AVX512 void output_row(const Geometry& geo, const float* top, const float* bottom, const BilinearTap& ty,
                                     float* best, int32_t* label, int32_t* labels, float* scores) {
  const SegmentWindowsParams& p = geo.p;
  const int64_t ow = p.out_width;
  const float wy0 = ty.w0, wy1 = ty.w1;
#pragma omp simd
  for (int64_t x = 0; x < ow; ++x) {
    best[x] = top[x] * wy0 + bottom[x] * wy1;
    label[x] = 0;
  }
  for (int64_t c = 1; c < p.classes; ++c) {
    const float* t = top + c * ow;
    const float* b = bottom + c * ow;
    const int32_t index = static_cast<int32_t>(c);
#pragma omp simd
    for (int64_t x = 0; x < ow; ++x) {
      const float v = t[x] * wy0 + b[x] * wy1;
      const bool take = best[x] == best[x] && (v != v || v > best[x]);  // argmax_better, as selects
      best[x] = take ? v : best[x];
      label[x] = take ? index : label[x];
    }
  }
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int64_t x = 0; x < ow; ++x) {
    labels[x] = label[x];
    scores[x] = is_nan_value(best[x]) ? nan : best[x];
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

// Output rows [y0, y1) x columns [x0, x1) and their footprint.
TileBox tile_box(const Geometry& geo, int64_t y0, int64_t y1, int64_t x0, int64_t x1) {
  TileBox b;
  b.y0 = y0, b.y1 = y1, b.x0 = x0, b.x1 = x1;
  b.fy0 = geo.out_rows[static_cast<size_t>(b.y0)].i0;
  b.fy1 = geo.out_rows[static_cast<size_t>(b.y1 - 1)].i1;
  b.fx0 = geo.out_cols[static_cast<size_t>(b.x0)].i0;
  b.fx1 = geo.out_cols[static_cast<size_t>(b.x1 - 1)].i1;
  return b;
}

// Tile (ty, tx) of the kTileRows x kTileCols grid.
TileBox tile_box(const Geometry& geo, int64_t ty, int64_t tx) {
  const SegmentWindowsParams& p = geo.p;
  const int64_t y0 = ty * kTileRows, x0 = tx * kTileCols;
  return tile_box(geo, y0, std::min(y0 + kTileRows, p.out_height), x0, std::min(x0 + kTileCols, p.out_width));
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

// The merged values of the listed classes over the tile's footprint (merged_row's arithmetic), class-contiguous:
// t.values [footprint row][footprint column][n]. False when a footprint pixel is covered by no window.
ZS_CPU_CLONES bool footprint_values(const Geometry& geo, const TileBox& b, const uint16_t* listed, int64_t n,
                                    TileScratch& t) {
  const SegmentWindowsParams& p = geo.p;
  const float* logits = static_cast<const float*>(p.logits);
  const int64_t classes = p.classes, plane = p.in_height * p.in_width;
  const int64_t fh = b.fy1 - b.fy0 + 1, fw = b.fx1 - b.fx0 + 1, area = fh * fw;
  t.merged.assign(static_cast<size_t>(n * area), 0.f);
  t.values.resize(static_cast<size_t>(n * area));
  t.counts.resize(static_cast<size_t>(fw));
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
  return covered;
}

// The two footprint rows (t.values: [footprint rows][footprint columns][n]) that output row y of a tile blends, with
// its row taps.
struct FootprintRows {
  const float *top, *bottom;
  BilinearTap ty;
};

ZS_CPU_INLINE FootprintRows footprint_rows(const Geometry& geo, const TileBox& b, const TileScratch& t, int64_t fw,
                                           int64_t n, int64_t y) {
  const BilinearTap& ty = geo.out_rows[static_cast<size_t>(y)];
  return {t.values.data() + (ty.i0 - b.fy0) * fw * n, t.values.data() + (ty.i1 - b.fy0) * fw * n, ty};
}

// What one output pixel blends: the n listed classes at its two columns (taps tx) of its row's two footprint rows.
// value(i) is class i's output value: output_row's and blend_pixel's expression (columns first, then rows).
struct PixelCorners {
  const float *a0, *a1, *b0, *b1;  // top row at columns tx.i0 / tx.i1, bottom row at the same columns
  BilinearTap tx, ty;
  ZS_CPU_INLINE float value(int64_t i) const {
    return blend2(blend2(a0[i], a1[i], tx.w0, tx.w1), blend2(b0[i], b1[i], tx.w0, tx.w1), ty.w0, ty.w1);
  }
};

ZS_CPU_INLINE PixelCorners pixel_corners(const FootprintRows& r, const BilinearTap& tx, int64_t fx0, int64_t n) {
  const int64_t c0 = (tx.i0 - fx0) * n, c1 = (tx.i1 - fx0) * n;
  return {r.top + c0, r.top + c1, r.bottom + c0, r.bottom + c1, tx, r.ty};
}

// The exact output values of the listed classes at the tile's pixels (output_row's blend of footprint_values), into
// out [n][tile rows][tile columns]: what run_tile compares. The tile must be covered (the bounded path's grids are).
ZS_CPU_CLONES void tile_values(const Geometry& geo, const TileBox& b, const uint16_t* listed, int64_t n, TileScratch& t,
                               float* out) {
  footprint_values(geo, b, listed, n, t);
  const int64_t fw = b.fx1 - b.fx0 + 1, width = b.x1 - b.x0, pixels = (b.y1 - b.y0) * width;
  for (int64_t y = b.y0; y < b.y1; ++y) {
    const FootprintRows rows = footprint_rows(geo, b, t, fw, n, y);
    for (int64_t x = b.x0; x < b.x1; ++x) {
      const PixelCorners q = pixel_corners(rows, geo.out_cols[static_cast<size_t>(x)], b.fx0, n);
      for (int64_t i = 0; i < n; ++i) out[i * pixels + (y - b.y0) * width + (x - b.x0)] = q.value(i);
    }
  }
}

// One tile: merged values of the listed classes over the footprint (footprint_values), then output_row's blend and
// argmax over them. False when a footprint pixel is covered by no window.
ZS_CPU_CLONES bool run_tile(const Geometry& geo, const TileBox& b, const uint16_t* listed, int64_t n, bool wild,
                            TileScratch& t) {
  const SegmentWindowsParams& p = geo.p;
  const bool covered = footprint_values(geo, b, listed, n, t);
  const int64_t fw = b.fx1 - b.fx0 + 1;
  t.v.resize(static_cast<size_t>(n));
  const float inf = std::numeric_limits<float>::infinity();
  float* v = t.v.data();
  for (int64_t y = b.y0; y < b.y1; ++y) {
    const FootprintRows rows = footprint_rows(geo, b, t, fw, n, y);
    int32_t* labels = p.labels + y * p.out_width;
    float* scores = p.scores + y * p.out_width;
    for (int64_t x = b.x0; x < b.x1; ++x) {
      const PixelCorners q = pixel_corners(rows, geo.out_cols[static_cast<size_t>(x)], b.fx0, n);
      if (!wild && n >= 1 && n <= 8) {  // a few finite values (the bounded path): a scalar scan, the first max wins
        int64_t at = 0;
        float top_value = q.value(0);
        for (int64_t i = 1; i < n; ++i) {
          const float value = q.value(i);
          if (value > top_value) top_value = value, at = i;
        }
        labels[x] = static_cast<int32_t>(listed[at]);
        scores[x] = top_value;
        continue;
      }
      float best = -inf;
#pragma omp simd reduction(max : best)
      for (int64_t i = 0; i < n; ++i) {
        const float value = q.value(i);
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
// The most windows that cover one rescaled row (the streaming path's source-row cache holds 2 rows of each).
int64_t max_windows_per_row(const SegmentWindowsParams& p) {
  std::vector<int64_t> starts, ends;
  for (int64_t k = 0; k < p.num_windows; ++k) starts.push_back(p.windows[k].y1), ends.push_back(p.windows[k].y2);
  std::sort(starts.begin(), starts.end());
  std::sort(ends.begin(), ends.end());
  int64_t most = 0, open = 0;
  size_t e = 0;
  for (int64_t y : starts) {  // sweep: a window [y1, y2) is open at rows y1 <= r < y2
    while (e < ends.size() && ends[e] <= y) ++e, --open;
    most = std::max(most, ++open);
  }
  return std::max<int64_t>(most, 1);
}

bool segment_windows_cpu_pruned(const Geometry& geo, bool force, bool& uncovered) {
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
  record_bound_pass(tiles, tiles * p.classes, kept);
  if (!force && 2 * kept > tiles * p.classes) return false;
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

// ---- the bounded path: per-pixel class bounds (sigmoid path, windows on a grid, tame logits) -------------------
//
// The tile bounds above need a class's whole range over a tile to fall below another class's: on logits whose
// classes differ little (a random-weight model's), they rarely do. Per pixel, a second-order bound does. Every
// window value u (a bilinear blend of logits, before the sigmoid) that an output pixel reads lies in [m - rho,
// m + rho] (m, rho: the midpoint and half-range of the class's support logits over the tile), and
//   sigmoid(u) = sigmoid(m) + sigmoid'(m) (u - m) + r,   |r| <= K rho^2,   K = max|sigmoid''| / 2 = 1 / (12 sqrt 3).
// The output value V = sum_j a_j sigmoid(u_j) - bias is a convex combination (window blend, window average,
// output blend), so V is within K rho^2 of
//   P = sigmoid(m) + sigmoid'(m) (Lin - m) - bias,   Lin = sum_j a_j u_j,
// and Lin is a LINEAR map of the logits: for windows on a grid (every pair of a row interval and a column
// interval once: the pipeline's sliding windows) the window count factors, count(r, q) = count_y(r) count_x(q),
// and Lin = sum_k Y_k L_k X_k^T with composite 1-D operators per window (output <- rescaled <- head <- logits,
// 1 / count folded in; at most 3 logits per output index). Per output pixel and class the bounds are then
// [max(tile lower, P - E), min(tile upper, P + E)], E = K rho^2 + slack; a class whose upper bound is below the
// largest lower bound at every pixel of the tile cannot win there (strictly, so not by a tie either) and is not
// evaluated. The slack (1e-5 (1 + |bias|) + 1e-6 max|logit|) covers the fp32 arithmetic of the exact path (within
// about 1e-6 (1 + |bias|) of the real-number value, the vectorised sigmoid's 1e-7 included) and of the bound itself
// (composite weights rounded to fp32, Lin summed in fp32).
// Per tile (band_lists, vectorised over classes): the window logits are transposed class-contiguous once; the tile
// bounds pick the candidates; their support logits are blended along y for the tile's rows (R = Y_k L_k); per tile
// row Lin is bounded over the whole row from R (convex x weights) and the row's candidates are those whose row
// bound reaches the row's largest lower bound; per pixel (vectorised over the row's pixels) P and the bounds of
// those. Where that leaves more than kProbeAbove classes (a trained model's region boundaries: the winner's range
// spans two regions and bounds it poorly) and the forecast says it pays, "probes" (each pixel's class with the
// largest P) are evaluated exactly first and their values raise the lower bounds. The classes left (about 1.3 per
// 8 x 16 tile on the benchmark photo's random-weight logits, where the tile bounds keep ~40 %) are evaluated exactly
// by run_tile, so labels and scores are bit for bit the streaming path's.

constexpr int64_t kBandRows = 8, kBandCols = 16;  // the bounded path's output tiles
constexpr float kCurvature = 0.0482f;             // >= max|sigmoid''| / 2 = 1 / (12 sqrt(3)) = 0.0481125
constexpr int64_t kLanes = 16;  // per-class arrays are padded to a multiple of this (no scalar loop tails)
constexpr int64_t kProbeAbove = 4, kProbes = 4;  // tiles the bounds leave > 4 classes: up to 4 probes (see band_lists)

inline int64_t padded(int64_t n) {
  return (n + kLanes - 1) / kLanes * kLanes;
}

// Composite taps of one output index into one window's logits along one axis: logits indices first .. first +
// count - 1 with weights w (products of the output blend's, the head blend's and 1 / the axis's window count, in
// double); count 0: the output index reads nothing inside the window.
struct CompositeTap {
  int32_t first = 0, count = 0;
  float w[3] = {0.f, 0.f, 0.f};
};

struct GridMap {
  std::vector<std::vector<CompositeTap>> rows, cols;  // [window][output row], [window][output column]
  std::vector<float> logits;  // [window][in_h][in_w][C padded]: the logits, class-contiguous (padding 0)
};

// The taps of every output index for the window spanning rescaled [lo, hi) along one axis (count[r]: how many
// windows' intervals along this axis hold r). False if some index's taps span more than 3 logits (a guard: bilinear
// taps of two neighbouring rescaled indices never do).
bool composite_taps(const std::vector<BilinearTap>& out_taps, const std::vector<BilinearTap>& head_taps, int64_t lo,
                    int64_t hi, const std::vector<int32_t>& count, std::vector<CompositeTap>& taps) {
  taps.assign(out_taps.size(), CompositeTap{});
  for (size_t o = 0; o < out_taps.size(); ++o) {
    const BilinearTap& t = out_taps[o];
    int32_t index[4];
    double weight[4];
    int n = 0;
    for (int a = 0; a < 2; ++a) {
      const int64_t r = a == 0 ? t.i0 : t.i1;
      if (r < lo || r >= hi) continue;
      const double share = static_cast<double>(a == 0 ? t.w0 : t.w1) / count[static_cast<size_t>(r)];
      const BilinearTap& h = head_taps[static_cast<size_t>(r - lo)];
      index[n] = h.i0, weight[n++] = share * h.w0;
      index[n] = h.i1, weight[n++] = share * h.w1;
    }
    int32_t first = std::numeric_limits<int32_t>::max(), last = -1;
    for (int e = 0; e < n; ++e) {
      if (weight[e] != 0.0) first = std::min(first, index[e]), last = std::max(last, index[e]);
    }
    if (last < 0) continue;
    if (last - first > 2) return false;
    double sum[3] = {0.0, 0.0, 0.0};
    for (int e = 0; e < n; ++e) {
      if (weight[e] != 0.0) sum[index[e] - first] += weight[e];
    }
    CompositeTap& c = taps[o];
    c.first = first, c.count = last - first + 1;
    for (int e = 0; e < 3; ++e) c.w[e] = static_cast<float>(sum[e]);
  }
  return true;
}

// The composite operators and the transposed logits, when the windows form a grid covering the rescaled image and
// every logit is finite with |x| <= kTameLogit; false otherwise (the tile path or the streaming path runs).
bool grid_map(const Geometry& geo, GridMap& map) {
  const SegmentWindowsParams& p = geo.p;
  using Interval = std::pair<int32_t, int32_t>;
  std::vector<Interval> ys, xs;
  for (int64_t k = 0; k < p.num_windows; ++k) {
    ys.emplace_back(p.windows[k].y1, p.windows[k].y2);
    xs.emplace_back(p.windows[k].x1, p.windows[k].x2);
  }
  std::sort(ys.begin(), ys.end());
  ys.erase(std::unique(ys.begin(), ys.end()), ys.end());
  std::sort(xs.begin(), xs.end());
  xs.erase(std::unique(xs.begin(), xs.end()), xs.end());
  if (static_cast<int64_t>(ys.size() * xs.size()) != p.num_windows) return false;
  std::vector<size_t> cells;  // every (row interval, column interval) pair exactly once
  for (int64_t k = 0; k < p.num_windows; ++k) {
    const size_t yi = static_cast<size_t>(
        std::lower_bound(ys.begin(), ys.end(), Interval(p.windows[k].y1, p.windows[k].y2)) - ys.begin());
    const size_t xi = static_cast<size_t>(
        std::lower_bound(xs.begin(), xs.end(), Interval(p.windows[k].x1, p.windows[k].x2)) - xs.begin());
    cells.push_back(yi * xs.size() + xi);
  }
  std::sort(cells.begin(), cells.end());
  if (std::adjacent_find(cells.begin(), cells.end()) != cells.end()) return false;
  std::vector<int32_t> count_y(static_cast<size_t>(p.scaled_height), 0),
      count_x(static_cast<size_t>(p.scaled_width), 0);
  for (const Interval& v : ys) {
    for (int32_t r = v.first; r < v.second; ++r) ++count_y[static_cast<size_t>(r)];
  }
  for (const Interval& v : xs) {
    for (int32_t q = v.first; q < v.second; ++q) ++count_x[static_cast<size_t>(q)];
  }
  if (std::count(count_y.begin(), count_y.end(), 0) > 0 || std::count(count_x.begin(), count_x.end(), 0) > 0) {
    return false;
  }
  map.rows.resize(static_cast<size_t>(p.num_windows));
  map.cols.resize(static_cast<size_t>(p.num_windows));
  for (int64_t k = 0; k < p.num_windows; ++k) {
    const WindowPlacement& w = p.windows[k];
    if (!composite_taps(geo.out_rows, geo.head_rows, w.y1, w.y2, count_y, map.rows[static_cast<size_t>(k)]) ||
        !composite_taps(geo.out_cols, geo.head_cols, w.x1, w.x2, count_x, map.cols[static_cast<size_t>(k)])) {
      return false;
    }
  }
  const float* logits = static_cast<const float*>(p.logits);
  const int64_t classes = p.classes, cp = padded(classes), plane = p.in_height * p.in_width;
  map.logits.assign(static_cast<size_t>(p.num_windows * plane * cp), 0.f);
  bool tame = true;
  for (int64_t k = 0; k < p.num_windows; ++k) {
    for (int64_t c = 0; c < classes; ++c) {
      const float* src = logits + (k * classes + c) * plane;
      float* dst = map.logits.data() + k * plane * cp + c;
      for (int64_t e = 0; e < plane; ++e) {
        tame = tame && std::fabs(src[e]) <= kTameLogit;  // false for NaN and +-inf
        dst[e * cp] = src[e];
      }
    }
  }
  return tame;
}

struct BoundScratch {
  std::vector<int64_t> slots;                                         // the windows read by the band's rows
  std::vector<int32_t> row_lo, row_hi;                                // [slot] the band's span of logits rows
  std::vector<int32_t> col_lo, col_hi;                                // [slot] the tile's span of logits columns
  std::vector<float> lo, hi, amax, lower, upper, slope, offset, err;  // [C padded] the tile's per-class quantities
  std::vector<int32_t> listed;  // the tile's candidates (left by the tile bounds), in class order
  std::vector<float> c_lower, c_upper, c_slope, c_offset, c_err;  // [n padded] the same per candidate
  std::vector<float> c_logits;    // [slot][logits row][logits column][n padded]: the support, compacted
  std::vector<float> c_rows;      // [slot][band row][logits column][n padded]: Y_k L_k, compacted
  std::vector<float> w_lo, w_hi;  // [slot] the least and most x weight of the slot at a pixel of the tile
  std::vector<float> x_weight;    // [slot][logits column][kBandCols] the tile's x taps, dense
  std::vector<float> row_lin_lo, row_lin_hi, row_min, row_max;  // [n padded] one tile row's bounds of Lin
  std::vector<int32_t> row_listed;                              // the row's candidates (indices into listed)
  std::vector<float> up, reach;                                 // [row candidate][kBandCols], [candidate][kBandCols]
  std::vector<float> reach_centre;  // [candidate][kBandCols] as reach, against the largest centre P
  std::vector<float> exact_floor;   // [tile row][kBandCols] the probes' largest exact value (or -inf)
  std::vector<int32_t> best_pick;   // [tile row][kBandCols] the candidate with the largest P
  std::vector<uint16_t> probes;     // classes evaluated exactly to raise the lower bounds
  std::vector<float> probe_values;  // [probe][tile pixel]
  TileScratch tile;                 // their evaluation
  int64_t probed = 0;               // tiles that evaluated probes (for segment_windows_cpu_testing)
  std::vector<const float*> term;   // one pixel's x taps (rows of c_rows, or zeros) and their weights
  std::vector<float> weight;
};

// The classes that can win a pixel of each tile of the band of output rows [y0, y1) (tiles of kBandCols columns),
// in class order, into lists[0 .. tiles_x). Returns how many were listed.
ZS_CPU_CLONES_AVX512 int64_t band_lists(const Geometry& geo, const GridMap& map, int64_t y0, int64_t y1,
                                        std::vector<uint16_t>* lists, BoundScratch& s) {
  const SegmentWindowsParams& p = geo.p;
  const int64_t classes = p.classes, in_h = p.in_height, in_w = p.in_width, band = y1 - y0;
  const int64_t cp = padded(classes);
  const float inf = std::numeric_limits<float>::infinity();
  // the windows the band's rows read, and each one's span of logits rows
  s.slots.clear();
  s.row_lo.clear();
  s.row_hi.clear();
  for (int64_t k = 0; k < p.num_windows; ++k) {
    int32_t row_lo = std::numeric_limits<int32_t>::max(), row_hi = -1;
    for (int64_t y = y0; y < y1; ++y) {
      const CompositeTap& t = map.rows[static_cast<size_t>(k)][static_cast<size_t>(y)];
      if (t.count > 0) row_lo = std::min(row_lo, t.first), row_hi = std::max(row_hi, t.first + t.count - 1);
    }
    if (row_hi >= 0) s.slots.push_back(k), s.row_lo.push_back(row_lo), s.row_hi.push_back(row_hi);
  }
  const int64_t slots = static_cast<int64_t>(s.slots.size());
  s.col_lo.resize(static_cast<size_t>(slots));
  s.col_hi.resize(static_cast<size_t>(slots));
  for (std::vector<float>* v : {&s.lo, &s.hi, &s.amax, &s.lower, &s.upper, &s.slope, &s.offset, &s.err}) {
    v->resize(static_cast<size_t>(cp));
  }
  float* lo = s.lo.data();
  float* hi = s.hi.data();
  float* amax = s.amax.data();
  float* lower = s.lower.data();
  float* upper = s.upper.data();
  float* slope = s.slope.data();
  float* offset = s.offset.data();
  float* err = s.err.data();
  const float* bias = p.class_bias;
  int64_t listed_total = 0;
  const int64_t tiles_x = (p.out_width + kBandCols - 1) / kBandCols;
  for (int64_t tx = 0; tx < tiles_x; ++tx) {
    const int64_t x0 = tx * kBandCols, x1 = std::min(x0 + kBandCols, p.out_width), width = x1 - x0;
    // the tile bounds: min, max and max |x| of each class's support logits (every window the tile reads)
    std::fill(lo, lo + cp, inf);
    std::fill(hi, hi + cp, -inf);
    std::fill(amax, amax + cp, 0.f);
    int32_t max_rows = 1, max_cols = 1;
    for (int64_t slot = 0; slot < slots; ++slot) {
      const size_t sl = static_cast<size_t>(slot);
      const int64_t k = s.slots[sl];
      int32_t col_lo = std::numeric_limits<int32_t>::max(), col_hi = -1;
      for (int64_t x = x0; x < x1; ++x) {
        const CompositeTap& t = map.cols[static_cast<size_t>(k)][static_cast<size_t>(x)];
        if (t.count > 0) col_lo = std::min(col_lo, t.first), col_hi = std::max(col_hi, t.first + t.count - 1);
      }
      s.col_lo[sl] = col_lo, s.col_hi[sl] = col_hi;  // col_hi < col_lo: the window reads nothing of the tile
      max_rows = std::max(max_rows, s.row_hi[sl] - s.row_lo[sl] + 1);
      max_cols = std::max(max_cols, col_hi - col_lo + 1);
      for (int32_t i = s.row_lo[sl]; i <= s.row_hi[sl]; ++i) {
        for (int32_t j = col_lo; j <= col_hi; ++j) {
          const float* v = map.logits.data() + ((k * in_h + i) * in_w + j) * cp;
#pragma omp simd
          for (int64_t c = 0; c < cp; ++c) {
            const float a = std::fabs(v[c]);  // selects, not std::min/max: the loop vectorises
            lo[c] = v[c] < lo[c] ? v[c] : lo[c];
            hi[c] = v[c] > hi[c] ? v[c] : hi[c];
            amax[c] = a > amax[c] ? a : amax[c];
          }
        }
      }
    }
    float threshold = -inf;  // the largest tile lower bound
#pragma omp simd reduction(max : threshold)
    for (int64_t c = 0; c < cp; ++c) {
      const bool real = c < classes;
      const float b = real && bias != nullptr ? bias[c] : 0.f;
      const float slack = kPruneSlack * (1.f + std::fabs(b)) + 1e-6f * amax[c];
      const bool read = real && lo[c] <= hi[c];  // false only for padding (a covered grid reads every class)
      const float m = 0.5f * lo[c] + 0.5f * hi[c];
      const float rho = (0.5f * (hi[c] - lo[c])) * (1.f + 1e-6f) + 1e-6f * amax[c];
      const float sm = sigmoid_fast_f32(m);
      lower[c] = read ? sigmoid_fast_f32(lo[c]) - b - slack : -inf;
      upper[c] = read ? sigmoid_fast_f32(hi[c]) - b + slack : (real ? inf : -inf);
      slope[c] = read ? sm * (1.f - sm) : 0.f;
      offset[c] = read ? sm - b - slope[c] * m : 0.f;
      err[c] = read ? kCurvature * rho * rho + slack : inf;
      threshold = lower[c] > threshold ? lower[c] : threshold;
    }
    // the candidates (tile upper bound >= the largest tile lower bound): their quantities and support compacted
    s.listed.clear();
    for (int64_t c = 0; c < classes; ++c) {
      if (upper[c] >= threshold) s.listed.push_back(static_cast<int32_t>(c));
    }
    const int64_t n = static_cast<int64_t>(s.listed.size()), np = padded(n);
    const int32_t* cand = s.listed.data();
    for (std::vector<float>* v : {&s.c_lower, &s.c_upper, &s.c_slope, &s.c_offset, &s.c_err}) {
      v->resize(static_cast<size_t>(np));
    }
    for (int64_t i = 0; i < np; ++i) {  // padding: bounds (-inf, -inf), never kept
      const bool real = i < n;
      const int32_t c = real ? cand[i] : 0;
      s.c_lower[static_cast<size_t>(i)] = real ? lower[c] : -inf;
      s.c_upper[static_cast<size_t>(i)] = real ? upper[c] : -inf;
      s.c_slope[static_cast<size_t>(i)] = real ? slope[c] : 0.f;
      s.c_offset[static_cast<size_t>(i)] = real ? offset[c] : 0.f;
      s.c_err[static_cast<size_t>(i)] = real ? err[c] : inf;
    }
    const int64_t c_plane = max_rows * max_cols * np, c_row = max_cols * np;
    s.c_logits.resize(static_cast<size_t>(slots * c_plane));
    s.c_rows.resize(static_cast<size_t>(slots * band * c_row));
    for (int64_t slot = 0; slot < slots; ++slot) {
      const size_t sl = static_cast<size_t>(slot);
      const int64_t k = s.slots[sl];
      float* support = s.c_logits.data() + slot * c_plane;
      for (int32_t i = s.row_lo[sl]; i <= s.row_hi[sl]; ++i) {
        for (int32_t j = s.col_lo[sl]; j <= s.col_hi[sl]; ++j) {
          const float* from = map.logits.data() + ((k * in_h + i) * in_w + j) * cp;
          float* to = support + ((i - s.row_lo[sl]) * max_cols + (j - s.col_lo[sl])) * np;
          for (int64_t e = 0; e < n; ++e) to[e] = from[cand[e]];
          for (int64_t e = n; e < np; ++e) to[e] = 0.f;
        }
      }
      const int64_t cols = s.col_hi[sl] - s.col_lo[sl] + 1;
      if (cols <= 0) continue;
      for (int64_t y = y0; y < y1; ++y) {  // Y_k L_k over the tile's columns
        const CompositeTap& t = map.rows[static_cast<size_t>(k)][static_cast<size_t>(y)];
        if (t.count == 0) continue;
        float* dst = s.c_rows.data() + (slot * band + (y - y0)) * c_row;
        const float* src = support + (t.first - s.row_lo[sl]) * max_cols * np;
        const float w0 = t.w[0];
#pragma omp simd
        for (int64_t e = 0; e < cols * np; ++e) dst[e] = w0 * src[e];
        for (int32_t i = 1; i < t.count; ++i) {
          const float* more = src + i * max_cols * np;
          const float wi = t.w[i];
#pragma omp simd
          for (int64_t e = 0; e < cols * np; ++e) dst[e] += wi * more[e];
        }
      }
    }
    // Per tile row, first over the whole row: each slot's x taps are weights over the tile's logits columns
    // summing to between w_lo and w_hi (0 where the slot covers a pixel of the row but not another), so Lin lies in
    // [sum_slot min(w_lo min_j R, w_hi min_j R), sum_slot max(w_lo max_j R, w_hi max_j R)] (R: the row's Y_k L_k).
    // The candidates whose row upper bound reaches the row's largest lower bound go on to the per-pixel bounds,
    // computed across the row's pixels (vectorised over x): Lin = sum_slot sum_j R_j x_weight[slot][j][x].
    s.w_lo.assign(static_cast<size_t>(slots), inf);
    s.w_hi.assign(static_cast<size_t>(slots), 0.f);
    s.x_weight.assign(static_cast<size_t>(slots * max_cols * kBandCols), 0.f);
    for (int64_t slot = 0; slot < slots; ++slot) {
      const int64_t k = s.slots[static_cast<size_t>(slot)];
      float* xw = s.x_weight.data() + slot * max_cols * kBandCols;
      for (int64_t x = x0; x < x1; ++x) {
        const CompositeTap& t = map.cols[static_cast<size_t>(k)][static_cast<size_t>(x)];
        const float sum = t.count > 0 ? (t.w[0] + t.w[1]) + t.w[2] : 0.f;  // unused weights are 0
        s.w_lo[static_cast<size_t>(slot)] = std::min(s.w_lo[static_cast<size_t>(slot)], sum);
        s.w_hi[static_cast<size_t>(slot)] = std::max(s.w_hi[static_cast<size_t>(slot)], sum);
        for (int32_t i = 0; i < t.count; ++i) {
          xw[(t.first + i - s.col_lo[static_cast<size_t>(slot)]) * kBandCols + (x - x0)] = t.w[i];
        }
      }
    }
    for (std::vector<float>* v : {&s.row_lin_lo, &s.row_lin_hi, &s.row_min, &s.row_max}) {
      v->resize(static_cast<size_t>(np));
    }
    s.up.resize(static_cast<size_t>(n * kBandCols));  // [row candidate][x] upper bounds
    s.row_listed.resize(static_cast<size_t>(n));
    s.exact_floor.assign(static_cast<size_t>(band * kBandCols), -inf);  // [tile row][x]: probes' exact values
    s.best_pick.assign(static_cast<size_t>(band * kBandCols), 0);       // [tile row][x]: the largest P's candidate
    const float* c_lower = s.c_lower.data();
    const float* c_upper = s.c_upper.data();
    const float* c_slope = s.c_slope.data();
    const float* c_offset = s.c_offset.data();
    const float* c_err = s.c_err.data();
    float* lin_lo = s.row_lin_lo.data();
    float* lin_hi = s.row_lin_hi.data();
    float* r_min = s.row_min.data();
    float* r_max = s.row_max.data();
    int32_t* pick = s.row_listed.data();
    std::vector<uint16_t>& list = lists[tx];
    s.probes.clear();
    // Pass 0: the bounds alone. Where they leave more than kProbeAbove classes (at a boundary between regions of a
    // trained model's map the winner's range spans both regions and bounds it poorly), pass 1 first evaluates the
    // classes with the largest P (the bounds' centre) at some pixel exactly ("probes"): a probe's exact value is a
    // lower bound of the pixel's best value, so it raises the pixels' largest lower bounds; the probes are listed.
    for (int pass = 0; pass < 2; ++pass) {
      s.reach.assign(static_cast<size_t>(n * kBandCols), -inf);  // [candidate][x]: the most its upper bound
      float* reach = s.reach.data();                             // exceeds the pixel's largest lower bound
      s.reach_centre.assign(static_cast<size_t>(n * kBandCols), -inf);
      for (int64_t y = y0; y < y1; ++y) {
        const float* seed = s.exact_floor.data() + (y - y0) * kBandCols;
        int32_t* best_pick = s.best_pick.data() + (y - y0) * kBandCols;
        std::fill(lin_lo, lin_lo + np, 0.f);
        std::fill(lin_hi, lin_hi + np, 0.f);
        for (int64_t slot = 0; slot < slots; ++slot) {
          const size_t sl = static_cast<size_t>(slot);
          const int64_t cols = s.col_hi[sl] - s.col_lo[sl] + 1;
          if (cols <= 0 || map.rows[static_cast<size_t>(s.slots[sl])][static_cast<size_t>(y)].count == 0) continue;
          const float* row = s.c_rows.data() + (slot * band + (y - y0)) * c_row;
          std::copy(row, row + np, r_min);
          std::copy(row, row + np, r_max);
          for (int64_t j = 1; j < cols; ++j) {
            const float* v = row + j * np;
#pragma omp simd
            for (int64_t i = 0; i < np; ++i) {
              r_min[i] = v[i] < r_min[i] ? v[i] : r_min[i];
              r_max[i] = v[i] > r_max[i] ? v[i] : r_max[i];
            }
          }
          const float w_lo = s.w_lo[sl], w_hi = s.w_hi[sl];
#pragma omp simd
          for (int64_t i = 0; i < np; ++i) {
            const float a = w_lo * r_min[i], b = w_hi * r_min[i], c = w_lo * r_max[i], d = w_hi * r_max[i];
            lin_lo[i] += a < b ? a : b;
            lin_hi[i] += c > d ? c : d;
          }
        }
        float row_floor = -inf;
#pragma omp simd reduction(max : row_floor)
        for (int64_t i = 0; i < np; ++i) {
          const float below = c_slope[i] * lin_lo[i] + c_offset[i] - c_err[i];
          const float low = below > c_lower[i] ? below : c_lower[i];
          const float above = c_slope[i] * lin_hi[i] + c_offset[i] + c_err[i];
          lin_hi[i] = above < c_upper[i] ? above : c_upper[i];  // now the row upper bound
          row_floor = low > row_floor ? low : row_floor;
        }
        int64_t m = 0;  // the row's candidates (indices into listed)
        for (int64_t i = 0; i < n; ++i) {
          pick[m] = static_cast<int32_t>(i);
          m += lin_hi[i] >= row_floor ? 1 : 0;
        }
        // per pixel of the row, vectorised over x: the candidates' bounds, the largest lower bound per pixel
        alignas(64) float floor[kBandCols], centre[kBandCols];
        for (int64_t x = 0; x < kBandCols; ++x) floor[x] = seed[x], centre[x] = -inf;
        for (int64_t e = 0; e < m; ++e) {
          const int32_t i = pick[e];
          alignas(64) float lin[kBandCols] = {};
          for (int64_t slot = 0; slot < slots; ++slot) {
            const size_t sl = static_cast<size_t>(slot);
            const int64_t cols = s.col_hi[sl] - s.col_lo[sl] + 1;
            if (cols <= 0 || map.rows[static_cast<size_t>(s.slots[sl])][static_cast<size_t>(y)].count == 0) continue;
            const float* row = s.c_rows.data() + (slot * band + (y - y0)) * c_row + i;
            const float* xw = s.x_weight.data() + slot * max_cols * kBandCols;
            for (int64_t j = 0; j < cols; ++j) {
              const float r = row[j * np];
#pragma omp simd
              for (int64_t x = 0; x < kBandCols; ++x) lin[x] += r * xw[j * kBandCols + x];
            }
          }
          const float sl = c_slope[i], of = c_offset[i], er = c_err[i], lw = c_lower[i], hg = c_upper[i];
          float* up = s.up.data() + e * kBandCols;
#pragma omp simd
          for (int64_t x = 0; x < kBandCols; ++x) {
            const float value = sl * lin[x] + of;
            const float below = value - er, above = value + er;
            const float low = below > lw ? below : lw;
            up[x] = above < hg ? above : hg;
            floor[x] = low > floor[x] ? low : floor[x];
            best_pick[x] = value > centre[x] ? i : best_pick[x];
            centre[x] = value > centre[x] ? value : centre[x];
          }
        }
        for (int64_t e = 0; e < m; ++e) {
          const float* up = s.up.data() + e * kBandCols;
          float* r = reach + pick[e] * kBandCols;
          float* rc = s.reach_centre.data() + pick[e] * kBandCols;
#pragma omp simd
          for (int64_t x = 0; x < kBandCols; ++x) {
            const float gap = up[x] - floor[x];  // >= 0 exactly when up >= floor
            r[x] = gap > r[x] ? gap : r[x];
            const float over = up[x] - centre[x];  // the same against the largest centre (probing's forecast)
            rc[x] = over > rc[x] ? over : rc[x];
          }
        }
      }
      list.clear();
      for (int64_t i = 0; i < n; ++i) {
        float most = -inf;  // over the tile's columns only (the lanes past its width hold no pixel)
#pragma omp simd reduction(max : most)
        for (int64_t x = 0; x < kBandCols; ++x) {
          const float r = x < width ? reach[i * kBandCols + x] : -inf;
          most = r > most ? r : most;
        }
        const bool probe =
            std::find(s.probes.begin(), s.probes.end(), static_cast<uint16_t>(cand[i])) != s.probes.end();
        if (most >= 0.f || probe) list.push_back(static_cast<uint16_t>(cand[i]));
      }
      if (pass == 1 || static_cast<int64_t>(list.size()) <= kProbeAbove) break;
      int64_t forecast = 0;  // the classes left if the probes' exact values were the centres: probe if <= half
      for (int64_t i = 0; i < n; ++i) {
        float most = -inf;
#pragma omp simd reduction(max : most)
        for (int64_t x = 0; x < kBandCols; ++x) {
          const float r = x < width ? s.reach_centre[static_cast<size_t>(i * kBandCols + x)] : -inf;
          most = r > most ? r : most;
        }
        forecast += most >= 0.f ? 1 : 0;
      }
      if (2 * forecast > static_cast<int64_t>(list.size())) break;
      for (int64_t y = 0; y < band; ++y) {  // the probes: each pixel's largest P, up to kProbes classes
        for (int64_t x = 0; x < width && static_cast<int64_t>(s.probes.size()) < kProbes; ++x) {
          const uint16_t c = static_cast<uint16_t>(cand[s.best_pick[static_cast<size_t>(y * kBandCols + x)]]);
          if (std::find(s.probes.begin(), s.probes.end(), c) == s.probes.end()) s.probes.push_back(c);
        }
      }
      std::sort(s.probes.begin(), s.probes.end());
      ++s.probed;
      const int64_t probes = static_cast<int64_t>(s.probes.size()), pixels = band * width;
      s.probe_values.resize(static_cast<size_t>(probes * pixels));
      tile_values(geo, tile_box(geo, y0, y1, x0, x1), s.probes.data(), probes, s.tile, s.probe_values.data());
      for (int64_t e = 0; e < pixels; ++e) {
        float best = s.probe_values[static_cast<size_t>(e)];
        for (int64_t q = 1; q < probes; ++q) best = std::max(best, s.probe_values[static_cast<size_t>(q * pixels + e)]);
        s.exact_floor[static_cast<size_t>((e / width) * kBandCols + e % width)] = best;
      }
    }
    if (list.empty()) {  // cannot happen (the class with the largest lower bound reaches it): a guard
      list.assign(cand, cand + n);
    }
    listed_total += static_cast<int64_t>(list.size());
  }
  return listed_total;
}

// The bounded path; false (nothing written) when the windows are not a grid, a logit is not tame, or pruning would
// not pay (more than half the tile-class pairs kept).
enum class Bounded { kNotApplicable, kDoesNotPay, kDone };

Bounded segment_windows_cpu_bounded(const Geometry& geo, bool force) {
  const SegmentWindowsParams& p = geo.p;
  GridMap map;
  if (!grid_map(geo, map)) return Bounded::kNotApplicable;
  const int64_t bands = (p.out_height + kBandRows - 1) / kBandRows, tiles_x = (p.out_width + kBandCols - 1) / kBandCols;
  const int64_t tiles = bands * tiles_x;
  std::vector<std::vector<uint16_t>> lists(static_cast<size_t>(tiles));
  // Bands in a scattered order (a golden-ratio sequence), so that the first ones done sample the whole image: once
  // an eighth of the tiles is done, the pass is abandoned if they kept more than half their classes (it would not
  // pay; the streaming path runs). The decision only chooses between two exact forms.
  std::vector<int64_t> order(static_cast<size_t>(bands));
  for (int64_t b = 0; b < bands; ++b) order[static_cast<size_t>(b)] = b;
  std::sort(order.begin(), order.end(), [](int64_t a, int64_t b) {
    const double fa = std::fmod(0.6180339887 * static_cast<double>(a + 1), 1.0);
    const double fb = std::fmod(0.6180339887 * static_cast<double>(b + 1), 1.0);
    return fa < fb || (fa == fb && a < b);
  });
  std::atomic<int64_t> done_tiles{0}, done_kept{0};
  std::atomic<bool> abandon{false};
  const int64_t sample = std::max<int64_t>(tiles / 8, tiles_x);
  int64_t kept = 0, probed = 0;
#pragma omp parallel reduction(+ : kept, probed)
  {
    BoundScratch scratch;
#pragma omp for schedule(dynamic, 1)
    for (int64_t e = 0; e < bands; ++e) {
      if (abandon.load(std::memory_order_relaxed)) continue;
      const int64_t y0 = order[static_cast<size_t>(e)] * kBandRows;
      const int64_t listed = band_lists(geo, map, y0, std::min(y0 + kBandRows, p.out_height),
                                        lists.data() + (y0 / kBandRows) * tiles_x, scratch);
      kept += listed;
      const int64_t t = done_tiles += tiles_x, k = done_kept += listed;
      if (!force && t >= sample && 2 * k > t * p.classes) abandon = true;
    }
    probed += scratch.probed;
  }
  if (abandon) {
    record_bound_pass(done_tiles, done_tiles * p.classes, done_kept, probed);
    return Bounded::kDoesNotPay;
  }
  record_bound_pass(tiles, tiles * p.classes, kept, probed);
  if (!force && 2 * kept > tiles * p.classes) return Bounded::kDoesNotPay;
#pragma omp parallel
  {
    TileScratch scratch;
#pragma omp for schedule(dynamic, 4)
    for (int64_t t = 0; t < tiles; ++t) {
      const std::vector<uint16_t>& list = lists[static_cast<size_t>(t)];
      const int64_t y0 = (t / tiles_x) * kBandRows, x0 = (t % tiles_x) * kBandCols;
      const TileBox box =
          tile_box(geo, y0, std::min(y0 + kBandRows, p.out_height), x0, std::min(x0 + kBandCols, p.out_width));
      run_tile(geo, box, list.data(), static_cast<int64_t>(list.size()), false, scratch);  // covered: a grid
    }
  }
  return Bounded::kDone;
}

}  // namespace

void segment_windows_cpu_testing::force_path(Path path) {
  g_path = static_cast<int>(path);
}
Path segment_windows_cpu_testing::forced_path() {
  return static_cast<Path>(g_path.load());
}
segment_windows_cpu_testing::Stats segment_windows_cpu_testing::stats() {
  Stats s;
  s.bounded = g_bounded, s.tiled = g_tiled, s.streamed = g_streamed, s.tiles = g_tiles, s.pairs = g_pairs,
  s.kept = g_kept, s.probed = g_probed;
  return s;
}
void segment_windows_cpu_testing::reset_stats() {
  for (std::atomic<int64_t>* v : {&g_bounded, &g_tiled, &g_streamed, &g_tiles, &g_pairs, &g_kept, &g_probed}) *v = 0;
}

bool segment_windows_cpu(const SegmentWindowsParams& p) {
  Geometry geo{p,
               cpu::make_taps(p.in_height, p.head_height),
               cpu::make_taps(p.in_width, p.head_width),
               cpu::make_taps(p.scaled_height, p.out_height),
               cpu::make_taps(p.scaled_width, p.out_width),
               {},
               {}};
  geo.cols = cpu::column_taps(geo.head_cols);
  geo.out_col_taps = cpu::column_taps(geo.out_cols);
  const Path path = segment_windows_cpu_testing::forced_path();
  if (p.apply_sigmoid && !p.softmax && p.classes > 1 && p.classes <= 65535 && p.out_height > 0 && p.out_width > 0 &&
      path != Path::kStreaming) {
    Bounded bounded = Bounded::kNotApplicable;
    if (path != Path::kTiles) bounded = segment_windows_cpu_bounded(geo, path == Path::kBounded);
    if (bounded == Bounded::kDone) {
      ++g_bounded;
      return true;
    }
    bool uncovered = false;
    if (bounded == Bounded::kNotApplicable && segment_windows_cpu_pruned(geo, path == Path::kTiles, uncovered)) {
      ++g_tiled;
      return !uncovered;
    }
  }
  if (p.apply_sigmoid && !p.softmax) ++g_streamed;
  const int threads = std::max(1, omp_get_max_threads());
  const size_t merged_size = static_cast<size_t>(p.classes * p.scaled_width);
  // a cached row: transposed [scaled_w, C] (softmax) or x-blended to the output columns [C, out_w] (argmax)
  const size_t cached_size = p.softmax ? merged_size : static_cast<size_t>(p.classes * p.out_width);
  const size_t source_row_size = static_cast<size_t>(p.classes * p.head_width);
  const size_t slots = 2 * static_cast<size_t>(max_windows_per_row(p));
  const size_t ow = static_cast<size_t>(p.out_width), classes = static_cast<size_t>(p.classes);
  // per thread: one merged row and its counts, two cached rows, a [C] pixel vector, an [out_w] best-value row and
  // the x-blended source rows; allocated before the parallel region so that a failure reaches Python as MemoryError
  const size_t per_thread =
      merged_size + static_cast<size_t>(p.scaled_width) + 2 * cached_size + classes + ow + slots * source_row_size;
  std::vector<float> workspace(per_thread * static_cast<size_t>(threads));
  std::vector<int32_t> label_workspace(ow * static_cast<size_t>(threads));
  int uncovered = 0;
#pragma omp parallel num_threads(threads) reduction(| : uncovered)
  {
    const size_t thread = static_cast<size_t>(omp_get_thread_num());
    float* merged = workspace.data() + per_thread * thread;  // [C, scaled_w]
    float* counts = merged + merged_size;
    MergedRowT cache[2];
    cache[0].values = counts + p.scaled_width;
    cache[1].values = cache[0].values + cached_size;
    float* v = cache[1].values + cached_size;
    float* best = v + classes;
    int32_t* label = label_workspace.data() + ow * thread;
    SourceRows source_rows;
    source_rows.slots.resize(slots);
    for (size_t i = 0; i < slots; ++i) source_rows.slots[i].values = best + ow + i * source_row_size;
    auto merged_for = [&](int64_t r, int64_t keep) -> const MergedRowT& {  // never evicts the cached row `keep`
      for (const MergedRowT& m : cache) {
        if (m.row == r) return m;
      }
      MergedRowT& slot = cache[0].row == keep   ? cache[1]
                         : cache[1].row == keep ? cache[0]
                                                : (cache[0].row < cache[1].row ? cache[0] : cache[1]);
      if (!merged_row(geo, r, merged, counts, source_rows)) uncovered = 1;
      if (p.softmax) {
        slot.finite = transpose_merged_row(geo, merged, slot.values);
      } else {
        blend_merged_row(geo, merged, slot.values);
      }
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
        output_row(geo, top.values, bottom.values, ty, best, label, p.labels + y * p.out_width,
                   p.scores + y * p.out_width);
      }
    }
  }
  return uncovered == 0;
}

}  // namespace zsseg
