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
// 1. bounded (segment_windows_bounded.cpp, the default where it applies: windows on a grid, every logit finite with
//    |x| <= 1e30): per output tile, tile bounds, then per-pixel second-order bounds, then the few classes left
//    evaluated exactly (the tile path's run_tile). Abandoned for the streaming path when a sample of the tiles
//    keeps more than half their classes.
// 2. tiles (segment_windows_pruned.cpp, where the bounded path does not apply): per output tile, per class, the
//    min and max of the window logits the tile's footprint reads bound every output value of the class in the
//    tile; the classes that cannot win are skipped. Abandoned for the streaming path when more than half of the
//    (tile, class) pairs remain.
// 3. streaming (this file, the dense form; also the identity and softmax paths): every class at every pixel.
// What the forms share is in segment_windows_cpu.h. segment_windows_cpu_testing (zsseg/segment_windows_cpu_testing.h)
// forces a form and counts which ran, for tests.
#include "segment_windows_cpu.h"  // first: its numerics pragma covers all that follows
#include "zsseg/segment_windows_cpu_testing.h"

namespace zsseg {
namespace sw_cpu {
namespace {

using segment_windows_cpu_testing::Path;

std::atomic<int> g_path{static_cast<int>(Path::kAuto)};
std::atomic<int64_t> g_bounded{0}, g_tiled{0}, g_streamed{0}, g_tiles{0}, g_pairs{0}, g_kept{0}, g_probed{0};

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

}  // namespace

void record_bound_pass(int64_t tiles, int64_t pairs, int64_t kept, int64_t probed) {
  g_tiles += tiles, g_pairs += pairs, g_kept += kept, g_probed += probed;
}

}  // namespace sw_cpu

using namespace sw_cpu;  // this file's own helpers and what the three forms share

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
