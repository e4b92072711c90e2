// CUDA segment_windows, the `ordered` candidate's branch and bound (segment_windows_testing::Variant::kOrdered):
// the tiled kernel's fast tiles (segment_windows_tiled.cu, run_tile_fast<T, true>) evaluate first the
// chunk of 8 listed classes with the highest upper bounds (the bound pass's), then drop every other listed class
// whose upper bound is below the tile's smallest best value (the minimum over the tile's pixels of their largest
// value so far), and evaluate the survivors in class order.
//
// Exact: the bound pass's upper bound of class c is at least every value of c the kernel computes in the tile (its
// slack covers every rounding and approximation: segment_windows.cu, P), and a pixel's best value is one such
// computed value, so a dropped class is strictly below the winner at every pixel; the argmax compares (value,
// -class), so chunks in any class order give the tiled kernel's labels (on equal values the lower class: the CPU
// op's and torch's rule) and its scores bit for bit.
//
// Cost per tile, where it runs (more than 8 classes listed): two warp reductions, a rank among 16 candidates in
// one warp, a warp minimum and a compaction (five barriers); a tile whose listed classes all stay pays them on top
// of the tiled kernel's work (i.i.d. logits); a tile of a few object-sized regions evaluates one or two chunks.
#pragma once
#include "segment_windows_tiles.cuh"

