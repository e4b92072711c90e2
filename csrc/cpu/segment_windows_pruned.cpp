// The tile path of the CPU segment_windows' sigmoid form (see segment_windows.cpp): OpenMP over output tiles
// (kTileRows x kTileCols). Per tile, per class, the min and max of the window logits the tile's footprint reads
// bound every output value of the class in the tile (bilinear blends and window averages are convex, the sigmoid
// is increasing): a class whose upper bound is below another class's lower bound (strictly, with a slack of
// 1e-5 (1 + |bias|) that covers every rounding and the vectorised sigmoid's error) wins no pixel of the tile and is
// skipped. The other classes' merged values are computed over the footprint with the same per-element arithmetic as
// the streaming path's merged_row and the output blend and argmax as its output_row. A first pass computes every
// tile's list; when more than half of the (tile, class) pairs remain, the streaming path runs instead (footprints of
// neighbouring tiles overlap by a row or two: recomputing them only pays with pruning). Built without FMA
// contraction, as the streaming path (CMakeLists.txt).
#include "segment_windows_cpu.h"  // first: its numerics pragma covers all that follows

namespace zsseg {
namespace sw_cpu {
namespace {

constexpr int64_t kTileRows = 16, kTileCols = 64;  // output pixels per tile

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

}  // namespace

TileBox tile_box(const Geometry& geo, int64_t y0, int64_t y1, int64_t x0, int64_t x1) {
  TileBox b;
  b.y0 = y0, b.y1 = y1, b.x0 = x0, b.x1 = x1;
  b.fy0 = geo.out_rows[static_cast<size_t>(b.y0)].i0;
  b.fy1 = geo.out_rows[static_cast<size_t>(b.y1 - 1)].i1;
  b.fx0 = geo.out_cols[static_cast<size_t>(b.x0)].i0;
  b.fx1 = geo.out_cols[static_cast<size_t>(b.x1 - 1)].i1;
  return b;
}

namespace {

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

}  // namespace

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

}  // namespace sw_cpu
}  // namespace zsseg
