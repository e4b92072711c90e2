// CUDA fused multi-window exact post-processing (see zsseg/segment_windows.h).
//
// Tiled form. One block of 256 threads per output tile (up to 32 x 16 pixels, two per thread). The tile's output
// pixels read their bilinear taps from a small rectangle of the rescaled (merged) map, its footprint (23 x 45
// rescaled pixels for the photo case: 500x375 output from a 683x512 rescaled image). Per chunk of kChunk classes,
// and per window overlapping the footprint (a "slot"), the block
//   0. blends the window's logit rows horizontally at every footprint column (the first step of every bilinear
//      here, columns first) into shared memory: a few logit rows per window, so this is cheap;
//   1. computes the merged calibrated value of every footprint pixel it covers: each thread walks a column
//      segment, keeps the two blended logit rows of the current head-row interval in registers (reloaded from
//      shared memory when the interval changes, every ~16 rows for a 16x head upsampling), and per value does one
//      row blend, the sigmoid (fast exp and reciprocal), the bias, the sum over windows and one shared store;
// then
//   2. every output pixel blends its four taps of each class of the chunk from shared memory (offsets computed
//      once per tile, constant shared-memory offsets per class) and updates its running argmax.
// No division, no 64-bit index arithmetic and no global load in the inner loops; labels/scores are written once per
// pixel, consecutive threads writing consecutive pixels. BENCHMARKS.md has the cost model read from the SASS.
//
// Results are the CPU op's: every merged value is sum_k (f(v_k) - bias) in window order, divided by the count (by
// multiplying with the exact reciprocal when the count is a power of two: the same IEEE result), v_k blended
// columns first then rows from the window logits, the output blend columns first then rows, the argmax with
// torch's tie/NaN rules. f = sigmoid uses the device's fast exp and reciprocal (__expf / __fdividef: within 2e-7
// of the exact logistic function, like the CPU path's vectorised sigmoid).
//
// Direct form (the first version; now the fallback): one thread per output pixel evaluates, per class, its four
// rescaled taps from the window logits. The launcher uses it when more than kSlots windows overlap one tile's
// footprint (the pipeline's sliding windows never do; the tests make it happen). Compiled everywhere nvcc exists;
// never run on a GPU in this project's CI (cpp_tests/emulation runs both forms on the host).
#include <cmath>

#include "resize_common.cuh"
#include "zsseg/segment_windows.h"

namespace zsseg {
namespace {

constexpr int kMaxWindowsCuda = 64;
constexpr int kThreads = 256;
constexpr int kTileW = 32, kTileH = 8;  // largest output tile (one pixel per thread)
constexpr int kPixelsPerThread = (kTileW * kTileH + kThreads - 1) / kThreads;
constexpr int kChunk = 8;            // classes staged per pass
constexpr int kFootW = 48;           // largest footprint width (rescaled columns)
constexpr int kFootH = 32;           // largest footprint height (rescaled rows)
constexpr int kFootprintCap = 1040;  // merged values per class in shared memory (>= 23 x 45)
constexpr int kLogitRows = 5;        // logit rows of one window a footprint may span (>= 4: 1/16 head scale)
constexpr int kSlots = 4;            // windows one footprint may overlap (sliding windows: <= 4)

struct WindowTable {
  WindowPlacement w[kMaxWindowsCuda];
};

struct Dims {
  int32_t num_windows, classes, in_h, in_w, head_h, head_w, scaled_h, scaled_w, out_h, out_w;
  int32_t tile_w, tile_h, tiles_x, tiles_y;  // output tiling (tiled form)
  float head_scale_y, head_scale_x, out_scale_y, out_scale_x;
  bool sigmoid;
  float logit_scale;  // softmax only
};

// ---- per-pixel decisions, shared by both forms ---------------------------------------------------------------

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
    if (d.sigmoid) v = sigmoid_f32(v);
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
  float merged[kChunk][kFootprintCap];        // [class of chunk][footprint row * fw + column]
  float blended[kChunk][kLogitRows][kFootW];  // stage 0: one slot's logit rows blended at each footprint column
  BilinearTap row_tap[kSlots][kFootH];        // head-row tap of footprint row fr in slot s (i0 < 0: not covered)
  int32_t row_mask[kFootH];                   // bit s: slot s's window covers footprint row fr
  int32_t slot_window[kSlots];                // windows overlapping the footprint, in window order
  int32_t slot_rows[kSlots][2];               // first logit row, number of logit rows the slot's rows use
  int32_t slots, fy0, fx0, fh, fw;            // footprint origin and size in rescaled pixels
  int32_t same_rows;                          // every footprint row has the same row_mask (one row of windows)
};

// Per tile: footprint, slots, row taps. Ends with a barrier.
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
    s.row_mask[e] = mask;
  }
  __syncthreads();
  if (e == kThreads - 1) {
    int32_t same = 1;
    for (int32_t fr = 1; fr < s.fh; ++fr) same &= s.row_mask[fr] == s.row_mask[0] ? 1 : 0;
    s.same_rows = same;
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
  }
  __syncthreads();
}

