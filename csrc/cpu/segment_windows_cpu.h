// Internal to the CPU segment_windows (csrc/cpu/segment_windows*.cpp): what its three forms share -- the
// geometry, the tile path's tiles and its exact evaluation of a tile (run_tile, which the bounded path reuses), and
// each form's entry. Not part of any API.
#pragma once
// Every form is built with the same numerics: this header comes first in each (csrc/cpu/segment_windows*.cpp), so
// the pragma covers the standard headers and all the code after it (and CMakeLists.txt adds -ffp-contract=off).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include <omp.h>

#include "bilinear_taps.h"
#include "cpu_dispatch.h"
#include "zsseg/segment_windows.h"

namespace zsseg {
namespace sw_cpu {

struct Geometry {
  const SegmentWindowsParams& p;
  std::vector<BilinearTap> head_rows, head_cols;  // window pixel -> logits taps (head resolution)
  std::vector<BilinearTap> out_rows, out_cols;    // output pixel -> rescaled taps
  cpu::ColumnTaps cols;                           // head_cols as arrays (vectorisable gathers), as upsample_cpu does
  cpu::ColumnTaps out_col_taps;                   // out_cols as arrays
};

constexpr float kTameLogit = 1e30f;   // |logit| above this (or non-finite): the class is always kept
constexpr float kPruneSlack = 1e-5f;  // bound slack, times (1 + |bias|)

struct TileBox {
  int64_t y0, y1, x0, x1;      // output rows [y0, y1), columns [x0, x1)
  int64_t fy0, fy1, fx0, fx1;  // footprint: rescaled rows [fy0, fy1], columns [fx0, fx1]
};

// Output rows [y0, y1) x columns [x0, x1) and their footprint.
TileBox tile_box(const Geometry& geo, int64_t y0, int64_t y1, int64_t x0, int64_t x1);

struct TileScratch {
  std::vector<float> merged;  // [listed][footprint rows][footprint cols]
  std::vector<float> values;  // [footprint rows][footprint cols][listed] (class-contiguous)
  std::vector<float> counts;  // [footprint cols] windows covering each column of a row
  std::vector<float> v;       // [listed] one pixel's values
};

// The exact output values of the listed classes at the tile's pixels, into out [n][tile rows][tile columns]
// (segment_windows_pruned.cpp). The tile must be covered (the bounded path's grids are).
void tile_values(const Geometry& geo, const TileBox& b, const uint16_t* listed, int64_t n, TileScratch& t, float* out);
// One tile: the listed classes' merged values over the footprint, then the output blend and argmax over them
// (segment_windows_pruned.cpp). False when a footprint pixel is covered by no window.
bool run_tile(const Geometry& geo, const TileBox& b, const uint16_t* listed, int64_t n, bool wild, TileScratch& t);

// Counts a bound pass for segment_windows_cpu_testing::stats() (segment_windows.cpp).
void record_bound_pass(int64_t tiles, int64_t pairs, int64_t kept, int64_t probed = 0);

// The tile path (segment_windows_pruned.cpp); false (nothing written) when pruning would not pay (more than half the
// tile-class pairs kept). `uncovered` is set when a footprint pixel is in no window.
bool segment_windows_cpu_pruned(const Geometry& geo, bool force, bool& uncovered);

// The bounded path (segment_windows_bounded.cpp); nothing written unless kDone: the windows are not a grid or a
// logit is not tame (kNotApplicable), or pruning would not pay (kDoesNotPay: more than half the tile-class pairs
// kept).
enum class Bounded { kNotApplicable, kDoesNotPay, kDone };
Bounded segment_windows_cpu_bounded(const Geometry& geo, bool force);

}  // namespace sw_cpu
}  // namespace zsseg
