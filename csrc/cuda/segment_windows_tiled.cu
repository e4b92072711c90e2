// CUDA segment_windows, the tiled argmax kernel (sigmoid and identity; see segment_windows.cu for the design): the
// bound pass (class pruning, P), the fast path of tame tiles (stage 1 with one reciprocal per pair of sigmoids) and
// the generic tiles, then stage 2 (output blends and argmax).
#include <type_traits>

#include "segment_windows_bounds.cuh"
#include "segment_windows_columns.cuh"
#include "segment_windows_ordered.cuh"
#include "segment_windows_prebound.cuh"
#include "segment_windows_testing.cuh"
#include "segment_windows_tiles.cuh"

namespace zsseg {
namespace sw_cuda {
inline namespace ZS_SW_BUILD {  // emulated / device: segment_windows_tiles.cuh
namespace {

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
// Ordered (the `ordered` candidate, Variant::kOrdered): labels are classes and the argmax takes the larger (value,
// -class), so chunks may come in any class order; with `bounded` (OrderedSmem's first chunk chosen) the first chunk
// is the classes of the highest upper bounds, then ordered_filter drops every listed class whose upper bound is
// below the tile's smallest best value so far (branch and bound), and the survivors follow in class order.
template <typename T, bool Ordered>
__device__ __forceinline__ void run_tile_fast(const T* __restrict__ logits, const WindowTable& table, const Dims& d,
                                              const float* __restrict__ class_bias, const Tile& tile, int32_t count,
                                              int32_t* __restrict__ labels, float* __restrict__ scores, TileSmem& s,
                                              OrderedSmem* ordered = nullptr, bool bounded = false) {
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
  int32_t label = 0;                // a list position (Ordered: a class)
  const uint16_t* list = s.listed;  // Ordered and bounded: first the chosen chunk, then the survivors
  if constexpr (Ordered) {
    if (bounded) {
      list = ordered->first;
      count = kChunk;
    }
  }
  for (int32_t c0 = 0; c0 < count; c0 += kChunk) {
    const int32_t last = count - c0 < kChunk ? count - c0 - 1 : kChunk - 1;  // a short chunk repeats its last class
    if (tid < kChunk) {
      const int32_t cls = (Ordered ? list : s.listed)[c0 + (tid < last ? tid : last)];
      s.chunk_bias[tid] = class_bias != nullptr ? __ldg(class_bias + cls) : 0.f;
    }
    // stage 0
    uint32_t class_offset[kChunk];
#pragma unroll
    for (int c = 0; c < kChunk; ++c)
      class_offset[c] = static_cast<uint32_t>((Ordered ? list : s.listed)[c0 + (c < last ? c : last)]) * plane;
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
    // stage 2: the whole chunk (repeated classes never replace the first: ">"; Ordered: nor a larger class)
    if (tile.has(0)) {
      float bias[kChunk];
#pragma unroll
      for (int c = 0; c < kChunk; ++c) bias[c] = s.chunk_bias[c];
      int32_t cls[kChunk];  // Ordered: the chunk's classes
      if constexpr (Ordered) {
#pragma unroll
        for (int c = 0; c < kChunk; ++c) cls[c] = list[c0 + (c < last ? c : last)];
      }
#pragma unroll
      for (int c = 0; c < kChunk; ++c) {
        float top;
        const float bottom = taps.blend(s.merged[c], top);
        const float v = fmaf(bottom, taps.w1y, fmaf(top, taps.w0y, -bias[c]));  // blend2(top, bottom) - bias, fused
        if constexpr (Ordered) {
          if (v > best || (v == best && cls[c] < label)) {  // the CPU's argmax: on equal values the lower class
            best = v;
            label = cls[c];
          }
        } else if (v > best) {
          best = v;
          label = c0 + c;
        }
      }
    }
    if constexpr (Ordered) {
      if (bounded) tile_min_best(tile.has(0) ? best : INFINITY, s);  // read after the barrier below
    }
    __syncthreads();  // the next chunk overwrites the merged values and the chunk's biases
    if constexpr (Ordered) {
      if (bounded) {  // (block-uniform) the first chunk is done: the survivors of its bound, in class order
        bounded = false;
        list = s.listed;
        count = ordered_filter(*ordered, s);
        c0 = -kChunk;  // the loop's step: the survivors from their first
      }
    }
  }
  if (tile.has(0)) {
    const int64_t at = static_cast<int64_t>(tile.y(0)) * d.out_w + tile.x(0);
    labels[at] = Ordered ? label : static_cast<int32_t>(s.listed[label]);
    scores[at] = best;
  }
}

// What each variant (segment_windows_testing::Variant) compiles to: the blocks per SM its register cap is set for,
// and its shared memory (the column form adds its per-tile tables to TileSmem).
using segment_windows_testing::Variant;
template <int V>
struct VariantTraits {
  static constexpr bool kColumnForm =
      V == static_cast<int>(Variant::kColumns) || V == static_cast<int>(Variant::kColumnsChain);
  static constexpr bool kPrebound = V == static_cast<int>(Variant::kOrderedPrebound);  // ordered, bounds precomputed
  static constexpr bool kOrdered = V == static_cast<int>(Variant::kOrdered) || kPrebound;
  static constexpr int kMinBlocks = kColumnForm ? 4 : 2;
  using Smem = typename std::conditional<kColumnForm, ColumnSmem,
                                         typename std::conditional<kOrdered, OrderedSmem, TileSmem>::type>::type;
};
__device__ __forceinline__ TileSmem& tile_smem(TileSmem& s) {
  return s;
}
__device__ __forceinline__ TileSmem& tile_smem(ColumnSmem& s) {
  return s.base;
}
__device__ __forceinline__ TileSmem& tile_smem(OrderedSmem& s) {
  return s.base;
}

template <typename T, bool Sigmoid, int V>
__global__ void __launch_bounds__(kThreads, VariantTraits<V>::kMinBlocks)
    segment_windows_kernel(const T* __restrict__ logits, WindowTable table, Dims d,
                           const float* __restrict__ class_bias, int32_t* __restrict__ labels,
                           float* __restrict__ scores, const float2* __restrict__ prebound) {
  __shared__ typename VariantTraits<V>::Smem smem;
  TileSmem& s = tile_smem(smem);
  for (int32_t tile_y = static_cast<int32_t>(blockIdx.y); tile_y < d.tiles_y; tile_y += gridDim.y) {
    for (int32_t tile_x = static_cast<int32_t>(blockIdx.x); tile_x < d.tiles_x; tile_x += gridDim.x) {
      const Tile tile = tile_at(d, tile_y, tile_x);
      prepare_tile(table, d, tile.y0, tile.x0, tile.th, tile.tw, s);
      if constexpr (VariantTraits<V>::kColumnForm) {  // (sigmoid only: the launcher)
        if (d.prune) bound_pass(logits, d, class_bias, s);
        const bool fast = d.prune && s.tame && s.same_rows && s.slots <= 2;
        run_tile_columns<V == static_cast<int>(Variant::kColumnsChain)>(logits, table, d, class_bias, tile, fast,
                                                                        d.prune, d.prune ? s.listed_count : d.classes,
                                                                        labels, scores, smem);
      } else if (Sigmoid && d.prune) {
        if constexpr (VariantTraits<V>::kPrebound) {  // the first launch's blocks (segment_windows_prebound.cuh)
          bound_pass_of(PreboundBlocks{prebound}, d, class_bias, s);
        } else {
          bound_pass(logits, d, class_bias, s);
        }
        if (s.tame && s.same_rows && s.slots <= 2) {
          if constexpr (VariantTraits<V>::kOrdered) {
            const bool bounded = d.drop && s.listed_count > kChunk;  // (block-uniform)
            if (bounded) choose_first_chunk(d, smem);
            run_tile_fast<T, true>(logits, table, d, class_bias, tile, s.listed_count, labels, scores, s, &smem,
                                   bounded);
          } else {
            run_tile_fast<T, false>(logits, table, d, class_bias, tile, s.listed_count, labels, scores, s);
          }
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

}  // namespace

template <typename T>
void launch_tiled(const T* logits, const WindowTable& table, const Dims& d, const SegmentWindowsParams& p, dim3 grid,
                  cudaStream_t stream) {
  // (a template-id with a comma cannot be a macro argument)
  using Kernel = void (*)(const T*, WindowTable, Dims, const float*, int32_t*, float*, const float2*);
  constexpr int kTiled = static_cast<int>(Variant::kTiled), kColumns = static_cast<int>(Variant::kColumns);
  constexpr int kChain = static_cast<int>(Variant::kColumnsChain), kOrdered = static_cast<int>(Variant::kOrdered);
  constexpr int kPrebound = static_cast<int>(Variant::kOrderedPrebound);
  Kernel segment_windows_tiled_kernel = &segment_windows_kernel<T, false, kTiled>;  // identity: one kernel
  if (d.sigmoid) {
    // (Variant::kWarps is segment_windows_warps.cu's: the launcher sets kTiled where that kernel does not run)
#if defined(ZS_SEGMENT_WINDOWS_SASS_SELF_TEST)
    // checks/sass.py's self-test reads its mutation in the default variant's kernels only: the other variants are not
    // compiled there (its nvcc run: 15.7 -> 4.8 CPU-s); no library build defines the macro
    const Kernel sigmoid_kernels[] = {
        &segment_windows_kernel<T, true, kTiled>, nullptr, nullptr, nullptr, nullptr, nullptr};
    static_cast<void>(kColumns);
    static_cast<void>(kChain);
    static_cast<void>(kOrdered);
#else
    const Kernel sigmoid_kernels[] = {
        &segment_windows_kernel<T, true, kTiled>,   &segment_windows_kernel<T, true, kColumns>,
        &segment_windows_kernel<T, true, kChain>,   nullptr,
        &segment_windows_kernel<T, true, kOrdered>, &segment_windows_kernel<T, true, kPrebound>};
#endif
    static_assert(sizeof(sigmoid_kernels) / sizeof(Kernel) == segment_windows_testing::kVariants, "a kernel each");
    static_assert(static_cast<int>(Variant::kWarps) == 3, "the warps kernel's slot is the null one");
    if (d.variant < 0 || d.variant >= segment_windows_testing::kVariants) return;  // (unreachable: the launcher)
    if (sigmoid_kernels[d.variant] == nullptr) return;                             // (unreachable: the launcher)
    segment_windows_tiled_kernel = sigmoid_kernels[d.variant];
  }
  float2* prebound = nullptr;  // ordered_prebound with the bound pass: launch 1 (the launcher checked the scratch)
  if (d.sigmoid && d.prune && d.variant == kPrebound) {
    prebound = reinterpret_cast<float2*>(p.scratch);
    const int64_t logits_count = static_cast<int64_t>(d.num_windows) * d.classes * d.in_h * d.in_w;
    const int64_t blocks = (logits_count + kPreboundThreads - 1) / kPreboundThreads;
    const unsigned int grid1 = static_cast<unsigned int>(blocks > ZS_CUDA_GRID_CAP ? ZS_CUDA_GRID_CAP : blocks);
    ZS_LAUNCH(segment_windows_prebound_kernel<T>, grid1, kPreboundThreads, stream, logits, d, prebound,
              d.prebound_cells_only);
  }
  ZS_LAUNCH(segment_windows_tiled_kernel, grid, kThreads, stream, logits, table, d, p.class_bias, p.labels, p.scores,
            static_cast<const float2*>(prebound));
}

ZS_SW_INSTANTIATE_LAUNCH(launch_tiled, dim3);

}  // namespace ZS_SW_BUILD
}  // namespace sw_cuda
}  // namespace zsseg
