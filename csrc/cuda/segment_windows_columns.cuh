// CUDA segment_windows, the column form of the tame tiles' fast path (segment_windows_testing::Variant::kColumns
// and kColumnsChain; see segment_windows.cu for the tiled design and its fast path, run_tile_fast, which these
// variants replace in the same tiles: tame, one row of at most two windows over the footprint).
//
// Why: the tiled fast path keeps 8 classes' blended rows of both windows in registers (a0/a1/b0/b1[8]); the kernel
// takes 95-123 registers, so two blocks of 256 threads fit an SM (25 % occupancy, the H100 ncu record of
// 2026-11-26: latency-bound, 9.1 cycles per issued instruction). Here no per-class array is longer than 2:
//   A. (per chunk of 22 classes) one thread per (footprint column, pair of classes) walks the whole footprint
//      column from top to bottom: per covering window it keeps the two blended logit rows of the current head-row
//      interval (reloaded from the logits, L1/L2, when the interval changes), makes the merged value of each row
//      (one window: 1 / (1 + E); two: the tiled path's one-reciprocal pair), and as soon as an output row's lower
//      footprint row is reached blends the two rows it needs into that output row's value at this column. Only
//      the output rows' values go to shared memory ([22][tile rows][footprint columns]), not the footprint's.
//   B. each output pixel blends its two columns of that (its row's) buffer, minus the bias, and updates its
//      running argmax (">": no NaN in tame tiles, as in run_tile_fast).
//   Two barriers per chunk (eight chunks at C = 171), none inside a chunk's passes.
// The output blend is rows first, then columns (the CPU op: columns, then rows): a different rounding of the
// same bilinear value (scores within 1e-6 of the CPU's; labels may differ only at near-ties), as the tiled fast
// path's one-reciprocal pair already does.
//
// Chained exponentials (kColumnsChain): with a power-of-two head scale (ViT patch grids: 32/512, 40/640 ...) the
// row weights are exact multiples of the scale, so within one head-row interval the exponent t = -log2(e) v is
// affine in the row: 2^t(row + 1) = 2^t(row) * 2^(t(row + 1) - t(row)). The walk then takes one ex2 per run of
// kChainRun rows (the anchor) plus one per interval (the ratio R = 2^((h1 - h0) * step), the step of the row
// weights exact for such a scale: its error scales with the step, not with |t|, as a difference of two rounded t
// would: 1.25e-6 on a score with logits swinging within +-40, measured on the emulator, against 6.6e-7 unchained),
// and one multiplication per other row. Each chained row adds one rounding and the ratio's error (its argument's
// rounding, 2^-22 of ex2.approx) to 2^t: at most 3 chained rows keep a score within about 6e-7 of the unchained
// value at +-40 (a model of the review of 0981ef7; the emulator's ex2 is exact). Only in tiles whose logits are all
// within +-40 (kGentleLogit, seen by the bound pass: 2^t and the ratios stay normal numbers), else every row is an
// anchor.
// The row codes (anchor, anchor with a new ratio, chained) depend on the rows alone, so every lane of a warp takes
// the same branch; they are made once per tile.
#pragma once
#include <cstddef>
#include <cstdint>

#include "segment_windows_tiles.cuh"

