// CUDA fused multi-window exact post-processing (see zsseg/segment_windows.h).
//
// Tiled form. One block of 256 threads per output tile (up to 32 x 8 pixels, one per thread; two blocks per SM).
// The tile's output pixels read their bilinear taps from a small rectangle of the rescaled (merged) map, its
// footprint (about 12 x 45 rescaled pixels for the photo case: 500x375 output from a 683x512 rescaled image).
//
// Sigmoid path, per tile:
//   P. bound pass (class pruning): per class, the min and max of the window logits the footprint reads. Bilinear
//      interpolation is a convex combination and the sigmoid is increasing, so every output value of the class in
//      the tile lies in [sigmoid(min) - bias, sigmoid(max) - bias] (averaging windows and the output blend are
//      convex too). A class whose upper bound is below another class's lower bound (strictly, with a slack of
//      1e-5 (1 + |bias|) that covers every rounding and the device's approximate exp/reciprocal) can win no pixel
//      of the tile and is skipped; the others are listed in class order, so the argmax (ties: the lower index; the
//      first NaN) is unchanged. Classes with a non-finite or huge (|x| > 1e30) logit are always listed. If every
//      listed class's logits are finite and in [-60, 1e30] the tile is "tame".
//   Tame tiles whose footprint columns are each covered by the same one or two windows on every row (the
//   pipeline's sliding windows: side by side or stacked) take the fast path (run_tile_fast), per chunk of 8 listed
//   classes:
//   0. both windows' logit rows, blended horizontally at every footprint column (the first step of every bilinear
//      here, columns first; weights times -log2 e), into shared memory;
//   1. one pass: each thread walks a column segment, keeps the blended rows of the current head-row interval in
//      registers (reloaded every ~16 rows for a 16x head upsampling) and per value does one row blend (t), then
//      with E = 2^t (MUFU.EX2) and D = 1 + E:
//        one window:  m = 1/D                                           (MUFU.RCP)
//        two windows: m = (D1 2 2^-65 + D2 2^-64) / ((2 D1) (D2 2^-64)) = (1/D1 + 1/D2) / 2
//                     with ONE reciprocal for the two sigmoids (3 MUFU per pair instead of 4); the powers of two
//                     keep the product a normal number for t <= 86.6 (logits >= -60, hence the tame range);
//      a few ulp of values <= 1 from two separate sigmoids (the CPU op is within 1e-6 of either: the tests'
//      tolerance);
//   2. every output pixel blends its four taps of each class from shared memory, minus the bias (folded into the
//      blend's first FMA), and updates its running argmax (a plain ">": no NaN in tame tiles).
// Other tiles (and the identity path, and any tile when classes > 1024) take the generic path (run_tile): per
// chunk and per window (slot) overlapping the footprint, stage 0 then stage 1 with f(v) - bias added to the earlier
// windows' sum, the last covering window multiplying by 1 / count (count 2 or 4: exact) or dividing by 3 (IEEE);
// stage 2 with torch's argmax rules.
// No division, no 64-bit index arithmetic and no global load in the inner loops; labels/scores are written once per
// pixel, consecutive threads writing consecutive pixels. BENCHMARKS.md has the cost model read from the SASS
// (python -m checks sass --model).
//
// Results are the CPU op's up to fp32 rounding: merged values are window averages in window order, blended columns
// first then rows, the output blend columns first then rows, the argmax with torch's tie/NaN rules; pruning only
// drops classes strictly below another class at every pixel (labels and scores are bit-identical with and without
// it). f = sigmoid uses the device's ex2.approx and rcp.approx (within 2e-7 of the exact logistic function, like the
// CPU path's vectorised sigmoid).
//
// Direct form (the first version; now the fallback): one thread per output pixel evaluates, per class, its four
// rescaled taps from the window logits. The launcher uses it when more than kSlots windows overlap one tile's
// footprint (the pipeline's sliding windows never do; the tests make it happen). Compiled everywhere nvcc exists;
// never run on a GPU in this project's CI (cpp_tests/emulation runs both forms on the host).
#include <atomic>
#include <cmath>

#include "resize_common.cuh"
#include "segment_windows_testing.cuh"
#include "zsseg/segment_windows.h"

#if defined(__CUDACC__)
#define ZS_SW_NOINLINE __noinline__
#else
#define ZS_SW_NOINLINE __attribute__((noinline))
#endif

