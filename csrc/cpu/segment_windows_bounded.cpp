// The bounded path of the CPU segment_windows' sigmoid form (see segment_windows.cpp): per-pixel class bounds for
// windows on a grid and tame logits; the classes left are evaluated exactly by the tile path's run_tile. Built
// without FMA contraction, as the other forms (CMakeLists.txt).
#include "segment_windows_cpu.h"  // first: its numerics pragma covers all that follows

namespace zsseg {
namespace sw_cpu {
namespace {

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

}  // namespace

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

}  // namespace sw_cpu
}  // namespace zsseg