namespace zsseg {
namespace sw_cuda {
inline namespace ZS_SW_BUILD {  // emulated / device: segment_windows_tiles.cuh
namespace {

constexpr int kOrderedCandidates = 2;  // per warp: the two highest upper bounds of its share of the list
static_assert(kOrderedCandidates * kWarps == 16 && kChunk == 8, "16 candidates, 8 chosen (the rank below)");

struct OrderedSmem {
  TileSmem base;                  // prepare_tile, the bound pass and the chunks use it as the tiled kernel
  float upper[kMaxPruneClasses];  // the bound pass's upper bounds, past the first chunk (chosen: -inf)
  uint16_t first[kChunk];         // the first chunk's classes (the highest upper bounds)
  float cand_key[kOrderedCandidates * kWarps];    // each warp's candidates: upper bound,
  int32_t cand_pos[kOrderedCandidates * kWarps];  // and list position (kNoPosition: none)
};
static_assert(sizeof(OrderedSmem) <= 48 * 1024, "static shared memory of one block");

constexpr int32_t kNoPosition = 0x7fffffff;
constexpr unsigned int kFullWarp = 0xffffffffu;

// (key, position) better than (other_key, other_position): the larger upper bound, then the lower list position
// (the list is in class order: the lower class).
__device__ __forceinline__ bool ranks_before(float key, int32_t position, float other_key, int32_t other_position) {
  return key > other_key || (key == other_key && position < other_position);
}

// After the bound pass (fast tiles, d.drop, more than kChunk classes listed): o.first = the classes of the kChunk
// highest upper bounds among 16 candidates (each warp's two best of the list positions w, w + 8, ..., w + 248: a
// few classes of neighbouring indices land in different warps), o.upper = every class's upper bound with the chosen
// ones at -inf. Any choice keeps the result exact; a good one prunes more. Ends with a barrier.
__device__ __forceinline__ void choose_first_chunk(const Dims& d, OrderedSmem& o) {
  TileSmem& s = o.base;
  const int32_t tid = static_cast<int32_t>(threadIdx.x), warp = tid / 32, lane = tid % 32;
  const float* const upper = &s.merged[0][0];  // the bound pass's (segment_windows_bounds.cuh)
  for (int32_t c = tid; c < d.classes; c += kThreads) o.upper[c] = upper[c];
  const int32_t listed = s.listed_count < kThreads ? s.listed_count : kThreads;
  const int32_t position = lane * kWarps + warp;
  float key = -INFINITY;
  int32_t at = kNoPosition;
  if (position < listed) {
    key = upper[s.listed[position]];  // finite on fast tiles (tame: no wild class is listed)
    at = position;
  }
#pragma unroll
  for (int round = 0; round < kOrderedCandidates; ++round) {
    float best_key = key;
    int32_t best_at = at;
#pragma unroll
    for (int m = 16; m > 0; m /= 2) {
      const float other_key = __shfl_xor_sync(kFullWarp, best_key, m);
      const int32_t other_at = __shfl_xor_sync(kFullWarp, best_at, m);
      if (ranks_before(other_key, other_at, best_key, best_at)) {
        best_key = other_key;
        best_at = other_at;
      }
    }
    if (lane == 0) {
      o.cand_key[warp * kOrderedCandidates + round] = best_key;
      o.cand_pos[warp * kOrderedCandidates + round] = best_at;
    }
    if (at == best_at) {  // taken: out of the next round (kNoPosition lanes stay as they are)
      key = -INFINITY;
      at = kNoPosition;
    }
  }
  __syncthreads();
  if (warp == 0) {  // the rank of each of the 16 candidates among them; the first kChunk are chosen
    const int32_t n = kOrderedCandidates * kWarps;
    const float mine_key = lane < n ? o.cand_key[lane] : -INFINITY;
    const int32_t mine_at = lane < n ? o.cand_pos[lane] : kNoPosition;
    int32_t rank = 0;
#pragma unroll
    for (int m = 1; m < 32; ++m) {
      const float other_key = __shfl_xor_sync(kFullWarp, mine_key, m);
      const int32_t other_at = __shfl_xor_sync(kFullWarp, mine_at, m);
      rank += ranks_before(other_key, other_at, mine_key, mine_at) ? 1 : 0;
    }
    // more than kChunk classes listed: at least 9 candidates (warp 0 has positions 0 and 8, every other warp one)
    if (mine_at != kNoPosition && rank < kChunk) {
      const int32_t cls = s.listed[mine_at];
      o.first[rank] = static_cast<uint16_t>(cls);
      o.upper[cls] = -INFINITY;  // chosen: not a survivor of the filter
    }
  }
  __syncthreads();
}

// Every thread's best value so far (INFINITY: no pixel): each warp's minimum into s.warp_max (free after the bound
// pass), read by ordered_filter after a barrier.
__device__ __forceinline__ void tile_min_best(float best, TileSmem& s) {
#pragma unroll
  for (int m = 16; m > 0; m /= 2) best = fminf(best, __shfl_xor_sync(kFullWarp, best, m));
  if (threadIdx.x % 32 == 0) s.warp_max[threadIdx.x / 32] = best;
}

// After the first chunk (and the barrier that follows tile_min_best): s.listed keeps, in place and in class order,
// the listed classes not chosen whose upper bound is at least the tile's smallest best value; returns how many.
// Ends with a barrier.
__device__ __forceinline__ int32_t ordered_filter(const OrderedSmem& o, TileSmem& s) {
  const int32_t tid = static_cast<int32_t>(threadIdx.x), warp = tid / 32, lane = tid % 32;
  float bound = INFINITY;  // the tile's smallest best value: a class whose every value is below it wins no pixel
#pragma unroll
  for (int w = 0; w < kWarps; ++w) bound = fminf(bound, s.warp_max[w]);
  const int32_t listed = s.listed_count, per_thread = (listed + kThreads - 1) / kThreads;  // <= 4
  const int32_t begin = tid * per_thread;
  constexpr int kMost = kMaxPruneClasses / kThreads;
  uint16_t cls[kMost];  // the thread's classes, read before the barrier below (the writes are in place)
  bool keep[kMost];
  int32_t count = 0;
#pragma unroll
  for (int j = 0; j < kMost; ++j) {
    const int32_t i = begin + j;
    keep[j] = j < per_thread && i < listed;
    cls[j] = keep[j] ? s.listed[i] : 0;
    keep[j] = keep[j] && !(o.upper[cls[j]] < bound);
    count += keep[j] ? 1 : 0;
  }
  int32_t total = count, before = 0;  // the warp's exclusive prefix of the counts (xor butterfly), and its total
#pragma unroll
  for (int m = 1; m < 32; m *= 2) {
    const int32_t other = __shfl_xor_sync(kFullWarp, total, m);
    if ((lane & m) != 0) before += other;
    total += other;
  }
  if (lane == 0) s.warp_total[warp] = total;
  __syncthreads();
  int32_t survivors = 0;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) {
    const int32_t t = s.warp_total[w];
    before += w < warp ? t : 0;
    survivors += t;
  }
#pragma unroll
  for (int j = 0; j < kMost; ++j) {
    if (keep[j]) s.listed[before++] = cls[j];
  }
#if defined(ZS_CUDA_EMULATION)
  if (tid == 0) g_stat_kept -= listed - kChunk - survivors;  // the bound pass counted every listed class
#endif
  __syncthreads();
  return survivors;
}

}  // namespace
}  // namespace ZS_SW_BUILD
}  // namespace sw_cuda
}  // namespace zsseg
