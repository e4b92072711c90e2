// CUDA segment_windows, the sigmoid path's `warps` candidate (Variant::kWarps; see segment_windows.cu for the
// op and the other candidates). No class pruning, no block barrier inside the class loop.
//
// Why not the separable (linear) form: in the op's contract (zsseg/segment_windows.h) the sigmoid sits between the
// two resizes: merged = (sum_k sigmoid(head_resize(L_k)) - bias) / count at the RESCALED resolution, then the output
// resize and the argmax. Only the head resize (per window) and the output resize are linear, so the output cannot
// be written as A_w L_w B_w^T summed over windows; every rescaled pixel a tap reads needs its own sigmoid per
// covering window. This kernel computes exactly those, as the other candidates do, but organised per warp:
//
// A block is one output tile of up to 32 columns x kWarpRows rows; its warps split the classes into contiguous
// ranges (warp g: classes [g C / G, (g + 1) C / G)). Within a warp, lane l first plays rescaled column fx0 + l of
// the tile's footprint (the launcher picks the tile width so that the footprint is at most 32 columns wide), and
// for each class of a chunk of kWarpChunk:
//   1. walks the footprint rows the output rows need (each computed once per chunk: the last two are kept), per
//      covering window: the two x-blended logit rows of the current head-row interval (reloaded when the interval
//      changes, 16 rescaled rows apart at the photo's 1/16 head scale), the row blend, sigmoid_device, minus the
//      bias, summed in window order, divided by the count of covering windows (1: as is; 2, 4: exact products; 3:
//      an IEEE division): the CPU op's merged value, in its order of operations;
//   2. as output column ox0 + l, gets the row's merged values at its two column taps from the lanes that made them
//      (two __shfl_sync) and blends them: columns first;
//   3. per output row, blends the two x-blended rows (rows second) and updates that pixel's running argmax in
//      shared memory (torch's rules: argmax_update).
// At the end one barrier, and the block combines its warps' (best, label) pairs in class-range order with the same
// rules (a later range replaces only when strictly greater or the first NaN): the argmax over all classes.
//
// What differs from the CPU op is fp32 rounding only: device sigmoid (ex2.approx + rcp.approx, within 2e-7) and
// fused multiply-adds in the blends. The launcher uses this kernel where every footprint of a tile meets at most
// kWarpSlots windows; elsewhere (and never for identity or softmax) the tiled default runs.
//
// Cost model (an ESTIMATE, never measured on a GPU): at the photo's geometry (2 windows of 32x32 logits, 512x683
// rescaled, 375x500 out: 22 output columns x 16 rows per tile, 552 tiles) a class costs about 552 x 24 rows x 32
// lanes x 1.5 windows = 0.64 M sigmoids (2 MUFU each: 1.27 M MUFU, about 1.2x the 0.53 M rescaled values x windows
// the op needs, the tiles' halo), 2 shuffles and ~12 FP32 instructions per (footprint row, lane, class); at C=171
// 218 M MUFU ops, ~52 us at the H200's 16 MUFU/clk/SM x 132 SMs x 1.98 GHz if the special function units are the
// limit; no pruning, so dominated logits cost the same as i.i.d. ones.
#include "segment_windows_testing.cuh"
#include "segment_windows_tiles.cuh"

