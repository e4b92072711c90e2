// CPU fused multi-window exact post-processing (see zsseg/segment_windows.h). OpenMP over output rows; each
// thread keeps a cache of two merged rescaled rows ([C, scaled_w] floats each) and a [scaled_w, C] scratch.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include <omp.h>

#include "cpu_dispatch.h"
#include "zsseg/segment_windows.h"

namespace zsseg {
namespace {

std::vector<BilinearTap> make_taps(int64_t in_size, int64_t out_size) {
  std::vector<BilinearTap> taps(static_cast<size_t>(out_size));
  const float scale = bilinear_scale(in_size, out_size);
  for (int64_t i = 0; i < out_size; ++i) taps[static_cast<size_t>(i)] = bilinear_tap(scale, i, in_size);
  return taps;
}

struct Geometry {
  const SegmentWindowsParams& p;
  std::vector<BilinearTap> head_rows, head_cols;  // window pixel -> logits taps (head resolution)
  std::vector<BilinearTap> out_rows, out_cols;    // output pixel -> rescaled taps
  // column taps as arrays (vectorisable gathers), as upsample_cpu does
  std::vector<int32_t> ci0, ci1;
  std::vector<float> cw0, cw1;
};

// One window row (window-local row u, columns [0, width)) of class c, calibrated like upsample_cpu, added into
// acc[x1 + v]. Same expression as upsample_cpu's resize_row: blend columns, then rows, then f, then - bias.
ZS_CPU_INLINE void add_window_row(const float* row0, const float* row1, float wy0, float wy1, const Geometry& geo,
                                  int64_t width, bool sigmoid, float bias, float* acc) {
  const int32_t* i0 = geo.ci0.data();
  const int32_t* i1 = geo.ci1.data();
  const float* w0 = geo.cw0.data();
  const float* w1 = geo.cw1.data();
  if (sigmoid) {
#pragma omp simd
    for (int64_t x = 0; x < width; ++x) {
      const float v =
          blend2(row0[i0[x]], row0[i1[x]], w0[x], w1[x]) * wy0 + blend2(row1[i0[x]], row1[i1[x]], w0[x], w1[x]) * wy1;
      acc[x] += sigmoid_fast_nan_f32(v) - bias;
    }
  } else {
#pragma omp simd
    for (int64_t x = 0; x < width; ++x) {
      const float v =
          blend2(row0[i0[x]], row0[i1[x]], w0[x], w1[x]) * wy0 + blend2(row1[i0[x]], row1[i1[x]], w0[x], w1[x]) * wy1;
      acc[x] += v - bias;
    }
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
      const float bias = p.class_bias != nullptr ? p.class_bias[c] : 0.f;
      add_window_row(src + ty.i0 * p.in_width, src + ty.i1 * p.in_width, ty.w0, ty.w1, geo, width, p.apply_sigmoid,
                     bias, merged + c * ws + w.x1);
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

// One output row from two merged rows (as segment_cpu with no bias and no sigmoid: rows blended first into a
// class-contiguous [scaled_w, C] scratch, then columns; raw argmax, lowest index on ties, first NaN wins).
ZS_CPU_CLONES void output_row(const Geometry& geo, const float* m0, const float* m1, const BilinearTap& ty,
                              float* scratch, float* v, int32_t* labels, float* scores) {
  const SegmentWindowsParams& p = geo.p;
  const int64_t classes = p.classes, ws = p.scaled_width;
  bool finite = true;
  for (int64_t c = 0; c < classes; ++c) {
    const float* r0 = m0 + c * ws;
    const float* r1 = m1 + c * ws;
    for (int64_t x = 0; x < ws; ++x) {
      const float t = blend2(r0[x], r1[x], ty.w0, ty.w1);
      scratch[x * classes + c] = t;
      finite = finite && std::fabs(t) <= std::numeric_limits<float>::max();
    }
  }
  for (int64_t x = 0; x < p.out_width; ++x) {
    const BilinearTap& tx = geo.out_cols[static_cast<size_t>(x)];
    const float* col0 = scratch + tx.i0 * classes;
    const float* col1 = scratch + tx.i1 * classes;
    float best = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : best)
    for (int64_t c = 0; c < classes; ++c) {
      const float t = blend2(col0[c], col1[c], tx.w0, tx.w1);
      v[c] = t;
      best = best > t ? best : t;
    }
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

}  // namespace

bool segment_windows_cpu(const SegmentWindowsParams& p) {
  Geometry geo{p,
               make_taps(p.in_height, p.head_height),
               make_taps(p.in_width, p.head_width),
               make_taps(p.scaled_height, p.out_height),
               make_taps(p.scaled_width, p.out_width),
               {},
               {},
               {},
               {}};
  for (const BilinearTap& t : geo.head_cols) {
    geo.ci0.push_back(t.i0), geo.ci1.push_back(t.i1), geo.cw0.push_back(t.w0), geo.cw1.push_back(t.w1);
  }
  const int threads = std::max(1, omp_get_max_threads());
  const size_t row = static_cast<size_t>(p.classes * p.scaled_width);
  // per thread: two merged rows, their counts, the [scaled_w, C] scratch and a [C] pixel vector; allocated
  // before the parallel region so that a failure reaches Python as MemoryError
  const size_t per_thread = 3 * row + 2 * static_cast<size_t>(p.scaled_width) + static_cast<size_t>(p.classes);
  std::vector<float> workspace(per_thread * static_cast<size_t>(threads));
  int uncovered = 0;
#pragma omp parallel num_threads(threads) reduction(| : uncovered)
  {
    float* base = workspace.data() + per_thread * static_cast<size_t>(omp_get_thread_num());
    float* rows[2] = {base, base + row};
    float* counts = base + 2 * row;
    float* scratch = counts + 2 * p.scaled_width;
    float* v = scratch + row;
    int64_t cached[2] = {-1, -1};
    auto merged_for = [&](int64_t r, int64_t keep) -> float* {  // never evicts the cached row `keep`
      for (int i = 0; i < 2; ++i) {
        if (cached[i] == r) return rows[i];
      }
      const int slot = cached[0] == keep ? 1 : (cached[1] == keep ? 0 : (cached[0] < cached[1] ? 0 : 1));
      if (!merged_row(geo, r, rows[slot], counts + slot * p.scaled_width)) uncovered = 1;
      cached[slot] = r;
      return rows[slot];
    };
#pragma omp for schedule(static)
    for (int64_t y = 0; y < p.out_height; ++y) {
      const BilinearTap& ty = geo.out_rows[static_cast<size_t>(y)];
      float* m0 = merged_for(ty.i0, -1);
      float* m1 = merged_for(ty.i1, ty.i0);
      output_row(geo, m0, m1, ty, scratch, v, p.labels + y * p.out_width, p.scores + y * p.out_width);
    }
  }
  return uncovered == 0;
}

}  // namespace zsseg
