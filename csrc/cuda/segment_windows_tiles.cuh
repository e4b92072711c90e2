// The tiled CUDA segment_windows' shared pieces (see segment_windows.cu for the design): sizes, the window table and
// the launch's dims, torch's argmax and softmax rules, the tile's shared memory and its preparation, the device's
// sigmoid, stages 0 and 1 (the merged values of a chunk of classes over the footprint) and the tile loop. Included
// by segment_windows.cu (the launcher) and by the files of its kernels: segment_windows_tiled.cu (sigmoid and
// identity: the bound pass, the fast path, generic tiles), segment_windows_softmax.cu and segment_windows_direct.cu
// (the fallback). Each kernel file's launch function is declared at the end.
#pragma once
#include <atomic>
#include <cmath>

#include "resize_common.cuh"
#include "zsseg/segment_windows.h"

#if defined(__CUDACC__)
#define ZS_SW_NOINLINE __noinline__
#else
#define ZS_SW_NOINLINE __attribute__((noinline))
#endif
// The emulated build and a CUDA build are both linked into the emulation tests of a GPU machine: what crosses the
// files of this op gets different symbols in each (as segment_windows_testing.cuh's hooks). Every file of the op
// opens its code in `inline namespace ZS_SW_BUILD {`.
#if defined(ZS_CUDA_EMULATION)
#define ZS_SW_BUILD emulated
#else
#define ZS_SW_BUILD device
#endif

namespace zsseg {
namespace sw_cuda {
inline namespace ZS_SW_BUILD {  // emulated / device: segment_windows_tiles.cuh

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
constexpr float kGentleLogit = 40.f;  // every logit of a tile within +-this: chained exponentials allowed (columns)
constexpr float kPruneSlack = 1e-5f;  // bound slack, times (1 + |bias|): covers every rounding and approximation
constexpr float kNegLog2e = -1.44269504088896341f;
// The `warps` candidate (segment_windows_warps.cu): a block per output tile of up to 32 columns x kWarpRows rows,
// kWarpGroups warps splitting the classes, kWarpChunk classes in flight per lane, at most kWarpSlots windows and
// kWarpFootRows rescaled rows per footprint (the launcher checks both, else the tiled default runs).
constexpr int kWarpGroups = 8, kWarpRows = 16, kWarpChunk = 4, kWarpSlots = 4, kWarpFootRows = 64;

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
  int32_t variant;    // the sigmoid path's kernel (segment_windows_testing::Variant)
  bool chain;         // kColumnsChain and a power-of-two head scale: 2^t may be chained along rows
  bool prebound_cells_only;  // Pruning::kPreboundCellsOnly (a test control): ordered_prebound's blocks of one logit
};

#if defined(ZS_CUDA_EMULATION)
// What the bound pass did (emulated build only; defined in segment_windows.cu, read by the testing hooks).
extern std::atomic<int64_t> g_stat_tiles, g_stat_classes, g_stat_kept, g_stat_fast, g_stat_chained;
extern std::atomic<int64_t> g_stat_warp_tiles;                          // tiles the `warps` kernel ran
extern std::atomic<int64_t> g_stat_bound_loads, g_stat_prebound_loads;  // the bound pass's global loads
#endif

// The kernels' launches, one per file (errors are read by the caller with cudaGetLastError).
template <typename T>
void launch_direct(const T* logits, const WindowTable& table, const Dims& d, const SegmentWindowsParams& p,
                   unsigned int blocks, cudaStream_t stream);  // segment_windows_direct.cu
template <typename T>
void launch_tiled(const T* logits, const WindowTable& table, const Dims& d, const SegmentWindowsParams& p, dim3 grid,
                  cudaStream_t stream);  // segment_windows_tiled.cu
template <typename T>
void launch_warps(const T* logits, const WindowTable& table, const Dims& d, const SegmentWindowsParams& p, dim3 grid,
                  cudaStream_t stream);  // segment_windows_warps.cu
template <typename T>
void launch_softmax(const T* logits, const WindowTable& table, const Dims& d, const SegmentWindowsParams& p, dim3 grid,
                    cudaStream_t stream);  // segment_windows_softmax.cu
// A launcher's explicit instantiations, for float and __half logits, in the file that defines it (`Grid`: its
// grid's type).
#define ZS_SW_INSTANTIATE_LAUNCH(launch, Grid)                                                                    \
  template void launch<float>(const float*, const WindowTable&, const Dims&, const SegmentWindowsParams&, Grid,   \
                              cudaStream_t);                                                                      \
  template void launch<__half>(const __half*, const WindowTable&, const Dims&, const SegmentWindowsParams&, Grid, \
                               cudaStream_t)

namespace {

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
  int32_t steep;  // the bound pass saw a logit beyond +-kGentleLogit (reset per tile by prepare_tile)
};

// Per tile: footprint, slots, row taps, the logit rectangle each slot reads. Ends with a barrier.
[[maybe_unused]] __device__ void prepare_tile(const WindowTable& table, const Dims& d, int32_t y0, int32_t x0,
                                              int32_t th, int32_t tw, TileSmem& s) {
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
    s.steep = 0;
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

}  // namespace
}  // namespace ZS_SW_BUILD
}  // namespace sw_cuda
}  // namespace zsseg