// Stage 0 for one slot: blended[c][j][fc] = logit row (first + j) of class c0 + c, blended at the column tap of
// footprint column fc (only the columns the window covers). A chunk of fewer classes repeats its last class.
template <typename T>
__device__ __forceinline__ void stage_blend_rows(const T* __restrict__ logits, const WindowTable& table, const Dims& d,
                                                 int32_t c0, int32_t chunk, int32_t slot, int32_t fc, int32_t seg,
                                                 int32_t segments, TileSmem& s) {
  const int32_t k = s.slot_window[slot];
  const WindowPlacement& w = table.w[k];
  const int32_t q = s.fx0 + fc;
  if (q < w.x1 || q >= w.x2) return;
  const BilinearTap tx = bilinear_tap(d.head_scale_x, q - w.x1, d.in_w);
  const int32_t first = s.slot_rows[slot][0], rows = s.slot_rows[slot][1];
  const int32_t plane = d.in_h * d.in_w;  // 32-bit offsets: one window's logits hold < 2^31 values
  const T* window_logits = logits + (static_cast<int64_t>(k) * d.classes + c0) * plane;
  for (int32_t j = seg; j < rows; j += segments) {
    const int32_t at0 = (first + j) * d.in_w + tx.i0, at1 = at0 + (tx.i1 - tx.i0);
#pragma unroll
    for (int c = 0; c < kChunk; ++c) {
      const int32_t p = (c < chunk ? c : chunk - 1) * plane;
      s.blended[c][j][fc] = blend2(cuda_detail::load_as_float(window_logits + (p + at0)),
                                   cuda_detail::load_as_float(window_logits + (p + at1)), tx.w0, tx.w1);
    }
  }
}

// 2^x and 1/x on the special function unit, flushing subnormal results to 0 (ex2.approx.ftz, rcp.approx.ftz: one
// MUFU instruction each; __expf / __fdividef add range fix-ups, expf and an IEEE division ~20 instructions).
__device__ __forceinline__ float ex2_approx_ftz(float x) {
#if defined(__CUDA_ARCH__)
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
#else
  return std::exp2(x);
#endif
}
__device__ __forceinline__ float rcp_approx_ftz(float x) {
#if defined(__CUDA_ARCH__)
  float y;
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
#else
  return 1.f / x;
#endif
}

// The logistic function in 4 instructions (FMUL, MUFU.EX2, FADD, MUFU.RCP): relative errors of 2^-22 (ex2) and
// 2^-23 (rcp) give an absolute error below 2e-7. NaN propagates; +-inf give 1 / 0; a result below 2^-126 is 0
// (the CPU's is at most 1.2e-38 there).
__device__ __forceinline__ float sigmoid_device(float x) {
  return rcp_approx_ftz(1.f + ex2_approx_ftz(x * -1.44269504088896341f));
}

// One footprint position of one window for the kChunk classes: v = rows blend of h0/h1, f(v) - bias, added to the
// earlier windows' sum unless this is the first window covering the position; Scale: the last covering window
// (count 2 or 4) multiplies by 1 / count * post_scale (a power of two and 1 for the sigmoid path: the result of
// the CPU's IEEE division).
template <bool Sigmoid, bool First, bool Scale>
__device__ __forceinline__ void merge_position(float (*merged)[kFootprintCap], int32_t at, const float (&h0)[kChunk],
                                               const float (&h1)[kChunk], const float (&bias)[kChunk], float w0,
                                               float w1, float mult) {
#pragma unroll
  for (int c = 0; c < kChunk; ++c) {
    float v = blend2(h0[c], h1[c], w0, w1);  // rows: the second step of every bilinear here
    if (Sigmoid) v = sigmoid_device(v);
    v -= bias[c];
    const float total = First ? v : merged[c][at] + v;
    merged[c][at] = Scale ? total * mult : total;
  }
}