namespace zsseg {
namespace sw_cuda {
inline namespace ZS_SW_BUILD {  // emulated / device: segment_windows_tiles.cuh
namespace {

struct WarpRowTap {  // a footprint row's head-row tap in one slot: logit row offsets (times in_w) and weights
  int32_t i0, i1;
  float w0, w1;
};
struct WarpOutTap {  // an output row's footprint rows (relative to fy0) and weights
  int32_t r0, r1;
  float w0, w1;
};

struct WarpSmem {
  float best[kWarpGroups][kWarpRows][32];
  int32_t label[kWarpGroups][kWarpRows][32];
  WarpRowTap row_tap[kWarpFootRows][kWarpSlots];
  int32_t row_mask[kWarpFootRows];  // bit s: slot s's window covers the footprint row
  WarpOutTap out_tap[kWarpRows];
  int32_t slot_window[kWarpSlots];
  int32_t slots, fy0, fx0, fh, fw;
};

// One footprint row (fr, relative to fy0) of the chunk's classes at the lane's rescaled column: the merged values.
// h0/h1 (per slot and class): the x-blended logit rows of the slot's current interval `current` (a logit row
// offset), reloaded here when the row's tap needs another one. Warp-uniform control flow (fr and the masks' row
// bits are the same on every lane).
template <typename T>
__device__ __forceinline__ void merged_row(const WarpSmem& s, int32_t fr, const T* const (&base)[kWarpSlots],
                                           const int32_t (&col0)[kWarpSlots], const int32_t (&step)[kWarpSlots],
                                           const float (&cw0)[kWarpSlots], const float (&cw1)[kWarpSlots],
                                           int32_t col_mask, const int32_t (&offset)[kWarpChunk],
                                           const float (&bias)[kWarpChunk], int32_t (&current)[kWarpSlots],
                                           float (&h0)[kWarpSlots][kWarpChunk], float (&h1)[kWarpSlots][kWarpChunk],
                                           float (&merged)[kWarpChunk]) {
  const int32_t row_mask = s.row_mask[fr];
#pragma unroll
  for (int c = 0; c < kWarpChunk; ++c) merged[c] = 0.f;
#pragma unroll
  for (int slot = 0; slot < kWarpSlots; ++slot) {
    if ((row_mask >> slot & 1) == 0) continue;  // also slot >= s.slots (no bit)
    const WarpRowTap tap = s.row_tap[fr][slot];
    if (tap.i0 != current[slot]) {
      current[slot] = tap.i0;
#pragma unroll
      for (int c = 0; c < kWarpChunk; ++c) {
        const T* r0 = base[slot] + (offset[c] + tap.i0 + col0[slot]);
        const T* r1 = base[slot] + (offset[c] + tap.i1 + col0[slot]);
        h0[slot][c] =
            blend2(cuda_detail::load_as_float(r0), cuda_detail::load_as_float(r0 + step[slot]), cw0[slot], cw1[slot]);
        h1[slot][c] =
            blend2(cuda_detail::load_as_float(r1), cuda_detail::load_as_float(r1 + step[slot]), cw0[slot], cw1[slot]);
      }
    }
    if ((col_mask >> slot & 1) != 0) {
#pragma unroll
      for (int c = 0; c < kWarpChunk; ++c) {
        merged[c] += sigmoid_device(blend2(h0[slot][c], h1[slot][c], tap.w0, tap.w1)) - bias[c];
      }
    }
  }
  const int32_t count = __popc(static_cast<unsigned int>(row_mask & col_mask));
  if (count > 1) {
    if ((count & (count - 1)) == 0) {  // 2 or 4: the product by 1 / count is the correctly rounded quotient
      const float inverse = count == 2 ? 0.5f : 0.25f;
#pragma unroll
      for (int c = 0; c < kWarpChunk; ++c) merged[c] *= inverse;
    } else {
#pragma unroll
      for (int c = 0; c < kWarpChunk; ++c) merged[c] = __fdiv_rn(merged[c], static_cast<float>(count));
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(kWarpGroups * 32, 2)
    segment_windows_warps_kernel(const T* __restrict__ logits, WindowTable table, Dims d,
                                 const float* __restrict__ class_bias, int32_t* __restrict__ labels,
                                 float* __restrict__ scores) {
  __shared__ WarpSmem s;
  const int32_t tid = static_cast<int32_t>(threadIdx.x), lane = tid % 32, warp = tid / 32;
  const int32_t groups = static_cast<int32_t>(blockDim.x) / 32;
  const int32_t c_begin = static_cast<int32_t>(static_cast<int64_t>(warp) * d.classes / groups);
  const int32_t c_end = static_cast<int32_t>(static_cast<int64_t>(warp + 1) * d.classes / groups);
  const int32_t plane = d.in_h * d.in_w;
  for (int32_t tile_y = static_cast<int32_t>(blockIdx.y); tile_y < d.tiles_y; tile_y += gridDim.y) {
    for (int32_t tile_x = static_cast<int32_t>(blockIdx.x); tile_x < d.tiles_x; tile_x += gridDim.x) {
      const int32_t oy0 = tile_y * d.tile_h, ox0 = tile_x * d.tile_w;
      const int32_t th = d.out_h - oy0 < d.tile_h ? d.out_h - oy0 : d.tile_h;
      const int32_t tw = d.out_w - ox0 < d.tile_w ? d.out_w - ox0 : d.tile_w;
      // the footprint, its windows (the launcher checked: at most kWarpSlots) and its row taps
      if (tid == 0) {
        const BilinearTap first_y = bilinear_tap_in<int32_t>(d.out_scale_y, oy0, d.scaled_h);
        const BilinearTap last_y = bilinear_tap_in<int32_t>(d.out_scale_y, oy0 + th - 1, d.scaled_h);
        const BilinearTap first_x = bilinear_tap_in<int32_t>(d.out_scale_x, ox0, d.scaled_w);
        const BilinearTap last_x = bilinear_tap_in<int32_t>(d.out_scale_x, ox0 + tw - 1, d.scaled_w);
        s.fy0 = first_y.i0;
        s.fx0 = first_x.i0;
        s.fh = last_y.i1 - first_y.i0 + 1;
        s.fw = last_x.i1 - first_x.i0 + 1;
        int32_t slots = 0;
        for (int32_t k = 0; k < d.num_windows && slots < kWarpSlots; ++k) {
          const WindowPlacement& w = table.w[k];
          if (w.y2 <= s.fy0 || w.y1 >= s.fy0 + s.fh || w.x2 <= s.fx0 || w.x1 >= s.fx0 + s.fw) continue;
          s.slot_window[slots++] = k;
        }
        s.slots = slots;
      }
      __syncthreads();
      for (int32_t fr = tid; fr < s.fh; fr += static_cast<int32_t>(blockDim.x)) {
        const int32_t r = s.fy0 + fr;
        int32_t mask = 0;
        for (int32_t slot = 0; slot < s.slots; ++slot) {
          const WindowPlacement& w = table.w[s.slot_window[slot]];
          WarpRowTap tap{0, 0, 0.f, 0.f};
          if (r >= w.y1 && r < w.y2) {
            const BilinearTap t = bilinear_tap_in<int32_t>(d.head_scale_y, r - w.y1, d.in_h);
            tap = WarpRowTap{t.i0 * d.in_w, t.i1 * d.in_w, t.w0, t.w1};
            mask |= 1 << slot;
          }
          s.row_tap[fr][slot] = tap;
        }
        s.row_mask[fr] = mask;
      }
      if (tid < th) {
        const BilinearTap t = bilinear_tap_in<int32_t>(d.out_scale_y, oy0 + tid, d.scaled_h);
        s.out_tap[tid] = WarpOutTap{t.i0 - s.fy0, t.i1 - s.fy0, t.w0, t.w1};
      }
      __syncthreads();
      // the lane as a rescaled column: each slot's column tap (clamped: always a valid load), covered or not
      const int32_t x = s.fx0 + lane;
      const T* base[kWarpSlots];
      int32_t col0[kWarpSlots], step[kWarpSlots];
      float cw0[kWarpSlots], cw1[kWarpSlots];
      int32_t col_mask = 0;
#pragma unroll
      for (int slot = 0; slot < kWarpSlots; ++slot) {
        const int32_t k = slot < s.slots ? s.slot_window[slot] : 0;
        const WindowPlacement& w = table.w[k];
        const BilinearTap t = bilinear_tap_in<int32_t>(d.head_scale_x, x - w.x1, d.in_w);
        base[slot] = logits + static_cast<int64_t>(k) * d.classes * plane;
        col0[slot] = t.i0;
        step[slot] = t.i1 - t.i0;
        cw0[slot] = t.w0;
        cw1[slot] = t.w1;
        const bool in = slot < s.slots && lane < s.fw && x >= w.x1 && x < w.x2;
        col_mask |= in ? 1 << slot : 0;
      }
      // the lane as an output column: the lanes holding its two column taps
      const BilinearTap ox_tap = bilinear_tap_in<int32_t>(d.out_scale_x, ox0 + (lane < tw ? lane : tw - 1), d.scaled_w);
      const int32_t src0 = ox_tap.i0 - s.fx0, src1 = ox_tap.i1 - s.fx0;  // in [0, 32): the launcher's tile width
      float (&best)[kWarpRows][32] = s.best[warp];
      int32_t (&label)[kWarpRows][32] = s.label[warp];
      for (int32_t j = 0; j < th; ++j) {
        best[j][lane] = -INFINITY;
        label[j][lane] = c_begin;  // an empty range keeps -inf: it never replaces an earlier range's pixel
      }
      for (int32_t c0 = c_begin; c0 < c_end; c0 += kWarpChunk) {
        const int32_t last = c_end - c0 < kWarpChunk ? c_end - c0 - 1 : kWarpChunk - 1;  // a short chunk repeats it
        int32_t offset[kWarpChunk];
        float bias[kWarpChunk];
#pragma unroll
        for (int c = 0; c < kWarpChunk; ++c) {
          const int32_t cls = c0 + (c < last ? c : last);
          offset[c] = cls * plane;
          bias[c] = class_bias != nullptr ? __ldg(class_bias + cls) : 0.f;
        }
        int32_t current[kWarpSlots];
        float h0[kWarpSlots][kWarpChunk], h1[kWarpSlots][kWarpChunk];
#pragma unroll
        for (int slot = 0; slot < kWarpSlots; ++slot) current[slot] = -1;
        // the two most recent footprint rows made (row_a < row_b), x-blended at the lane's output column
        int32_t row_a = -1, row_b = -1;
        float va[kWarpChunk], vb[kWarpChunk];
#pragma unroll
        for (int c = 0; c < kWarpChunk; ++c) va[c] = vb[c] = 0.f;
        for (int32_t j = 0; j < th; ++j) {
          const WarpOutTap ot = s.out_tap[j];
#pragma unroll 1
          for (int k = 0; k < 2; ++k) {  // the output row's taps, nondecreasing over j: r1 = r0 or r0 + 1
            const int32_t r = k == 0 ? ot.r0 : ot.r1;
            if (r == row_a || r == row_b) continue;
            float merged[kWarpChunk];
            merged_row(s, r, base, col0, step, cw0, cw1, col_mask, offset, bias, current, h0, h1, merged);
            row_a = row_b;
#pragma unroll
            for (int c = 0; c < kWarpChunk; ++c) {
              va[c] = vb[c];
              const float left = __shfl_sync(0xffffffffu, merged[c], src0);
              const float right = __shfl_sync(0xffffffffu, merged[c], src1);
              vb[c] = blend2(left, right, ox_tap.w0, ox_tap.w1);
            }
            row_b = r;
          }
          if (lane < tw) {
            float b = best[j][lane];
            int32_t l = label[j][lane];
#pragma unroll
            for (int c = 0; c < kWarpChunk; ++c) {
              const float top = ot.r0 == row_b ? vb[c] : va[c], bottom = ot.r1 == row_b ? vb[c] : va[c];
              argmax_update(blend2(top, bottom, ot.w0, ot.w1), c0 + (c < last ? c : last), b, l);
            }
            best[j][lane] = b;
            label[j][lane] = l;
          }
        }
      }
      __syncthreads();
      // the warps' class ranges in class order: torch's argmax over all classes
      for (int32_t e = tid; e < th * 32; e += static_cast<int32_t>(blockDim.x)) {
        const int32_t j = e / 32, l = e % 32;
        if (l >= tw) continue;
        float b = s.best[0][j][l];
        int32_t lab = s.label[0][j][l];
        for (int32_t g = 1; g < groups; ++g) argmax_update(s.best[g][j][l], s.label[g][j][l], b, lab);
        const int64_t at = static_cast<int64_t>(oy0 + j) * d.out_w + ox0 + l;
        labels[at] = lab;
        scores[at] = b;
      }
#if defined(ZS_CUDA_EMULATION)
      if (tid == 0) g_stat_warp_tiles += 1;
#endif
      __syncthreads();  // the next tile rewrites the tables and the warps' pixels
    }
  }
}

}  // namespace

template <typename T>
void launch_warps(const T* logits, const WindowTable& table, const Dims& d, const SegmentWindowsParams& p, dim3 grid,
                  cudaStream_t stream) {
  const int32_t groups =
      d.classes >= kWarpGroups * kWarpChunk ? kWarpGroups : (d.classes + kWarpChunk - 1) / kWarpChunk;
  const unsigned int threads = static_cast<unsigned int>((groups < 1 ? 1 : groups) * 32);
  auto segment_windows_warps = &segment_windows_warps_kernel<T>;
  ZS_LAUNCH(segment_windows_warps, grid, threads, stream, logits, table, d, p.class_bias, p.labels, p.scores);
}

ZS_SW_INSTANTIATE_LAUNCH(launch_warps, dim3);

}  // namespace ZS_SW_BUILD
}  // namespace sw_cuda
}  // namespace zsseg