namespace zsseg {
namespace {

constexpr int kMaxWindowsCuda = 64;
constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kTileW = 32, kTileH = 8;  // largest output tile (one pixel per thread)
constexpr int kPixelsPerThread = (kTileW * kTileH + kThreads - 1) / kThreads;
constexpr int kChunk = 8;                      // classes staged per pass
constexpr int kFootW = 48;                     // largest footprint width (rescaled columns)
constexpr int kFootH = 32;                     // largest footprint height (rescaled rows)
constexpr int kFootprintCap = 768;             // merged values per class in shared memory (>= 12 x 45, the photo case)
constexpr int kLogitRows = 4;                  // logit rows of one window a footprint may span (3 at 1/16 head scale)
constexpr int kSlots = 4;                      // windows one footprint may overlap (sliding windows: <= 4)
constexpr int kMaxPruneClasses = 1024;         // the bound pass keeps per-class bounds in shared memory (merged)
constexpr int kBoundRows = 3, kBoundCols = 4;  // the bound pass's block of loads (the photo case's rectangle)
constexpr int32_t kUncoveredBit = 1 << 8;      // in row_mask: some footprint column of the row is in no window
constexpr float kTameLogit = 1e30f;   // |logit| above this (or non-finite): the class is kept, the tile generic
constexpr float kDeepLogit = -60.f;   // a listed class with a logit below this: the tile generic (see pair_rows)
constexpr float kPruneSlack = 1e-5f;  // bound slack, times (1 + |bias|): covers every rounding and approximation
constexpr float kNegLog2e = -1.44269504088896341f;

struct WindowTable {
  WindowPlacement w[kMaxWindowsCuda];
};

struct Dims {
  int32_t num_windows, classes, in_h, in_w, head_h, head_w, scaled_h, scaled_w, out_h, out_w;
  int32_t tile_w, tile_h, tiles_x, tiles_y;  // output tiling (tiled form)
  float head_scale_y, head_scale_x, out_scale_y, out_scale_x;
  bool sigmoid;
  bool prune;         // sigmoid path with classes <= kMaxPruneClasses: run the bound pass (and the fast arithmetic)
  bool drop;          // and skip the classes it rules out (false only in tests: Pruning::kBoundsOnly)
  float logit_scale;  // softmax only
};

// What the bound pass did (emulated build only: tests read it through segment_windows_testing::prune_stats).
std::atomic<int> g_pruning{static_cast<int>(segment_windows_testing::Pruning::kOn)};
#if defined(ZS_CUDA_EMULATION)
std::atomic<int64_t> g_stat_tiles{0}, g_stat_classes{0}, g_stat_kept{0}, g_stat_fast{0};
#endif

// torch's argmax order: a NaN beats any number and the first NaN stays; on equality the lower index stays.
// best = -inf with label 0 before class 0 makes class 0 the first best whatever its value.
__device__ __forceinline__ void argmax_update(float v, int32_t c, float& best, int32_t& label) {
  if (!(v <= best) && best == best) {  // v > best, or v NaN, unless best is already NaN
    best = v;
    label = c;
  }
}

// Softmax over names (see the header): pass 1 max and NaN, pass 2 the sum of exp in name order, pass 3 the argmax
// of exp / sum - bias_c with class_of grouping names into classes (a class's probability: the max over its names).
struct SoftmaxState {
  float best = -INFINITY;
  bool bad = false;  // a NaN logit or a non-finite max: label 0, score NaN
  float sum = 0.f;
  float top_value = 0.f;
  int32_t label = 0;
  int32_t current = 0;
  float class_prob = 0.f;
};

__device__ __forceinline__ void softmax_consider(SoftmaxState& s, const float* __restrict__ class_bias) {
  const float value = class_bias != nullptr ? s.class_prob - __ldg(class_bias + s.current) : s.class_prob;
  if (s.current == 0 || value > s.top_value) {
    s.top_value = value;
    s.label = s.current;
  }
}

__device__ __forceinline__ void softmax_update(SoftmaxState& s, int pass, float v, int32_t n,
                                               const int32_t* __restrict__ class_of,
                                               const float* __restrict__ class_bias) {
  if (pass == 1) {
    s.bad = s.bad || is_nan_value(v);
    s.best = s.best > v ? s.best : v;
  } else if (pass == 2) {
    s.sum += expf(v - s.best);
  } else {
    // the argmax of the probabilities themselves (e / sum, minus the bias), as the CPU and torch: two exp values
    // one ulp apart can divide to the same probability, and then the lower class index wins
    const float prob = expf(v - s.best) / s.sum;
    const int32_t cls = class_of != nullptr ? __ldg(class_of + n) : n;
    if (cls != s.current) {
      softmax_consider(s, class_bias);
      s.current = cls;
      s.class_prob = 0.f;
    }
    s.class_prob = prob > s.class_prob ? prob : s.class_prob;
  }
}

__device__ __forceinline__ void softmax_finish_pass1(SoftmaxState& s) {
  s.bad = s.bad || !(fabsf(s.best) <= 3.402823466e+38f);
}

__device__ __forceinline__ void softmax_store(SoftmaxState& s, const float* __restrict__ class_bias, int32_t* label,
                                              float* score) {
  if (s.bad) {
    *label = 0;
    *score = NAN;
    return;
  }
  softmax_consider(s, class_bias);
  *label = s.label;
  *score = s.top_value;
}

// ---- the direct form -----------------------------------------------------------------------------------------

// The merged (window-averaged) calibrated value of class c at rescaled pixel (r, q).
template <typename T>
__device__ float merged_value(const T* __restrict__ logits, const WindowTable& table, const Dims& d, int32_t c,
                              float bias, int32_t r, int32_t q) {
  float total = 0.f, count = 0.f;
  const int64_t plane = static_cast<int64_t>(d.in_h) * d.in_w;
  for (int32_t k = 0; k < d.num_windows; ++k) {
    const WindowPlacement& w = table.w[k];
    if (r < w.y1 || r >= w.y2 || q < w.x1 || q >= w.x2) continue;
    const BilinearTap ty = bilinear_tap(d.head_scale_y, r - w.y1, d.in_h);
    const BilinearTap tx = bilinear_tap(d.head_scale_x, q - w.x1, d.in_w);
    float v = cuda_detail::bilinear_at(logits + (static_cast<int64_t>(k) * d.classes + c) * plane, d.in_w, ty, tx);
    if (d.sigmoid) v = logistic(v);
    total += v - bias;
    count += 1.f;
  }
  return count > 1.f ? total / count : total;
}

// The resized merged value of class c at output pixel (ty, tx): the four taps blended (softmax: times logit_scale
// at the taps, no bias).
template <typename T>
__device__ __forceinline__ float direct_value(const T* __restrict__ logits, const WindowTable& table, const Dims& d,
                                              int32_t c, float bias, float scale, const BilinearTap& ty,
                                              const BilinearTap& tx) {
  const float a00 = merged_value(logits, table, d, c, bias, ty.i0, tx.i0) * scale;
  const float a01 = merged_value(logits, table, d, c, bias, ty.i0, tx.i1) * scale;
  const float a10 = merged_value(logits, table, d, c, bias, ty.i1, tx.i0) * scale;
  const float a11 = merged_value(logits, table, d, c, bias, ty.i1, tx.i1) * scale;
  return blend4(a00, a01, a10, a11, ty, tx);
}

template <typename T>
__global__ void segment_windows_direct_kernel(const T* __restrict__ logits, WindowTable table, Dims d,
                                              const float* __restrict__ class_bias,
                                              const int32_t* __restrict__ class_of, bool softmax,
                                              int32_t* __restrict__ labels, float* __restrict__ scores) {
  const int64_t total = static_cast<int64_t>(d.out_h) * d.out_w;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int32_t y = static_cast<int32_t>(i / d.out_w), x = static_cast<int32_t>(i % d.out_w);
    const BilinearTap ty = bilinear_tap(d.out_scale_y, y, d.scaled_h);
    const BilinearTap tx = bilinear_tap(d.out_scale_x, x, d.scaled_w);
    if (!softmax) {
      float best = -INFINITY;
      int32_t label = 0;
      for (int32_t c = 0; c < d.classes; ++c) {
        const float bias = class_bias != nullptr ? __ldg(class_bias + c) : 0.f;
        argmax_update(direct_value(logits, table, d, c, bias, 1.f, ty, tx), c, best, label);
      }
      labels[i] = label;
      scores[i] = best;
      continue;
    }
    SoftmaxState s;
    s.current = class_of != nullptr ? __ldg(class_of) : 0;
    for (int pass = 1; pass <= 3 && !(pass > 1 && s.bad); ++pass) {
      for (int32_t n = 0; n < d.classes; ++n) {
        softmax_update(s, pass, direct_value(logits, table, d, n, 0.f, d.logit_scale, ty, tx), n, class_of, class_bias);
      }
      if (pass == 1) softmax_finish_pass1(s);
    }
    softmax_store(s, class_bias, labels + i, scores + i);
  }
}

// ---- the tiled form ------------------------------------------------------------------------------------------

struct TileSmem {
  float merged[kChunk][kFootprintCap];           // [class of chunk][footprint row * fw + column]; bound pass: bounds
  float blended[2][kChunk][kLogitRows][kFootW];  // stage 0: a slot's logit rows blended at each footprint column
  float chunk_bias[kChunk];                      // the chunk's class biases
  BilinearTap row_tap[kSlots][kFootH];           // head-row tap of footprint row fr in slot s (i0 < 0: not covered)
  int32_t row_mask[kFootH];                      // bit s: slot s's window covers footprint row fr; kUncoveredBit
  int32_t slot_window[kSlots];                   // windows overlapping the footprint, in window order
  int32_t slot_rows[kSlots][2];                  // first logit row, number of logit rows the slot's rows use
  int32_t slot_cols[kSlots][2];                  // first logit column, number of logit columns the slot's columns use
  int32_t slots, fy0, fx0, fh, fw;               // footprint origin and size in rescaled pixels
  int32_t same_rows;                             // every footprint row has the same row_mask (one row of windows)
  int32_t uncovered;                             // some footprint pixel is in no window (its merged values are 0)
  // bound pass
  int32_t scan[kThreads];  // per thread: listed classes | listed wild or deep classes << 16, then their prefix
  int32_t warp_total[kWarps];
  float warp_max[kWarps];
  uint16_t listed[kMaxPruneClasses];  // the classes evaluated, in class order
  int32_t listed_count, tame;
};

// Per tile: footprint, slots, row taps, the logit rectangle each slot reads. Ends with a barrier.
__device__ void prepare_tile(const WindowTable& table, const Dims& d, int32_t y0, int32_t x0, int32_t th, int32_t tw,
                             TileSmem& s) {
  if (threadIdx.x == 0) {
    const BilinearTap first_y = bilinear_tap(d.out_scale_y, y0, d.scaled_h);
    const BilinearTap last_y = bilinear_tap(d.out_scale_y, y0 + th - 1, d.scaled_h);
    const BilinearTap first_x = bilinear_tap(d.out_scale_x, x0, d.scaled_w);
    const BilinearTap last_x = bilinear_tap(d.out_scale_x, x0 + tw - 1, d.scaled_w);
    s.fy0 = first_y.i0;
    s.fx0 = first_x.i0;
    s.fh = last_y.i1 - first_y.i0 + 1;
    s.fw = last_x.i1 - first_x.i0 + 1;
    int32_t slots = 0;  // the launcher checked that at most kSlots windows overlap any footprint
    for (int32_t k = 0; k < d.num_windows && slots < kSlots; ++k) {
      const WindowPlacement& w = table.w[k];
      if (w.y2 <= s.fy0 || w.y1 >= s.fy0 + s.fh || w.x2 <= s.fx0 || w.x1 >= s.fx0 + s.fw) continue;
      s.slot_window[slots++] = k;
    }
    s.slots = slots;
  }
  __syncthreads();
  const int32_t e = static_cast<int32_t>(threadIdx.x);  // one thread per footprint row
  if (e < kFootH) {
    const int32_t r = s.fy0 + e;
    int32_t mask = 0;
    for (int32_t slot = 0; slot < s.slots; ++slot) {
      const WindowPlacement& w = table.w[s.slot_window[slot]];
      BilinearTap tap{-1, -1, 0.f, 0.f};
      if (e < s.fh && r >= w.y1 && r < w.y2) {
        tap = bilinear_tap(d.head_scale_y, r - w.y1, d.in_h);
        mask |= 1 << slot;
      }
      s.row_tap[slot][e] = tap;
    }
    if (e < s.fh) {            // a footprint column of this row that none of the row's windows covers: sweep a cursor
      int32_t cursor = s.fx0;  // [fx0, cursor) is covered; kSlots sweeps suffice for kSlots intervals
      for (int32_t sweep = 0; sweep < kSlots; ++sweep) {
        for (int32_t slot = 0; slot < s.slots; ++slot) {
          const WindowPlacement& w = table.w[s.slot_window[slot]];
          if ((mask >> slot & 1) != 0 && w.x1 <= cursor && cursor < w.x2) cursor = w.x2;
        }
      }
      if (cursor < s.fx0 + s.fw) mask |= kUncoveredBit;
    }
    s.row_mask[e] = mask;
  }
  __syncthreads();
  if (e == kThreads - 1) {
    int32_t same = 1, uncovered = 0;
    for (int32_t fr = 0; fr < s.fh; ++fr) {
      same &= s.row_mask[fr] == s.row_mask[0] ? 1 : 0;
      uncovered |= s.row_mask[fr] & kUncoveredBit;
    }
    s.same_rows = same;
    s.uncovered = uncovered != 0 ? 1 : 0;
  }
  if (e < s.slots) {  // the logit rows each slot's covered footprint rows use (row taps are monotonic)
    int32_t first = -1, last = -1;
    for (int32_t fr = 0; fr < s.fh; ++fr) {
      const BilinearTap& tap = s.row_tap[e][fr];
      if (tap.i0 < 0) continue;
      if (first < 0) first = tap.i0;
      last = tap.i1;
    }
    s.slot_rows[e][0] = first;
    s.slot_rows[e][1] = first < 0 ? 0 : last - first + 1;
    // and the logit columns its covered footprint columns use (column taps are monotonic too)
    const WindowPlacement& w = table.w[s.slot_window[e]];
    const int32_t q0 = s.fx0 > w.x1 ? s.fx0 : w.x1;
    const int32_t q1 = (s.fx0 + s.fw < w.x2 ? s.fx0 + s.fw : w.x2) - 1;
    if (q0 <= q1) {
      const BilinearTap a = bilinear_tap(d.head_scale_x, q0 - w.x1, d.in_w);
      const BilinearTap b = bilinear_tap(d.head_scale_x, q1 - w.x1, d.in_w);
      s.slot_cols[e][0] = a.i0;
      s.slot_cols[e][1] = b.i1 - a.i0 + 1;
    } else {
      s.slot_cols[e][0] = 0;
      s.slot_cols[e][1] = 0;
    }
  }
  __syncthreads();
}

// 2^x and 1/x on the special function unit, flushing subnormal results to 0 (ex2.approx.ftz, rcp.approx.ftz: one
// MUFU instruction each; __expf / __fdividef add range fix-ups, expf and an IEEE division ~20 instructions).
// On the host (the emulation) they are the exact operations.
#if defined(__CUDA_ARCH__)
__device__ __forceinline__ float ex2_approx_ftz(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
__device__ __forceinline__ float rcp_approx_ftz(float x) {
  float y;
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
#else
__device__ __forceinline__ float ex2_approx_ftz(float x) {
  return std::exp2(x);
}
__device__ __forceinline__ float rcp_approx_ftz(float x) {
  return 1.f / x;
}
#endif

// The logistic function in 4 instructions (FMUL, MUFU.EX2, FADD, MUFU.RCP): relative errors of 2^-22 (ex2) and
// 2^-23 (rcp) give an absolute error below 2e-7. NaN propagates; +-inf give 1 / 0; a result below 2^-126 is 0
// (the CPU's is at most 1.2e-38 there).
__device__ __forceinline__ float sigmoid_device(float x) {
  return rcp_approx_ftz(1.f + ex2_approx_ftz(x * kNegLog2e));
}

// How a slot's pass turns a blended value into its contribution: identity, sigmoid of the logit, or (tame tiles,
// whose staged rows are pre-multiplied by -log2 e) sigmoid of the exponent t = -log2(e) v.
enum Calibration { kIdentity, kSigmoid, kSigmoidOfExponent };

template <int Calib>
__device__ __forceinline__ float calibrate(float v) {
  if (Calib == kSigmoid) return sigmoid_device(v);
  if (Calib == kSigmoidOfExponent) return rcp_approx_ftz(1.f + ex2_approx_ftz(v));
  return v;
}

// ---- P: the bound pass ---------------------------------------------------------------------------------------

// threadIdx.x read where it is used: the compiler cannot hoist the values derived from it out of the tile loop
// (where they would stay live across stages 0-2 and spill to local memory).
__device__ __forceinline__ int32_t thread_index_here() {
#if defined(__CUDA_ARCH__)
  int32_t tid;
  asm volatile("mov.u32 %0, %%tid.x;" : "=r"(tid));
  return tid;
#else
  return static_cast<int32_t>(threadIdx.x);
#endif
}

// Lists in s.listed the classes that can win a pixel of the tile (all classes unless d.drop), in class order, and
// sets s.listed_count and s.tame. Thread t owns the contiguous classes [t q, t q + q), q = ceil(C / 256) <= 4.
// Ends with a barrier.
template <typename T>
__device__ void bound_pass(const T* __restrict__ logits, const Dims& d, const float* __restrict__ class_bias,
                           TileSmem& s) {
  const int32_t tid = thread_index_here(), warp = tid / 32, lane = tid % 32;
  const int32_t classes = d.classes, per_thread = (classes + kThreads - 1) / kThreads;
  const int32_t c_begin = tid * per_thread, c_end = c_begin + per_thread < classes ? c_begin + per_thread : classes;
  const int32_t plane = d.in_h * d.in_w;
  float* const upper = &s.merged[0][0];               // [classes] upper bound (+inf: wild, always listed)
  float* const lower_max = upper + kMaxPruneClasses;  // [kThreads] the thread's largest tame lower bound
  float* const deep = lower_max + kThreads;           // [classes] 1: a logit below kDeepLogit
  static_assert(2 * kMaxPruneClasses + kThreads <= kChunk * kFootprintCap, "bounds fit in smem.merged");
  float lower_best = -INFINITY;
  for (int32_t c = c_begin; c < c_end; ++c) {
    float lo = INFINITY, hi = -INFINITY;
    bool tame = true;
    for (int32_t slot = 0; slot < s.slots; ++slot) {
      const int32_t rows = s.slot_rows[slot][1], cols = s.slot_cols[slot][1];
      const T* p = logits + (static_cast<int64_t>(s.slot_window[slot]) * classes + c) * plane +
                   (s.slot_rows[slot][0] * d.in_w + s.slot_cols[slot][0]);
      for (int32_t r0 = 0; r0 < rows; r0 += kBoundRows) {
        for (int32_t q0 = 0; q0 < cols; q0 += kBoundCols) {
          float v[kBoundRows][kBoundCols];  // a fixed block of predicated loads, all in flight at once
#pragma unroll
          for (int r = 0; r < kBoundRows; ++r) {
#pragma unroll
            for (int q = 0; q < kBoundCols; ++q) {
              v[r][q] =
                  r0 + r < rows && q0 + q < cols ? cuda_detail::load_as_float(p + ((r0 + r) * d.in_w + q0 + q)) : NAN;
            }
          }
#pragma unroll
          for (int r = 0; r < kBoundRows; ++r) {
#pragma unroll
            for (int q = 0; q < kBoundCols; ++q) {
              if (r0 + r < rows && q0 + q < cols) {
                tame = tame && fabsf(v[r][q]) <= kTameLogit;  // false for NaN and +-inf
                lo = fminf(lo, v[r][q]);
                hi = fmaxf(hi, v[r][q]);
              }
            }
          }
        }
      }
    }
    const float bias = class_bias != nullptr ? __ldg(class_bias + c) : 0.f;
    const float slack = kPruneSlack * (1.f + fabsf(bias));
    float lower = INFINITY, high = -INFINITY;  // no logit read (a footprint in no window): only the zeros below
    if (lo <= hi) {
      lower = sigmoid_device(lo) - bias - slack;
      high = sigmoid_device(hi) - bias + slack;
    }
    if (s.uncovered) {  // merged values are 0 where no window covers the footprint
      lower = fminf(lower, -slack);
      high = fmaxf(high, slack);
    }
    if (tame) {
      lower_best = fmaxf(lower_best, lower);
    } else {
      high = INFINITY;
    }
    upper[c] = high;
    deep[c] = lo < kDeepLogit ? 1.f : 0.f;
  }
  lower_max[tid] = lower_best;
  __syncthreads();
  if (lane == 0) {
    float m = -INFINITY;
#pragma unroll
    for (int i = 0; i < 32; ++i) m = fmaxf(m, lower_max[warp * 32 + i]);
    s.warp_max[warp] = m;
  }
  __syncthreads();
  float threshold = -INFINITY;  // the largest lower bound of a tame class: classes below it cannot win
#pragma unroll
  for (int w = 0; w < kWarps; ++w) threshold = fmaxf(threshold, s.warp_max[w]);
  int32_t counts = 0;
  for (int32_t c = c_begin; c < c_end; ++c) {
    const float high = upper[c];
    const bool listed = !d.drop || !(high < threshold);
    counts += listed ? 1 : 0;
    counts += listed && (high == INFINITY || deep[c] != 0.f) ? 1 << 16 : 0;  // the fast arithmetic's range
  }
  s.scan[tid] = counts;
  __syncthreads();
  if (lane == 0) {  // exclusive prefix within the warp, in place, and the warp's total
    int32_t run = 0;
    for (int i = 0; i < 32; ++i) {
      const int32_t v = s.scan[warp * 32 + i];
      s.scan[warp * 32 + i] = run;
      run += v;
    }
    s.warp_total[warp] = run;
  }
  __syncthreads();
  int32_t at = s.scan[tid], total = 0;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) {
    const int32_t t = s.warp_total[w];
    at += w < warp ? t : 0;
    total += t;
  }
  at &= 0xffff;
  for (int32_t c = c_begin; c < c_end; ++c) {
    if (!d.drop || !(upper[c] < threshold)) s.listed[at++] = static_cast<uint16_t>(c);
  }
  if (tid == 0) {
    s.listed_count = total & 0xffff;
    s.tame = (total >> 16) == 0 ? 1 : 0;
#if defined(ZS_CUDA_EMULATION)
    g_stat_tiles += 1;
    g_stat_classes += classes;
    g_stat_kept += total & 0xffff;
    g_stat_fast += (total >> 16) == 0 ? 1 : 0;
#endif
  }
  __syncthreads();
}

// ---- 0: logit rows blended at the footprint columns ----------------------------------------------------------

// The classes of a chunk: list positions [c0, c0 + chunk) of the bound pass's list (listed), else classes; a short
// chunk repeats its last class. Read from shared memory where needed (no registers held across the stages).
struct ChunkClasses {
  int32_t c0, chunk;
  bool listed;
  __device__ __forceinline__ int32_t at(const TileSmem& s, int c) const {
    const int32_t i = c0 + (c < chunk ? c : chunk - 1);
    return listed ? static_cast<int32_t>(s.listed[i]) : i;
  }
};

// base + i for a 32-bit unsigned i, as one IMAD.WIDE.U32 (the compiler otherwise re-associates the 64-bit window
// offset with i into a 4-instruction 64-bit add per load).
template <typename T>
__device__ __forceinline__ const T* offset_pointer(const T* base, uint32_t i) {
  return reinterpret_cast<const T*>(reinterpret_cast<uintptr_t>(base) + static_cast<uint64_t>(i) * sizeof(T));
}

// Stage 0 for one slot: blended[buffer][c][j][fc] = logit row (first + j) of class cls[c], blended at the column tap
// of footprint column fc (only the columns the window covers); tame tiles: the weights times -log2 e (one rounding
// more than scaling the blend: < 1 ulp of the exponent). Thread (seg, fc) does rows seg, seg + segments, ...
template <int Calib, typename T>
__device__ __forceinline__ void stage_blend_rows(const T* __restrict__ logits, const WindowTable& table, const Dims& d,
                                                 const ChunkClasses& cls, int32_t slot, int32_t buffer, int32_t fc,
                                                 int32_t seg, int32_t segments, TileSmem& s) {
  const int32_t k = s.slot_window[slot];
  const WindowPlacement& w = table.w[k];
  const int32_t q = s.fx0 + fc;
  if (q < w.x1 || q >= w.x2) return;
  const BilinearTap tx = bilinear_tap(d.head_scale_x, q - w.x1, d.in_w);
  const float w0 = Calib == kSigmoidOfExponent ? tx.w0 * kNegLog2e : tx.w0;
  const float w1 = Calib == kSigmoidOfExponent ? tx.w1 * kNegLog2e : tx.w1;
  const int32_t first = s.slot_rows[slot][0], rows = s.slot_rows[slot][1];
  const uint32_t plane = static_cast<uint32_t>(d.in_h * d.in_w);  // one window's logits hold < 2^31 values
  const uint32_t step = static_cast<uint32_t>(tx.i1 - tx.i0);
  const T* window_logits = logits + static_cast<int64_t>(k) * d.classes * plane;
  for (int32_t j = seg; j < rows; j += segments) {
    const uint32_t row = static_cast<uint32_t>((first + j) * d.in_w + tx.i0);
#pragma unroll
    for (int c = 0; c < kChunk; ++c) {
      const uint32_t at = row + static_cast<uint32_t>(cls.at(s, c)) * plane;  // 32-bit offsets: one IMAD.WIDE each
      s.blended[buffer][c][j][fc] =
          blend2(cuda_detail::load_as_float(offset_pointer(window_logits, at)),
                 cuda_detail::load_as_float(offset_pointer(window_logits, at + step)), w0, w1);
    }
  }
}

// ---- 1: merged values of the footprint -------------------------------------------------------------------------

// One footprint position of one window for the kChunk classes: v = rows blend of h0/h1, f(v) - bias, added to the
// earlier windows' sum unless this is the first window covering the position; Scale: the last covering window
// (count 2 or 4) multiplies by 1 / count * post_scale (a power of two and 1 for the sigmoid path: the result of
// the CPU's IEEE division).
template <int Calib, bool First, bool Scale>
__device__ __forceinline__ void merge_position(float (*merged)[kFootprintCap], int32_t at, const float (&h0)[kChunk],
                                               const float (&h1)[kChunk], const float (&bias)[kChunk], float w0,
                                               float w1, float mult) {
#pragma unroll
  for (int c = 0; c < kChunk; ++c) {
    float v = calibrate<Calib>(blend2(h0[c], h1[c], w0, w1));  // rows: the second step of every bilinear here
    if (Calib != kSigmoidOfExponent) v -= bias[c];  // tame tiles: the bias is subtracted at the output (stage 2)
    const float total = First ? v : merged[c][at] + v;
    merged[c][at] = Scale ? total * mult : total;
  }
}

// Reloads the blended logit rows i0, i1 of the head-row interval of footprint row fr when it changed.
__device__ __forceinline__ void load_interval(const TileSmem& s, int32_t buffer, const BilinearTap& ty,
                                              int32_t first_row, int32_t fc, int32_t& current_i0, float (&h0)[kChunk],
                                              float (&h1)[kChunk]) {
  if (ty.i0 != current_i0) {
    current_i0 = ty.i0;
#pragma unroll
    for (int c = 0; c < kChunk; ++c) {
      h0[c] = s.blended[buffer][c][ty.i0 - first_row][fc];
      h1[c] = s.blended[buffer][c][ty.i1 - first_row][fc];
    }
  }
}

// Stage 1's common case: every row of the thread's segment is merged the same way (First / Scale fixed).
template <int Calib, bool First, bool Scale>
__device__ __forceinline__ void merge_rows(int32_t slot, int32_t buffer, int32_t fc, int32_t r0, int32_t r1,
                                           int32_t first_row, const float (&bias)[kChunk], float mult, TileSmem& s) {
  float h0[kChunk], h1[kChunk];  // the blended logit rows i0, i1 of the current head-row interval
  int32_t current_i0 = -1;
  const int32_t fw = s.fw;
  for (int32_t fr = r0, at = r0 * fw + fc; fr < r1; ++fr, at += fw) {
    const BilinearTap ty = s.row_tap[slot][fr];  // covered: the slot covers every row here
    load_interval(s, buffer, ty, first_row, fc, current_i0, h0, h1);
    merge_position<Calib, First, Scale>(s.merged, at, h0, h1, bias, ty.w0, ty.w1, mult);
  }
}

// Stage 1 for one slot: the thread's column segment (footprint column fc, rows [r0, r1)); blended rows in buffer 0.
template <int Calib>
__device__ __forceinline__ void stage_merge_slot(int32_t slot, int32_t col_mask, int32_t fc, int32_t r0, int32_t r1,
                                                 const float (&bias)[kChunk], float post_scale, TileSmem& s) {
  if ((col_mask >> slot & 1) == 0) return;
  const int32_t first_row = s.slot_rows[slot][0];
  const int32_t earlier = (1 << slot) - 1, later = ~((2 << slot) - 1);
  float h0[kChunk], h1[kChunk];  // the blended logit rows i0, i1 of the current head-row interval
  int32_t current_i0 = -1;
  if (s.same_rows) {  // the same windows cover every row of the column: one merge mode for the whole segment
    const int32_t covering = s.row_mask[0] & col_mask, count = __popc(static_cast<unsigned int>(covering));
    if (count <= 2 || count == 4) {
      const bool first = (covering & earlier) == 0, last = (covering & later) == 0;
      const float mult = (count == 1 ? 1.f : (count == 2 ? 0.5f : 0.25f)) * post_scale;
      if (first && (!last || mult == 1.f)) {
        merge_rows<Calib, true, false>(slot, 0, fc, r0, r1, first_row, bias, mult, s);
      } else if (first) {
        merge_rows<Calib, true, true>(slot, 0, fc, r0, r1, first_row, bias, mult, s);
      } else if (!last || mult == 1.f) {
        merge_rows<Calib, false, false>(slot, 0, fc, r0, r1, first_row, bias, mult, s);
      } else {
        merge_rows<Calib, false, true>(slot, 0, fc, r0, r1, first_row, bias, mult, s);
      }
      return;
    }
  }
  for (int32_t fr = r0; fr < r1; ++fr) {
    const BilinearTap ty = s.row_tap[slot][fr];
    if (ty.i0 < 0) continue;  // row outside the window (the same for the whole segment)
    load_interval(s, 0, ty, first_row, fc, current_i0, h0, h1);
    const int32_t covering = s.row_mask[fr] & col_mask;
    const bool first = (covering & earlier) == 0, last = (covering & later) == 0;
    const int32_t count = __popc(static_cast<unsigned int>(covering));
    const int32_t at = fr * s.fw + fc;
    if (last && count > 2 && (count & (count - 1)) != 0) {  // 3 windows: an IEEE division (not with sliding windows)
#pragma unroll
      for (int c = 0; c < kChunk; ++c) {
        const float v =
            calibrate<Calib>(blend2(h0[c], h1[c], ty.w0, ty.w1)) - (Calib != kSigmoidOfExponent ? bias[c] : 0.f);
        s.merged[c][at] = __fdiv_rn(s.merged[c][at] + v, static_cast<float>(count)) * post_scale;
      }
      continue;
    }
    // count 1, 2 or 4 here: 1 / count is exact (a select, not a division)
    const float mult = (count == 1 ? 1.f : (count == 2 ? 0.5f : 0.25f)) * post_scale;
    const bool scale = last && mult != 1.f;
    if (first) {
      if (scale) {
        merge_position<Calib, true, true>(s.merged, at, h0, h1, bias, ty.w0, ty.w1, mult);
      } else {
        merge_position<Calib, true, false>(s.merged, at, h0, h1, bias, ty.w0, ty.w1, mult);
      }
    } else if (scale) {
      merge_position<Calib, false, true>(s.merged, at, h0, h1, bias, ty.w0, ty.w1, mult);
    } else {
      merge_position<Calib, false, false>(s.merged, at, h0, h1, bias, ty.w0, ty.w1, mult);
    }
  }
}

template <int Calib>
__device__ ZS_SW_NOINLINE void zero_uncovered_rows(bool active, int32_t fc, int32_t r0, int32_t r1, int32_t col_mask,
                                                   TileSmem& s);

// The thread's part of stages 0 and 1: footprint column fc = t % fw, segment t / fw of the footprint rows.
struct SegmentOfThread {
  int32_t fc, seg, segments, r0, r1, col_mask;  // col_mask: the slots whose window covers column fc
  bool active;
  __device__ __forceinline__ SegmentOfThread(const WindowTable& table, const TileSmem& s) {
    const int32_t tid = static_cast<int32_t>(threadIdx.x);
    segments = kThreads / s.fw;  // fw <= kFootW < kThreads
    seg = tid / s.fw;
    fc = tid - seg * s.fw;
    active = seg < segments;
    const int32_t seg_rows = (s.fh + segments - 1) / segments;
    r0 = seg * seg_rows;
    r1 = r0 + seg_rows < s.fh ? r0 + seg_rows : s.fh;
    col_mask = 0;
    for (int32_t slot = 0; slot < s.slots; ++slot) {
      const WindowPlacement& w = table.w[s.slot_window[slot]];
      const int32_t q = s.fx0 + fc;
      if (q >= w.x1 && q < w.x2) col_mask |= 1 << slot;
    }
  }
  // positions no window covers get 0 (tame tiles: the bias, which stage 2 subtracts again: 0 +- 1 ulp); the caller
  // validates coverage, and the direct form gives 0 there too. After a barrier that follows the chunk_bias write.
  template <int Calib>
  __device__ __forceinline__ void zero_uncovered(TileSmem& s) const {
    if (s.uncovered) zero_uncovered_rows<Calib>(active, fc, r0, r1, col_mask, s);
  }
};

template <int Calib>
__device__ ZS_SW_NOINLINE void zero_uncovered_rows(bool active, int32_t fc, int32_t r0, int32_t r1, int32_t col_mask,
                                                   TileSmem& s) {
  {
    if (!active) return;
    for (int32_t fr = r0; fr < r1; ++fr) {
      if ((s.row_mask[fr] & col_mask) != 0) continue;
#pragma unroll
      for (int c = 0; c < kChunk; ++c) {
        s.merged[c][fr * s.fw + fc] = Calib == kSigmoidOfExponent ? s.chunk_bias[c] : 0.f;
      }
    }
  }
}

// Stages 0 and 1 for the classes cls[0..kChunk) (a short chunk repeats its last class), one slot after the other:
// smem.merged holds the chunk's merged values afterwards (after its last barrier).
template <int Calib, typename T>
__device__ void stage_merged(const T* __restrict__ logits, const WindowTable& table, const Dims& d,
                             const float* __restrict__ class_bias, const ChunkClasses& cls, float post_scale,
                             const SegmentOfThread& t, TileSmem& s) {
  const int32_t tid = static_cast<int32_t>(threadIdx.x);
  if (tid < kChunk) s.chunk_bias[tid] = class_bias != nullptr ? __ldg(class_bias + cls.at(s, tid)) : 0.f;
  if (s.slots == 0) {  // a footprint in no window (slots is the same for the whole block)
    __syncthreads();   // chunk_bias
    t.zero_uncovered<Calib>(s);
    __syncthreads();  // stage 2 reads other threads' merged values
  }
  for (int32_t slot = 0; slot < s.slots; ++slot) {
    if (t.active) stage_blend_rows<Calib>(logits, table, d, cls, slot, 0, t.fc, t.seg, t.segments, s);
    __syncthreads();
    if (slot == 0) t.zero_uncovered<Calib>(s);
    if (t.active) {
      float bias[kChunk];  // tame tiles: subtracted at the output instead (stage 2)
#pragma unroll
      for (int c = 0; c < kChunk; ++c) bias[c] = Calib != kSigmoidOfExponent ? s.chunk_bias[c] : 0.f;
      stage_merge_slot<Calib>(slot, t.col_mask, t.fc, t.r0, t.r1, bias, post_scale, s);
    }
    __syncthreads();  // blended is rewritten for the next slot
  }
}

// The fast arithmetic (see the file comment) for tame tiles of one or two windows covering whole footprint columns
// (same_rows, slots <= 2: the pipeline's sliding windows side by side or stacked). Both slots' rows are staged
// first (buffers 0 and 1); then one pass: a column in one window takes 1 / (1 + E) per value, a column in both
// (1/D1 + 1/D2) / 2 with one reciprocal. Aligned: both windows start on the same rescaled row (side by side), so
// their row taps are the same.
template <bool Aligned>
__device__ __forceinline__ void pair_rows(int32_t fc, int32_t r0, int32_t r1, TileSmem& s) {
  float a0[kChunk], a1[kChunk], b0[kChunk], b1[kChunk];  // both windows' blended rows of the current intervals
  int32_t current_a = -1, current_b = -1;
  const int32_t fw = s.fw, first_a = s.slot_rows[0][0], first_b = s.slot_rows[1][0];
  for (int32_t fr = r0, at = r0 * fw + fc; fr < r1; ++fr, at += fw) {
    const BilinearTap ta = s.row_tap[0][fr];
    const BilinearTap tb = Aligned ? ta : s.row_tap[1][fr];
    if (Aligned) {
      if (ta.i0 != current_a) {
        current_a = ta.i0;
#pragma unroll
        for (int c = 0; c < kChunk; ++c) {
          a0[c] = s.blended[0][c][ta.i0 - first_a][fc];
          a1[c] = s.blended[0][c][ta.i1 - first_a][fc];
          b0[c] = s.blended[1][c][ta.i0 - first_b][fc];
          b1[c] = s.blended[1][c][ta.i1 - first_b][fc];
        }
      }
    } else {
      load_interval(s, 0, ta, first_a, fc, current_a, a0, a1);
      load_interval(s, 1, tb, first_b, fc, current_b, b0, b1);
    }
#pragma unroll
    for (int c = 0; c < kChunk; ++c) {
      // tame tiles: t <= 86.6 (logits >= -60), so (2 D1) (D2 2^-64) <= 2^111 and its reciprocal is a normal number
      const float d1 = fmaf(ex2_approx_ftz(blend2(a0[c], a1[c], ta.w0, ta.w1)), 2.f, 2.f);            // 2 D1
      const float d2 = fmaf(ex2_approx_ftz(blend2(b0[c], b1[c], tb.w0, tb.w1)), 0x1p-64f, 0x1p-64f);  // D2 2^-64
#if defined(ZS_SEGMENT_WINDOWS_SASS_SELF_TEST)  // checks/sass.py --self-test only: two reciprocals per pair
      s.merged[c][at] = (rcp_approx_ftz(d1 * 0.5f) + rcp_approx_ftz(d2 * 0x1p64f)) * 0.5f;
#else
      s.merged[c][at] = fmaf(d1, 0x1p-65f, d2) * rcp_approx_ftz(d1 * d2);  // (D1 + D2) 2^-64 / (2 D1 D2 2^-64)
#endif
    }
  }
}

__device__ __forceinline__ void one_window_rows(int32_t slot, int32_t fc, int32_t r0, int32_t r1, TileSmem& s) {
  float h0[kChunk], h1[kChunk];
  int32_t current_i0 = -1;
  const int32_t fw = s.fw, first_row = s.slot_rows[slot][0];
  for (int32_t fr = r0, at = r0 * fw + fc; fr < r1; ++fr, at += fw) {
    const BilinearTap ty = s.row_tap[slot][fr];
    load_interval(s, slot, ty, first_row, fc, current_i0, h0, h1);
#pragma unroll
    for (int c = 0; c < kChunk; ++c) {
      s.merged[c][at] = rcp_approx_ftz(1.f + ex2_approx_ftz(blend2(h0[c], h1[c], ty.w0, ty.w1)));
    }
  }
}

// ---- 2: output blends and argmax -------------------------------------------------------------------------------

// The four taps of one output pixel in the footprint: offsets into smem.merged[c] packed in 16 bits each (the
// footprint holds <= kFootprintCap values) and the two upper weights (the lower ones are 1 - w1, as bilinear_tap
// computes them). Four registers, live across stage 1.
struct PixelTaps {
  uint32_t top, bottom;  // (i0y, i0x) | (i0y, i1x) << 16 ; (i1y, i0x) | (i1y, i1x) << 16
  float w1y, w1x;
};

__device__ __forceinline__ PixelTaps pixel_taps(const Dims& d, const TileSmem& s, int32_t y, int32_t x) {
  const BilinearTap ty = bilinear_tap(d.out_scale_y, y, d.scaled_h);
  const BilinearTap tx = bilinear_tap(d.out_scale_x, x, d.scaled_w);
  const uint32_t r0 = static_cast<uint32_t>((ty.i0 - s.fy0) * s.fw), r1 = static_cast<uint32_t>((ty.i1 - s.fy0) * s.fw);
  const uint32_t c0 = static_cast<uint32_t>(tx.i0 - s.fx0), c1 = static_cast<uint32_t>(tx.i1 - s.fx0);
  return PixelTaps{(r0 + c0) | (r0 + c1) << 16, (r1 + c0) | (r1 + c1) << 16, ty.w1, tx.w1};
}

// Stage 2 for one pixel and the chunk's classes (all kChunk when N == kChunk; else the first n): the output
// blend (columns, then rows) from shared memory, then `update(v, c)`.
template <int N, class Update>
__device__ __forceinline__ void for_chunk(const float (*merged)[kFootprintCap], const PixelTaps& t, int32_t n,
                                          Update&& update) {
  const uint32_t o00 = t.top & 0xffffu, o01 = t.top >> 16, o10 = t.bottom & 0xffffu, o11 = t.bottom >> 16;
  const float w0y = 1.f - t.w1y, w0x = 1.f - t.w1x;
#pragma unroll
  for (int c = 0; c < N; ++c) {
    if (N == kChunk || c < n) {
      const float* m = merged[c];
      update(blend2(blend2(m[o00], m[o01], w0x, t.w1x), blend2(m[o10], m[o11], w0x, t.w1x), w0y, t.w1y), c);
    }
  }
}

template <class Update>
__device__ __forceinline__ void for_chunk_any(const float (*merged)[kFootprintCap], const PixelTaps& t, int32_t n,
                                              Update&& update) {
  if (n == kChunk) {
    for_chunk<kChunk>(merged, t, n, update);
  } else {
    for_chunk<kChunk - 1>(merged, t, n, update);
  }
}

// Tiles [blockIdx ...) with grid-stride loops; per tile `body(y0, x0, th, tw)`.
struct Tile {
  int32_t y0, x0, th, tw;
  // pixel i of this thread (p = threadIdx.x + i * kThreads): in the tile?, and its output coordinates
  __device__ __forceinline__ bool has(int i) const {
    return static_cast<int32_t>(threadIdx.x) + i * kThreads < th * tw;
  }
  __device__ __forceinline__ int32_t y(int i) const {
    return y0 + (static_cast<int32_t>(threadIdx.x) + i * kThreads) / tw;
  }
  __device__ __forceinline__ int32_t x(int i) const {
    const int32_t p = static_cast<int32_t>(threadIdx.x) + i * kThreads;
    return x0 + p - (p / tw) * tw;
  }
};

__device__ __forceinline__ Tile tile_at(const Dims& d, int32_t tile_y, int32_t tile_x) {
  const int32_t y0 = tile_y * d.tile_h, x0 = tile_x * d.tile_w;
  return Tile{y0, x0, d.out_h - y0 < d.tile_h ? d.out_h - y0 : d.tile_h,
              d.out_w - x0 < d.tile_w ? d.out_w - x0 : d.tile_w};
}

// The pixel's four taps (offsets into smem.merged[c]) and weights, columns first then rows (as bilinear_tap).
struct OutputTaps {
  uint32_t o00, o01, o10, o11;
  float w0x, w1x, w0y, w1y;
  __device__ __forceinline__ OutputTaps(const Dims& d, const TileSmem& s, const Tile& tile) {
    const BilinearTap ty = bilinear_tap(d.out_scale_y, tile.has(0) ? tile.y(0) : tile.y0, d.scaled_h);
    const BilinearTap tx = bilinear_tap(d.out_scale_x, tile.has(0) ? tile.x(0) : tile.x0, d.scaled_w);
    const uint32_t r0 = static_cast<uint32_t>((ty.i0 - s.fy0) * s.fw),
                   r1 = static_cast<uint32_t>((ty.i1 - s.fy0) * s.fw);
    const uint32_t c0 = static_cast<uint32_t>(tx.i0 - s.fx0), c1 = static_cast<uint32_t>(tx.i1 - s.fx0);
    o00 = r0 + c0;
    o01 = r0 + c1;
    o10 = r1 + c0;
    o11 = r1 + c1;
    w0x = tx.w0;
    w1x = tx.w1;
    w0y = ty.w0;
    w1y = ty.w1;
  }
  __device__ __forceinline__ float blend(const float* m, float& top) const {  // returns bottom; top by reference
    top = blend2(m[o00], m[o01], w0x, w1x);
    return blend2(m[o10], m[o11], w0x, w1x);
  }
};

// Generic tiles: classes [0, count) (of the list when listed), chunk by chunk, one slot after the other, and the
// labels/scores. Stage 2 always evaluates the whole chunk: a short chunk repeats its last class, whose copies never
// replace it (equal values and a second NaN do not), so the argmax is the same.
static_assert(kPixelsPerThread == 1, "run_tile keeps one pixel per thread");
template <int Calib, typename T>
__device__ __forceinline__ void run_tile(const T* __restrict__ logits, const WindowTable& table, const Dims& d,
                                         const float* __restrict__ class_bias, const Tile& tile, int32_t count,
                                         bool listed, int32_t* __restrict__ labels, float* __restrict__ scores,
                                         TileSmem& s) {
  const OutputTaps taps(d, s, tile);
  float best = -INFINITY;
  int32_t label = 0;  // a list position (listed) or a class; the list is in class order, so the argmax is the same
  const SegmentOfThread t(table, s);  // per tile, not per chunk
  for (int32_t c0 = 0; c0 < count; c0 += kChunk) {
    const int32_t chunk = count - c0 < kChunk ? count - c0 : kChunk;
    stage_merged<Calib>(logits, table, d, class_bias, ChunkClasses{c0, chunk, listed}, 1.f, t, s);
    if (tile.has(0)) {
#pragma unroll
      for (int c = 0; c < kChunk; ++c) {
        float top;
        const float bottom = taps.blend(s.merged[c], top);
        argmax_update(blend2(top, bottom, taps.w0y, taps.w1y), c0 + c, best, label);
      }
    }
    __syncthreads();  // the next chunk overwrites the merged values
  }
  if (tile.has(0)) {
    const int64_t at = static_cast<int64_t>(tile.y(0)) * d.out_w + tile.x(0);
    labels[at] = listed ? static_cast<int32_t>(s.listed[label]) : label;
    scores[at] = best;
  }
}

// Tame tiles of one or two windows covering whole footprint columns (same_rows, slots <= 2: the pipeline's sliding
// windows, side by side or stacked), with the fast arithmetic (see the file comment). Per chunk: both slots' rows
// staged (buffers 0 and 1), one barrier, one stage-1 pass, one barrier, stage 2. Per tile (hoisted out of the chunk
// loop): the output taps, the thread's column taps of both windows, its stage-1 mode. No merged value can be NaN
// (finite logits in [-60, 1e30], finite bias), so the argmax is a plain "greater than", and the bias is subtracted
// here (stage 1 merged the sigmoids alone), folded into the output blend's first FMA.
template <typename T>
__device__ __forceinline__ void run_tile_fast(const T* __restrict__ logits, const WindowTable& table, const Dims& d,
                                              const float* __restrict__ class_bias, const Tile& tile, int32_t count,
                                              int32_t* __restrict__ labels, float* __restrict__ scores, TileSmem& s) {
  const OutputTaps taps(d, s, tile);
  const SegmentOfThread t(table, s);
  const int32_t tid = static_cast<int32_t>(threadIdx.x);
  const uint32_t plane = static_cast<uint32_t>(d.in_h * d.in_w);  // one window's logits hold < 2^31 values
  // stage 0, per slot: the thread's column tap as 32-bit offsets into the window's logits, weights times -log2 e
  const T* window_logits[2];
  uint32_t row0[2], step[2];
  float cw0[2], cw1[2];
  int32_t rows[2];
#pragma unroll
  for (int slot = 0; slot < 2; ++slot) {
    const bool in = t.active && slot < s.slots && (t.col_mask >> slot & 1) != 0;
    const int32_t k = slot < s.slots ? s.slot_window[slot] : 0;
    const WindowPlacement& w = table.w[k];
    const BilinearTap tx = bilinear_tap(d.head_scale_x, in ? s.fx0 + t.fc - w.x1 : 0, d.in_w);
    window_logits[slot] = logits + static_cast<int64_t>(k) * d.classes * plane;
    row0[slot] = static_cast<uint32_t>((in ? s.slot_rows[slot][0] : 0) * d.in_w + tx.i0);
    step[slot] = static_cast<uint32_t>(tx.i1 - tx.i0);
    cw0[slot] = tx.w0 * kNegLog2e;  // one rounding more than scaling the blend: < 1 ulp of the exponent
    cw1[slot] = tx.w1 * kNegLog2e;
    rows[slot] = in ? s.slot_rows[slot][1] : 0;
  }
  const int32_t covering = s.row_mask[0] & t.col_mask;  // the same on every row (same_rows)
  const bool aligned = s.slots == 2 && s.slot_rows[0][0] == s.slot_rows[1][0] &&
                       table.w[s.slot_window[0]].y1 == table.w[s.slot_window[1]].y1;
  float best = -INFINITY;
  int32_t label = 0;  // a list position
  for (int32_t c0 = 0; c0 < count; c0 += kChunk) {
    const int32_t last = count - c0 < kChunk ? count - c0 - 1 : kChunk - 1;  // a short chunk repeats its last class
    if (tid < kChunk) {
      const int32_t cls = s.listed[c0 + (tid < last ? tid : last)];
      s.chunk_bias[tid] = class_bias != nullptr ? __ldg(class_bias + cls) : 0.f;
    }
    // stage 0
    uint32_t class_offset[kChunk];
#pragma unroll
    for (int c = 0; c < kChunk; ++c)
      class_offset[c] = static_cast<uint32_t>(s.listed[c0 + (c < last ? c : last)]) * plane;
#pragma unroll
    for (int slot = 0; slot < 2; ++slot) {
      for (int32_t j = t.seg; j < rows[slot]; j += t.segments) {
        const uint32_t row = row0[slot] + static_cast<uint32_t>(j * d.in_w);
#pragma unroll
        for (int c = 0; c < kChunk; ++c) {
          const uint32_t at = row + class_offset[c];  // 32-bit offsets: one IMAD.WIDE each
          s.blended[slot][c][j][t.fc] = blend2(
              cuda_detail::load_as_float(offset_pointer(window_logits[slot], at)),
              cuda_detail::load_as_float(offset_pointer(window_logits[slot], at + step[slot])), cw0[slot], cw1[slot]);
        }
      }
    }
    __syncthreads();
    // stage 1
    t.zero_uncovered<kSigmoidOfExponent>(s);
    if (t.active) {
      if (covering == 3) {
        if (aligned) {
          pair_rows<true>(t.fc, t.r0, t.r1, s);
        } else {
          pair_rows<false>(t.fc, t.r0, t.r1, s);
        }
      } else if (covering != 0) {
        one_window_rows(covering == 1 ? 0 : 1, t.fc, t.r0, t.r1, s);
      }
    }
    __syncthreads();
    // stage 2: the whole chunk (repeated classes never replace the first: ">")
    if (tile.has(0)) {
      float bias[kChunk];
#pragma unroll
      for (int c = 0; c < kChunk; ++c) bias[c] = s.chunk_bias[c];
#pragma unroll
      for (int c = 0; c < kChunk; ++c) {
        float top;
        const float bottom = taps.blend(s.merged[c], top);
        const float v = fmaf(bottom, taps.w1y, fmaf(top, taps.w0y, -bias[c]));  // blend2(top, bottom) - bias, fused
        if (v > best) {
          best = v;
          label = c0 + c;
        }
      }
    }
    __syncthreads();  // the next chunk overwrites the merged values and the chunk's biases
  }
  if (tile.has(0)) {
    const int64_t at = static_cast<int64_t>(tile.y(0)) * d.out_w + tile.x(0);
    labels[at] = static_cast<int32_t>(s.listed[label]);
    scores[at] = best;
  }
}

template <typename T, bool Sigmoid>
__global__ void __launch_bounds__(kThreads, 2)
    segment_windows_kernel(const T* __restrict__ logits, WindowTable table, Dims d,
                           const float* __restrict__ class_bias, int32_t* __restrict__ labels,
                           float* __restrict__ scores) {
  __shared__ TileSmem s;
  for (int32_t tile_y = static_cast<int32_t>(blockIdx.y); tile_y < d.tiles_y; tile_y += gridDim.y) {
    for (int32_t tile_x = static_cast<int32_t>(blockIdx.x); tile_x < d.tiles_x; tile_x += gridDim.x) {
      const Tile tile = tile_at(d, tile_y, tile_x);
      prepare_tile(table, d, tile.y0, tile.x0, tile.th, tile.tw, s);
      if (Sigmoid && d.prune) {
        bound_pass(logits, d, class_bias, s);
        if (s.tame && s.same_rows && s.slots <= 2) {
          run_tile_fast(logits, table, d, class_bias, tile, s.listed_count, labels, scores, s);
        } else {
          run_tile<kSigmoid>(logits, table, d, class_bias, tile, s.listed_count, true, labels, scores, s);
        }
      } else {
        run_tile<Sigmoid ? kSigmoid : kIdentity>(logits, table, d, class_bias, tile, d.classes, false, labels, scores,
                                                 s);
      }
    }
  }
}

// Softmax variant: the three passes over the names each recompute the merged values (no sigmoid: cheap) instead
// of storing them. No class_drop on CUDA (the binding refuses it).
template <typename T>
__global__ void __launch_bounds__(kThreads, 2)
    segment_windows_softmax_kernel(const T* __restrict__ logits, WindowTable table, Dims d,
                                   const float* __restrict__ class_bias, const int32_t* __restrict__ class_of,
                                   int32_t* __restrict__ labels, float* __restrict__ scores) {
  __shared__ TileSmem s;
  for (int32_t tile_y = static_cast<int32_t>(blockIdx.y); tile_y < d.tiles_y; tile_y += gridDim.y) {
    for (int32_t tile_x = static_cast<int32_t>(blockIdx.x); tile_x < d.tiles_x; tile_x += gridDim.x) {
      const Tile tile = tile_at(d, tile_y, tile_x);
      prepare_tile(table, d, tile.y0, tile.x0, tile.th, tile.tw, s);
      SoftmaxState st[kPixelsPerThread];
      PixelTaps taps[kPixelsPerThread];
      const SegmentOfThread seg(table, s);
#pragma unroll
      for (int i = 0; i < kPixelsPerThread; ++i) {
        st[i].current = class_of != nullptr ? __ldg(class_of) : 0;
        taps[i] = pixel_taps(d, s, tile.has(i) ? tile.y(i) : tile.y0, tile.has(i) ? tile.x(i) : tile.x0);
      }
      for (int pass = 1; pass <= 3; ++pass) {
        for (int32_t c0 = 0; c0 < d.classes; c0 += kChunk) {
          const int32_t chunk = d.classes - c0 < kChunk ? d.classes - c0 : kChunk;
          stage_merged<kIdentity>(logits, table, d, static_cast<const float*>(nullptr), ChunkClasses{c0, chunk, false},
                                  d.logit_scale, seg, s);
#pragma unroll
          for (int i = 0; i < kPixelsPerThread; ++i) {
            if (!tile.has(i) || (pass > 1 && st[i].bad)) continue;
            SoftmaxState state = st[i];  // a copy in the closure: the array stays in registers
            for_chunk_any(s.merged, taps[i], chunk,
                          [&](float v, int c) { softmax_update(state, pass, v, c0 + c, class_of, class_bias); });
            st[i] = state;
          }
          __syncthreads();  // the next chunk overwrites the merged values
        }
        if (pass == 1) {
#pragma unroll
          for (int i = 0; i < kPixelsPerThread; ++i) softmax_finish_pass1(st[i]);
        }
      }
#pragma unroll
      for (int i = 0; i < kPixelsPerThread; ++i) {
        if (!tile.has(i)) continue;
        const int64_t at = static_cast<int64_t>(tile.y(i)) * d.out_w + tile.x(i);
        softmax_store(st[i], class_bias, labels + at, scores + at);
      }
    }
  }
}

// ---- launcher ------------------------------------------------------------------------------------------------

// Upper bound of the footprint span (rescaled pixels) of `tile` consecutive output pixels at output->rescaled
// scale `scale`: i1(last) - i0(first) + 1 <= floor(src(last)) - floor(src(first)) + 2 <= floor(scale * (tile - 1))
// + 3, with a little slack for the float taps.
int32_t footprint_bound(float scale, int32_t tile) {
  return static_cast<int32_t>(std::floor(static_cast<double>(scale) * (tile - 1) + 1e-3)) + 3;
}

// The largest tile (halving the side whose footprint is larger) whose footprint and logit rows fit the shared
// buffers; false when none does (then the direct form runs).
bool choose_tile(const Dims& d, int32_t& tile_w, int32_t& tile_h) {
  int32_t tw = kTileW, th = kTileH;
  for (;;) {
    const int32_t fw = footprint_bound(d.out_scale_x, tw), fh = footprint_bound(d.out_scale_y, th);
    const int32_t logit_rows = footprint_bound(d.head_scale_y, fh);  // head rows = rescaled rows
    if (fw <= kFootW && fh <= kFootH && fw * fh <= kFootprintCap && logit_rows <= kLogitRows) {
      tile_w = tw;
      tile_h = th;
      return true;
    }
    if (tw == 1 && th == 1) return false;
    const bool shrink_w = tw > 1 && (fw > kFootW || th == 1 || (fh <= kFootH && logit_rows <= kLogitRows && fw >= fh));
    if (shrink_w) {
      tw = (tw + 1) / 2;
    } else {
      th = (th + 1) / 2;
    }
  }
}

// The most windows overlapping one footprint-sized rectangle anywhere (an upper bound of what a tile meets): a
// rectangle [y, y + fh) x [x, x + fw) meets window w iff (y, x) lies in w grown up and left by (fh - 1, fw - 1);
// the most grown windows over one point is reached at a corner of their intersection, i.e. at some (top of one,
// left of another). O(windows^3) with windows <= 64; sliding windows give 1-4.
int32_t most_windows_per_footprint(const SegmentWindowsParams& p, int32_t fh, int32_t fw) {
  int32_t most = 0;
  for (int64_t a = 0; a < p.num_windows; ++a) {
    const int32_t y = p.windows[a].y1 - fh + 1;
    for (int64_t b = 0; b < p.num_windows; ++b) {
      const int32_t x = p.windows[b].x1 - fw + 1;
      int32_t n = 0;
      for (int64_t k = 0; k < p.num_windows; ++k) {
        const WindowPlacement& w = p.windows[k];
        n += (y + fh > w.y1 && y < w.y2 && x + fw > w.x1 && x < w.x2) ? 1 : 0;
      }
      most = n > most ? n : most;
    }
  }
  return most;
}

template <typename T>
CudaStatus launch(const SegmentWindowsParams& p, cudaStream_t stream) {
  if (p.num_windows > kMaxWindowsCuda) return static_cast<CudaStatus>(cudaErrorInvalidValue);
  if (p.softmax && p.class_drop != nullptr) return static_cast<CudaStatus>(cudaErrorInvalidValue);
  // the binding caps arrays at 2^31 - 1 elements; the kernels index pixels, classes and one window's logits in int32
  const int64_t kInt32Max = 2147483647;
  if (p.out_height * p.out_width > kInt32Max || p.classes * p.in_height * p.in_width > kInt32Max) {
    return static_cast<CudaStatus>(cudaErrorInvalidValue);
  }
  if (p.out_height <= 0 || p.out_width <= 0) return static_cast<CudaStatus>(cudaSuccess);
  WindowTable table{};
  for (int64_t k = 0; k < p.num_windows; ++k) table.w[k] = p.windows[k];
  Dims d{};
  d.num_windows = static_cast<int32_t>(p.num_windows);
  d.classes = static_cast<int32_t>(p.classes);
  d.in_h = static_cast<int32_t>(p.in_height);
  d.in_w = static_cast<int32_t>(p.in_width);
  d.head_h = static_cast<int32_t>(p.head_height);
  d.head_w = static_cast<int32_t>(p.head_width);
  d.scaled_h = static_cast<int32_t>(p.scaled_height);
  d.scaled_w = static_cast<int32_t>(p.scaled_width);
  d.out_h = static_cast<int32_t>(p.out_height);
  d.out_w = static_cast<int32_t>(p.out_width);
  d.head_scale_y = bilinear_scale(p.in_height, p.head_height);
  d.head_scale_x = bilinear_scale(p.in_width, p.head_width);
  d.out_scale_y = bilinear_scale(p.scaled_height, p.out_height);
  d.out_scale_x = bilinear_scale(p.scaled_width, p.out_width);
  d.sigmoid = p.apply_sigmoid && !p.softmax;
  const auto pruning = static_cast<segment_windows_testing::Pruning>(g_pruning.load());
  d.prune = d.sigmoid && p.classes <= kMaxPruneClasses && pruning != segment_windows_testing::Pruning::kOff;
  d.drop = pruning == segment_windows_testing::Pruning::kOn;
  d.logit_scale = p.logit_scale;
  const auto capped = [](int64_t n) {
    return static_cast<unsigned int>(n < 1 ? 1 : (n > ZS_CUDA_GRID_CAP ? ZS_CUDA_GRID_CAP : n));
  };
  int32_t tw = 0, th = 0;
  const bool tiled = choose_tile(d, tw, th) && most_windows_per_footprint(p, footprint_bound(d.out_scale_y, th),
                                                                          footprint_bound(d.out_scale_x, tw)) <= kSlots;
  if (!tiled) {
    const int64_t blocks = (p.out_height * p.out_width + kThreads - 1) / kThreads;
    ZS_LAUNCH(segment_windows_direct_kernel<T>, capped(blocks), kThreads, stream, static_cast<const T*>(p.logits),
              table, d, p.class_bias, p.class_of, p.softmax, p.labels, p.scores);
    return static_cast<CudaStatus>(cudaGetLastError());
  }
  d.tile_w = tw;
  d.tile_h = th;
  d.tiles_x = static_cast<int32_t>((p.out_width + tw - 1) / tw);
  d.tiles_y = static_cast<int32_t>((p.out_height + th - 1) / th);
  const dim3 grid(capped(d.tiles_x), capped(d.tiles_y));
  if (p.softmax) {
    ZS_LAUNCH(segment_windows_softmax_kernel<T>, grid, kThreads, stream, static_cast<const T*>(p.logits), table, d,
              p.class_bias, p.class_of, p.labels, p.scores);
    return static_cast<CudaStatus>(cudaGetLastError());
  }
  // (a template-id with a comma cannot be a macro argument)
  auto* const kernel = d.sigmoid ? &segment_windows_kernel<T, true> : &segment_windows_kernel<T, false>;
  ZS_LAUNCH(kernel, grid, kThreads, stream, static_cast<const T*>(p.logits), table, d, p.class_bias, p.labels,
            p.scores);
  return static_cast<CudaStatus>(cudaGetLastError());
}

}  // namespace

// (qualified definitions: the declarations are in an inline namespace that differs between emulated and CUDA builds)
void segment_windows_testing::set_pruning(segment_windows_testing::Pruning mode) {
  g_pruning.store(static_cast<int>(mode));
}
segment_windows_testing::Pruning segment_windows_testing::pruning() {
  return static_cast<Pruning>(g_pruning.load());
}
segment_windows_testing::PruneStats segment_windows_testing::prune_stats() {
  PruneStats stats;
#if defined(ZS_CUDA_EMULATION)
  stats.tiles = g_stat_tiles.load();
  stats.classes = g_stat_classes.load();
  stats.kept = g_stat_kept.load();
  stats.fast_tiles = g_stat_fast.load();
#endif
  return stats;
}
void segment_windows_testing::reset_prune_stats() {
#if defined(ZS_CUDA_EMULATION)
  g_stat_tiles = 0;
  g_stat_classes = 0;
  g_stat_kept = 0;
  g_stat_fast = 0;
#endif
}

ZS_DTYPE_ENTRY_POINT(segment_windows_cuda, SegmentWindowsParams)

}  // namespace zsseg