// Stage 1's common case: every row of the thread's segment is merged the same way (First / Scale fixed).
template <bool Sigmoid, bool First, bool Scale>
__device__ __forceinline__ void merge_rows(int32_t slot, int32_t fc, int32_t r0, int32_t r1, int32_t first_row,
                                           const float (&bias)[kChunk], float mult, TileSmem& s) {
  float h0[kChunk], h1[kChunk];  // the blended logit rows i0, i1 of the current head-row interval
  int32_t current_i0 = -1;
  const int32_t fw = s.fw;
  for (int32_t fr = r0, at = r0 * fw + fc; fr < r1; ++fr, at += fw) {
    const BilinearTap ty = s.row_tap[slot][fr];  // covered: the slot covers every row here
    if (ty.i0 != current_i0) {
      current_i0 = ty.i0;
#pragma unroll
      for (int c = 0; c < kChunk; ++c) {
        h0[c] = s.blended[c][ty.i0 - first_row][fc];
        h1[c] = s.blended[c][ty.i1 - first_row][fc];
      }
    }
    merge_position<Sigmoid, First, Scale>(s.merged, at, h0, h1, bias, ty.w0, ty.w1, mult);
  }
}

// Stage 1 for one slot: the thread's column segment (footprint column fc, rows [r0, r1)).
template <bool Sigmoid>
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
        merge_rows<Sigmoid, true, false>(slot, fc, r0, r1, first_row, bias, mult, s);
      } else if (first) {
        merge_rows<Sigmoid, true, true>(slot, fc, r0, r1, first_row, bias, mult, s);
      } else if (!last || mult == 1.f) {
        merge_rows<Sigmoid, false, false>(slot, fc, r0, r1, first_row, bias, mult, s);
      } else {
        merge_rows<Sigmoid, false, true>(slot, fc, r0, r1, first_row, bias, mult, s);
      }
      return;
    }
  }
  for (int32_t fr = r0; fr < r1; ++fr) {
    const BilinearTap ty = s.row_tap[slot][fr];
    if (ty.i0 < 0) continue;  // row outside the window (the same for the whole segment)
    if (ty.i0 != current_i0) {
      current_i0 = ty.i0;
#pragma unroll
      for (int c = 0; c < kChunk; ++c) {
        h0[c] = s.blended[c][ty.i0 - first_row][fc];
        h1[c] = s.blended[c][ty.i1 - first_row][fc];
      }
    }
    const int32_t covering = s.row_mask[fr] & col_mask;
    const bool first = (covering & earlier) == 0, last = (covering & later) == 0;
    const int32_t count = __popc(static_cast<unsigned int>(covering));
    const int32_t at = fr * s.fw + fc;
    if (last && count > 2 && (count & (count - 1)) != 0) {  // 3 windows: an IEEE division (not with sliding windows)
#pragma unroll
      for (int c = 0; c < kChunk; ++c) {
        float v = blend2(h0[c], h1[c], ty.w0, ty.w1);
        if (Sigmoid) v = sigmoid_device(v);
        v -= bias[c];
        s.merged[c][at] = __fdiv_rn(s.merged[c][at] + v, static_cast<float>(count)) * post_scale;
      }
      continue;
    }
    // count 1, 2 or 4 here: 1 / count is exact (a select, not a division)
    const float mult = (count == 1 ? 1.f : (count == 2 ? 0.5f : 0.25f)) * post_scale;
    const bool scale = last && mult != 1.f;
    if (first) {
      if (scale) {
        merge_position<Sigmoid, true, true>(s.merged, at, h0, h1, bias, ty.w0, ty.w1, mult);
      } else {
        merge_position<Sigmoid, true, false>(s.merged, at, h0, h1, bias, ty.w0, ty.w1, mult);
      }
    } else if (scale) {
      merge_position<Sigmoid, false, true>(s.merged, at, h0, h1, bias, ty.w0, ty.w1, mult);
    } else {
      merge_position<Sigmoid, false, false>(s.merged, at, h0, h1, bias, ty.w0, ty.w1, mult);
    }
  }
}

// Stages 0 and 1 for classes [c0, c0 + chunk): smem.merged holds the chunk's merged values afterwards (after the
// caller's barrier). Thread t owns footprint column fc = t % fw and segment t / fw of the footprint rows.
template <bool Sigmoid, typename T>
__device__ void stage_merged(const T* __restrict__ logits, const WindowTable& table, const Dims& d,
                             const float* __restrict__ class_bias, int32_t c0, int32_t chunk, float post_scale,
                             TileSmem& s) {
  const int32_t fw = s.fw, fh = s.fh, tid = static_cast<int32_t>(threadIdx.x);
  const int32_t segments = kThreads / fw, seg = tid / fw, fc = tid - seg * fw;  // fw <= kFootW < kThreads
  const bool active = seg < segments;
  const int32_t seg_rows = (fh + segments - 1) / segments;
  const int32_t r0 = seg * seg_rows, r1 = r0 + seg_rows < fh ? r0 + seg_rows : fh;
  float bias[kChunk];
#pragma unroll
  for (int c = 0; c < kChunk; ++c) {
    bias[c] = class_bias != nullptr ? __ldg(class_bias + c0 + (c < chunk ? c : chunk - 1)) : 0.f;
  }
  int32_t col_mask = 0;  // slots whose window covers the thread's column
  for (int32_t slot = 0; slot < s.slots; ++slot) {
    const WindowPlacement& w = table.w[s.slot_window[slot]];
    const int32_t q = s.fx0 + fc;
    if (q >= w.x1 && q < w.x2) col_mask |= 1 << slot;
  }
  if (active) {  // positions no window covers (the caller validates coverage; the direct form gives 0 there)
    for (int32_t fr = r0; fr < r1; ++fr) {
      if ((s.row_mask[fr] & col_mask) != 0) continue;
#pragma unroll
      for (int c = 0; c < kChunk; ++c) s.merged[c][fr * fw + fc] = 0.f;
    }
  }
  for (int32_t slot = 0; slot < s.slots; ++slot) {
    if (active) stage_blend_rows(logits, table, d, c0, chunk, slot, fc, seg, segments, s);
    __syncthreads();
    if (active) stage_merge_slot<Sigmoid>(slot, col_mask, fc, r0, r1, bias, post_scale, s);
    __syncthreads();  // blended is rewritten for the next slot
  }
}

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

