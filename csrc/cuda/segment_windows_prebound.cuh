// CUDA segment_windows, the `ordered_prebound` candidate (segment_windows_testing::Variant::kOrderedPrebound): the
// `ordered` kernel (segment_windows_ordered.cuh) whose per-tile bound pass (segment_windows_bounds.cuh) reads a few
// precomputed bounds per class instead of every logit of the tile's footprint (an H200 run fitted tiled's time at
// C=171 to ~42 us + 1.0 us per kept class, the fixed part being that pass and the tile's set-up, repeated in every
// one of 752 tiles).
//
// Two launches in the caller's stream (a CUDA graph captures both):
//   1. segment_windows_prebound_kernel: a thread per logit (window k, class c, row r, column q) writes the min and
//      max of the logits of the 2 x 2 block [r, r + 2) x [q, q + 2) cut to the window's grid, or {NaN, NaN} when one
//      of them is not tame (a NaN, an infinity, |x| > kTameLogit), into the scratch (float2 per logit, allocated by
//      the caller: SegmentWindowsParams::scratch; a prepared plan once);
//   2. the ordered kernel, whose bound pass takes each slot's logit rectangle [a, a + rows) x [b, b + cols) as the
//      blocks starting at rows a, a + 2, ..., and a + rows - 2 (and the same for the columns): ceil(rows / 2) x
//      ceil(cols / 2) loads of a float2 per class and slot instead of rows x cols logits (the photo case at C=171:
//      4 loads instead of 12 per slot).
// Exact: the blocks cover the rectangle and lie inside it (rows >= 2: each block starts at most at a + rows - 2;
// rows = 1 only where bilinear_tap's i0 = i1 = the last row, whose block is that row alone), so the min, the max and
// whether every logit is tame are the footprint's own: the list of classes, the tile's arithmetic and so the labels
// and scores are the ordered kernel's bit for bit. A block wider than the rectangle could only widen [lo, hi] (still
// a bound: exact, less pruning). The only difference: `steep` (the column form's chained exponentials) ignores
// non-tame logits; no kernel that reads it takes this pass.
// Cost: the first launch reads every logit up to 4 times (from L1/L2) and writes 8 bytes per logit; each tile's
// bound pass then has a third of the loads of the photo case and a shorter dependent chain. Never timed on a GPU.
#pragma once
#include "segment_windows_bounds.cuh"
#include "segment_windows_tiles.cuh"

namespace zsseg {
namespace sw_cuda {
inline namespace ZS_SW_BUILD {  // emulated / device: segment_windows_tiles.cuh
namespace {

constexpr int kPreboundThreads = 256;

// Launch 1 (see the file comment); cells_only: the test control (Pruning::kPreboundCellsOnly), a block of one logit.
template <typename T>
__global__ void __launch_bounds__(kPreboundThreads)
    segment_windows_prebound_kernel(const T* __restrict__ logits, Dims d, float2* __restrict__ blocks,
                                    bool cells_only) {
  const int64_t total = static_cast<int64_t>(d.num_windows) * d.classes * d.in_h * d.in_w;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += step) {
    const int64_t row_index = i / d.in_w;
    const int32_t q = static_cast<int32_t>(i - row_index * d.in_w);
    const int32_t r = static_cast<int32_t>(row_index % d.in_h);
    const bool down = !cells_only && r + 1 < d.in_h, right = !cells_only && q + 1 < d.in_w;
    float v[4];  // the block's logits (absent ones repeat the first: the same min and max)
    v[0] = cuda_detail::load_as_float(logits + i);
    v[1] = right ? cuda_detail::load_as_float(logits + i + 1) : v[0];
    v[2] = down ? cuda_detail::load_as_float(logits + i + d.in_w) : v[0];
    v[3] = down && right ? cuda_detail::load_as_float(logits + i + d.in_w + 1) : v[0];
    float lo = v[0], hi = v[0];
    bool tame = true;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      tame = tame && fabsf(v[j]) <= kTameLogit;  // false for NaN and +-inf
      lo = fminf(lo, v[j]);
      hi = fmaxf(hi, v[j]);
    }
    blocks[i] = tame ? make_float2(lo, hi) : make_float2(NAN, NAN);
  }
}

// The block starting `i` rows (or columns) into a rectangle of `n`: i while the block fits, else the last one that
// does (n - 2), or 0 for a rectangle of one.
__device__ __forceinline__ int32_t block_start(int32_t i, int32_t n) {
  return i + 2 <= n ? i : (n >= 2 ? n - 2 : 0);
}

// The bound pass's source (bound_pass_of) for launch 2: each slot's rectangle from launch 1's blocks.
struct PreboundBlocks {
  const float2* __restrict__ blocks;
  __device__ __forceinline__ void range(const Dims& d, const TileSmem& s, int32_t c, float& lo, float& hi,
                                        bool& tame) const {
    const int32_t plane = d.in_h * d.in_w;
    for (int32_t slot = 0; slot < s.slots; ++slot) {
      const int32_t rows = s.slot_rows[slot][1], cols = s.slot_cols[slot][1];
      // 64-bit offsets, as FootprintLogits: the plane's start, then the rectangle's first block within the plane
      const float2* p = blocks + (static_cast<int64_t>(s.slot_window[slot]) * d.classes + c) * plane +
                        (s.slot_rows[slot][0] * d.in_w + s.slot_cols[slot][0]);
      for (int32_t i = 0; i < rows; i += 2) {
        const int32_t r = block_start(i, rows);
        for (int32_t j = 0; j < cols; j += 2) {
          const float2 b = __ldg(p + (r * d.in_w + block_start(j, cols)));
          tame = tame && fabsf(b.x) <= kTameLogit;  // {NaN, NaN}: a block with a logit that is not tame
          lo = fminf(lo, b.x);                      // (fminf / fmaxf skip the NaN)
          hi = fmaxf(hi, b.y);
        }
      }
    }
  }
  __device__ __forceinline__ int64_t loads_per_class(const TileSmem& s) const {
    int64_t loads = 0;
    for (int32_t slot = 0; slot < s.slots; ++slot) {
      loads += static_cast<int64_t>((s.slot_rows[slot][1] + 1) / 2) * ((s.slot_cols[slot][1] + 1) / 2);
    }
    return loads;
  }
};

}  // namespace
}  // namespace ZS_SW_BUILD
}  // namespace sw_cuda
}  // namespace zsseg