namespace zsseg {
namespace sw_cuda {
inline namespace ZS_SW_BUILD {  // emulated / device: segment_windows_tiles.cuh
namespace {

constexpr int kColumnGroup = 2;   // classes per thread item of the fast pass
constexpr int kColumnChunk = 22;  // classes per pass: fw x 11 items (pairs) fill two rounds of 256 threads to fw = 46
constexpr int kChainRun = 4;      // rows per exact ex2: an anchor and at most 3 chained rows
enum RowCode : uint8_t { kAnchor = 0, kAnchorRatio = 1, kChained = 2 };

struct ColumnTap {  // a footprint column in one window: logit column i0, i1 - i0, the weights
  uint32_t x0, step;
  float w0, w1;
};
struct OutputRow {  // an output row of the tile: its footprint rows a <= b (b = a or a + 1) and their weights
  int32_t a, b;
  float w0, w1;
};

struct ColumnSmem {
  TileSmem base;  // prepare_tile and the bound pass use it as in the tiled kernel
  ColumnTap col_tap[kSlots][kFootW];
  int32_t col_mask[kFootW];  // bit s: window slot s covers footprint column fc
  uint8_t code[2][kFootH];   // fast tiles: RowCode of footprint row fr in slot s
  OutputRow out_row[kTileH];
  float biases[2][kColumnChunk];  // the chunk's class biases, by chunk parity: written while pass B of the chunk
                                  // before may still read the other one (two barriers per chunk, not three)
};

// Pass A's output rows live where the tiled passes keep their merged values and blended rows (unused here):
// [class of chunk][output row][footprint column].
static_assert(offsetof(TileSmem, blended) == offsetof(TileSmem, merged) + sizeof(float) * kChunk * kFootprintCap,
              "merged and blended are one buffer");
static_assert(kColumnChunk * kTileH * kFootW <= kChunk * kFootprintCap + 2 * kChunk * kLogitRows * kFootW,
              "the column rows fit merged + blended");
__device__ __forceinline__ float* column_rows(TileSmem& s) {
  return reinterpret_cast<float*>(reinterpret_cast<char*>(&s) + offsetof(TileSmem, merged));
}

// The classes of a chunk: list positions (listed: the bound pass ran) or classes from c0; a short chunk repeats
// its last one.
__device__ __forceinline__ int32_t chunk_class(const TileSmem& s, bool listed, int32_t c0, int32_t cc, int32_t last) {
  const int32_t i = c0 + (cc < last ? cc : last);
  return listed ? static_cast<int32_t>(s.listed[i]) : i;
}

// The row codes of one slot (fast tiles): an anchor where the interval or the weights' step changes, or after
// kChainRun - 1 chained rows; an anchor computes a new ratio where the next row continues its run.
__device__ __forceinline__ void make_row_codes(const TileSmem& s, int32_t slot, bool allowed, uint8_t* code) {
  bool ratio = false;  // a ratio R is held for (r_i0, r_step)
  int32_t r_i0 = -1, since = 0;
  float r_step = 0.f;
  for (int32_t fr = 0; fr < s.fh; ++fr) {
    const BilinearTap tap = s.row_tap[slot][fr];
    uint8_t c = kAnchor;
    if (allowed && fr > 0 && ratio && since + 1 < kChainRun && tap.i0 == r_i0 &&
        tap.w1 - s.row_tap[slot][fr - 1].w1 == r_step) {
      c = kChained;
      ++since;
    } else {
      since = 0;
      if (allowed && tap.i0 >= 0 && fr + 1 < s.fh && s.row_tap[slot][fr + 1].i0 == tap.i0) {
        const float step = s.row_tap[slot][fr + 1].w1 - tap.w1;
        if (!(ratio && tap.i0 == r_i0 && step == r_step)) {
          c = kAnchorRatio;
          ratio = true;
          r_i0 = tap.i0;
          r_step = step;
        }
      } else {
        ratio = false;
      }
    }
    code[fr] = c;
#if defined(ZS_CUDA_EMULATION)
    if (c == kChained) g_stat_chained += 1;
#endif
  }
}

// Per tile: the footprint columns' taps in every window slot, the row codes (fast tiles) and the output rows.
// Ends with a barrier.
__device__ __forceinline__ void prepare_columns(const WindowTable& table, const Dims& d, const Tile& tile, bool fast,
                                                ColumnSmem& cs) {
  TileSmem& s = cs.base;
  const int32_t tid = static_cast<int32_t>(threadIdx.x);
  static_assert(kFootW <= 64 && kTileH <= 32, "the prologue's thread ranges");
  if (tid < s.fw) {
    int32_t mask = 0;
    for (int32_t slot = 0; slot < s.slots; ++slot) {
      const WindowPlacement& w = table.w[s.slot_window[slot]];
      const int32_t q = s.fx0 + tid;
      ColumnTap ct{0, 0, 0.f, 0.f};
      if (q >= w.x1 && q < w.x2) {
        const BilinearTap tx = bilinear_tap(d.head_scale_x, q - w.x1, d.in_w);
        ct = ColumnTap{static_cast<uint32_t>(tx.i0), static_cast<uint32_t>(tx.i1 - tx.i0), tx.w0, tx.w1};
        mask |= 1 << slot;
      }
      cs.col_tap[slot][tid] = ct;
    }
    cs.col_mask[tid] = mask;
  } else if (fast && tid >= 64 && tid < 64 + s.slots) {  // fast tiles have at most 2 slots
    make_row_codes(s, tid - 64, d.chain && s.steep == 0, cs.code[tid - 64]);
  } else if (tid >= 96 && tid < 96 + tile.th) {
    const int32_t oy = tid - 96;
    const BilinearTap ty = bilinear_tap(d.out_scale_y, tile.y0 + oy, d.scaled_h);
    cs.out_row[oy] = OutputRow{ty.i0 - s.fy0, ty.i1 - s.fy0, ty.w0, ty.w1};
  }
  __syncthreads();
}

// Blends the merged values of footprint rows (a, b) of every output row whose lower row b is fr into pass A's
// buffer (m: row fr, prev: row fr - 1), classes [cc, cc + G) of the chunk.
template <int G>
__device__ __forceinline__ void emit_output_rows(const ColumnSmem& cs, float* __restrict__ rows, int32_t fr, int32_t fc,
                                                 int32_t cc, int32_t th, int32_t& next_row, const float (&m)[G],
                                                 const float (&prev)[G]) {
  while (next_row < th && cs.out_row[next_row].b == fr) {
    const OutputRow o = cs.out_row[next_row];
#pragma unroll
    for (int g = 0; g < G; ++g) {
      const float top = o.a == fr ? m[g] : prev[g];
      rows[((cc + g) * kTileH + next_row) * kFootW + fc] = blend2(top, m[g], o.w0, o.w1);
    }
    ++next_row;
  }
}

// The G classes' two blended logit rows (i0, i1 of the row tap) at one footprint column of one window, the column
// weights times `scale`.
template <int G, typename T>
__device__ __forceinline__ void load_column_rows(const T* __restrict__ window_logits, const Dims& d,
                                                 const ColumnTap& ct, float scale, const BilinearTap& tap,
                                                 const uint32_t (&class_offset)[G], float (&h0)[G], float (&h1)[G]) {
  const uint32_t row0 = static_cast<uint32_t>(tap.i0 * d.in_w) + ct.x0;
  const uint32_t row1 = static_cast<uint32_t>(tap.i1 * d.in_w) + ct.x0;
  const float w0 = ct.w0 * scale, w1 = ct.w1 * scale;  // fast tiles: times -log2 e (as stage 0's kSigmoidOfExponent)
#pragma unroll
  for (int g = 0; g < G; ++g) {
    const uint32_t a = row0 + class_offset[g], b = row1 + class_offset[g];
    h0[g] = blend2(cuda_detail::load_as_float(offset_pointer(window_logits, a)),
                   cuda_detail::load_as_float(offset_pointer(window_logits, a + ct.step)), w0, w1);
    h1[g] = blend2(cuda_detail::load_as_float(offset_pointer(window_logits, b)),
                   cuda_detail::load_as_float(offset_pointer(window_logits, b + ct.step)), w0, w1);
  }
}

// Fast tiles: one window's 2^t at footprint row fr for the item's classes: an anchor (ex2, and a new ratio where
// the code says) after reloading the interval's rows if it changed, or a chained row (times the ratio). Chain false
// (Variant::kColumns): every row an anchor, the codes not read.
template <bool Chain, typename T>
__device__ __forceinline__ void window_exponentials(const T* __restrict__ window_logits, const Dims& d,
                                                    const ColumnTap& ct, const uint32_t (&class_offset)[kColumnGroup],
                                                    const BilinearTap* __restrict__ row_taps, int32_t fr, int code,
                                                    int32_t& current, float (&h0)[kColumnGroup],
                                                    float (&h1)[kColumnGroup], float (&e)[kColumnGroup],
                                                    float (&r)[kColumnGroup]) {
  if (Chain && code == kChained) {  // the same interval as the row before (make_row_codes)
#pragma unroll
    for (int g = 0; g < kColumnGroup; ++g) e[g] *= r[g];
    return;
  }
  const BilinearTap tap = row_taps[fr];
  if (tap.i0 != current) {
    current = tap.i0;
    load_column_rows(window_logits, d, ct, kNegLog2e, tap, class_offset, h0, h1);
  }
#pragma unroll
  for (int g = 0; g < kColumnGroup; ++g) {
    const float t = blend2(h0[g], h1[g], tap.w0, tap.w1);
    e[g] = ex2_approx_ftz(t);
    if (Chain && code == kAnchorRatio) {
      const BilinearTap next = row_taps[fr + 1];
      r[g] = ex2_approx_ftz((h1[g] - h0[g]) * (next.w1 - tap.w1));  // t(next) - t, the step exact
    }
  }
}

// Pass A of a fast tile (tame, one row of at most two windows: run_tile_fast's tiles) for list positions
// [c0, c0 + kColumnChunk): per covering window 2^t, then one window 1 / (1 + E), two the one-reciprocal pair
// (pair_rows). The bias is subtracted in pass B; a column in no window holds the bias (zero_uncovered).
template <bool Chain, typename T>
__device__ __forceinline__ void column_pass_fast(const T* __restrict__ logits, const Dims& d, int32_t c0, int32_t last,
                                                 int32_t th, const float* chunk_bias, ColumnSmem& cs) {
  TileSmem& s = cs.base;
  float* const rows = column_rows(s);
  const int32_t fw = s.fw, fh = s.fh;
  const uint32_t plane = static_cast<uint32_t>(d.in_h * d.in_w);  // one window's logits hold < 2^31 values
  const T* const logits0 = logits + static_cast<int64_t>(s.slot_window[0]) * d.classes * plane;
  const T* const logits1 = logits + static_cast<int64_t>(s.slot_window[s.slots > 1 ? 1 : 0]) * d.classes * plane;
  const int32_t row_mask = s.row_mask[0];                       // the same on every row (same_rows)
  const int32_t groups = (last + kColumnGroup) / kColumnGroup;  // the chunk's classes only (a short chunk: fewer)
#pragma unroll 1
  for (int32_t item = static_cast<int32_t>(threadIdx.x); item < fw * groups; item += kThreads) {
    const int32_t group = item / fw, fc = item - group * fw, cc = group * kColumnGroup;
    const int32_t covering = cs.col_mask[fc] & row_mask & 3;
    uint32_t class_offset[kColumnGroup];
    float bias[kColumnGroup], prev[kColumnGroup], m[kColumnGroup];
#pragma unroll
    for (int g = 0; g < kColumnGroup; ++g) {
      class_offset[g] = static_cast<uint32_t>(chunk_class(s, true, c0, cc + g, last)) * plane;
      bias[g] = chunk_bias[cc + g];
      prev[g] = 0.f;
    }
    const ColumnTap ct0 = cs.col_tap[0][fc], ct1 = cs.col_tap[1][fc];
    float h0[2][kColumnGroup], h1[2][kColumnGroup], e[2][kColumnGroup], r[2][kColumnGroup] = {};
    int32_t current[2] = {-1, -1};
    int32_t next_row = 0;  // the next output row to emit
#pragma unroll 1
    for (int32_t fr = 0; fr < fh; ++fr) {
      if ((covering & 1) != 0) {
        window_exponentials<Chain>(logits0, d, ct0, class_offset, s.row_tap[0], fr, Chain ? cs.code[0][fr] : 0,
                                   current[0], h0[0], h1[0], e[0], r[0]);
      }
      if ((covering & 2) != 0) {
        window_exponentials<Chain>(logits1, d, ct1, class_offset, s.row_tap[1], fr, Chain ? cs.code[1][fr] : 0,
                                   current[1], h0[1], h1[1], e[1], r[1]);
      }
#pragma unroll
      for (int g = 0; g < kColumnGroup; ++g) {
        if (covering == 3) {  // the tiled fast path's pair (pair_rows): (1/D1 + 1/D2) / 2 with one reciprocal
          const float d1 = fmaf(e[0][g], 2.f, 2.f), d2 = fmaf(e[1][g], 0x1p-64f, 0x1p-64f);
          m[g] = fmaf(d1, 0x1p-65f, d2) * rcp_approx_ftz(d1 * d2);
        } else if (covering != 0) {
          m[g] = rcp_approx_ftz(1.f + (covering == 1 ? e[0][g] : e[1][g]));
        } else {
          m[g] = bias[g];  // no window: merged 0, stored as the bias that pass B subtracts (zero_uncovered)
        }
      }
      emit_output_rows<kColumnGroup>(cs, rows, fr, fc, cc, th, next_row, m, prev);
#pragma unroll
      for (int g = 0; g < kColumnGroup; ++g) prev[g] = m[g];
    }
  }
}

// Pass A of any other tile (the tiled kernel's run_tile: NaN or huge logits, up to kSlots windows, rows covered
// differently, three windows at a position), one class per item: at each footprint row the covering windows'
// f(v) - bias summed in window order, then times 1 / count (count 1, 2 or 4: exact) or divided by 3 (IEEE), 0 where
// no window covers, as stage_merge_slot does for the CPU op's order.
template <typename T>
__device__ __forceinline__ void column_pass_generic(const T* __restrict__ logits, const Dims& d, bool listed,
                                                    int32_t c0, int32_t last, int32_t th, const float* chunk_bias,
                                                    ColumnSmem& cs) {
  TileSmem& s = cs.base;
  float* const rows = column_rows(s);
  const int32_t fw = s.fw, fh = s.fh, slots = s.slots;
  const uint32_t plane = static_cast<uint32_t>(d.in_h * d.in_w);
#pragma unroll 1
  for (int32_t item = static_cast<int32_t>(threadIdx.x); item < fw * (last + 1); item += kThreads) {
    const int32_t cc = item / fw, fc = item - cc * fw;
    const int32_t col_mask = cs.col_mask[fc];
    const uint32_t class_offset[1] = {static_cast<uint32_t>(chunk_class(s, listed, c0, cc, last)) * plane};
    const float bias = chunk_bias[cc];
    float prev[1] = {0.f}, m[1];
    int32_t next_row = 0;
#pragma unroll 1
    for (int32_t fr = 0; fr < fh; ++fr) {
      const int32_t covering = s.row_mask[fr] & col_mask & ((1 << kSlots) - 1);
      float sum = 0.f;
#pragma unroll 1
      for (int32_t slot = 0; slot < slots; ++slot) {  // the rows reloaded at every row: these tiles are rare
        if ((covering >> slot & 1) == 0) continue;
        const BilinearTap tap = s.row_tap[slot][fr];
        const T* const window_logits = logits + static_cast<int64_t>(s.slot_window[slot]) * d.classes * plane;
        float h0[1], h1[1];
        load_column_rows(window_logits, d, cs.col_tap[slot][fc], 1.f, tap, class_offset, h0, h1);
        const float v = sigmoid_device(blend2(h0[0], h1[0], tap.w0, tap.w1)) - bias;
        sum = (covering & ((1 << slot) - 1)) == 0 ? v : sum + v;  // the first covering window starts the sum
      }
      const int32_t count = __popc(static_cast<unsigned int>(covering));
      m[0] = count == 3 ? __fdiv_rn(sum, 3.f) : sum * (count == 2 ? 0.5f : (count == 4 ? 0.25f : 1.f));
      emit_output_rows<1>(cs, rows, fr, fc, cc, th, next_row, m, prev);
      prev[0] = m[0];
    }
  }
}

// Every tile of the sigmoid path in the column form: per chunk the biases, a barrier, pass A, a barrier, pass B
// (fast tiles: the bias subtracted and a plain ">", as run_tile_fast; other tiles: torch's argmax rules, as
// run_tile); labels/scores once.
template <bool Chain, typename T>
__device__ __forceinline__ void run_tile_columns(const T* __restrict__ logits, const WindowTable& table, const Dims& d,
                                                 const float* __restrict__ class_bias, const Tile& tile, bool fast,
                                                 bool listed, int32_t count, int32_t* __restrict__ labels,
                                                 float* __restrict__ scores, ColumnSmem& cs) {
  TileSmem& s = cs.base;
  prepare_columns(table, d, tile, fast, cs);
  const int32_t tid = static_cast<int32_t>(threadIdx.x);
  const float* const rows = column_rows(s);
  int32_t left = 0, right = 0;  // the pixel's two footprint columns, offset by its output row
  float w0 = 0.f, w1 = 0.f;
  if (tile.has(0)) {
    const BilinearTap tx = bilinear_tap(d.out_scale_x, tile.x(0), d.scaled_w);
    const int32_t row = (tile.y(0) - tile.y0) * kFootW;
    left = row + tx.i0 - s.fx0;
    right = row + tx.i1 - s.fx0;
    w0 = tx.w0;
    w1 = tx.w1;
  }
  float best = -INFINITY;
  int32_t label = 0;  // a list position (listed) or a class
  for (int32_t c0 = 0, parity = 0; c0 < count; c0 += kColumnChunk, parity ^= 1) {
    const int32_t last = count - c0 < kColumnChunk ? count - c0 - 1 : kColumnChunk - 1;
    float* const bias = cs.biases[parity];
    if (tid < kColumnChunk) {
      const int32_t cls = chunk_class(s, listed, c0, tid, last);
      bias[tid] = class_bias != nullptr ? __ldg(class_bias + cls) : 0.f;
    }
    __syncthreads();  // the biases; the previous chunk's pass B has read its rows
    if (fast) {
      column_pass_fast<Chain>(logits, d, c0, last, tile.th, bias, cs);
    } else {
      column_pass_generic(logits, d, listed, c0, last, tile.th, bias, cs);
    }
    __syncthreads();
    if (tile.has(0)) {  // a short chunk's classes only (its items and rows end at `last`)
      if (fast) {
#pragma unroll 2
        for (int32_t cc = 0; cc <= last; ++cc) {
          const float* const at = rows + cc * (kTileH * kFootW);
          const float v = fmaf(at[right], w1, fmaf(at[left], w0, -bias[cc]));
          if (v > best) {
            best = v;
            label = c0 + cc;
          }
        }
      } else {
#pragma unroll 2
        for (int32_t cc = 0; cc <= last; ++cc) {
          const float* const at = rows + cc * (kTileH * kFootW);
          argmax_update(blend2(at[left], at[right], w0, w1), c0 + cc, best, label);
        }
      }
    }
  }
  if (tile.has(0)) {
    const int64_t at = static_cast<int64_t>(tile.y(0)) * d.out_w + tile.x(0);
    labels[at] = listed ? static_cast<int32_t>(s.listed[label]) : label;
    scores[at] = best;
  }
  __syncthreads();  // the next tile rewrites the shared memory
}

}  // namespace
}  // namespace ZS_SW_BUILD
}  // namespace sw_cuda
}  // namespace zsseg