template <typename T, bool Sigmoid>
__global__ void __launch_bounds__(kThreads, 3)
    segment_windows_kernel(const T* __restrict__ logits, WindowTable table, Dims d,
                           const float* __restrict__ class_bias, int32_t* __restrict__ labels,
                           float* __restrict__ scores) {
  __shared__ TileSmem s;
  for (int32_t tile_y = static_cast<int32_t>(blockIdx.y); tile_y < d.tiles_y; tile_y += gridDim.y) {
    for (int32_t tile_x = static_cast<int32_t>(blockIdx.x); tile_x < d.tiles_x; tile_x += gridDim.x) {
      const Tile tile = tile_at(d, tile_y, tile_x);
      prepare_tile(table, d, tile.y0, tile.x0, tile.th, tile.tw, s);
      float best[kPixelsPerThread];
      int32_t label[kPixelsPerThread];
      PixelTaps taps[kPixelsPerThread];
#pragma unroll
      for (int i = 0; i < kPixelsPerThread; ++i) {
        best[i] = -INFINITY;
        label[i] = 0;
        taps[i] = pixel_taps(d, s, tile.has(i) ? tile.y(i) : tile.y0, tile.has(i) ? tile.x(i) : tile.x0);
      }
      for (int32_t c0 = 0; c0 < d.classes; c0 += kChunk) {
        const int32_t chunk = d.classes - c0 < kChunk ? d.classes - c0 : kChunk;
        stage_merged<Sigmoid>(logits, table, d, class_bias, c0, chunk, 1.f, s);
#pragma unroll
        for (int i = 0; i < kPixelsPerThread; ++i) {
          if (!tile.has(i)) continue;
          float b = best[i];  // scalars, not the arrays, in the closure: the arrays stay in registers
          int32_t l = label[i];
          for_chunk_any(s.merged, taps[i], chunk, [&](float v, int c) { argmax_update(v, c0 + c, b, l); });
          best[i] = b;
          label[i] = l;
        }
        __syncthreads();  // the next chunk overwrites the merged values
      }
#pragma unroll
      for (int i = 0; i < kPixelsPerThread; ++i) {
        if (!tile.has(i)) continue;
        const int64_t at = static_cast<int64_t>(tile.y(i)) * d.out_w + tile.x(i);
        labels[at] = label[i];
        scores[at] = best[i];
      }
    }
  }
}

// Softmax variant: the three passes over the names each recompute the merged values (no sigmoid: cheap) instead
// of storing them. No class_drop on CUDA (the binding refuses it).
template <typename T>
__global__ void __launch_bounds__(kThreads, 3)
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
#pragma unroll
      for (int i = 0; i < kPixelsPerThread; ++i) {
        st[i].current = class_of != nullptr ? __ldg(class_of) : 0;
        taps[i] = pixel_taps(d, s, tile.has(i) ? tile.y(i) : tile.y0, tile.has(i) ? tile.x(i) : tile.x0);
      }
      for (int pass = 1; pass <= 3; ++pass) {
        for (int32_t c0 = 0; c0 < d.classes; c0 += kChunk) {
          const int32_t chunk = d.classes - c0 < kChunk ? d.classes - c0 : kChunk;
          stage_merged<false>(logits, table, d, static_cast<const float*>(nullptr), c0, chunk, d.logit_scale, s);
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

CudaStatus segment_windows_cuda(const SegmentWindowsParams& params, Stream stream) {
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (params.dtype == DType::Float16) return launch<__half>(params, s);
  return launch<float>(params, s);
}

}  // namespace zsseg
