// CUDA segment_windows, the bound pass (class pruning, P; see segment_windows.cu for the design): shared by the
// tiled kernels of segment_windows_tiled.cu (every variant, segment_windows_testing::Variant).
#pragma once
#include "segment_windows_tiles.cuh"

namespace zsseg {
namespace sw_cuda {
inline namespace ZS_SW_BUILD {  // emulated / device: segment_windows_tiles.cuh
namespace {

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

// The logits of class c the tile's footprint reads, from the window logits themselves: every logit of each slot's
// rectangle (s.slot_rows x s.slot_cols). range() widens [lo, hi] by them and clears tame on a NaN, an infinity or
// |x| > kTameLogit; loads_per_class() is how many it reads (the emulated build's count).
template <typename T>
struct FootprintLogits {
  const T* __restrict__ logits;
  __device__ __forceinline__ void range(const Dims& d, const TileSmem& s, int32_t c, float& lo, float& hi,
                                        bool& tame) const {
    const int32_t classes = d.classes, plane = d.in_h * d.in_w;
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
  }
  __device__ __forceinline__ int64_t loads_per_class(const TileSmem& s) const {
    int64_t loads = 0;
    for (int32_t slot = 0; slot < s.slots; ++slot) loads += s.slot_rows[slot][1] * s.slot_cols[slot][1];
    return loads;
  }
};

// Lists in s.listed the classes that can win a pixel of the tile (all classes unless d.drop), in class order, and
// sets s.listed_count and s.tame, from each class's logit range over the footprint as `source` gives it
// (FootprintLogits, or segment_windows_prebound.cuh's PreboundBlocks). Thread t owns the contiguous classes
// [t q, t q + q), q = ceil(C / 256) <= 4. Ends with a barrier.
template <typename Source>
__device__ void bound_pass_of(const Source& source, const Dims& d, const float* __restrict__ class_bias, TileSmem& s) {
  const int32_t tid = thread_index_here(), warp = tid / 32, lane = tid % 32;
  const int32_t classes = d.classes, per_thread = (classes + kThreads - 1) / kThreads;
  const int32_t c_begin = tid * per_thread, c_end = c_begin + per_thread < classes ? c_begin + per_thread : classes;
  float* const upper = &s.merged[0][0];               // [classes] upper bound (+inf: wild, always listed)
  float* const lower_max = upper + kMaxPruneClasses;  // [kThreads] the thread's largest tame lower bound
  float* const deep = lower_max + kThreads;           // [classes] 1: a logit below kDeepLogit
  static_assert(2 * kMaxPruneClasses + kThreads <= kChunk * kFootprintCap, "bounds fit in smem.merged");
  float lower_best = -INFINITY;
  bool steep = false;  // a logit beyond +-kGentleLogit: the chained exponentials stay off in this tile
  for (int32_t c = c_begin; c < c_end; ++c) {
    float lo = INFINITY, hi = -INFINITY;
    bool tame = true;
    source.range(d, s, c, lo, hi, tame);
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
    steep = steep || (lo <= hi && !(lo >= -kGentleLogit && hi <= kGentleLogit));
  }
  lower_max[tid] = lower_best;
  if (steep) s.steep = 1;  // reset by prepare_tile; read after the barriers below
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
    g_stat_bound_loads += classes * source.loads_per_class(s);
#endif
  }
  __syncthreads();
}

// The bound pass from the window logits (every tiled variant but ordered_prebound).
template <typename T>
__device__ __forceinline__ void bound_pass(const T* __restrict__ logits, const Dims& d,
                                           const float* __restrict__ class_bias, TileSmem& s) {
  bound_pass_of(FootprintLogits<T>{logits}, d, class_bias, s);
}

}  // namespace
}  // namespace ZS_SW_BUILD
}  // namespace sw_cuda
}  // namespace zsseg
