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
//
// Files: this one (the launcher: tile size, the form, the testing hooks), segment_windows_tiles.cuh (what the
// kernels share), segment_windows_tiled.cu, segment_windows_softmax.cu, segment_windows_direct.cu,
// segment_windows_warps.cu (the sigmoid path's `warps` candidate: no pruning, no barrier per class chunk) (the
// kernels); segment_windows_ordered.cuh (the `ordered` candidate's branch and bound on the tiled kernel's fast tiles);
// segment_windows_prebound.cuh (`ordered_prebound`: `ordered` with its tiles' bounds from a first launch's blocks).
#include <atomic>
#include <cmath>

#include "segment_windows_testing.cuh"
#include "segment_windows_tiles.cuh"

namespace zsseg {
static_assert(kSegmentWindowsKernelCount == segment_windows_testing::kVariants &&
                  sizeof(kSegmentWindowsKernels) / sizeof(kSegmentWindowsKernels[0]) == kSegmentWindowsKernelCount,
              "a name per kernel variant");
namespace sw_cuda {
#if defined(ZS_CUDA_EMULATION)
inline namespace emulated {
std::atomic<int64_t> g_stat_tiles{0}, g_stat_classes{0}, g_stat_kept{0}, g_stat_fast{0}, g_stat_chained{0};
std::atomic<int64_t> g_stat_warp_tiles{0};
std::atomic<int64_t> g_stat_bound_loads{0}, g_stat_prebound_loads{0};
}  // namespace emulated
#endif
namespace {

// The pruning mode of the next launches (segment_windows_testing::set_pruning).
std::atomic<int> g_pruning{static_cast<int>(segment_windows_testing::Pruning::kOn)};
// The sigmoid path's kernel of the next launches whose params name none (SegmentWindowsParams::kernel = -1;
// segment_windows_testing::set_variant).
std::atomic<int> g_variant{static_cast<int>(segment_windows_testing::Variant::kTiled)};

// A power of two (the row weights are then exact multiples of it: the chained exponentials' condition).
bool is_power_of_two(float x) {
  int exponent = 0;
  return x > 0.f && std::frexp(x, &exponent) == 0.5f;
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

// The `warps` kernel's tile (segment_windows_warps.cu): the widest (<= 32 columns) whose footprint is at most 32
// rescaled columns (a lane each) and the tallest (<= kWarpRows rows) whose footprint fits kWarpFootRows rows; false
// when some footprint may meet more than kWarpSlots windows (then the tiled default runs).
bool choose_warp_tile(const SegmentWindowsParams& p, const Dims& d, int32_t& tile_w, int32_t& tile_h) {
  int32_t tw = 32, th = kWarpRows;
  while (tw > 1 && footprint_bound(d.out_scale_x, tw) > 32) --tw;
  while (th > 1 && footprint_bound(d.out_scale_y, th) > kWarpFootRows) --th;
  if (footprint_bound(d.out_scale_x, tw) > 32 || footprint_bound(d.out_scale_y, th) > kWarpFootRows) return false;
  tile_w = tw;
  tile_h = th;
  return most_windows_per_footprint(p, footprint_bound(d.out_scale_y, th), footprint_bound(d.out_scale_x, tw)) <=
         kWarpSlots;
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
  d.drop = pruning == segment_windows_testing::Pruning::kOn ||
           pruning == segment_windows_testing::Pruning::kPreboundCellsOnly;
  d.prebound_cells_only = pruning == segment_windows_testing::Pruning::kPreboundCellsOnly;
  d.logit_scale = p.logit_scale;
  if (p.kernel < -1 || p.kernel >= kSegmentWindowsKernelCount) return static_cast<CudaStatus>(cudaErrorInvalidValue);
  d.variant = p.kernel >= 0 ? p.kernel : g_variant.load();  // the call's own kernel, else the process-wide one
  d.chain =
      d.variant == static_cast<int>(segment_windows_testing::Variant::kColumnsChain) && is_power_of_two(d.head_scale_y);
  const auto capped = [](int64_t n) {
    return static_cast<unsigned int>(n < 1 ? 1 : (n > ZS_CUDA_GRID_CAP ? ZS_CUDA_GRID_CAP : n));
  };
  int32_t tw = 0, th = 0;
  if (d.sigmoid && d.variant == static_cast<int>(segment_windows_testing::Variant::kWarps)) {
    if (choose_warp_tile(p, d, tw, th)) {
      d.tile_w = tw;
      d.tile_h = th;
      d.tiles_x = static_cast<int32_t>((p.out_width + tw - 1) / tw);
      d.tiles_y = static_cast<int32_t>((p.out_height + th - 1) / th);
      launch_warps(static_cast<const T*>(p.logits), table, d, p, dim3(capped(d.tiles_x), capped(d.tiles_y)), stream);
      return static_cast<CudaStatus>(cudaGetLastError());
    }
    d.variant = static_cast<int>(segment_windows_testing::Variant::kTiled);  // more windows per footprint: the default
  }
  const bool tiled = choose_tile(d, tw, th) && most_windows_per_footprint(p, footprint_bound(d.out_scale_y, th),
                                                                          footprint_bound(d.out_scale_x, tw)) <= kSlots;
  if (!tiled) {
    const int64_t blocks = (p.out_height * p.out_width + kThreads - 1) / kThreads;
    launch_direct(static_cast<const T*>(p.logits), table, d, p, capped(blocks), stream);
    return static_cast<CudaStatus>(cudaGetLastError());
  }
  d.tile_w = tw;
  d.tile_h = th;
  d.tiles_x = static_cast<int32_t>((p.out_width + tw - 1) / tw);
  d.tiles_y = static_cast<int32_t>((p.out_height + th - 1) / th);
  const dim3 grid(capped(d.tiles_x), capped(d.tiles_y));
  if (p.softmax) {
    launch_softmax(static_cast<const T*>(p.logits), table, d, p, grid, stream);
    return static_cast<CudaStatus>(cudaGetLastError());
  }
  if (d.sigmoid && d.prune && d.variant == kSegmentWindowsPreboundKernel) {  // its first launch's scratch
    const int64_t needed = segment_windows_scratch_floats(p, d.variant);
    if (p.scratch == nullptr || p.scratch_floats < needed) return static_cast<CudaStatus>(cudaErrorInvalidValue);
#if defined(ZS_CUDA_EMULATION)
    const int64_t cells = d.prebound_cells_only ? int64_t{d.in_h} * d.in_w : int64_t{2 * d.in_h - 1} * (2 * d.in_w - 1);
    g_stat_prebound_loads += int64_t{d.num_windows} * d.classes * cells;  // sum over logits of their block's size
#endif
  }
  launch_tiled(static_cast<const T*>(p.logits), table, d, p, grid, stream);
  return static_cast<CudaStatus>(cudaGetLastError());
}

}  // namespace
}  // namespace sw_cuda

using namespace sw_cuda;  // the launcher and its statistics

// (qualified definitions: the declarations are in an inline namespace that differs between emulated and CUDA builds)
void segment_windows_testing::set_pruning(segment_windows_testing::Pruning mode) {
  g_pruning.store(static_cast<int>(mode));
}
segment_windows_testing::Pruning segment_windows_testing::pruning() {
  return static_cast<Pruning>(g_pruning.load());
}
void segment_windows_testing::set_variant(segment_windows_testing::Variant variant) {
  g_variant.store(static_cast<int>(variant));
}
segment_windows_testing::Variant segment_windows_testing::variant() {
  return static_cast<Variant>(g_variant.load());
}
segment_windows_testing::PruneStats segment_windows_testing::prune_stats() {
  PruneStats stats;
#if defined(ZS_CUDA_EMULATION)
  stats.tiles = g_stat_tiles.load();
  stats.classes = g_stat_classes.load();
  stats.kept = g_stat_kept.load();
  stats.fast_tiles = g_stat_fast.load();
  stats.chained_rows = g_stat_chained.load();
  stats.warp_tiles = g_stat_warp_tiles.load();
  stats.bound_loads = g_stat_bound_loads.load();
  stats.prebound_loads = g_stat_prebound_loads.load();
#endif
  return stats;
}
void segment_windows_testing::reset_prune_stats() {
#if defined(ZS_CUDA_EMULATION)
  g_stat_tiles = 0;
  g_stat_classes = 0;
  g_stat_kept = 0;
  g_stat_fast = 0;
  g_stat_chained = 0;
  g_stat_warp_tiles = 0;
  g_stat_bound_loads = 0;
  g_stat_prebound_loads = 0;
#endif
}

ZS_DTYPE_ENTRY_POINT(segment_windows_cuda, SegmentWindowsParams)

}  // namespace zsseg
